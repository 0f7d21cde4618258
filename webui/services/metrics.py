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
"""

from __future__ import annotations

import math
import re
from typing import Any

from pymongo.errors import DuplicateKeyError

from webui.services.agents import AgentIdentity, Malformed
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


def _sample(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Malformed(f"{where}: an object with name, labels, value, kind and timestamp")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise Malformed(f"{where}.name: a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), not {name!r}")
    labels = raw.get("labels", {})
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise Malformed(f"{where}.labels: an object of at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not LABEL_RE.match(key):
            raise Malformed(f"{where}.labels: {key!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
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
        document = {
            "_id": f"{agent.host_id}:{batch['stream']}:{batch['seq']}",
            "host_id": agent.host_id,
            "project_id": agent.project_id,
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
    return held, duplicates


def host_batches(store: Store, host_id: str, fields: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The host's stored batches in the order they arrived (tests and, later, chart queries)."""
    projection = {k: 1 for k in ("stream", "seq", "t", "received_at", "dropped", *fields)}
    return list(
        store.samples.find({"host_id": host_id}, projection).sort([("received_at", 1), ("seq", 1)])
    )
