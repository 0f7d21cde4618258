"""Multi-document transactions on a local three-member replica set, driven by unmodified pymongo
(``with client.start_session() as s, s.start_transaction(): ...``) and by raw OP_MSG commands
where the driver would not send what is tested.

Sources: https://www.mongodb.com/docs/manual/core/transactions/ ("Transactions and Operations",
"Production Considerations": write conflicts, the transaction's snapshot, the operations
refused), https://www.mongodb.com/docs/manual/reference/command/commitTransaction/ and
abortTransaction/, https://www.mongodb.com/docs/manual/core/transactions-production-consideration/
(oplog entries: one applyOps entry per transaction that fits 16 MB, MongoDB 4.2+).
"""

from __future__ import annotations

import hashlib
import itertools
import signal
import socket
import uuid
from types import SimpleNamespace

import pymongo
import pytest
from bson.binary import Binary, UuidRepresentation
from bson.int64 import Int64
from bson.timestamp import Timestamp
from pymongo.errors import OperationFailure

from tests.mongod_double.conftest import Launcher
from tests.mongod_double.test_wire import OP_MSG, _msg_reply, _op_msg, _recv, _send
from tests.waiting import wait_until

# At most 50 operations per applyOps entry: a larger transaction takes several entries.
ARGS = (
    "--replSet",
    "txn",
    "--setParameter",
    "maxNumberOfTransactionOperationsInSingleOplogEntry=50",
)


@pytest.fixture(scope="module")
def rs(tmp_path_factory):
    """Three members: the set's client, the primary's node, the secondaries' nodes and clients."""
    launcher = Launcher(tmp_path_factory.mktemp("txn"))
    nodes = [launcher.start(*ARGS) for _ in range(3)]
    members = [{"_id": i, "host": f"127.0.0.1:{n.port}", "priority": 2 - min(i, 1)}
               for i, n in enumerate(nodes)]  # fmt: skip
    nodes[0].client().admin.command("replSetInitiate", {"_id": "txn", "members": members})
    seeds = ",".join(m["host"] for m in members)
    client = pymongo.MongoClient(
        f"mongodb://{seeds}/?replicaSet=txn", serverSelectionTimeoutMS=20_000
    )
    secondaries = [n.client(readPreference="secondaryPreferred") for n in nodes[1:]]
    wait_until(
        lambda: all(s.admin.command("replSetGetStatus")["myState"] == 2 for s in secondaries),
        timeout=30,
        what="two secondaries",
        retry=pymongo.errors.PyMongoError,
    )
    client.admin.command("ping")
    yield SimpleNamespace(client=client, primary=nodes[0], secondaries=secondaries,
                          nodes=nodes, launcher=launcher)  # fmt: skip
    client.close()
    launcher.cleanup()


def _entries(client, after: Timestamp) -> list[dict]:
    return list(client.local["oplog.rs"].find({"ts": {"$gt": after}, "op": {"$ne": "n"}}))


def _last_ts(client) -> Timestamp:
    return client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]


def _counts(client) -> dict:
    return client.admin.command("serverStatus")["transactions"]


def _raw(port: int, doc: dict) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        _send(sock, OP_MSG, _op_msg(doc))
        return _msg_reply(_recv(sock)[2])


def test_a_transaction_commits_as_one_entry_and_secondaries_see_it_whole(rs):
    client, secondaries = rs.client, rs.secondaries
    committed = _counts(client)["totalCommitted"]
    shop = client.shop
    shop.stock.insert_many([{"_id": "a", "n": 5}, {"_id": "b", "n": 1}])
    before = _last_ts(client)
    with client.start_session() as s:
        with s.start_transaction():
            shop.orders.insert_many([{"_id": i, "item": "a"} for i in range(40)], session=s)
            shop.stock.update_one({"_id": "a"}, {"$inc": {"n": -1}}, session=s)
            shop.stock.delete_one({"_id": "b"}, session=s)
            # its own writes are its reads, and no one else's yet
            assert shop.orders.count_documents({}, session=s) == 40
            assert shop.stock.find_one({"_id": "a"}, session=s)["n"] == 4
            assert shop.orders.count_documents({}) == 0
            assert shop.stock.find_one({"_id": "a"})["n"] == 5
            assert _entries(client, before) == []
        lsid = s.session_id
    assert shop.orders.count_documents({}) == 40
    assert list(shop.stock.find()) == [{"_id": "a", "n": 4}]
    assert _counts(client)["totalCommitted"] == committed + 1

    [entry] = _entries(client, before)
    assert (entry["op"], entry["ns"]) == ("c", "admin.$cmd")
    assert entry["lsid"] == {"id": lsid["id"], "uid": hashlib.sha256(b"").digest()}
    assert isinstance(entry["txnNumber"], Int64)
    assert entry["prevOpTime"] == {"ts": Timestamp(0, 0), "t": -1}
    ops = entry["o"]["applyOps"]
    assert [o["op"] for o in ops] == ["c"] + ["i"] * 40 + ["u", "d"]
    assert ops[0]["o"] == {"create": "orders"} and ops[-2]["o"] == {"_id": "a", "n": 4}
    assert ops[-1] == {"op": "d", "ns": "shop.stock", "ui": ops[-2]["ui"], "o": {"_id": "b"}}

    for secondary in secondaries:
        orders, seen = secondary.shop.orders, set()

        def whole(orders=orders, seen=seen) -> bool:
            seen.add(orders.count_documents({}))
            return 40 in seen

        wait_until(whole, timeout=20, what="the transaction on a secondary", seen=seen.copy)
        assert seen <= {0, 40}, f"a secondary showed part of the transaction: {seen}"
        assert list(secondary.shop.stock.find()) == [{"_id": "a", "n": 4}]

    # a read-only transaction writes no entry
    before = _last_ts(client)
    with client.start_session() as s, s.start_transaction():
        assert shop.orders.count_documents({}, session=s) == 40
    assert _entries(client, before) == []


def test_a_larger_transaction_takes_partial_entries_applied_only_with_the_last(rs):
    client, secondaries = rs.client, rs.secondaries
    before = _last_ts(client)
    with client.start_session() as s, s.start_transaction():
        client.big.c.insert_many([{"_id": i} for i in range(119)], session=s)
    entries = _entries(client, before)
    assert [len(e["o"]["applyOps"]) for e in entries] == [50, 50, 20]  # a create and 119
    assert [e["o"].get("partialTxn") for e in entries] == [True, True, None]
    assert entries[-1]["o"]["count"] == 120 and "count" not in entries[0]["o"]
    assert entries[0]["prevOpTime"] == {"ts": Timestamp(0, 0), "t": -1}
    for previous, entry in itertools.pairwise(entries):
        assert entry["prevOpTime"] == {"ts": previous["ts"], "t": previous["t"]}
        assert (entry["lsid"], entry["txnNumber"]) == (previous["lsid"], previous["txnNumber"])
    assert client.big.c.count_documents({}) == 119
    for secondary in secondaries:
        seen: set[int] = set()

        def whole(c=secondary.big.c, seen=seen) -> bool:
            seen.add(c.count_documents({}))
            return 119 in seen

        wait_until(whole, timeout=20, what="the transaction on a secondary", seen=seen.copy)
        assert seen <= {0, 119}, f"a secondary showed part of the transaction: {seen}"


def test_an_aborted_transaction_leaves_nothing_and_cannot_commit(rs):
    client, primary = rs.client, rs.primary
    coll = client.app.aborted
    coll.insert_one({"_id": 1, "v": 1})
    before = _last_ts(client)
    counts = _counts(client)
    with client.start_session() as s:
        s.start_transaction()
        coll.insert_one({"_id": 2}, session=s)
        coll.update_one({"_id": 1}, {"$set": {"v": 2}}, session=s)
        open_ = _counts(client)
        s.abort_transaction()
        assert open_["currentOpen"] == counts["currentOpen"] + 1
        assert open_["totalStarted"] == counts["totalStarted"] + 1
        assert _counts(client)["totalAborted"] == counts["totalAborted"] + 1
        assert _counts(client)["currentOpen"] == counts["currentOpen"]
        assert list(coll.find()) == [{"_id": 1, "v": 1}]
        assert _entries(client, before) == []
        lsid, number = s.session_id, s._server_session.transaction_id
    # committing it afterwards, as a driver retrying would
    reply = _raw(primary.port, {"commitTransaction": 1, "lsid": lsid, "txnNumber": number,
                                "autocommit": False, "$db": "admin"})  # fmt: skip
    assert reply["ok"] == 0 and reply["codeName"] == "NoSuchTransaction"
    assert reply["errorLabels"] == ["TransientTransactionError"]


def test_two_transactions_writing_one_document_conflict(rs):
    client = rs.client
    coll = client.app.conflicts
    coll.insert_many([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    with client.start_session() as first, client.start_session() as second:
        first.start_transaction()
        second.start_transaction()
        coll.update_one({"_id": 1}, {"$set": {"v": "first"}}, session=first)
        with pytest.raises(OperationFailure) as raised:
            coll.update_one({"_id": 1}, {"$set": {"v": "second"}}, session=second)
        assert raised.value.code == 112 and raised.value.has_error_label(
            "TransientTransactionError"
        )
        # the write conflict aborted the second transaction
        with pytest.raises(OperationFailure) as raised:
            coll.update_one({"_id": 2}, {"$set": {"v": "second"}}, session=second)
        assert raised.value.code == 251
        second.abort_transaction()
        first.commit_transaction()
    assert list(coll.find(sort=[("_id", 1)])) == [{"_id": 1, "v": "first"}, {"_id": 2, "v": 0}]

    # a document written outside after the transaction's snapshot conflicts too
    with client.start_session() as s:
        s.start_transaction()
        assert coll.find_one({"_id": 2}, session=s)["v"] == 0
        coll.update_one({"_id": 2}, {"$set": {"v": "outside"}})
        with pytest.raises(OperationFailure) as raised:
            coll.update_one({"_id": 2}, {"$set": {"v": "inside"}}, session=s)
        assert raised.value.code == 112
        s.abort_transaction()
    assert coll.find_one({"_id": 2})["v"] == "outside"

    # a unique key another writer took since the snapshot: the commit conflicts, changes nothing
    users = client.app.users
    users.create_index("email", unique=True)
    users.insert_one({"_id": 1, "email": "a"})
    with client.start_session() as s:
        s.start_transaction()
        users.update_one({"_id": 1}, {"$set": {"v": "lost"}}, session=s)
        users.insert_one({"_id": 2, "email": "x"}, session=s)
        users.insert_one({"_id": 3, "email": "x"})
        with pytest.raises(OperationFailure) as raised:
            s.commit_transaction()
        assert raised.value.code == 112
    assert list(users.find(sort=[("_id", 1)])) == [
        {"_id": 1, "email": "a"},
        {"_id": 3, "email": "x"},
    ]


def test_sessions_numbers_and_operations_a_transaction_refuses(rs):
    client, primary = rs.client, rs.primary
    lsid = {"id": Binary.from_uuid(uuid.uuid4(), UuidRepresentation.STANDARD)}

    def run(doc: dict, number: int, db: str = "app", **fields) -> dict:
        return _raw(primary.port, {**doc, "lsid": lsid, "txnNumber": Int64(number),
                                   "autocommit": False, "$db": db, **fields})  # fmt: skip

    assert run({"insert": "raw", "documents": [{"_id": 1}]}, 5, startTransaction=True)["ok"] == 1
    too_old = run({"find": "raw"}, 4)
    assert too_old["codeName"] == "TransactionTooOld" and too_old["code"] == 225
    unknown = run({"find": "raw"}, 6)
    assert unknown["codeName"] == "NoSuchTransaction"
    assert unknown["errorLabels"] == ["TransientTransactionError"]
    refused = run({"count": "raw"}, 5)
    assert refused["codeName"] == "OperationNotSupportedInTransaction"
    assert "Cannot run 'count' in a multi-document transaction" in refused["errmsg"]
    # count's refusal aborted the transaction, as any failed statement does
    assert run({"find": "raw"}, 5)["codeName"] == "NoSuchTransaction"
    assert client.app.raw.find_one({"_id": 1}) is None

    admin = run({"insert": "things", "documents": [{}]}, 7, db="admin", startTransaction=True)
    assert admin["codeName"] == "OperationNotSupportedInTransaction"
    out = run({"aggregate": "raw", "pipeline": [{"$out": "copy"}], "cursor": {}}, 8,
              startTransaction=True)  # fmt: skip
    assert out["code"] == 263 and out["errmsg"] == "$out cannot be used in a transaction"
    capped = run({"create": "ring", "capped": True, "size": 4096}, 9, startTransaction=True)
    assert capped["code"] == 263 and "capped collection" in capped["errmsg"]
    assert "copy" not in client.app.list_collection_names()
    started = run({"find": "raw"}, 10, startTransaction=True)
    assert started["ok"] == 1
    again = run({"find": "raw"}, 10, startTransaction=True)
    assert again["ok"] == 0 and again["code"] == 117
    assert run({"commitTransaction": 1}, 10, db="admin")["ok"] == 1
    assert run({"commitTransaction": 1}, 10, db="admin")["ok"] == 1  # a retried commit
    assert run({"abortTransaction": 1}, 10, db="admin")["codeName"] == "TransactionCommitted"


def test_a_retryable_write_is_unchanged(rs):
    client = rs.client
    coll = client.get_database("app", write_concern=pymongo.WriteConcern(w="majority")).retried
    before = _last_ts(client)
    with client.start_session() as s:
        coll.insert_one({"_id": 1}, session=s)  # lsid + txnNumber, no autocommit
        coll.update_one({"_id": 1}, {"$set": {"x": 1}}, session=s)
        assert coll.find_one({"_id": 1}, session=s) == {"_id": 1, "x": 1}
    assert [(e["op"], e["ns"]) for e in _entries(client, before)] == [
        ("c", "app.$cmd"), ("i", "app.retried"), ("u", "app.retried")
    ]  # fmt: skip
    assert all("lsid" not in e for e in _entries(client, before))


def test_a_member_killed_after_a_commit_keeps_the_transaction(rs):
    """The commit's entry is one journal record: a member killed (-9) and started again on its
    dbPath holds the whole transaction from its own files."""
    client = rs.client
    with client.start_session() as s, s.start_transaction():
        client.kept.a.insert_many([{"_id": i} for i in range(10)], session=s)
        client.kept.b.insert_one({"_id": "b"}, session=s)
    last = _last_ts(client)
    node = rs.nodes[2]
    member = rs.secondaries[1]
    wait_until(lambda: _last_ts(member) >= last, timeout=20, what="the member has the commit")
    node.stop(signal.SIGKILL)
    back = rs.launcher.start(*ARGS, dbpath=node.dbpath, port=node.port)
    member = back.client(readPreference="secondaryPreferred")
    wait_until(lambda: member.admin.command("replSetGetStatus")["myState"] == 2, timeout=30,
               what="SECONDARY again", retry=pymongo.errors.PyMongoError)  # fmt: skip
    assert member.kept.a.count_documents({}) == 10 and member.kept.b.count_documents({}) == 1
