"""Replica set behaviour that needs no separate hosts: members on 127.0.0.1 with their own ports.

An arbiter votes but holds no data (PSA: implicit default write concern w: 1); a member that
was down while the primary's oplog wrapped comes back RECOVERING, "too stale", as mongod says.

Sources: https://www.mongodb.com/docs/manual/core/replica-set-arbiter/,
https://www.mongodb.com/docs/manual/reference/replica-states/ (RECOVERING, ARBITER),
https://www.mongodb.com/docs/manual/tutorial/resync-replica-set-member/ (too stale),
https://www.mongodb.com/docs/manual/reference/write-concern/ (implicit default write concern).
"""

from __future__ import annotations

import signal
import time

import pymongo
import pytest


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except pymongo.errors.PyMongoError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached after {timeout} s")


def test_arbiter_votes_holds_no_data_and_a_stale_member_recovers_honestly(launcher):
    args = ("--replSet", "rs0", "--oplogSize", "1")
    primary, secondary, arbiter = (launcher.start(*args) for _ in range(3))
    config = {
        "_id": "rs0",
        "members": [
            {"_id": 0, "host": f"127.0.0.1:{primary.port}", "priority": 2},
            {"_id": 1, "host": f"127.0.0.1:{secondary.port}"},
            {"_id": 2, "host": f"127.0.0.1:{arbiter.port}", "arbiterOnly": True},
        ],
    }
    admin = primary.client().admin
    admin.command("replSetInitiate", config)
    _wait(lambda: admin.command("hello")["isWritablePrimary"], what="a primary")
    hello = arbiter.client().admin.command("hello")
    assert hello["arbiterOnly"] is True and hello["arbiters"] == [f"127.0.0.1:{arbiter.port}"]
    assert f"127.0.0.1:{arbiter.port}" not in hello["hosts"]
    _wait(
        lambda: arbiter.client().admin.command("replSetGetStatus")["myState"] == 7,
        what="ARBITER",
    )
    status = admin.command("replSetGetStatus")
    assert status["writeMajorityCount"] == 2 and status["writableVotingMembersCount"] == 2
    _wait(
        lambda: secondary.client().admin.command("replSetGetStatus")["myState"] == 2,
        what="SECONDARY",
    )
    coll = primary.client().app.c
    coll.insert_one({"_id": "first"})
    _wait(lambda: secondary.client().app.c.find_one({"_id": "first"}), what="replication")
    arbiter_status = arbiter.client().admin.command("replSetGetStatus")  # holds no data
    assert next(m for m in arbiter_status["members"] if m.get("self"))["optime"]["t"] == -1
    with pytest.raises(pymongo.errors.NotPrimaryError) as info:
        arbiter.client().app.c.find_one()
    assert info.value.details["code"] == 13436  # NotPrimaryOrSecondary

    secondary.stop(signal.SIGKILL)
    # The primary still sees a majority (itself and the arbiter) and w: 1 is the default in PSA.
    started = time.monotonic()
    for i in range(40):
        coll.insert_one({"_id": i, "pad": "x" * 50_000})  # 2 MB through a 1 MB oplog
    assert time.monotonic() - started < 20
    assert admin.command("hello")["isWritablePrimary"] is True
    oldest = next(primary.client().local["oplog.rs"].find().sort("$natural", 1).limit(1))
    assert oldest["o"].get("_id") != "first"

    back = launcher.start(*args, dbpath=secondary.dbpath, port=secondary.port)
    status = _wait(
        lambda: (s := back.client().admin.command("replSetGetStatus"))["myState"] == 3 and s,
        what="RECOVERING",
    )
    me = next(m for m in status["members"] if m.get("self"))
    assert me["stateStr"] == "RECOVERING" and "too stale" in me["infoMessage"]
    hello = back.client().admin.command("hello")
    assert hello["secondary"] is False and hello["isWritablePrimary"] is False
