"""Retention tiers of the metrics, as Cloud Manager keeps them: raw samples (24 h by default),
1-minute rollups (14 days), 1-hour rollups (12 months), each configurable
(WAP_METRICS_RAW_RETENTION, WAP_METRICS_1M_RETENTION, WAP_METRICS_1H_RETENTION, in seconds).

A rollup window holds, per series, the min, max, mean, last value and count of the samples whose
time falls in it. Rollups are bucketed documents in `rollups`, one per tier, host, series and
slice of windows, the windows as columns (`t`, `min`, `max`, `mean`, `last`, `count`): a chart of
one series over a year reads a few hundred small documents, and a slice is written with one
insert per series (no update in place, which the embedded store does slowly). Time-series
collections were not used: the embedded store (nx-27017) answers ok to `create` with
`timeseries` and keeps an ordinary collection, so the design must not depend on them.

`run` does one round: roll every whole slice of 1-minute windows that ended more than `LAG`
seconds ago (`metrics_rollup_every` seconds of windows per slice), roll the 1-minute rollups into
1-hour windows by slices of `HOUR_SLICE`, then expire what is past each tier's retention. Where
each tier has been rolled up to is kept in `meta` (`rollup:1m`, `rollup:1h`); a round that died
midway leaves documents at or after its cursor, which the next round removes before writing them
again. Only one process rolls at a time (a lease in `meta`); the time is an argument, so tests
control it. Workers run it in their reaper process (webui.jobs.reaper), a loop beside each worker
that already runs every few seconds: RQ's scheduler would fork a work horse for every round and
queue it behind the playbooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError

from webui.store import Store

MINUTE, HOUR = 60, 3600
WIDTHS = {"1m": MINUTE, "1h": HOUR}
RAW_END = 0.001  # a raw column ends just after its last sample
SLOT = 600.0
EXPIRE_EVERY = 300.0  # an expiry reads by time ranges, which the embedded store scans: not often
# Seconds a minute's window is left open for samples still on their way: an agent delivers what it
# queued during a short outage of the platform within a few minutes, and charts read the windows
# not rolled yet from the raw samples, so waiting costs nothing a chart shows.
LAG = 300.0
HOUR_SLICE = 6 * HOUR
LEASE = 300.0

# A window's aggregate while it is built: min, max, sum, count, last, time of last.
Agg = list[float]


@dataclass(frozen=True)
class Retention:
    raw: float = 86400.0
    minute: float = 14 * 86400.0
    hour: float = 365 * 86400.0
    rollup_every: float = 600.0

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
    folded into `width` (None: one window per sample)."""
    out = {} if out is None else out
    for doc in docs:
        series = _series(out, doc["host_id"], doc["project_id"], doc["n"], doc["l"])
        values = doc.get("v")
        for i, t in enumerate(doc["t"]):
            if not lo <= t < hi:
                continue
            if values is not None:
                v = values[i]
                agg = [v, v, v, 1, v, t]
            else:
                count = doc["count"][i]
                # the last value's time is not kept: a later window's last is later
                agg = [doc["min"][i], doc["max"][i], doc["mean"][i] * count, count,
                       doc["last"][i], t]  # fmt: skip
            fold(series.windows, t if width is None else t - t % width, agg)
    return out


def refold(gathered: Gathered, width: float) -> Gathered:
    """The same series with their windows folded into windows of `width` seconds."""
    out: Gathered = {}
    for key, series in gathered.items():
        wider = out[key] = Series(series.host_id, series.project_id, series.name, series.labels)
        for t, agg in series.windows.items():
            fold(wider.windows, t - t % width, agg)
    return out


def rollup_documents(tier: str, gathered: Gathered) -> Iterator[dict[str, Any]]:
    for series in gathered.values():
        if not series.windows:
            continue
        times = sorted(series.windows)
        aggs = [series.windows[t] for t in times]
        key = json.dumps(series_key(series.name, series.labels), separators=(",", ":"))
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        document = {
            "_id": f"{tier}:{series.host_id}:{times[0]:.0f}:{digest}",
            "tier": tier,
            "host_id": series.host_id,
            "project_id": series.project_id,
            "k": host_key(tier, series.host_id, series.name),
            "pk": project_key(tier, series.project_id, series.name),
            "n": series.name,
            "l": series.labels,
            "t0": times[0],
            "t1": times[-1] + WIDTHS.get(tier, RAW_END),
            "t": times,
        }
        if tier == "raw":
            document["v"] = [a[4] for a in aggs]
        else:
            document.update(
                min=[a[0] for a in aggs],
                max=[a[1] for a in aggs],
                mean=[a[2] / a[3] for a in aggs],
                last=[a[4] for a in aggs],
                count=[a[3] for a in aggs],
            )
        yield document


def cursor(store: Store, tier: str) -> float | None:
    """Where `tier` has been rolled up to (windows before it are in `rollups`), or None."""
    doc = store.db.meta.find_one({"_id": f"rollup:{tier}"})
    return float(doc["until"]) if doc else None


def _set_cursor(store: Store, tier: str, until: float) -> None:
    store.db.meta.update_one({"_id": f"rollup:{tier}"}, {"$set": {"until": until}}, upsert=True)


def _write(store: Store, tier: str, since: float, documents: list[dict[str, Any]]) -> None:
    store.db.rollups.delete_many({"tier": tier, "t0": {"$gte": since}})
    if not documents:
        return
    try:
        store.db.rollups.insert_many(documents, ordered=False)
    except BulkWriteError as exc:  # written by an earlier round that died before its cursor
        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
            raise


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
        raw: Gathered = {}
        for w in slots(until, stop):
            docs = store.samples.find({"w": w}, {"host_id": 1, "project_id": 1, "samples": 1})
            gather_raw(docs, None, until, stop, out=raw)
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
    minutes = cursor(store, "1m")
    if minutes is None:
        return 0
    until = cursor(store, "1h")
    if until is None:
        first = store.db.rollups.find_one({"tier": "1m"}, {"t0": 1}, sort=[("t0", 1)])
        if first is None:
            return 0
        until = first["t0"] - first["t0"] % HOUR_SLICE
    written = 0
    while until + HOUR_SLICE <= minutes:
        until = _skip_empty(store.db.rollups, {"tier": "1m"}, "t1", until, HOUR_SLICE, minutes)
        stop = until + HOUR_SLICE
        if stop > minutes:
            break
        docs = store.db.rollups.find({"tier": "1m", "t1": {"$gt": until}, "t0": {"$lt": stop}})
        documents = list(rollup_documents("1h", gather_rollups(docs, HOUR, until, stop)))
        _write(store, "1h", until, documents)
        _set_cursor(store, "1h", stop)
        written += len(documents)
        until = stop
    return written


def expire(store: Store, retention: Retention, at: float) -> dict[str, int]:
    """Remove raw batches and rollup slices wholly past their tier's retention."""
    return {
        "raw": store.samples.delete_many({"t": {"$lt": at - retention.raw}}).deleted_count,
        "raw columns": store.db.rollups.delete_many(
            {"tier": "raw", "t1": {"$lte": at - retention.raw}}
        ).deleted_count,
        "1m": store.db.rollups.delete_many(
            {"tier": "1m", "t1": {"$lte": at - retention.minute}}
        ).deleted_count,
        "1h": store.db.rollups.delete_many(
            {"tier": "1h", "t1": {"$lte": at - retention.hour}}
        ).deleted_count,
    }


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
        last = store.db.meta.find_one({"_id": "rollup:expired"}) or {}
        expired = {}
        if not last.get("at", 0) <= at < last.get("at", 0) + EXPIRE_EVERY:
            expired = expire(store, retention, at)
            store.db.meta.update_one({"_id": "rollup:expired"}, {"$set": {"at": at}}, upsert=True)
    finally:
        _release(store, owner)
    return {"1m": minutes, "1h": hours, "expired": expired}


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
    return float(width * max(1, math.ceil(need / width)))
