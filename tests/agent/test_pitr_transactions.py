"""Point-in-time restore across multi-document transactions (issue 15: "transactions applied
whole or not at all"), on the 3-member set of doubles and moto's S3 of the follower's test.

A writer mixes single writes with transactions (inserts, updates and deletes over two
collections, one creating a third collection, one aborted) while the oplog follower runs, and
keeps a shadow of what each acknowledged write or commit left. Restored to the entry just before
a transaction's commit entry, and to the commit entry itself, each target holds none or all of
the transaction's writes, and otherwise exactly the shadow of that moment, field by field.
"""

from __future__ import annotations

import copy

import pymongo
from bson.timestamp import Timestamp

from tests.agent.test_backup_restore import one_member_set
from tests.agent.test_oplog_follower import (  # noqa: F401 (module fixtures: the set, moto, nodes)
    FAST,
    Running,
    base_snapshot,
    durable_to,
    launcher,
    rs,
    s3,
)
from tests.agent.test_oplog_store import BUCKET
from tests.waiting import wait_until
from wap_agent.backup.follower import Follower, FollowerOptions
from wap_agent.backup.manifest import Layout
from wap_agent.backup.pitr import restore_to
from wap_agent.backup.slices import OplogStore

Shadow = dict[str, dict]


def _held(db: pymongo.database.Database) -> dict[str, Shadow]:
    return {coll: {d["_id"]: d for d in db[coll].find()} for coll in db.list_collection_names()}


def _newest(client: pymongo.MongoClient) -> dict:
    return client.local["oplog.rs"].find_one(sort=[("$natural", -1)])


def test_restores_around_commits_hold_a_transaction_whole_or_not_at_all(
    rs,  # noqa: F811
    s3,  # noqa: F811
    launcher,  # noqa: F811
):
    layout = Layout("pitr", "p1", "txn")
    client = rs["client"]
    db = client.pitrtxn
    db.accounts.insert_many([{"_id": i, "balance": 100} for i in range(4)])
    db.ledger.insert_one({"_id": "opening", "total": 400})
    shadow: dict[str, Shadow] = {
        "accounts": {i: {"_id": i, "balance": 100} for i in range(4)},
        "ledger": {"opening": {"_id": "opening", "total": 400}},
    }
    base = base_snapshot(rs["uri"], s3, layout)
    base_end = Timestamp(base.oplog_end["t"], base.oplog_end["i"])
    # (target, what was there then, what it is)
    targets: list[tuple[Timestamp, dict[str, Shadow], str]] = []

    def transfer(session, n: int, source: int, dest: int, amount: int) -> None:
        db.accounts.update_one({"_id": source}, {"$inc": {"balance": -amount}}, session=session)
        db.accounts.update_one({"_id": dest}, {"$inc": {"balance": amount}}, session=session)
        db.ledger.insert_one({"_id": n, "from": source, "to": dest, "amount": amount},
                             session=session)  # fmt: skip
        shadow["accounts"][source]["balance"] -= amount
        shadow["accounts"][dest]["balance"] += amount
        shadow["ledger"][n] = {"_id": n, "from": source, "to": dest, "amount": amount}

    def committed(n: int, work) -> None:
        """Run ``work`` in a transaction; targets at the entry before its commit and at it."""
        before = copy.deepcopy(shadow)
        with client.start_session() as session:
            with session.start_transaction():
                work(session, n)
                targets.append((_newest(client)["ts"], before, f"before commit {n}"))
            commit = client.local["oplog.rs"].find_one(
                {"lsid.id": session.session_id["id"], "o.applyOps": {"$exists": True}},
                sort=[("$natural", -1)],
            )
        assert commit["ts"] > targets[-1][0], commit
        targets.append((commit["ts"], copy.deepcopy(shadow), f"at commit {n}"))

    store = OplogStore(s3, BUCKET, layout, "rs0")
    with Running(Follower(rs["uri"], store, base_end, FollowerOptions(**FAST))):
        committed(1, lambda s, n: transfer(s, n, 0, 1, 30))
        db.accounts.update_one({"_id": 2}, {"$set": {"note": "single"}})
        shadow["accounts"][2]["note"] = "single"
        db.ledger.delete_one({"_id": "opening"})
        del shadow["ledger"]["opening"]

        def with_delete_and_new_collection(session, n: int) -> None:
            transfer(session, n, 1, 2, 50)
            db.accounts.delete_one({"_id": 3}, session=session)
            del shadow["accounts"][3]
            db.audit.insert_one({"_id": n, "closed": 3}, session=session)
            shadow["audit"] = {n: {"_id": n, "closed": 3}}

        committed(2, with_delete_and_new_collection)
        with client.start_session() as session:  # aborted: in no restore
            session.start_transaction()
            kept = copy.deepcopy(shadow)
            transfer(session, 99, 0, 2, 1000)
            session.abort_transaction()
            shadow = kept
        db.accounts.insert_one({"_id": 4, "balance": 5})
        shadow["accounts"][4] = {"_id": 4, "balance": 5}
        committed(3, lambda s, n: transfer(s, n, 4, 0, 5))
        durable_to(store, targets[-1][0], "the last commit durable in the store")

    assert _held(db) == shadow, "the source itself differs from the shadow"
    assert [name for _, _, name in targets] == [
        "before commit 1", "at commit 1", "before commit 2", "at commit 2",
        "before commit 3", "at commit 3",
    ]  # fmt: skip
    for target, expected, name in targets:
        into = one_member_set(launcher)
        restore_to(into.uri, s3, BUCKET, layout, "rs0", target)
        assert _held(into.client().pitrtxn) == expected, f"restored to {name} ({target})"
        into.stop()


def test_a_transaction_of_several_entries_is_restored_only_with_its_last(
    s3,  # noqa: F811
    launcher,  # noqa: F811
):
    """A transaction written as partialTxn entries (3 operations per entry on this source):
    restored to each partial entry, nothing of it; to its last entry, all of it."""
    source = launcher.start("--replSet", "big", "--setParameter",
                            "maxNumberOfTransactionOperationsInSingleOplogEntry=3")  # fmt: skip
    source.client().admin.command("replSetInitiate")
    uri = f"mongodb://127.0.0.1:{source.port}/?replicaSet=big"
    client = pymongo.MongoClient(uri, w="majority")
    wait_until(lambda: client.t.t.insert_many([{"_id": i, "v": 0} for i in range(3)]),
               timeout=30, what="a primary", retry=pymongo.errors.PyMongoError)  # fmt: skip
    layout = Layout("pitr", "p1", "txnbig")
    base = base_snapshot(uri, s3, layout)
    base_end = Timestamp(base.oplog_end["t"], base.oplog_end["i"])
    store = OplogStore(s3, BUCKET, layout, "big")
    with Running(Follower(uri, store, base_end, FollowerOptions(**FAST))):
        client.t.t.update_one({"_id": 0}, {"$set": {"v": 1}})
        before = _held(client.t)
        with client.start_session() as session, session.start_transaction():
            lsid = session.session_id
            for i in range(3):
                client.t.t.update_one({"_id": i}, {"$inc": {"v": 10}}, session=session)
                client.t.t.insert_one({"_id": 10 + i}, session=session)
            client.t.t.delete_one({"_id": 2}, session=session)
        after = _held(client.t)
        entries = list(client.local["oplog.rs"].find({"lsid.id": lsid["id"]}))
        durable_to(store, entries[-1]["ts"], "the transaction's last entry durable")
    client.close()
    assert [e["o"].get("partialTxn") for e in entries] == [True, True, None]
    assert after != before
    for entry, expected in zip(entries, (before, before, after), strict=True):
        into = one_member_set(launcher)
        restore_to(into.uri, s3, BUCKET, layout, "big", entry["ts"])
        held = _held(into.client().t)
        assert held == expected, f"restored to {entry['ts']} ({entry['o'].get('partialTxn')})"
        into.stop()
    source.stop()
