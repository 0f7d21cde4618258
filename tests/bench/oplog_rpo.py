"""Continuous backup's figures: the RPO (a write acknowledged with w: majority to its oplog entry
durable in the store) under a steady write load, and the oplog rate the follower sustains
against the double's own write ceiling, with the follower thread's CPU; then the stored bytes per
million entries and a point-in-time restore's seconds per million entries replayed.
Not a test: it prints figures and never fails on timing. Run from the repository root:
    .venv/bin/python tests/bench/oplog_rpo.py [--seconds 30] [--rate 50] [--chunk 2] [--burst 20000]
A 3-member set of mongod doubles on 127.0.0.1 and moto's S3 on 127.0.0.1; the follower reads a
secondary, as in production. An entry is durable when the chunk holding it is stored (the time
put_chunk returns). The burst: documents inserted as fast as the double takes them (w: 1,
batches of 1,000), then the seconds until the follower has stored the last one. Documents carry
200 random hex characters, so that compression is not flattered. The restore's figure is bounded
by the double's applyOps (pure Python; its inserts slow down as a collection grows), not only by
the engine.
"""

from __future__ import annotations

import argparse
import bisect
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

import pymongo
from bson.timestamp import Timestamp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION, moto_server
from tests.mongod_double.conftest import Launcher
from tests.waiting import wait_until
from wap_agent.backup import manifest
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.follower import Follower, FollowerOptions
from wap_agent.backup.manifest import Layout
from wap_agent.backup.pitr import restore_to
from wap_agent.backup.slices import OplogStore

BUCKET = "bench-oplog"


class TimedStore(OplogStore):
    """Notes when each chunk became durable: (its last entry's timestamp, monotonic time)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.durable: list[tuple] = []

    def put_chunk(self, entries, prev):
        made = super().put_chunk(entries, prev)
        self.durable.append((made.last.ts, time.monotonic()))
        return made


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0, help="writes a second")
    parser.add_argument("--chunk", type=float, default=2.0, help="chunk_seconds")
    parser.add_argument("--burst", type=int, default=20_000, help="documents, 0: none")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, moto_server() as url:
        launcher = Launcher(pathlib.Path(tmp))
        try:
            nodes = [launcher.start("--replSet", "rs0") for _ in range(3)]
            members = [{"_id": i, "host": f"127.0.0.1:{n.port}"} for i, n in enumerate(nodes)]
            nodes[0].client().admin.command("replSetInitiate", {"_id": "rs0", "members": members})
            uri = "mongodb://" + ",".join(m["host"] for m in members) + "/?replicaSet=rs0"
            client = pymongo.MongoClient(uri, w="majority", wTimeoutMS=30_000)
            wait_until(lambda: client.bench.seed.insert_one({}), timeout=60,
                       what="a primary taking majority writes",
                       retry=pymongo.errors.PyMongoError)  # fmt: skip
            s3 = s3mod.client(url, REGION, FAKE_KEY, FAKE_SECRET)
            s3.create_bucket(Bucket=BUCKET,
                             CreateBucketConfiguration={"LocationConstraint": REGION})  # fmt: skip
            layout = Layout("bench", "p", "c")
            store = TimedStore(s3, BUCKET, layout, "rs0", compression="zstd")
            asked = {"snapshot_id": manifest.snapshot_id(time.time()), "bucket": BUCKET,
                     "prefix": "bench", "project_id": "p", "cluster_id": "c",
                     "compression": "zstd"}  # fmt: skip
            base = manifest.back_up(uri, asked, s3=s3)
            end = manifest.read(s3, BUCKET, base["manifest_key"]).oplog_end
            base_end = Timestamp(end["t"], end["i"])
            follower = Follower(uri, store, base_end, FollowerOptions(chunk_seconds=opts.chunk))
            stop, cpu = threading.Event(), {}

            def follow() -> None:
                began = time.thread_time()
                follower.run(stop)
                cpu["seconds"] = time.thread_time() - began

            thread = threading.Thread(target=follow, daemon=True)
            run_began = time.monotonic()
            thread.start()
            time.sleep(2)  # the follower connected and positioned

            acknowledged: list[tuple] = []
            coll = client.bench.steady
            began = time.monotonic()
            with client.start_session() as session:
                for n in range(int(opts.seconds * opts.rate)):
                    time.sleep(max(0.0, began + n / opts.rate - time.monotonic()))
                    coll.insert_one({"_id": n, "pad": os.urandom(100).hex()}, session=session)
                    acknowledged.append((session.operation_time, time.monotonic()))
            last = acknowledged[-1][0]
            wait_until(lambda: store.durable and store.durable[-1][0] >= last, timeout=120,
                       what="the last steady write durable")  # fmt: skip
            stamps = [ts for ts, _ in store.durable]
            rpo = [store.durable[bisect.bisect_left(stamps, ts)][1] - acked
                   for ts, acked in acknowledged]  # fmt: skip
            print(f"steady load: {len(acknowledged)} w:majority inserts at {opts.rate:g}/s, "
                  f"chunk_seconds {opts.chunk:g}")  # fmt: skip
            print(f"  RPO (acknowledged -> durable in the store): p50 {statistics.median(rpo):.2f}"
                  f" s, p99 {percentile(rpo, 0.99):.2f} s, max {max(rpo):.2f} s")  # fmt: skip

            if opts.burst:
                burst = client.bench.get_collection("burst", write_concern=pymongo.WriteConcern(1))
                began = time.monotonic()
                for start in range(0, opts.burst, 1000):
                    burst.insert_many(
                        [
                            {"_id": i, "pad": os.urandom(100).hex()}
                            for i in range(start, min(opts.burst, start + 1000))
                        ]
                    )
                written = time.monotonic() - began
                last = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
                wait_until(lambda: store.durable and store.durable[-1][0] >= last, timeout=600,
                           what="the burst durable")  # fmt: skip
                stored = store.durable[-1][1] - began
                print(
                    f"burst: {opts.burst:,} inserts written in {written:.1f} s "
                    f"({opts.burst / written:,.0f} entries/s, the double's ceiling here); "
                    f"all durable after {stored:.1f} s ({opts.burst / stored:,.0f} entries/s)"
                )
            stop.set()
            thread.join(60)
            objects = store.objects()
            entries = sum(o.count for o in objects)
            size = sum(s3.head_object(Bucket=BUCKET, Key=o.key)["ContentLength"] for o in objects)
            target = objects[-1].last.ts
            into = launcher.start("--replSet", "target")
            into.client().admin.command("replSetInitiate")
            wait_until(lambda: into.client().admin.command("hello")["isWritablePrimary"],
                       timeout=30, what="the target's primary")  # fmt: skip
            began = time.monotonic()
            done = restore_to(into.uri, s3, BUCKET, layout, "rs0", target)
            took = time.monotonic() - began
            applied = done["oplog_applied"]
            print(
                f"stored: {entries:,} entries in {size / 1e6:,.2f} MB (zstd): "
                f"{size / entries * 1e6 / 1e6:,.0f} MB per million entries"
            )
            print(
                f"restore to the last entry: base snapshot, then {applied:,} entries replayed "
                f"in {took:.1f} s ({took / applied * 1e6:,.0f} s per million entries)"
            )
            print(
                f"follower thread CPU: {cpu.get('seconds', float('nan')):.1f} s over the "
                f"whole run's {time.monotonic() - run_began:.0f} s"
            )
            print(
                f"objects stored: {len(store.durable)} chunks, "
                f"{len(store.slices())} slices after compaction"
            )
        finally:
            launcher.cleanup()


if __name__ == "__main__":
    main()
