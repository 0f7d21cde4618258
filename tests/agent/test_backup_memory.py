"""The engine's memory does not grow with the data: a dump and a restore of collections many
times larger than the ceiling agent/wap_agent/backup/README.md states (per collection copied at
once, a few times ``batch_bytes``), measured with tracemalloc's peak of this process's
allocations, and what was restored equal to the source."""

from __future__ import annotations

import os
import tracemalloc

import bson
from bson.raw_bson import RawBSONDocument

from wap_agent.backup.dump import DumpOptions, dump
from wap_agent.backup.hashing import collection_hash
from wap_agent.backup.restore import RestoreOptions, restore

KiB, MB = 1024, 1_000_000
BATCH = 64 * KiB
PARALLEL = 2
COLLECTIONS = ("wide", "narrow")
DATA = 16 * MB  # both collections
# What the README states: a dump holds per collection copied at once about six batches (the
# server's reply, its documents as read, the segment gathered, its joined body); a restore one
# batch per namespace the archive interleaves (two here), three per insert thread (queued,
# running, the insert's message) and the batch read. Beside them the client, the catalogue and
# the summary, which do not grow with the data.
FIXED = 1 * MB
DUMP_CEILING = PARALLEL * 6 * BATCH + FIXED
RESTORE_CEILING = (len(COLLECTIONS) + 3 * PARALLEL + 1) * BATCH + FIXED


def load(client) -> None:
    for name in COLLECTIONS:
        written, n = 0, 0
        while written < DATA / len(COLLECTIONS):
            docs = [
                RawBSONDocument(
                    bson.encode({"_id": n + i, "body": os.urandom(2000 + (i % 9) * 500)})
                )
                for i in range(200)
            ]
            n += len(docs)
            written += sum(len(d.raw) for d in docs)
            client.big[name].insert_many(docs)


def peak_of(run) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_dump_and_restore_stay_under_the_ceiling_whatever_the_collection_sizes(launcher, tmp_path):
    source, target = launcher.start(), launcher.start()
    load(source.client())
    archive = tmp_path / "big.archive"
    with archive.open("wb") as out:
        summary, dump_peak = peak_of(
            lambda: dump(source.uri, out, options=DumpOptions(parallel=PARALLEL, batch_bytes=BATCH))
        )
    dumped = sum(c["bytes"] for c in summary["collections"])
    assert dumped > 8 * max(DUMP_CEILING, RESTORE_CEILING), "the data is not several ceilings"
    assert dump_peak < DUMP_CEILING, f"the dump held {dump_peak / MB:.1f} MB at its peak"

    options = RestoreOptions(parallel=PARALLEL, batch_bytes=BATCH)
    with archive.open("rb") as stream:
        restored, restore_peak = peak_of(lambda: restore(target.uri, stream, options=options))
    assert restore_peak < RESTORE_CEILING, f"the restore held {restore_peak / MB:.1f} MB"
    for name in COLLECTIONS:
        assert collection_hash(target.client().big[name]) == collection_hash(
            source.client().big[name]
        )
    assert [c["hash"] for c in restored["collections"]] == [
        c["hash"] for c in summary["collections"]
    ]
