"""local.oplog.rs on a one-member replica set, and tailable awaitData cursors on it."""

from __future__ import annotations

import threading

import pytest
from bson.int64 import Int64
from bson.timestamp import Timestamp
from pymongo.errors import NotPrimaryError, OperationFailure

from tests.waiting import wait_until


@pytest.fixture
def replset(launcher):
    node = launcher.start("--replSet", "rs0")
    return node


def test_replset_member_before_initiate(replset):
    """Before initiation a --replSet node is not writable and says so in hello.

    Source: https://www.mongodb.com/docs/manual/reference/command/hello/#replica-sets and
    https://www.mongodb.com/docs/manual/reference/error-codes/ (10107 NotWritablePrimary).
    """
    client = replset.client()
    hello = client.admin.command("hello")
    assert hello["isWritablePrimary"] is False and hello["secondary"] is False
    assert hello["info"] == "Does not have a valid replica set config"
    assert hello["isreplicaset"] is True
    with pytest.raises((NotPrimaryError, OperationFailure)) as info:
        client.test.command("insert", "c", documents=[{}])
    assert info.value.details["code"] == 10107
    # State-change errors carry the topologyVersion (SDAM spec), the one hello reports.
    assert info.value.details["topologyVersion"] == hello["topologyVersion"]
    assert client.admin.command("ping")["ok"] == 1


def test_initiate_single_member_and_oplog_entries(replset):
    """replSetInitiate of a one-member set makes it primary; writes log oplog entries with
    ts, t, v, op, ns, ui, o, o2 and wall.

    Source: https://www.mongodb.com/docs/manual/reference/command/replSetInitiate/ and
    https://www.mongodb.com/docs/manual/core/replica-set-oplog/
    """
    client = replset.client()
    config = {"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{replset.port}"}]}
    assert client.admin.command("replSetInitiate", config)["ok"] == 1
    with pytest.raises(OperationFailure) as info:
        client.admin.command("replSetInitiate", config)
    assert info.value.code == 23  # AlreadyInitialized
    hello = client.admin.command("hello")
    assert hello["setName"] == "rs0" and hello["isWritablePrimary"] is True
    assert hello["primary"] == hello["me"]
    coll = client.test.c
    coll.insert_one({"_id": 1, "a": 1})
    coll.update_one({"_id": 1}, {"$set": {"a": 2}})
    coll.delete_one({"_id": 1})
    entries = list(client.local["oplog.rs"].find({"ns": {"$in": ["test.c", "test.$cmd"]}}))
    assert [e["op"] for e in entries] == ["c", "i", "u", "d"]
    create, insert, update, delete = entries
    assert create["o"] == {"create": "c"}
    assert insert["o"] == {"_id": 1, "a": 1}
    assert update["o2"] == {"_id": 1} and update["o"] == {"_id": 1, "a": 2}
    assert delete["o"] == {"_id": 1}
    for entry in entries:
        assert isinstance(entry["ts"], Timestamp) and isinstance(entry["t"], Int64)
        assert entry["v"] == 2 and "wall" in entry and "ui" in entry and "_id" not in entry
    assert insert["ts"] < update["ts"] < delete["ts"]
    assert client.local.system.replset.find_one()["_id"] == "rs0"


def test_tailable_await_data_cursor_waits_for_new_entries(replset):
    """A tailable awaitData cursor on the oplog returns new entries as they are written and
    waits up to maxTimeMS when there are none.

    Source: https://www.mongodb.com/docs/manual/core/tailable-cursors/ and
    https://www.mongodb.com/docs/manual/reference/command/getMore/ (maxTimeMS with awaitData).
    """
    client = replset.client()
    client.admin.command("replSetInitiate")
    oplog = client.local["oplog.rs"]
    last = oplog.find().sort("$natural", -1).limit(1).next()["ts"]
    reply = client.local.command(
        "find", "oplog.rs", filter={"ts": {"$gt": last}}, tailable=True, awaitData=True
    )
    cursor_id = reply["cursor"]["id"]
    assert reply["cursor"]["firstBatch"] == [] and cursor_id != 0
    empty = client.local.command("getMore", cursor_id, collection="oplog.rs", maxTimeMS=300)
    assert empty["cursor"]["nextBatch"] == [] and empty["cursor"]["id"] == cursor_id
    # A write made while getMore waits: the waiting getMore returns it. Woken by the write, not
    # by maxTimeMS: a getMore that ran out its 20 s would come back empty, and none may.
    timer = threading.Timer(0.3, lambda: client.test.c.insert_one({"_id": "late"}))
    timer.start()
    batches: list[list[dict]] = []

    def next_batch() -> bool:
        reply = client.local.command("getMore", cursor_id, collection="oplog.rs", maxTimeMS=20_000)
        batches.append(reply["cursor"]["nextBatch"])
        return any(e["op"] == "i" for e in batches[-1])

    wait_until(next_batch, timeout=60, every=0, what="the late insert", seen=lambda: batches)
    timer.join()
    assert all(batches), f"a getMore ran out its maxTimeMS before the write woke it: {batches}"
    inserts = [e for batch in batches for e in batch if e["op"] == "i"]
    assert inserts[0]["o"] == {"_id": "late"}


def test_oplog_survives_restart_and_node_comes_back_primary(launcher, replset):
    """The oplog and the replica set config persist; a one-member set is primary again.

    Source: https://www.mongodb.com/docs/manual/core/replica-set-oplog/
    """
    client = replset.client()
    client.admin.command("replSetInitiate")
    client.test.c.insert_one({"_id": 7})
    count = client.local["oplog.rs"].count_documents({})
    replset.stop()
    moved = launcher.start("--replSet", "rs0", dbpath=replset.dbpath)
    hello = moved.client().admin.command("hello")  # another port: not in its own config
    assert hello["isWritablePrimary"] is False and "setName" not in hello
    moved.stop()
    again = launcher.start("--replSet", "rs0", dbpath=replset.dbpath, port=replset.port)
    client = again.client()
    assert client.admin.command("hello")["isWritablePrimary"] is True
    assert client.local["oplog.rs"].count_documents({}) >= count
    assert client.local["oplog.rs"].find_one({"op": "i", "o._id": 7}) is not None


def test_tailable_cursor_on_a_regular_collection_is_rejected(client):
    """Tailable cursors need a capped collection.

    Source: https://www.mongodb.com/docs/manual/core/tailable-cursors/
    """
    client.test.c.insert_one({})
    with pytest.raises(OperationFailure) as info:
        client.test.command("find", "c", tailable=True)
    assert info.value.code == 2
