"""Throughput of the mongod double through pymongo: inserts/second and documents read/second.

Not a test: it prints figures and never fails on timing. Run from the repository root:

    .venv/bin/python tests/bench/double_throughput.py [--docs 20000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import pymongo

DOUBLE = pathlib.Path(__file__).resolve().parent.parent / "mongod_double"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the double exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the double did not start")


def run(docs: int, batch: int) -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as dbpath:
        env = {**os.environ, "PYTHONPATH": str(DOUBLE)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mongod_double",
                "--port",
                str(port),
                "--bind_ip",
                "127.0.0.1",
                "--dbpath",
                dbpath,
                "--logpath",
                os.path.join(dbpath, "mongod.log"),
            ],
            env=env,
        )
        try:
            _wait(port, proc)
            client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true")
            coll = client.bench.docs
            payload = {"name": "x" * 40, "n": 0, "tags": ["a", "b"], "nested": {"k": 1}}

            started = time.perf_counter()
            for first in range(0, docs, batch):
                coll.insert_many([dict(payload, n=i) for i in range(first, first + batch)])
            insert_many_s = time.perf_counter() - started

            single = min(docs // 10, 2000)
            started = time.perf_counter()
            for i in range(single):
                client.bench.single.insert_one(dict(payload, n=i))
            insert_one_s = time.perf_counter() - started

            started = time.perf_counter()
            read = sum(1 for _ in coll.find())
            read_s = time.perf_counter() - started

            started = time.perf_counter()
            lookups = min(docs // 10, 2000)
            for i in range(lookups):
                coll.find_one({"n": i})
            lookup_s = time.perf_counter() - started
            client.close()
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"insert_many ({batch}/batch): {docs / insert_many_s:10.0f} inserts/s")
    print(f"insert_one:                {single / insert_one_s:10.0f} inserts/s")
    print(f"find (full scan):          {read / read_s:10.0f} documents read/s")
    print(f"find_one by field ({docs} docs, no index use): {lookups / lookup_s:8.0f} queries/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    run(args.docs, args.batch)


if __name__ == "__main__":
    main()
