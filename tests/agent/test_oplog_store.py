"""Continuous backup without a server: the followed oplog's store layout in moto's S3 on
127.0.0.1 (chunks, compaction into slices, continuity, gap records, rollback), and the pure
parts that decide what can be restored (unrestorable entries, windows, the base a target
starts from, the replay limit)."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from typing import Any

import bson
import pytest
from bson.timestamp import Timestamp

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION, moto_server
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.coverage import Run, replica_set_coverage, runs, windows
from wap_agent.backup.follower import unrestorable_reason
from wap_agent.backup.manifest import Layout, Manifest, StoredFile
from wap_agent.backup.pitr import choose_base, followed, limit_for
from wap_agent.backup.restore import RestoreError
from wap_agent.backup.slices import ContinuityError, OplogStore, OpTime, Stored

BUCKET = "wap-oplog"
DAY = 1_780_000_200  # a slice span's start (a multiple of 600 s)


def entry(seconds: int, inc: int = 1, term: int = 1, **body: Any) -> bytes:
    doc = {"ts": Timestamp(seconds, inc), "t": term, "op": "i", "ns": "app.items",
           "o": {"_id": seconds * 10 + inc}} | body  # fmt: skip
    return bson.encode(doc)


def at(seconds: int, inc: int = 1, term: int = 1) -> OpTime:
    return OpTime(Timestamp(seconds, inc), term)


@contextlib.contextmanager
def moto_bucket() -> Iterator[Any]:
    """A client of moto's S3 on 127.0.0.1 holding the bucket BUCKET."""
    with moto_server() as url:
        client = s3mod.client(url, REGION, FAKE_KEY, FAKE_SECRET)
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield client


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_bucket() as client:
        yield client


def store_for(s3: Any, cluster: str, compression: str | None = "gzip") -> OplogStore:
    return OplogStore(s3, BUCKET, Layout("t", "p", cluster), "rs0", compression=compression)


def test_chunks_compact_into_slices_of_ended_spans_in_order(s3):
    store = store_for(s3, "compact")
    prev = at(DAY - 1)
    for second in range(DAY, DAY + 1200, 100):  # two spans of 600 s, a chunk every 100 s
        chunk = store.put_chunk([entry(second, i) for i in (1, 2, 3)], prev)
        prev = chunk.last
    assert len(store.chunks()) == 12 and store.slices() == []

    made = store.compact(600)
    assert [(m.first, m.last, m.prev, m.count) for m in made] == [
        (at(DAY), at(DAY + 500, 3), at(DAY - 1), 18)
    ]  # the second span has not ended: its chunks wait
    assert f"/oplog/rs0/{datetime.datetime.fromtimestamp(DAY, datetime.UTC):%Y%m%d}/" in (
        made[0].key
    )
    objects = store.objects()
    assert objects[0].key == made[0].key and len(objects) == 7
    assert store.compact(600, before=Timestamp(DAY + 1200, 0))[0].count == 18
    assert [o.count for o in store.objects()] == [18, 18] and store.chunks() == []
    stored = [OpTime.of(e) for o in store.objects() for e in store.entries(o)]
    assert stored == [at(s, i) for s in range(DAY, DAY + 1200, 100) for i in (1, 2, 3)]


def test_a_chunk_that_does_not_follow_the_last_stops_compaction_naming_both(s3):
    store = store_for(s3, "broken", compression=None)
    store.put_chunk([entry(DAY, 1)], at(DAY - 1))
    store.put_chunk([entry(DAY + 5, 1)], at(DAY + 3))  # DAY + 3 was never stored
    store.put_chunk([entry(DAY + 700, 1)], at(DAY + 5))
    with pytest.raises(ContinuityError, match=r"does not continue .*ends at 1780000200\.1\.1"):
        store.compact(600)
    assert len(store.chunks()) == 3, "nothing deleted"


def test_a_gap_is_one_record_per_start_with_its_newest_bounds_and_splits_the_runs(s3):
    store = store_for(s3, "gap")
    store.put_chunk([entry(DAY, 1), entry(DAY + 1, 1)], at(DAY - 1))
    store.record_gap(at(DAY + 1), at(DAY + 50), reason="rolled over")
    store.record_gap(at(DAY + 1), at(DAY + 80), reason="rolled over again")  # moved on
    store.put_chunk([entry(DAY + 80, 1), entry(DAY + 81, 1)], None)
    [gap] = store.gaps()
    assert OpTime.from_dict(gap["resumed"]) == at(DAY + 80) and gap["reason"] == "rolled over again"
    assert [(r.prev, r.last) for r in runs(store.objects())] == [
        (at(DAY - 1), at(DAY + 1)),
        (None, at(DAY + 81)),
    ]
    covered = replica_set_coverage(store, [])
    assert covered["gaps"] == [gap] and covered["windows"] == []
    assert covered["last_durable"]["t"] == DAY + 81


def test_records_come_in_oplog_order_not_in_the_order_of_their_names(s3):
    store = store_for(s3, "order")
    for inc in (10, 2, 1):  # as text, "10" sorts before "2"
        store.record_unrestorable(at(DAY, inc), at(DAY, inc - 1), reason=f"entry {inc}")
    assert [m["at"]["i"] for m in store.unrestorable()] == [1, 2, 10]


def test_objects_that_do_not_follow_without_a_gap_record_show_as_a_gap(s3):
    store = store_for(s3, "unrecorded")
    store.put_chunk([entry(DAY, 1)], at(DAY - 1))
    store.put_chunk([entry(DAY + 9, 1)], at(DAY + 7))
    [gap] = replica_set_coverage(store, [])["gaps"]
    assert gap["after"]["t"] == DAY and gap["resumed"]["t"] == DAY + 9
    assert "no gap record" in gap["reason"]


def test_a_rolled_back_tail_is_set_aside_and_the_common_part_stored_again(s3):
    store = store_for(s3, "rollback")
    first = store.put_chunk([entry(DAY, 1), entry(DAY + 1, 1)], at(DAY - 1))
    tail = store.put_chunk([entry(DAY + 2, 1), entry(DAY + 3, 1), entry(DAY + 4, 1)], first.last)
    kept = store.roll_back(tail, [entry(DAY + 2, 1)])
    assert kept is not None and kept.prev == first.last and kept.last == at(DAY + 2)
    assert [o.last for o in store.objects()] == [at(DAY + 1), at(DAY + 2)]
    rolled = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{store.root}/rolledback/")["Contents"]
    assert [r["Key"].rsplit("/", 1)[1] for r in rolled] == [tail.name]


def test_followed_replays_from_a_base_end_to_the_limit_and_refuses_a_short_store(s3):
    store = store_for(s3, "followed")
    prev = at(DAY - 1)
    for second in range(DAY, DAY + 10, 2):
        prev = store.put_chunk([entry(second, 1), entry(second + 1, 1)], prev).last
    got = [
        bson.decode(raw)["ts"]
        for batch in followed(store, Timestamp(DAY + 2, 1), Timestamp(DAY + 6, 1))
        for raw in batch
    ]
    # the limit is applied by the restore; followed stops at the object beginning past it
    assert got[0] == Timestamp(DAY + 3, 1) and Timestamp(DAY + 5, 1) in got
    assert Timestamp(DAY + 8, 1) not in got
    with pytest.raises(RestoreError, match="no longer reaches the target"):
        list(followed(store, Timestamp(DAY + 2, 1), Timestamp(DAY + 60, 0)))


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        ({"op": "i", "ns": "app.items", "o": {"_id": 1}}, None),
        ({"op": "c", "ns": "app.$cmd", "o": {"renameCollection": "app.a", "to": "app.b"}}, None),
        ({"op": "c", "ns": "app.$cmd", "o": {"startIndexBuild": "items"}}, None),
        ({"op": "u", "ns": "admin.system.version", "o": {"$set": {"version": "7.0"}}},
         "admin.system.version"),
        ({"op": "c", "ns": "app.$cmd", "o": {"importCollection": "items"}}, "importCollection"),
        ({"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
            {"op": "i", "ns": "app.items", "o": {"_id": 2}},
            {"op": "i", "ns": "admin.system.version", "o": {"_id": "x"}}]}},
         "admin.system.version"),
    ],
)  # fmt: skip
def test_entries_a_replay_cannot_reproduce_are_named(op, reason):
    found = unrestorable_reason(op)
    assert found is None if reason is None else reason in found


def base(snapshot_id: str, end: int) -> Manifest:
    return Manifest(snapshot_id, "p", "c", "c", "replicaset", "8.0.4", "8.0", 0.0, 0.0,
                    {"t": end - 5, "i": 1}, {"t": end, "i": 1}, [],
                    [StoredFile(f"{snapshot_id}.archive", 1, "", "rs0")],
                    replica_sets=["rs0"])  # fmt: skip


def run_of(prev: int | None, *spans: tuple[int, int]) -> Run:
    objects, last = [], at(prev) if prev is not None else None
    for first, end in spans:
        objects.append(Stored(f"k/{first}", at(first), at(end), last, 1))
        last = at(end)
    return Run(at(prev) if prev is not None else None, objects)


def test_windows_from_bases_through_runs_cut_by_an_unrestorable_entry():
    run_list = [run_of(DAY - 1, (DAY, DAY + 100), (DAY + 101, DAY + 200)),
                run_of(None, (DAY + 300, DAY + 400))]  # fmt: skip
    marks = [{"at": at(DAY + 150).to_dict(), "prev": at(DAY + 149).to_dict(), "reason": "FCV"}]
    bases = [base("a", DAY + 10), base("b", DAY + 50), base("c", DAY + 160),
             base("d", DAY + 250), base("e", DAY + 320)]  # fmt: skip
    made = windows(bases, run_list, marks)
    shown = [(w["snapshot_id"], [s["id"] for s in w["snapshots"]], w["from"]["t"] - DAY,
              w["until"]["t"] - DAY, w["ends"]) for w in made]  # fmt: skip
    assert shown == [
        ("a", ["a", "b"], 10, 149, "unrestorable: FCV"),
        ("c", ["c"], 160, 200, "last durable entry"),
        ("d", ["d"], 250, 250, "snapshot only"),  # ends inside the gap
        ("e", ["e"], 320, 400, "last durable entry"),
    ]
    assert made[0]["until"]["utc"].endswith("Z")

    assert choose_base(made, limit_for(Timestamp(DAY + 60, 1)))["id"] == "b"
    assert choose_base(made, limit_for(Timestamp(DAY + 50, 1)))["id"] == "b"
    assert choose_base(made, limit_for(Timestamp(DAY + 49, 1)))["id"] == "a"
    assert choose_base(made, limit_for(Timestamp(DAY + 400, 1)))["id"] == "e"
    for outside in (DAY + 5, DAY + 150, DAY + 210, DAY + 401):
        with pytest.raises(RestoreError, match="no restorable window of rs0 holds the target"):
            choose_base(made, limit_for(Timestamp(outside, 1)), "rs0")


def test_the_replay_limit_includes_the_target_entry_or_its_whole_utc_second():
    assert limit_for(Timestamp(DAY, 7)) == Timestamp(DAY, 8)
    assert limit_for(Timestamp(DAY, 0xFFFFFFFF)) == Timestamp(DAY + 1, 0)
    moment = datetime.datetime.fromtimestamp(DAY + 0.75, datetime.UTC)
    assert limit_for(moment) == Timestamp(DAY + 1, 0)
    with pytest.raises(RestoreError, match="in UTC"):
        limit_for(datetime.datetime(2026, 1, 1, 12, 0))
