"""How to store samples: the write and read cost of each layout on the embedded store (nx-27017)
and the mongod double, the figures behind webui.services.metrics' and rollups' choice.

- bucket: one document per host round (100 samples in an array), as `samples` holds them;
- per-sample: one document per sample (what a time-series collection receives);
- time-series: `create` with `timeseries` options, then the same per-sample inserts (whether the
  server made a time-series collection is printed: nx-27017 answers ok and keeps a plain one).

Prints store CPU and wall time per round written, and the wall time to read one series over an
hour (360 rounds). Not a test: figures only; metrics_ingest and metrics_query measure the layout
chosen, as the platform writes and reads it. Usage: python -m tests.bench.metrics_layouts

Measured 7 Dec 2026 at load 6-7 (store CPU per round written; one series over an hour):

    layout       nx-27017            mongod double
    bucket       2.7 ms;   725 ms    1.3 ms;   966 ms
    per-sample  11.6 ms;   208 ms    7.8 ms;   257 ms
    time-series 10.3 ms;   175 ms    6.6 ms;   621 ms   (nx-27017 keeps a plain collection;
                                                        the double refuses the option, 238)

Buckets cost a quarter to a sixth of the writes but reading one series reads every round whole:
hence the rounds' buckets for writing and, since 3e50078, each series' raw columns per slice
(written by the rollup round) for charts.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from pymongo import ASCENDING, MongoClient
from pymongo.errors import PyMongoError

from tests.webui.helpers import Proc, free_port, wait_for
from webui.embedded import _store_ready

DOUBLE = Path(__file__).resolve().parents[1] / "mongod_double"
ROUNDS = 360
SERIES = 100


def samples(at: float, seq: int) -> list[dict]:
    return [
        {"n": f"mongodb_bench_series_{i % 25}", "l": {"instance": "db:27017", "kind": str(i // 25)},
         "v": float(i + seq), "k": "g", "t": at}
        for i in range(SERIES)
    ]  # fmt: skip


def server(kind: str, data: str, port: int) -> Proc:
    if kind == "nx-27017":
        argv = [sys.executable, "-m", "webui.store.embedded_server", "--host", "127.0.0.1",
                "--port", str(port), "--data-dir", data, "--log-file", f"{data}/log",
                "--pid-file", f"{data}/pid"]  # fmt: skip
        return Proc(argv, Path(data) / "out")
    argv = [sys.executable, "-m", "mongod_double", "--port", str(port), "--bind_ip", "127.0.0.1",
            "--dbpath", data]  # fmt: skip
    return Proc(argv, Path(data) / "out", env={**os.environ, "PYTHONPATH": str(DOUBLE)})


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def measure(kind: str) -> None:
    with tempfile.TemporaryDirectory(prefix="wap-bench-") as data:
        port = free_port()
        proc = server(kind, data, port)
        try:
            uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
            wait_for(_store_ready(uri), what=kind)
            client: MongoClient = MongoClient(uri)
            db = client.bench
            store_proc = psutil.Process(proc.pid)
            try:
                db.create_collection(
                    "ts", timeseries={"timeField": "t", "metaField": "m", "granularity": "seconds"}
                )
                info = db.command("listCollections", filter={"name": "ts"})
                batch = info["cursor"]["firstBatch"]
                made = batch[0].get("type", "collection") if batch else "nothing"
            except PyMongoError as exc:
                made = f"refused ({exc})"
            print(f"{kind}: create with timeseries -> {made}")
            db.bucket.create_index([("host_id", ASCENDING), ("t", ASCENDING)])
            db.persample.create_index([("host_id", ASCENDING), ("n", ASCENDING), ("t", ASCENDING)])
            start = time.time() - ROUNDS * 10
            layouts = {
                "bucket": lambda seq, at: db.bucket.insert_one(
                    {"_id": uuid.uuid4().hex, "host_id": "h0", "t": at,
                     "samples": samples(at, seq)}),
                "per-sample": lambda seq, at: db.persample.insert_many(
                    [{**s, "host_id": "h0"} for s in samples(at, seq)]),
                "time-series": lambda seq, at: db.ts.insert_many(
                    [{"t": at, "m": {"host_id": "h0", "n": s["n"], "l": s["l"]}, "v": s["v"]}
                     for s in samples(at, seq)]),
            }  # fmt: skip
            for name, write in layouts.items():
                c0, t0 = cpu(store_proc), time.perf_counter()
                for seq in range(ROUNDS):
                    write(seq, start + 10 * seq)
                c1, t1 = cpu(store_proc), time.perf_counter()
                print(
                    f"{kind} {name:11s}: write per round of {SERIES} samples: store CPU "
                    f"{1000 * (c1 - c0) / ROUNDS:5.2f} ms, wall {1000 * (t1 - t0) / ROUNDS:5.2f} ms"
                )
            name, labels = "mongodb_bench_series_3", {"instance": "db:27017", "kind": "0"}
            reads = {
                "bucket": lambda: [
                    s["v"] for d in db.bucket.find({"host_id": "h0", "t": {"$gte": start}})
                    for s in d["samples"] if s["n"] == name and s["l"] == labels
                ],
                "per-sample": lambda: [
                    d["v"] for d in db.persample.find(
                        {"host_id": "h0", "n": name, "t": {"$gte": start}, "l.kind": "0"})
                ],
                "time-series": lambda: [
                    d["v"] for d in db.ts.find(
                        {"m.host_id": "h0", "m.n": name, "t": {"$gte": start}, "m.l.kind": "0"})
                ],
            }  # fmt: skip
            for name_, read in reads.items():
                t0 = time.perf_counter()
                for _ in range(5):
                    got = read()
                ms = 1000 * (time.perf_counter() - t0) / 5
                print(
                    f"{kind} {name_:11s}: one series over an hour ({len(got)} points): {ms:.0f} ms"
                )
            client.close()
        finally:
            proc.stop()


def main() -> None:
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for kind in ("nx-27017", "mongod-double"):
        measure(kind)


if __name__ == "__main__":
    main()
