"""Metrics: what agents send, checked and stored raw (rollups and chart queries come later).

An ingest request carries the agent's name and version and one or more batches, each a round
of one host's samples with its stream and sequence number (see agent/README.md):

    {"agent": {"version": "0.1.0", "hostname": "db1"},
     "batches": [{"stream": "9f…", "seq": 17, "time": 1765000000.1,
                  "samples": [{"name": "host_load1", "labels": {}, "value": 0.4,
                               "kind": "gauge", "timestamp": 1765000000.1}, ...],
                  "errors": {"mongodb db1:27017": ["..."]},
                  "dropped": {"batches": 0, "samples": 0}}]}

The whole request is checked before anything is stored; the first problem found is the answer
(400, with where and what). Each batch is one document of `samples`, a bucket of the host's
series at one time, with `_id` host:stream:seq: a batch sent twice is stored once (the second
insert is a duplicate key, counted, not an error). Stored per batch: host, project, stream, seq,
`t` (the round's time), `received_at`, `errors`, and `samples` as `{n, l, v, k, t}` (name,
labels, value, kind `c`/`g`, timestamp). Indexes: (host_id, t) and (project_id, t) for charts,
`t` for expiry.

Beside the raw batches, `latest` holds one document per host with the newest value of each of
its series (a series is a name and its labels) and when the host was last heard from: what the
console's tables and the Prometheus endpoint show without reading history. `latest_summary`
holds, per host, the same for the few names of SUMMARY_NAMES only: what the overview's Home reads
for every host at once (see SUMMARY_NAMES for why apart).

Charts read through `query`, which picks a tier by the range asked for (see webui.services.rollups
for the tiers and their documents): raw samples while the range is short and recent enough, else
1-minute, else 1-hour rollups (with points a day or more apart, whole days from the 1-day
windows). Windows newer than a tier's last rollup are computed from the finer tier at query time,
so a chart has no hole at its right edge.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from pymongo.errors import DuplicateKeyError

from webui.services import rollups
from webui.services.agents import AgentIdentity, Malformed
from webui.services.errors import Invalid
from webui.services.rollups import Gathered, Retention, fold, series_key
from webui.store import Store, now

MAX_BATCHES = 100
MAX_SAMPLES = 50_000
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024
MAX_ERRORS = 100
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
STREAM_RE = re.compile(r"^[0-9a-f]{8,64}$")
KINDS = {"counter": "c", "gauge": "g"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Names and label names already found valid: agents send the same few hundred every round, and
# matching each against its pattern was a tenth of a request's CPU. Bounded: a set is emptied
# when full, so a sender of ever new names costs the matching and no memory.
_NAMES_SEEN: set[str] = set()
_LABELS_SEEN: set[str] = set()
SEEN_MAX = 100_000


def _seen(seen: set[str], valid: str) -> None:
    if len(seen) >= SEEN_MAX:
        seen.clear()
    seen.add(valid)


def _sample(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Malformed(f"{where}: an object with name, labels, value, kind and timestamp")
    name = raw.get("name")
    if not isinstance(name, str) or name not in _NAMES_SEEN:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise Malformed(f"{where}.name: a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), not {name!r}")
        _seen(_NAMES_SEEN, name)
    labels = raw.get("labels", {})
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise Malformed(f"{where}.labels: an object of at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if key not in _LABELS_SEEN:
            if not isinstance(key, str) or not LABEL_RE.match(key):
                raise Malformed(
                    f"{where}.labels: {key!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                )
            _seen(_LABELS_SEEN, key)
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise Malformed(f"{where}.labels.{key}: a string of at most {MAX_LABEL_VALUE} chars")
    value = raw.get("value")
    if not _number(value):
        raise Malformed(f"{where}.value: a finite number, not {value!r}")
    kind = KINDS.get(raw.get("kind", "gauge"))  # type: ignore[arg-type]
    if kind is None:
        raise Malformed(f"{where}.kind: counter or gauge, not {raw.get('kind')!r}")
    timestamp = raw.get("timestamp")
    if not _number(timestamp) or timestamp <= 0:
        raise Malformed(f"{where}.timestamp: seconds since the epoch, not {timestamp!r}")
    return {"n": name, "l": labels, "v": value, "k": kind, "t": timestamp}


def _batch(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Malformed(f"{where}: an object with stream, seq, time and samples")
    stream, seq, time = raw.get("stream"), raw.get("seq"), raw.get("time")
    if not isinstance(stream, str) or not STREAM_RE.match(stream):
        raise Malformed(f"{where}.stream: the agent's stream id (8 to 64 hex digits)")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 2**63:
        raise Malformed(f"{where}.seq: a sequence number from 1, not {seq!r}")
    if not _number(time) or time <= 0:
        raise Malformed(f"{where}.time: seconds since the epoch, not {time!r}")
    samples = raw.get("samples")
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise Malformed(f"{where}.samples: a list of at most {MAX_SAMPLES} samples")
    errors = raw.get("errors", {})
    if (
        not isinstance(errors, dict)
        or len(errors) > MAX_ERRORS
        or not all(
            isinstance(m, list) and len(m) <= MAX_ERRORS and all(isinstance(x, str) for x in m)
            for m in errors.values()
        )
    ):
        raise Malformed(f"{where}.errors: an object of collector names to lists of messages")
    dropped = raw.get("dropped", {})
    if not isinstance(dropped, dict) or not all(
        isinstance(dropped.get(k, 0), int) and dropped.get(k, 0) >= 0
        for k in ("batches", "samples")
    ):
        raise Malformed(f"{where}.dropped: batches and samples, counts from 0")
    return {
        "stream": stream,
        "seq": seq,
        "time": float(time),
        "samples": [_sample(s, f"{where}.samples[{i}]") for i, s in enumerate(samples)],
        "errors": {str(k)[:200]: [m[:2000] for m in v] for k, v in errors.items()},
        "dropped": {k: int(dropped.get(k, 0)) for k in ("batches", "samples")},
    }


def check_request(body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The agent's description and the batches of an ingest request, checked; Malformed (400)
    with where and what for the first problem."""
    if not isinstance(body, dict):
        raise Malformed("the body must be a JSON object with agent and batches")
    about = body.get("agent", {})
    if not isinstance(about, dict) or not all(
        isinstance(about.get(k, ""), str) and len(about.get(k, "")) <= 255
        for k in ("version", "hostname")
    ):
        raise Malformed("agent: an object with version and hostname (strings)")
    batches = body.get("batches")
    if not isinstance(batches, list) or not 0 < len(batches) <= MAX_BATCHES:
        raise Malformed(f"batches: a list of 1 to {MAX_BATCHES} batches")
    checked = [_batch(b, f"batches[{i}]") for i, b in enumerate(batches)]
    return about, checked


def store_batches(
    store: Store, agent: AgentIdentity, batches: list[dict[str, Any]]
) -> tuple[list[int], int]:
    """Store checked batches in order; return the sequence numbers now held (stored or already
    there) and how many were duplicates."""
    received = now()
    held, duplicates = [], 0
    for batch in batches:
        w = rollups.slot(batch["time"])
        document = {
            "_id": f"{agent.host_id}:{batch['stream']}:{batch['seq']}",
            "host_id": agent.host_id,
            "project_id": agent.project_id,
            "w": w,
            "hw": f"{agent.host_id}:{w}",
            "pw": f"{agent.project_id}:{w}",
            "stream": batch["stream"],
            "seq": batch["seq"],
            "t": batch["time"],
            "received_at": received,
            "errors": batch["errors"],
            "dropped": batch["dropped"],
            "samples": batch["samples"],
        }
        try:
            store.samples.insert_one(document)
        except DuplicateKeyError:
            duplicates += 1
        held.append(batch["seq"])
    if batches:
        _keep_latest(store, agent, batches, received)
    return held, duplicates


# The series the console reads for every host at once: the overview's Home (each host's CPU,
# memory and disk, each MongoDB process's state, connections and operations) and a host's page.
# They are kept apart in `latest_summary`, one small document per host written with `latest`,
# because reading `latest` costs the store in proportion to everything a host's agent sends (a
# few hundred series; the embedded store decodes each document it reads whole, in Python, and a
# projection only adds a copy of it): the Home of 300 hosts spent most of its time there.
SUMMARY_NAMES = frozenset({
    "host_cpu_seconds_per_second",
    "host_memory_total_bytes",
    "host_memory_available_bytes",
    "host_filesystem_size_bytes",
    "host_filesystem_used_bytes",
    "mongodb_up",
    "mongodb_version_info",
    "mongodb_replset_my_state",
    "mongodb_connections",
    "mongodb_op_counters_per_second",
})  # fmt: skip

LATEST_STALE = 300.0  # a series absent from its host's rounds for this long leaves `latest`
# What this process last wrote to each host's `latest` document, keyed by host: the write's mark
# and the merged samples. A request whose host this process wrote last replaces the document on
# that mark alone, without reading it first (the read cost as much as the write on the embedded
# store); another process's write in between changes the mark, and the merge reads it again.
_written: OrderedDict[str, tuple[str, dict[str, dict[str, Any]]]] = OrderedDict()
WRITTEN_HOSTS = 5000
_written_lock = threading.Lock()


def _keep_latest(
    store: Store, agent: AgentIdentity, batches: list[dict[str, Any]], received: float
) -> None:
    """Merge the batches' newest value per series into the host's `latest` document (an agent
    sends its batches one request at a time, so a merge and its write do not race)."""
    with _written_lock:
        cached = _written.get(agent.host_id)
    for _attempt in range(3):  # a write of another process in between: read again and merge
        if cached is None:
            current = store.db.latest.find_one({"_id": agent.host_id}) or {}
            cached = (
                current.get("w", ""),
                {series_key(s["n"], s["l"]): s for s in current.get("samples", [])},
            )
        mark, merged = cached[0], dict(cached[1])
        cached = None
        for batch in batches:
            for sample in batch["samples"]:
                key = series_key(sample["n"], sample["l"])
                if key not in merged or sample["t"] >= merged[key]["t"]:
                    merged[key] = sample
        newest = max(s["t"] for s in merged.values()) if merged else 0.0
        newest = max(newest, *(b["time"] for b in batches))
        merged = {k: s for k, s in merged.items() if s["t"] >= newest - LATEST_STALE}
        new_mark = uuid.uuid4().hex
        document = {
            "_id": agent.host_id,  # the embedded store's upsert does not take it from the filter
            "project_id": agent.project_id,
            "t": newest,
            "last_seen": received,
            "w": new_mark,
            "samples": list(merged.values()),
        }
        if mark:
            done = store.db.latest.replace_one({"_id": agent.host_id, "w": mark}, document)
            if not done.matched_count:
                continue
        else:
            try:
                store.db.latest.insert_one(document)
            except DuplicateKeyError:  # another process wrote it first
                continue
        summary = {**document, "samples": [s for s in merged.values() if s["n"] in SUMMARY_NAMES]}
        del summary["w"]
        store.db.latest_summary.replace_one({"_id": agent.host_id}, summary, upsert=True)
        with _written_lock:
            _written[agent.host_id] = (new_mark, merged)
            _written.move_to_end(agent.host_id)
            while len(_written) > WRITTEN_HOSTS:
                _written.popitem(last=False)
        return


def latest(
    store: Store,
    project_id: str,
    host_ids: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The newest value of each series of the project's hosts (or of `host_ids`), optionally only
    the series named in `names`: per host `{"host_id", "t", "last_seen", "samples": [{"name",
    "labels", "value", "kind", "t"}]}`, hosts that never sent anything left out. Names all among
    SUMMARY_NAMES are read from the hosts' small summaries, the same values."""
    where: dict[str, Any] = {"project_id": project_id}
    if host_ids is not None:
        where["_id"] = {"$in": list(host_ids)}
    wanted = set(names) if names is not None else None
    summary = wanted is not None and wanted <= SUMMARY_NAMES
    kept = store.db.latest_summary if summary else store.db.latest
    hosts = {h["_id"] for h in store.hosts.find({"project_id": project_id}, {"_id": 1})}
    out = []
    for doc in kept.find(where).sort("_id", 1):
        if doc["_id"] not in hosts:  # removed since
            continue
        samples = [
            {"name": s["n"], "labels": s["l"], "value": s["v"], "kind": KIND_NAMES[s["k"]],
             "t": s["t"]}
            for s in doc.get("samples", [])
            if wanted is None or s["n"] in wanted
        ]  # fmt: skip
        samples.sort(key=lambda s: series_key(s["name"], s["labels"]))
        out.append(
            {
                "host_id": doc["_id"],
                "t": doc["t"],
                "last_seen": doc["last_seen"],
                "samples": samples,
            }
        )
    return out


KIND_NAMES = {v: k for k, v in KINDS.items()}


def host_batches(store: Store, host_id: str, fields: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The host's stored batches in the order they arrived (tests and, later, chart queries)."""
    projection = {k: 1 for k in ("stream", "seq", "t", "received_at", "dropped", *fields)}
    return list(
        store.samples.find({"host_id": host_id}, projection).sort([("received_at", 1), ("seq", 1)])
    )


MAX_NAMES = 50
MAX_POINTS = 5000
LATEST_TIME = 1e11  # seconds since the epoch: beyond any chart (the year 5138)


def query(
    store: Store,
    project_id: str,
    *,
    names: Iterable[str],
    host_id: str | None = None,
    labels: dict[str, str] | None = None,
    start: float,
    end: float,
    max_points: int = 600,
    retention: Retention | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    """The series named `names` of the project (or of one host, or with the given labels) over
    [start, end), columnar: `{"tier", "step", "series": [{"name", "labels", "host_id", "t",
    "mean", "min", "max", "last"}]}`, at most about `max_points` points per series. On the raw
    tier each point is a sample (mean = min = max = last = value) unless there are more samples
    than points, when they are folded into windows of `step` seconds like rollups."""
    names = sorted(set(names))
    if not names or len(names) > MAX_NAMES:
        raise Invalid(f"name: 1 to {MAX_NAMES} series names")
    if not 0 <= start < end <= LATEST_TIME:
        raise Invalid("from and to: seconds since the epoch, from before to")
    if not 1 <= max_points <= MAX_POINTS:
        raise Invalid(f"points: 1 to {MAX_POINTS}")
    retention = retention or Retention()
    at = now() if at is None else at
    tier = rollups.pick_tier(retention, start, end, max_points, at)
    where: dict[str, Any] = {"project_id": project_id}
    if host_id is not None:
        where["host_id"] = host_id
    wanted = set(names)
    want_labels = labels or {}

    def keep(sample: dict[str, Any]) -> bool:
        return sample["n"] in wanted and all(
            sample["l"].get(k) == v for k, v in want_labels.items()
        )

    def raw(lo: float, hi: float, width: float | None, out: Gathered) -> None:
        # the rounds after the last rolled-up minute only, by time as well as slot (a minute's
        # margin for samples timed apart from their round): the rounds before it in the same
        # slot cost as much to read (each holds every series of its host) and gave nothing
        if lo >= hi:
            return
        times = {"t": {"$gte": lo - rollups.MINUTE, "$lt": hi + rollups.MINUTE}}
        for w in rollups.slots(lo, hi):
            key = {"hw": f"{host_id}:{w}"} if host_id is not None else {"pw": f"{project_id}:{w}"}
            docs = store.samples.find({**key, **times}, {"host_id": 1, "project_id": 1,
                                                         "samples": 1})  # fmt: skip
            rollups.gather_raw(docs, width, lo, hi, keep, out)

    # labels matched by the store, not after the document is read (a name's documents hold each
    # of its label sets: a CPU's, a disk's); $eq is a plain comparison there
    by_labels = {f"l.{k}": {"$eq": v} for k, v in want_labels.items()}

    def rolled(tier_: str, lo: float, hi: float, width: float | None, out: Gathered) -> None:
        if lo >= hi:
            return
        for name in names:
            key = (
                {"k": rollups.host_key(tier_, host_id, name)}
                if host_id is not None
                else {"pk": rollups.project_key(tier_, project_id, name)}
            )
            docs = store.db.rollups.find({**key, "t1": {"$gt": lo}, "t0": {"$lt": hi}, **by_labels})
            rollups.gather_rollups(docs, width, lo, hi, out)

    gathered: Gathered = {}
    step = rollups.step_for(tier, start, end, max_points)
    if tier == "raw":
        minutes = rollups.cursor(store, "1m") or 0.0
        rolled("raw", start, min(end, minutes), None, gathered)
        raw(max(start, minutes), end, None, gathered)
    else:
        width = step  # a whole number of the tier's windows: folded once, as they are read
        lo = start
        if tier == "1h" and step % rollups.DAY == 0:
            # whole days from the 1-day windows, the hours of a day begun before `start` (or
            # ended after `end`) and those not rolled into days yet from the 1-hour ones
            first = lo + (-lo % rollups.DAY)
            last = min(end - end % rollups.DAY, rollups.cursor(store, "1d") or 0.0)
            if first < last:
                rolled("1h", lo, first, width, gathered)
                rolled("1d", first, last, width, gathered)
                lo = last
        if tier == "1h":
            hours = rollups.cursor(store, "1h") or 0.0
            rolled("1h", lo, min(end, hours), width, gathered)
            lo = max(lo, hours)
        minutes = rollups.cursor(store, "1m") or 0.0
        rolled("1m", lo, min(end, minutes), width, gathered)
        raw(max(lo, minutes), end, width, gathered)
    return {"tier": tier, **_columns(tier, step, max_points, gathered)}


def _columns(tier: str, step: float, max_points: int, gathered: Gathered) -> dict[str, Any]:
    fold_raw = tier == "raw" and any(len(s.windows) > max_points for s in gathered.values())
    out = []
    gaps: list[float] = []
    for series in sorted(
        gathered.values(), key=lambda s: (s.host_id, series_key(s.name, s.labels))
    ):
        windows = series.windows
        if fold_raw:  # rollups were gathered into windows of `step` as they were read
            folded: dict[float, list[float]] = {}
            for t, agg in windows.items():
                fold(folded, t - t % step, agg)
            windows = folded
        times = sorted(windows)
        aggs = [windows[t] for t in times]
        if tier == "raw" and not fold_raw:
            gaps += [b - a for a, b in itertools.pairwise(times)]
        out.append(
            {
                "name": series.name,
                "labels": series.labels,
                "host_id": series.host_id,
                "t": times,
                "mean": [a[2] / a[3] for a in aggs],
                "min": [a[0] for a in aggs],
                "max": [a[1] for a in aggs],
                "last": [a[4] for a in aggs],
            }
        )
    if tier == "raw" and not fold_raw:  # the samples' own interval
        step = float(round(statistics.median(gaps))) if gaps else 0.0
    return {"step": step, "series": out}
