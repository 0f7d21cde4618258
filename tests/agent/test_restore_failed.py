"""A restore that fails midway (its archive cut in the middle of a collection, as a download or a
file broken off) says what it left in the target: the collections complete, the one partly
inserted, those not started, each as the target then holds it; the target, no longer empty, is
refused by a second restore, and a restore with drop puts the whole snapshot back."""

from __future__ import annotations

import io

import pytest

from wap_agent.backup.archive import ArchiveReader
from wap_agent.backup.dump import DumpOptions, dump
from wap_agent.backup.hashing import collection_hash
from wap_agent.backup.restore import RestoreError, RestoreOptions, restore

SIZES = {"first": 300, "second": 600, "third": 300}
OPTIONS = {"parallel": 2, "batch_docs": 50}


def test_a_restore_cut_midway_says_what_it_left_and_drop_replaces_it(launcher) -> None:
    source, target = launcher.start(), launcher.start()
    app = source.client().app
    for name, count in SIZES.items():
        app[name].insert_many([{"_id": i, "text": f"{name} {i} " * 8} for i in range(count)])
    whole = io.BytesIO()
    # one collection after another, in segments of a few dozen documents
    dump(source.uri, whole, options=DumpOptions(parallel=1, batch_bytes=4096))
    archive = whole.getvalue()
    order = []
    for event in ArchiveReader(io.BytesIO(archive)).events():
        if event.ns not in order:
            order.append(event.ns)
    assert sorted(order) == [f"app.{name}" for name in sorted(SIZES)]

    cut = io.BytesIO(archive[: len(archive) // 2])  # the middle collection is twice the others
    with pytest.raises(RestoreError) as failed:
        restore(target.uri, cut, options=RestoreOptions(**OPTIONS))
    message = str(failed.value)
    assert "truncated archive" in message
    assert (
        f"Left in the target: complete: {order[0]}; partly inserted: {order[1]}; not started: "
        f"{order[2]}. Restore again with drop" in message
    ), message
    assert failed.value.complete == [order[0]]
    held = target.client().app
    first, second, third = (ns.split(".", 1)[1] for ns in order)
    assert collection_hash(held[first]) == collection_hash(app[first])
    assert 0 < held[second].count_documents({}) < SIZES[second]
    assert held[third].count_documents({}) == 0

    with pytest.raises(RestoreError, match="the target is not empty"):
        restore(target.uri, io.BytesIO(archive), options=RestoreOptions(**OPTIONS))
    restore(target.uri, io.BytesIO(archive), options=RestoreOptions(drop=True, **OPTIONS))
    for name in SIZES:
        assert collection_hash(held[name]) == collection_hash(app[name])
