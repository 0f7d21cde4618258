"""Retention tiers of the metrics, as Cloud Manager keeps them: raw samples (24 h by default),
1-minute rollups (14 days), 1-hour rollups (12 months), each configurable
(WAP_METRICS_RAW_RETENTION, WAP_METRICS_1M_RETENTION, WAP_METRICS_1H_RETENTION, in seconds).

A rollup window holds, per series, the min, max, mean, last value and count of the samples whose
time falls in it. Rollups are bucketed documents in `rollups`, one per tier, host, series and
slice of windows, the windows as columns (`t`, `min`, `max`, `mean`, `last`, `count`), a slice
written with one insert per series (no update in place, which the embedded store does slowly).
Slices are then compacted, level by level, into documents of longer spans (LEVELS: `level`, and
the span `p0`-`p1`, on each), each window kept as it was: a chart reads few documents (a year of
one series, 8,760 1-hour windows, was 1,460 documents; the embedded store's cost is per document
and per byte it decodes). Beside the 1-hour tier, 1-day windows (`1d`, kept as long) serve the
charts whose points are a day or more apart. Time-series collections were not used: the
embedded store (nx-27017) answers ok to `create` with `timeseries` and keeps an ordinary
collection, so the design must not depend on them.

`run` does one round: roll every whole slice of 1-minute windows that ended more than `LAG`
seconds ago (`metrics_rollup_every` seconds of windows per slice), roll the 1-minute rollups into
1-hour windows by slices of `HOUR_SLICE` and those into 1-day windows, compact, then expire what
is past each tier's retention. Where each tier has been rolled up to is kept in `meta`
(`rollup:1m`, `rollup:1h`, `rollup:1d`, and `compact:<tier>:<level>`); a round that died midway
leaves documents at or after its cursor, which the next round removes before writing them again
(see `compact` for its own). Documents of earlier versions are slices: read as such, and
compacted by the first rounds. Only one process rolls at a time (a lease in `meta`); the time is
an argument, so tests control it. Workers run it in their reaper process (webui.jobs.reaper), a
loop beside each worker that already runs every few seconds: RQ's scheduler would fork a work
horse for every round and queue it behind the playbooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import operator
import os
import socket
import time
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError

from webui.store import Store

MINUTE, HOUR, DAY = 60, 3600, 86400
WIDTHS = {"1m": MINUTE, "1h": HOUR, "1d": DAY}
RAW_END = 0.001  # a raw column ends just after its last sample
SLOT = 600.0
EXPIRE_EVERY = 300.0  # an expiry reads by time ranges, which the embedded store scans: not often
# Seconds a minute's window is left open for samples still on their way: an agent delivers what it
# queued during a short outage of the platform within a few minutes, and charts read the windows
# not rolled yet from the raw samples, so waiting costs nothing a chart shows.
LAG = 300.0
HOUR_SLICE = 6 * HOUR
LEASE = 300.0
# Compaction: the spans into which each tier's slices are merged, level by level (level 0 is the
# slice a round writes: `rollup_every` seconds of raw columns and 1-minute windows, HOUR_SLICE of
# 1-hour windows, a day of 1-day ones). Each span is a whole number of the one before, aligned
# on the epoch. A chart reads whole documents, so a tier's widest span stays near the shortest
# range read from it: an hour of raw columns, six hours of 1-minute windows, 15 days of 1-hour
# ones (a 30-day chart), 30 days of 1-day ones.
LEVELS = {
    "raw": (HOUR,),
    "1m": (HOUR, 6 * HOUR),
    "1h": (DAY, 5 * DAY, 15 * DAY),
    "1d": (30 * DAY,),
}
COLUMNS = {"raw": ("v",), "1m": ("min", "max", "mean", "last", "count")}
COLUMNS["1h"] = COLUMNS["1d"] = COLUMNS["1m"]
# The tier whose cursor says how far each tier's windows are all written.
ROLLED_BY = {"raw": "1m", "1m": "1m", "1h": "1h", "1d": "1d"}

RUN = 8  # windows folded together from which a run is found by bisection
# A window's aggregate while it is built: min, max, sum, count, last, time of last.
Agg = list[float]


@dataclass(frozen=True)
class Retention:
    raw: float = 86400.0
    minute: float = 14 * 86400.0
    hour: float = 365 * 86400.0
    rollup_every: float = 120.0

    @classmethod
    def of(cls, settings: Any) -> Retention:
        return cls(
            settings.metrics_raw_retention,
            settings.metrics_1m_retention,
            settings.metrics_1h_retention,
            settings.metrics_rollup_every,
        )

    def of_tier(self, tier: str) -> float:
        return {"raw": self.raw, "1m": self.minute, "1h": self.hour}[tier]


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_key(name: str, labels: dict[str, str]) -> SeriesKey:
    """One key per series: its name and its labels in a stable order (a tuple: ingest makes one
    per sample, and a tuple costs a tenth of a JSON string)."""
    return name, tuple(sorted(labels.items()))


def host_key(tier: str, host_id: str, name: str) -> str:
    """A rollup document's one-field key by host (the embedded store uses an index for equality
    on one field only: a find on host, tier and name together scanned every document, 100 ms of
    store CPU for 60,000 of them against 8 ms by this key, measured)."""
    return f"{tier}:{host_id}:{name}"


def project_key(tier: str, project_id: str, name: str) -> str:
    return f"{tier}:{project_id}:{name}"


def slot(t: float) -> float:
    """The 10-minute slot of a round document (`w`), keyed by host (`hw`) and project (`pw`)
    for the same reason."""
    return t - t % SLOT


def slots(lo: float, hi: float) -> list[float]:
    """The slots holding round documents of times in [lo, hi), with a minute's margin for
    samples timed apart from their round."""
    first, last = slot(lo - MINUTE), slot(hi + MINUTE)
    return [first + SLOT * i for i in range(int((last - first) // SLOT) + 1)]


def fold(windows: dict[float, Agg], at: float, agg: Agg) -> None:
    """Add an aggregate (or one sample as [v, v, v, 1, v, t]) to the window starting at `at`."""
    held = windows.get(at)
    if held is None:
        windows[at] = list(agg)
        return
    held[0] = min(held[0], agg[0])
    held[1] = max(held[1], agg[1])
    held[2] += agg[2]
    held[3] += agg[3]
    if agg[5] >= held[5]:
        held[4], held[5] = agg[4], agg[5]


class Series:
    """One series of one host being gathered: its windows' aggregates."""

    __slots__ = ("host_id", "labels", "name", "project_id", "windows")

    def __init__(self, host_id: str, project_id: str, name: str, labels: dict[str, str]) -> None:
        self.host_id, self.project_id, self.name, self.labels = host_id, project_id, name, labels
        self.windows: dict[float, Agg] = {}


Gathered = dict[tuple[str, SeriesKey], Series]


def _series(out: Gathered, host_id: str, project_id: str, name: str, labels: dict) -> Series:
    key = (host_id, series_key(name, labels))
    found = out.get(key)
    if found is None:
        found = out[key] = Series(host_id, project_id, name, labels)
    return found


def gather_raw(
    docs: Iterable[dict[str, Any]],
    width: float | None,
    lo: float,
    hi: float,
    keep: Any = None,
    out: Gathered | None = None,
) -> Gathered:
    """Samples of raw batch documents with times in [lo, hi), per series, into windows of
    `width` seconds (or one window per sample when `width` is None); `keep(sample)` filters."""
    out = {} if out is None else out
    for doc in docs:
        for s in doc.get("samples", ()):
            t = s["t"]
            if not lo <= t < hi or (keep is not None and not keep(s)):
                continue
            v = s["v"]
            at = t if width is None else t - t % width
            fold(_series(out, doc["host_id"], doc["project_id"], s["n"], s["l"]).windows, at,
                 [v, v, v, 1, v, t])  # fmt: skip
    return out


def gather_rollups(
    docs: Iterable[dict[str, Any]],
    width: float | None,
    lo: float,
    hi: float,
    out: Gathered | None = None,
) -> Gathered:
    """Windows (or a raw column's samples) of rollup documents starting in [lo, hi), per series,
    folded into `width` (None: one window per sample). A window that a document of a higher
    compaction level of the same series also holds (a slice not deleted yet after its span was
    compacted) is taken from that document only, so `docs` must hold every level read at once."""
    out = {} if out is None else out
    docs = list(docs)
    covers: dict[tuple[str, SeriesKey], list[tuple[int, float, float]]] = {}
    for doc in docs:
        if "p0" in doc:
            key = (doc["host_id"], series_key(doc["n"], doc["l"]))
            covers.setdefault(key, []).append((doc["level"], doc["p0"], doc["p1"]))
    for doc in docs:
        series = _series(out, doc["host_id"], doc["project_id"], doc["n"], doc["l"])
        level, times = doc.get("level", 0), doc["t"]
        cuts = sorted(
            (p0, p1)
            for above, p0, p1 in covers.get((series.host_id, series_key(series.name,
                                                                         series.labels)), ())
            if above > level and p0 < doc["t1"] and p1 > doc["t0"]
        )  # fmt: skip
        first, stop = bisect_left(times, lo), bisect_left(times, hi)
        for p0, p1 in cuts:
            _fold_columns(series.windows, doc, width, first, min(stop, bisect_left(times, p0)))
            first = max(first, bisect_left(times, p1))
        _fold_columns(series.windows, doc, width, first, stop)
    return out


def _fold_columns(
    windows: dict[float, Agg], doc: dict[str, Any], width: float | None, first: int, stop: int
) -> None:
    """Fold the windows first..stop-1 of a rollup document (times in order) into `windows`, a
    run of them falling in one window of `width` at once: a long run with the builtins' C loops
    over slices (a day of hours), a short one in a plain loop (three minutes). A rollup window's
    last value is timed by the window's start (a later window's last is later)."""
    times, values = doc["t"], doc.get("v")
    if values is not None:  # a raw column: each sample its own min, max, mean and last
        lows = highs = lasts = values
        sums, counts = values, None
    else:
        lows, highs, lasts, counts = doc["min"], doc["max"], doc["last"], doc["count"]
        sums = list(map(operator.mul, doc["mean"], counts))
    i = first
    while i < stop:
        t = times[i]
        at = t if width is None else t - t % width
        until = at + (width or 0.0)
        if width is None:
            j = i + 1
        elif i + RUN < stop and times[i + RUN] < until:
            j = bisect_left(times, until, i + RUN, stop)
        else:
            j = i + 1
            while j < stop and times[j] < until:
                j += 1
        count = j - i if counts is None else sum(counts[i:j])
        fold(windows, at, [min(lows[i:j]), max(highs[i:j]), sum(sums[i:j]), count, lasts[j - 1],
                           times[j - 1]])  # fmt: skip
        i = j


def refold(gathered: Gathered, width: float) -> Gathered:
    """The same series with their windows folded into windows of `width` seconds."""
    out: Gathered = {}
    for key, series in gathered.items():
        wider = out[key] = Series(series.host_id, series.project_id, series.name, series.labels)
        for t, agg in series.windows.items():
            fold(wider.windows, t - t % width, agg)
    return out


def _document(
    tier: str, host_id: str, project_id: str, name: str, labels: dict[str, str],
    columns: dict[str, list[float]], suffix: str = "",
) -> dict[str, Any]:  # fmt: skip
    times = columns["t"]
    key = json.dumps(series_key(name, labels), separators=(",", ":"))
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return {
        "_id": f"{tier}:{host_id}:{times[0]:.0f}:{digest}{suffix}",
        "tier": tier,
        "host_id": host_id,
        "project_id": project_id,
        "k": host_key(tier, host_id, name),
        "pk": project_key(tier, project_id, name),
        "n": name,
        "l": labels,
        "t0": times[0],
        "t1": times[-1] + WIDTHS.get(tier, RAW_END),
        **columns,
    }


def rollup_documents(tier: str, gathered: Gathered) -> Iterator[dict[str, Any]]:
    for series in gathered.values():
        if not series.windows:
            continue
        times = sorted(series.windows)
        aggs = [series.windows[t] for t in times]
        if tier == "raw":
            columns = {"t": times, "v": [a[4] for a in aggs]}
        else:
            columns = {"t": times, "min": [a[0] for a in aggs], "max": [a[1] for a in aggs],
                       "mean": [a[2] / a[3] for a in aggs], "last": [a[4] for a in aggs],
                       "count": [a[3] for a in aggs]}  # fmt: skip
        yield _document(tier, series.host_id, series.project_id, series.name, series.labels,
                        columns)  # fmt: skip


def cursor(store: Store, tier: str, prefix: str = "rollup") -> float | None:
    """Where `tier` has been rolled up to (windows before it are in `rollups`), or None; with
    prefix compact, where a tier's level (`<tier>:<level>`) has been compacted to."""
    doc = store.db.meta.find_one({"_id": f"{prefix}:{tier}"})
    return float(doc["until"]) if doc else None


def _set_cursor(store: Store, tier: str, until: float, prefix: str = "rollup") -> None:
    store.db.meta.update_one({"_id": f"{prefix}:{tier}"}, {"$set": {"until": until}}, upsert=True)


def _tier(tier: str) -> dict[str, Any]:
    """A filter on the tier that the embedded store's finds can take with a compound index on
    (tier, t0) or (tier, t1): its plain equality is an array-or-value test that scans them all."""
    return {"tier": {"$eq": tier}}


def _insert(store: Store, documents: list[dict[str, Any]]) -> None:
    if not documents:
        return
    try:
        store.db.rollups.insert_many(documents, ordered=False)
    except BulkWriteError as exc:  # written by an earlier round that died before its cursor
        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
            raise


def _write(store: Store, tier: str, since: float, documents: list[dict[str, Any]]) -> None:
    store.db.rollups.delete_many({**_tier(tier), "t0": {"$gte": since}})
    _insert(store, documents)


def _skip_empty(
    collection: Any, where: dict[str, Any], field: str, until: float, every: float, upto: float
) -> float:
    """The start of a slice from `until` at or before the first with anything to roll (slices
    stay aligned), so that a round after a long pause does not walk empty slices one by one.
    `field` is where a document ends (a document spans less than a slice)."""
    found = collection.find_one({**where, field: {"$gt": until}}, {field: 1}, sort=[(field, 1)])
    end = upto if found is None else found[field] - every
    return until + every * max(0, (end - until) // every)


def roll_minutes(store: Store, retention: Retention, at: float) -> int:
    """Roll raw samples into 1-minute windows, slice by slice; return the documents written."""
    every = max(MINUTE, retention.rollup_every - retention.rollup_every % MINUTE)
    until = cursor(store, "1m")
    if until is None:
        first = store.samples.find_one({}, {"t": 1}, sort=[("t", 1)])
        if first is None:
            return 0
        until = first["t"] - first["t"] % MINUTE
    upto = at - LAG
    written = 0
    while until + every <= upto:
        until = _skip_empty(store.samples, {}, "t", until, every, upto)
        stop = until + every
        if stop > upto:
            break
        # the rounds by time (the index on t), a minute's margin for samples timed apart from
        # their round: by their 10-minute slots, a short slice read several times its rounds
        rounds = {"t": {"$gte": until - MINUTE, "$lt": stop + MINUTE}}
        docs = store.samples.find(rounds, {"host_id": 1, "project_id": 1, "samples": 1})
        raw = gather_raw(docs, None, until, stop)
        columns = list(rollup_documents("raw", raw))
        minutes = list(rollup_documents("1m", refold(raw, MINUTE)))
        _write(store, "raw", until, columns)
        _write(store, "1m", until, minutes)
        _set_cursor(store, "1m", stop)
        written += len(minutes)
        until = stop
    return written


def roll_hours(store: Store) -> int:
    """Roll 1-minute rollups into 1-hour windows by slices of HOUR_SLICE, up to the 1-minute
    tier's cursor; return the documents written."""
    return _roll_from(store, "1m", "1h", HOUR_SLICE, cursor(store, "1m"))


def roll_days(store: Store) -> int:
    """Roll 1-hour rollups into 1-day windows, a day at a time, up to the last whole day of the
    1-hour tier: what a chart of months or a year reads (a year of one series is 8,760 hours
    and 365 days, and the embedded store's cost is in what it decodes); kept as long as the
    1-hour tier."""
    hours = cursor(store, "1h")
    return _roll_from(store, "1h", "1d", DAY, None if hours is None else hours - hours % DAY)


def _roll_from(store: Store, source: str, tier: str, every: float, upto: float | None) -> int:
    """Fold the `source` tier's windows into the wider ones of `tier`, slice by slice of
    `every` seconds, up to `upto`; return the documents written."""
    if upto is None:
        return 0
    until = cursor(store, tier)
    if until is None:
        first = store.db.rollups.find_one(_tier(source), {"t0": 1}, sort=[("t0", 1)])
        if first is None:
            return 0
        until = first["t0"] - first["t0"] % every
    written = 0
    while until + every <= upto:
        until = _skip_empty(store.db.rollups, _tier(source), "t1", until, every, upto)
        stop = until + every
        if stop > upto:
            break
        docs = store.db.rollups.find({**_tier(source), "t1": {"$gt": until}, "t0": {"$lt": stop}})
        gathered = gather_rollups(docs, WIDTHS[tier], until, stop)
        documents = list(rollup_documents(tier, gathered))
        _write(store, tier, until, documents)
        _set_cursor(store, tier, stop)
        written += len(documents)
        until = stop
    return written


def expire(store: Store, retention: Retention, at: float) -> dict[str, int]:
    """Remove raw batches and rollup documents wholly past their tier's retention (a compacted
    document goes when its last window does: a day of 1-minute windows is kept up to a day past
    the tier's retention, 30 days of 1-hour windows up to 30 days; charts pick their tier by the
    retention, so they do not show the difference)."""
    rolled = store.db.rollups

    def older(tier: str, keep: float) -> int:
        return rolled.delete_many({**_tier(tier), "t1": {"$lte": at - keep}}).deleted_count

    return {
        "raw": store.samples.delete_many({"t": {"$lt": at - retention.raw}}).deleted_count,
        "raw columns": older("raw", retention.raw),
        "1m": older("1m", retention.minute),
        "1h": older("1h", retention.hour),
        "1d": older("1d", retention.hour),
    }


def _level(level: int) -> dict[str, Any]:
    """A filter on the compaction level (slices, level 0, carry none)."""
    return {"level": {"$eq": level or None}}


def compact(store: Store, tier: str) -> int:
    """Merge the tier's documents, level by level (LEVELS), into one per series and span, for
    the spans wholly rolled up; return the documents written. A span's documents are written
    before its cursor (`compact:<tier>:<level>` in `meta`) moves and those of the level below
    are deleted after, so a read sees them either once or twice, and a window held twice is taken
    from the higher level (gather_rollups); a round that died midway is done again."""
    below = cursor(store, ROLLED_BY[tier])
    written = 0
    for level, span in enumerate(LEVELS[tier], start=1):
        if below is None:
            break
        written += _compact_level(store, tier, level, span, below)
        below = cursor(store, f"{tier}:{level}", prefix="compact")
    return written


def _compact_level(store: Store, tier: str, level: int, span: float, below: float) -> int:
    rolled, lower = store.db.rollups, {**_tier(tier), **_level(level - 1)}
    until = cursor(store, f"{tier}:{level}", prefix="compact")
    if until is None:
        first = rolled.find_one(lower, {"t0": 1}, sort=[("t0", 1)])
        if first is None:
            return 0
        until = first["t0"] - first["t0"] % span
    written = 0
    while until + span <= below:
        until = _skip_empty(rolled, lower, "t1", until, span, below)
        stop = until + span
        if stop > below:
            break
        docs = rolled.find({**lower, "t1": {"$gt": until}, "t0": {"$lt": stop}})
        documents = list(_compacted(tier, level, until, stop, docs))
        _insert(store, documents)
        _set_cursor(store, f"{tier}:{level}", stop, prefix="compact")
        rolled.delete_many({**lower, "t1": {"$lte": stop}})
        written += len(documents)
        until = stop
    return written


def _compacted(
    tier: str, level: int, p0: float, p1: float, docs: Iterable[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """One document per series of the windows in [p0, p1) of `docs`, each window as stored
    (nothing refolded: the values stay exactly those of the slices)."""
    names = COLUMNS[tier]
    merged: dict[tuple[str, SeriesKey], tuple[dict[str, Any], dict[float, tuple]]] = {}
    for doc in docs:
        key = (doc["host_id"], series_key(doc["n"], doc["l"]))
        windows = merged.setdefault(key, (doc, {}))[1]
        columns = [doc[c] for c in names]
        for i, t in enumerate(doc["t"]):
            if p0 <= t < p1 and t not in windows:
                windows[t] = tuple(column[i] for column in columns)
    for doc, windows in merged.values():
        if not windows:
            continue
        times = sorted(windows)
        columns = {"t": times, **{c: [windows[t][j] for t in times] for j, c in enumerate(names)}}
        yield {
            **_document(tier, doc["host_id"], doc["project_id"], doc["n"], doc["l"], columns,
                        f":L{level}"),
            "level": level, "p0": p0, "p1": p1,
        }  # fmt: skip


def _take_lease(store: Store, owner: str) -> bool:
    """Hold the rollup lease for LEASE seconds. The lease is read back rather than trusted from
    the update's answer: the embedded store answers an upsert that meets an existing document
    with nothing, neither an error nor a change."""
    clock, token = time.time(), uuid.uuid4().hex
    with contextlib.suppress(DuplicateKeyError):  # held by another process
        store.db.meta.find_one_and_update(
            {"_id": "rollup:lease", "$or": [{"until": {"$lt": clock}}, {"owner": owner}]},
            {"$set": {"until": clock + LEASE, "owner": owner, "token": token}},
            upsert=True,
        )
    held = store.db.meta.find_one({"_id": "rollup:lease"}) or {}
    return held.get("token") == token


def _release(store: Store, owner: str) -> None:
    store.db.meta.update_one({"_id": "rollup:lease", "owner": owner}, {"$set": {"until": 0.0}})


def run(store: Store, retention: Retention, at: float) -> dict[str, Any] | None:
    """One round: roll up what is due and expire what is past retention, as of `at`; None when
    another process holds the lease."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    if not _take_lease(store, owner):
        return None
    try:
        minutes = roll_minutes(store, retention, at)
        hours = roll_hours(store)
        days = roll_days(store)
        compacted = {tier: compact(store, tier) for tier in LEVELS}
        last = store.db.meta.find_one({"_id": "rollup:expired"}) or {}
        expired = {}
        if not last.get("at", 0) <= at < last.get("at", 0) + EXPIRE_EVERY:
            expired = expire(store, retention, at)
            store.db.meta.update_one({"_id": "rollup:expired"}, {"$set": {"at": at}}, upsert=True)
    finally:
        _release(store, owner)
    return {"1m": minutes, "1h": hours, "1d": days, "compacted": compacted, "expired": expired}


def pick_tier(retention: Retention, start: float, end: float, max_points: int, at: float) -> str:
    """The tier a chart of [start, end) reads: the finest one that still holds `start` and would
    not give many more than `max_points` points (raw only below one point a minute)."""
    need = (end - start) / max(1, max_points)
    if start >= at - retention.raw and need < MINUTE:
        return "raw"
    if start >= at - retention.minute and need < HOUR:
        return "1m"
    return "1h"


def step_for(tier: str, start: float, end: float, max_points: int) -> float:
    need = (end - start) / max(1, max_points)
    if tier == "raw":
        return float(math.ceil(need))
    width = WIDTHS[tier]
    if tier == "1h" and need > DAY / 2:  # whole days, read from the 1-day windows
        width = DAY
    return float(width * max(1, math.ceil(need / width)))
