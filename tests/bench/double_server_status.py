"""mongod double bench: what one serverStatus costs as collections grow. A one-node double (no
replica set) gets N collections of D documents each; the bench then times serverStatus, its
first call after the writes, again with nothing written, and after each of a steady trickle of
writes to one collection (an insert, an update, a delete), as the agent's collector polls it
while an application writes. `--double DIR` runs another copy of the double's package (the one
before a change, to compare). Not a test: figures only.

Usage: python -m tests.bench.double_server_status [--collections 10000] [--docs 1]
       [--doc-bytes 100] [--double DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

from tests.mongod_double import conftest


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=int, default=10_000)
    parser.add_argument("--docs", type=int, default=1, help="documents per collection")
    parser.add_argument("--doc-bytes", type=int, default=100)
    parser.add_argument("--writes", type=int, default=20, help="timed calls after a write")
    parser.add_argument("--double", type=pathlib.Path, help="the double's package's parent")
    args = parser.parse_args()
    if args.double is not None:
        conftest.HERE = args.double.resolve()  # the launcher's PYTHONPATH
    with tempfile.TemporaryDirectory() as folder:
        launch = conftest.Launcher(pathlib.Path(folder))
        try:
            client = launch.start().client()
            filler = "x" * args.doc_bytes
            for i in range(args.collections):
                docs = [{"_id": j, "v": filler} for j in range(args.docs)]
                client[f"db{i % 20}"][f"c{i}"].insert_many(docs)

            def status() -> None:
                client.admin.command("serverStatus")

            first, idle = timed(status), timed(status)
            hot = client.db0.c0
            after = []
            for n in range(args.writes):
                if n % 3 == 0:
                    hot.insert_one({"_id": f"w{n}", "v": filler})
                elif n % 3 == 1:
                    hot.update_one({"_id": f"w{n - 1}"}, {"$set": {"v": filler * 2}})
                else:
                    hot.delete_one({"_id": f"w{n - 2}"})
                after.append(timed(status))
            print(
                f"{args.collections:,} collections x {args.docs:,} documents of"
                f" ~{args.doc_bytes} B: serverStatus first {first * 1000:.1f} ms, idle"
                f" {idle * 1000:.1f} ms, after a write median"
                f" {statistics.median(after) * 1000:.1f} ms (max {max(after) * 1000:.1f} ms)"
            )
        finally:
            launch.cleanup()


if __name__ == "__main__":
    main()
