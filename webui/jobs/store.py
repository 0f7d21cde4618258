"""The job side's one door to the store: what the worker, the runner, the sink and the reaper read
and write of jobs and their events (the web side goes through webui.services.jobs, which reads
events through here too, so that their shape is known in one place).

A job's events are stored in batches: one document per batch the sink writes, `{job_id, counter:
first counter, last: last counter, events_json: "[event, ...]"}`. The store's cost is mostly per
document and per field (the embedded store copies, encodes, validates and indexes each document
apart: 10,000 events a second cost it more than a core one by one), and the events of a batch are
written together, read together and never queried one by one, so they are kept as the JSON text
the sink encodes once and also publishes. The recap (`playbook_on_stats`) is a document of its
own, an event as it is, because the platform looks it up by kind; so are the events of jobs stored
before batches. Readers take both shapes. The unique index on (job_id, counter) holds either way:
batches never overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pymongo import DESCENDING

from webui.store import Store, now

ALONE = ("playbook_on_stats",)  # events stored as documents of their own, looked up by kind


# ---- jobs ---------------------------------------------------------------------------------------
def job(store: Store, job_id: str) -> dict[str, Any] | None:
    return store.jobs.find_one({"_id": job_id})


def control(store: Store, job_id: str) -> dict[str, Any] | None:
    """What a running or waiting job's worker checks: its status and whether a cancel was asked."""
    return store.jobs.find_one({"_id": job_id}, {"status": 1, "cancel_requested": 1})


def beat(store: Store, job_id: str, last_counter: int) -> None:
    store.jobs.update_one(
        {"_id": job_id, "status": "running"},
        {"$set": {"heartbeat_at": now(), "last_counter": last_counter}},
    )


def note_reason(store: Store, job_id: str, reason: str) -> None:
    store.jobs.update_one({"_id": job_id}, {"$set": {"reason": reason}})


def start_running(store: Store, job_id: str, worker: str) -> dict[str, Any] | None:
    """queued -> running, by this worker; None if the job left the queued state meanwhile."""
    return store.jobs.find_one_and_update(
        {"_id": job_id, "status": "queued"},
        {"$set": {"status": "running", "reason": "", "started_at": now(), "heartbeat_at": now(),
                  "worker": worker}},
        return_document=True,
    )  # fmt: skip


def end(
    store: Store,
    job_id: str,
    status: str,
    reason: str,
    *,
    among: tuple[str, ...],
    heartbeat_before: float | None = None,
    **extra: Any,
) -> dict[str, Any] | None:
    """Record a job's end if its status is still one of `among` (and, for the reaper, no heartbeat
    came since `heartbeat_before`): every end is conditional, so that a worker, reapers and a
    cancel may race. The job as ended, or None."""
    match: dict[str, Any] = {"_id": job_id, "status": {"$in": list(among)}}
    if heartbeat_before is not None:
        match["heartbeat_at"] = {"$lt": heartbeat_before}
    return store.jobs.find_one_and_update(
        match,
        {"$set": {"status": status, "reason": reason, "finished_at": now(), **extra}},
        return_document=True,
    )


def silent_running(store: Store, cutoff: float) -> list[dict[str, Any]]:
    """Running jobs whose last heartbeat is older than `cutoff`."""
    return list(store.jobs.find({"status": "running", "heartbeat_at": {"$lt": cutoff}}))


def queued_before(store: Store, cutoff: float) -> list[dict[str, Any]]:
    return list(store.jobs.find({"status": "queued", "created_at": {"$lt": cutoff}}))


def hosts(store: Store, host_ids: list[str]) -> list[dict[str, Any]]:
    return list(store.hosts.find({"_id": {"$in": host_ids}}))


def cluster(store: Store, cluster_id: str | None) -> dict[str, Any] | None:
    return store.clusters.find_one({"_id": cluster_id}) if cluster_id else None


# ---- events -------------------------------------------------------------------------------------
def encode(events: list[dict[str, Any]]) -> str:
    """Events as the JSON text that is stored and published."""
    return json.dumps(events, separators=(",", ":"))


def documents(job_id: str, events: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The documents that store `events` (in counter order, without job_id; `text` their
    encoding): runs of events in batches, each of the ALONE kinds a document of its own."""
    if not any(event.get("event") in ALONE for event in events):
        return [{"job_id": job_id, "counter": events[0]["counter"],
                 "last": events[-1]["counter"], "events_json": text}]  # fmt: skip
    docs: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for event in [*events, None]:
        if (event is None or event.get("event") in ALONE) and run:
            docs += documents(job_id, run, encode(run))
            run = []
        if event is not None and event.get("event") in ALONE:
            docs.append({"job_id": job_id, **event})
        elif event is not None:
            run.append(event)
    return docs


def insert_events(store: Store, job_id: str, events: list[dict[str, Any]], text: str) -> None:
    """Store events (in counter order, none stored before; `text` their encoding) in one round
    trip."""
    store.job_events.insert_many(documents(job_id, events, text), ordered=True)


def events_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The events a stored document holds (a batch, or one event as it is), without job_id."""
    if "events_json" in doc:
        return json.loads(doc["events_json"])
    doc.pop("job_id", None)
    doc.pop("_id", None)
    return [doc]


def last_counter(store: Store, job_id: str) -> int:
    """The counter of the job's last stored event (0 if none)."""
    doc = store.job_events.find_one({"job_id": job_id}, sort=[("counter", DESCENDING)])
    if not doc:
        return 0
    return int(doc.get("last") or doc["counter"])


def events_after(store: Store, job_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """At most `limit` events with a counter above `after`, in order (without job_id)."""
    found: list[dict[str, Any]] = []
    if after > 0:  # the batch that holds `after` may hold later events too
        doc = store.job_events.find_one(
            {"job_id": job_id, "counter": {"$lte": after}}, sort=[("counter", DESCENDING)]
        )
        if doc and doc.get("last", 0) > after:
            found = [e for e in events_of(doc) if e["counter"] > after]
    cursor = store.job_events.find({"job_id": job_id, "counter": {"$gt": after}}, {"_id": 0})
    for doc in cursor.sort("counter", 1).limit(limit).batch_size(16):
        if len(found) >= limit:
            break
        found += events_of(doc)
    return found[:limit]


def all_events(store: Store, job_id: str, page: int = 200) -> Iterator[list[dict[str, Any]]]:
    """Every event of the job in order, in lists of `page` documents' worth."""
    after = 0
    while True:
        docs = list(
            store.job_events.find({"job_id": job_id, "counter": {"$gt": after}}, {"_id": 0})
            .sort("counter", 1)
            .limit(page)
        )
        if not docs:
            return
        yield [e for doc in docs for e in events_of(doc)]
        after = docs[-1]["counter"]


def recap(store: Store, job_id: str) -> dict[str, Any] | None:
    """The job's recap event (`playbook_on_stats`), if it came."""
    return store.job_events.find_one({"job_id": job_id, "event": "playbook_on_stats"}, {"_id": 0})
