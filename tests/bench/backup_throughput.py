"""Backup engine throughput against the mongod double: dump and restore MB/s and documents/s,
each beside the raw pymongo figure on the same server (a cursor read of the same collections; an
insert_many of the same documents), the engine's CPU seconds and its peak RSS above the start.

Not a test: it prints figures and never fails on timing. Run from the repository root:

    .venv/bin/python -m tests.bench.backup_throughput [--mb 20 60 250] [--parallel 4] [--gzip]

Each size runs on doubles of its own. The double is pure Python (mongomock behind the wire
protocol), so its own ceiling bounds both sides: the "raw" lines are that ceiling, and the ratios
are what the engine adds or loses. The double checkpoints under its storage lock (every 60 s, and
past 64 MB of journal), re-reading every document through mongomock: at 60 MB of these
documents one checkpoint stalled every write for 165 s, and four of them, each longer than the
last, kept `--mb 250` loading for over 19 minutes. Neither is what is measured, and WiredTiger's
own log-size checkpoint is at 2 GB: the periodic checkpoint is set to a day and the journal's
moved past the bench's data (the doubles run with storage.JOURNAL_COMPACT_BYTES raised; their
journal is still written). The raw read runs before and after the dump, the faster being the
ceiling. The archive goes to a temporary file (never held in memory); peak RSS is sampled every
20 ms.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import sys
import tempfile
import threading
import time

import bson
import psutil
import pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.mongod_double.conftest import Launcher
from wap_agent.backup.dump import DumpOptions, dump
from wap_agent.backup.restore import RestoreOptions, restore

RAW = CodecOptions(document_class=RawBSONDocument)
# (collection, share of the bytes, document builder): small, medium and large documents
SHAPES = (
    ("events", 0.3, lambda i: {"_id": i, "t": i * 7, "kind": f"k{i % 13}", "ok": i % 2 == 0,
                               "text": f"event {i} " * 20}),
    ("orders", 0.4, lambda i: {"_id": i, "customer": f"c{i % 997}", "lines": [
        {"sku": f"s{j}", "qty": j, "price": j * 1.25} for j in range(12)], "note": "n" * 300}),
    ("blobs", 0.3, lambda i: {"_id": i, "body": os.urandom(8192), "name": f"blob-{i}"}),
)  # fmt: skip


# The double as `python -m mongod_double` runs it, its journal's checkpoint past any bench's data.
NO_JOURNAL_CHECKPOINT = (
    "import sys; import mongod_double.storage as storage; storage.JOURNAL_COMPACT_BYTES = 1 << 40;"
    " from mongod_double.main import main; sys.exit(main())"
)
BATCH_BYTES = 2_000_000  # per insert_many while loading


class BenchLauncher(Launcher):
    """Doubles without the journal's checkpoint (the module's note)."""

    def command(self, executable: str | None) -> list[str]:
        return [sys.executable, "-c", NO_JOURNAL_CHECKPOINT]


class Peak:
    """The process's peak RSS over a block, sampled in a thread."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> Peak:
        self.cpu = resource.getrusage(resource.RUSAGE_SELF)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        end = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_seconds = (end.ru_utime - self.cpu.ru_utime) + (end.ru_stime - self.cpu.ru_stime)

    @property
    def above_start_mb(self) -> float:
        return (self.peak - self.base) / 1e6


def load(client: pymongo.MongoClient, megabytes: float) -> tuple[int, int]:
    docs = size = 0
    for name, share, build in SHAPES:
        target = megabytes * 1e6 * share
        coll = client.bench.get_collection(name, codec_options=RAW)
        written, i = 0, 0
        while written < target:
            batch, held = [], 0
            while held < BATCH_BYTES and written + held < target:
                raw = RawBSONDocument(bson.encode(build(i)))
                batch.append(raw)
                held += len(raw.raw)
                i += 1
            coll.insert_many(batch, ordered=False)
            written += held
        docs += i
        size += written
    return docs, size


def raw_read(client: pymongo.MongoClient) -> tuple[int, int]:
    docs = size = 0
    for name, _, _ in SHAPES:
        for doc in client.bench.get_collection(name, codec_options=RAW).find({}):
            docs += 1
            size += len(doc.raw)
    return docs, size


def raw_insert(source: pymongo.MongoClient, target: pymongo.MongoClient) -> tuple[int, float]:
    """insert_many of the source's documents into target, timed without the read."""
    docs, spent = 0, 0.0
    for name, _, _ in SHAPES:
        batch: list = []
        for doc in source.bench.get_collection(name, codec_options=RAW).find({}):
            batch.append(doc)
            if len(batch) == 1000:
                started = time.perf_counter()
                target.bench[name].insert_many(batch, ordered=False)
                spent += time.perf_counter() - started
                docs += len(batch)
                batch = []
        if batch:
            started = time.perf_counter()
            target.bench[name].insert_many(batch, ordered=False)
            spent += time.perf_counter() - started
            docs += len(batch)
    return docs, spent


def line(label: str, docs: int, size: int, seconds: float, extra: str = "") -> None:
    print(f"{label:<28} {size / 1e6 / seconds:8.2f} MB/s {docs / seconds:10.0f} docs/s "
          f"{seconds:7.1f} s {extra}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[250],
                        help="data to dump, one run per size (250)")  # fmt: skip
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--gzip", action="store_true", help="gzip the archive")
    args = parser.parse_args()
    for megabytes in args.mb:
        print(f"-- {megabytes:g} MB", flush=True)
        run(megabytes, args)


def run(megabytes: float, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        launcher = BenchLauncher(pathlib.Path(tmp))
        try:
            # no periodic checkpoint (it stalls the double): what is left is its own speed
            config = pathlib.Path(tmp) / "mongod.conf"
            config.write_text("storage:\n  syncPeriodSecs: 86400\n")
            source_node, raw_node, target_node = (
                launcher.start("--config", str(config)) for _ in range(3)
            )
            source = source_node.client(socketTimeoutMS=0)
            started = time.perf_counter()
            docs, size = load(source, megabytes)
            line("load (insert_many)", docs, size, time.perf_counter() - started)

            started = time.perf_counter()
            read_docs, read_bytes = raw_read(source)
            raw_seconds = time.perf_counter() - started
            line("raw cursor read", read_docs, read_bytes, raw_seconds)

            archive = pathlib.Path(tmp) / "bench.archive"
            options = DumpOptions(parallel=args.parallel, compression="gzip" if args.gzip else None)
            with archive.open("wb") as out, Peak() as peak:
                started = time.perf_counter()
                summary = dump(source_node.uri, out, options=options)
                dump_seconds = time.perf_counter() - started
            dumped = sum(c["count"] for c in summary["collections"])
            dumped_bytes = sum(c["bytes"] for c in summary["collections"])
            line("dump (archive)", dumped, dumped_bytes, dump_seconds,
                 f"{100 * raw_seconds / dump_seconds:.0f}% of raw read, CPU "
                 f"{peak.cpu_seconds:.1f} s, peak RSS +{peak.above_start_mb:.0f} MB, archive "
                 f"{archive.stat().st_size / 1e6:.0f} MB")  # fmt: skip

            # again after the dump: the double checkpoints (every 60 s, and past 64 MB of journal)
            # under its storage lock, so one read may have met a checkpoint; the faster counts
            started = time.perf_counter()
            raw_read(source)
            again = time.perf_counter() - started
            share = 100 * min(raw_seconds, again) / dump_seconds
            line("raw cursor read, again", read_docs, read_bytes, again,
                 f"dump at {share:.0f}% of the faster")  # fmt: skip

            raw_docs, raw_insert_seconds = raw_insert(source, raw_node.client(socketTimeoutMS=0))
            line("raw insert_many", raw_docs, read_bytes, raw_insert_seconds)

            with archive.open("rb") as stream, Peak() as peak:
                started = time.perf_counter()
                restored = restore(target_node.uri, stream,
                                   options=RestoreOptions(parallel=args.parallel))  # fmt: skip
                restore_seconds = time.perf_counter() - started
            restored_docs = sum(c["count"] for c in restored["collections"])
            line("restore (archive)", restored_docs, dumped_bytes, restore_seconds,
                 f"{100 * raw_insert_seconds / restore_seconds:.0f}% of raw insert_many, CPU "
                 f"{peak.cpu_seconds:.1f} s, peak RSS +{peak.above_start_mb:.0f} MB")  # fmt: skip
            raw_seconds = min(raw_seconds, again)
            print(f"the double's ceiling: raw read {read_bytes / 1e6 / raw_seconds:.2f} MB/s, "
                  f"raw insert {read_bytes / 1e6 / raw_insert_seconds:.2f} MB/s on "
                  f"{os.cpu_count()} cores")  # fmt: skip
        finally:
            launcher.cleanup()


if __name__ == "__main__":
    main()
