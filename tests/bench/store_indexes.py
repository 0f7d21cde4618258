"""Store index bench: the reads behind the job, cluster and backups pages on the embedded store
(nx-27017) with a few thousand records, before and after migration 8 indexes their fields alone.
nx-27017 takes an equality on a field as a plain comparison (one its indexes can serve) only when
an index is named after that one field; otherwise it also tests for an array holding the value,
and scans the collection, whatever compound index begins with the field. Not a test: figures.

Usage: python -m tests.bench.store_indexes [--jobs 3000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

import psutil

from tests.bench.metrics_query import embedded_store
from webui.store import Store
from webui.store.migrations import MIGRATIONS

CLUSTERS = 30
EVENTS = 100  # per job, for the jobs that have their events kept


def fill(store: Store, jobs: int) -> tuple[str, str, str]:
    """Jobs of CLUSTERS clusters in 3 projects, EVENTS events for a tenth of them, a snapshot
    per job, an audit entry per job; returns a cluster, a job with events and an actor."""
    now = time.time()
    rows, events, snapshots, audit = [], [], [], []
    for i in range(jobs):
        cluster, project = f"c{i % CLUSTERS}", f"p{i % 3}"
        job = uuid.uuid4().hex
        rows.append({"_id": job, "project_id": project, "cluster_id": cluster,
                     "status": "succeeded", "created_at": now - i})  # fmt: skip
        if i % 10 == 0:
            events += [{"job_id": job, "counter": c, "event": "runner_on_ok",
                        "stdout": "ok: [lab1]" * 4} for c in range(EVENTS)]  # fmt: skip
        snapshots.append({"_id": uuid.uuid4().hex, "cluster_id": cluster, "project_id": project,
                          "status": "done", "started_at": now - i, "size": i})  # fmt: skip
        audit.append({"at": now - i, "actor": f"user{i % 20}", "action": "cluster.deploy",
                      "target": cluster, "outcome": "ok"})  # fmt: skip
    store.jobs.insert_many(rows)
    store.job_events.insert_many(events)
    store.db.snapshots.insert_many(snapshots)
    store.audit.insert_many(audit)
    return "c7", rows[0]["_id"], "user3"


def reads(store: Store, cluster: str, job: str, actor: str) -> dict[str, Callable[[], int]]:
    """What the pages ask of the store (as webui.services and webui.jobs.store ask it)."""
    return {
        "job page: its events after a counter": lambda: len(list(
            store.job_events.find({"job_id": job, "counter": {"$gt": 50}}, {"_id": 0}))),
        "cluster page: its latest jobs": lambda: len(list(
            store.jobs.find({"cluster_id": cluster}).sort("created_at", -1).limit(20))),
        "backups page: the cluster's snapshots": lambda: len(list(
            store.db.snapshots.find({"cluster_id": cluster}).sort("started_at", -1).limit(50))),
        "audit page: an actor's entries": lambda: len(list(
            store.audit.find({"actor": actor}, {"_id": 0}).sort("at", -1).limit(200))),
    }  # fmt: skip


def measure(store_proc: psutil.Process, read: Callable[[], int], repeat: int) -> str:
    read()
    times, cpu0 = [], store_proc.cpu_times()
    for _ in range(repeat):
        t0 = time.perf_counter()
        found = read()
        times.append(1000 * (time.perf_counter() - t0))
    cpu1 = store_proc.cpu_times()
    store_ms = 1000 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / repeat
    times.sort()
    return (f"{found:3d} found, p50 {statistics.median(times):7.1f} ms, max {times[-1]:7.1f} ms,"
            f" store CPU {store_ms:6.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with embedded_store() as (proc, store):
        for migration in MIGRATIONS:  # the schema as it was before migration 8
            if migration.version < 8:
                migration.apply(store.db)
        t0 = time.time()
        cluster, job, actor = fill(store, args.jobs)
        print(f"{args.jobs} jobs, their snapshots and audit entries, {args.jobs // 10} jobs' "
              f"events ({args.jobs // 10 * EVENTS}) stored in {time.time() - t0:.0f} s; "
              f"load {os.getloadavg()}")  # fmt: skip
        store_proc = psutil.Process(proc.pid)
        pages = reads(store, cluster, job, actor)
        before = {name: measure(store_proc, read, args.repeat) for name, read in pages.items()}
        store.migrate()
        after = {name: measure(store_proc, read, args.repeat) for name, read in pages.items()}
        for name in pages:
            print(f"{name}:\n  before: {before[name]}\n  after:  {after[name]}")
        print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
