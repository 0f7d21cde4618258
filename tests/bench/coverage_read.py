"""What one read of a cluster's backup coverage costs (the console's timeline reads it every 5 s
while a page is open, and GET .../backup-coverage each time): seconds and S3 requests for a
store as continuous backup leaves it, by its number of snapshots and stored oplog objects.
Not a test: it prints figures and never fails on timing. Run from the repository root:
    .venv/bin/python tests/bench/coverage_read.py [--reads 5]
moto's S3 on 127.0.0.1 (no network latency: on AWS each request adds its round trip, so the
request count is the figure that carries over). The first read of a store reads each object's
metadata and each manifest; a read again (the same process: the platform's web server) reads
only what is new since, objects being never rewritten in place. One replica set; objects of 3
entries each, one continuous run; the follower's layout (agent/docs/backup-storage.md): a day of
following at the default spans is 144 slices plus up to 300 chunks of the current span, and a gap
record.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
from typing import Any

import bson
from bson.timestamp import Timestamp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION, moto_server
from wap_agent.backup import manifest as mf
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.coverage import coverage
from wap_agent.backup.slices import OplogStore, OpTime

BUCKET = "bench-coverage"
T0 = 1_780_000_000
# (snapshots, stored oplog objects): a fresh set, an hour, a day, a week of daily snapshots
CASES = ((1, 10), (2, 36), (7, 444), (30, 444))


def entry(seconds: int) -> bytes:
    return bson.encode({"ts": Timestamp(seconds, 1), "t": 1, "op": "n", "ns": "", "o": {}})


def fill(s3: Any, layout: mf.Layout, snapshots: int, objects: int) -> None:
    store = OplogStore(s3, BUCKET, layout, "rs0")
    prev = OpTime(Timestamp(T0 - 1, 1), 1)
    for k in range(objects):
        made = store.put_chunk([entry(T0 + 3 * k + j) for j in range(3)], prev)
        prev = made.last
    store.save_checkpoint(prev)
    store.record_gap(OpTime(Timestamp(T0 - 100, 1), 1), OpTime(Timestamp(T0 - 1, 1), 1), "bench")
    for k in range(snapshots):
        end = T0 + 3 * objects * k // snapshots + 1

        def produce(out: Any, end: int = end) -> dict[str, Any]:
            out.write(b"archive")
            return {"server_version": "8.0.4", "fcv": "8.0", "compression": None,
                    "collections": [], "oplog": {"start": {"t": end - 1, "i": 1},
                                                 "end": {"t": end, "i": 1}}}  # fmt: skip

        mf.store_snapshot(s3, BUCKET, layout, produce, cluster_name="bench", replica_set="rs0",
                          compression=None, started=float(end))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=5)
    options = parser.parse_args()
    with moto_server() as url:
        s3 = s3mod.client(url, REGION, FAKE_KEY, FAKE_SECRET)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        sent: list[str] = []
        s3.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
        print(f"{'snapshots':>9} {'objects':>7} | first read: {'requests':>8} {'s':>6} |"
              f" again: {'requests':>8} {'p50 s':>6} {'max s':>6}")  # fmt: skip
        for n, (snapshots, objects) in enumerate(CASES):
            layout = mf.Layout("bench", "p", f"c{n}")
            fill(s3, layout, snapshots, objects)
            reads = []
            for _ in range(options.reads + 1):
                sent.clear()
                began = time.perf_counter()
                found = coverage(s3, BUCKET, layout)["replica_sets"]["rs0"]
                reads.append((time.perf_counter() - began, len(sent)))
            assert found["objects"] == objects and found["windows"], found
            again = [t for t, _ in reads[1:]]
            print(f"{snapshots:>9} {objects:>7} | {'':>12}{reads[0][1]:>8} {reads[0][0]:>6.3f} |"
                  f" {'':>6} {reads[-1][1]:>8} {statistics.median(again):>6.3f}"
                  f" {max(again):>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
