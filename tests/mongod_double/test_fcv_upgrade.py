"""The FCV across a rolling upgrade: members of two majors in one set, the FCV document's
transitional states, every member's FCV following the primary's, and a binary refusing a
transition it does not know.

Sources: https://www.mongodb.com/docs/manual/release-notes/8.0-upgrade-replica-set/ (secondaries
on the new binaries first, the FCV raised with confirm: true once every member runs them),
https://www.mongodb.com/docs/manual/reference/command/setFeatureCompatibilityVersion/ (the
transitional states: upgrading {version: old, targetVersion: new}, downgrading {version: new,
targetVersion: new, previousVersion: old}; a node restarted in a transition stays in it).
"""

from __future__ import annotations

import json

import pymongo

from tests.waiting import wait_until

FCV_ID = "featureCompatibilityVersion"


def fcv(client: pymongo.MongoClient) -> dict:
    return client.admin.command("getParameter", 1, featureCompatibilityVersion=1)[
        "featureCompatibilityVersion"
    ]


def test_a_set_of_7_0_and_8_0_members_runs_at_fcv_7_0_then_every_member_follows_the_raise(
    launcher,
):
    args = ("--replSet", "rs0")
    old = launcher.start(*args, version="7.0.14")
    new = launcher.start(*args, version="8.0.4")
    config = {"_id": "rs0", "members": [
        {"_id": 0, "host": f"127.0.0.1:{old.port}", "priority": 2},
        {"_id": 1, "host": f"127.0.0.1:{new.port}"},
    ]}  # fmt: skip
    old.client().admin.command("replSetInitiate", config)
    primary = old.client()
    wait_until(lambda: primary.admin.command("hello")["isWritablePrimary"], timeout=30,
               what="the 7.0 member primary", retry=pymongo.errors.PyMongoError)  # fmt: skip
    primary.app.c.insert_one({"n": 1})
    secondary = new.client()
    wait_until(lambda: secondary.app.c.count_documents({}) == 1 or None, timeout=30,
               what="the 8.0 secondary has it", retry=pymongo.errors.PyMongoError)  # fmt: skip
    # The 8.0 member took the set's FCV, 7.0, with its initial sync: it runs at it.
    assert secondary.admin.command("buildInfo")["version"] == "8.0.4"
    assert fcv(secondary) == {"version": "7.0"}
    # The set's FCV can only be what the primary's binary can set: 7.0 offers 6.0 or 7.0.
    try:
        primary.admin.command("setFeatureCompatibilityVersion", "8.0", confirm=True)
        raise AssertionError("a 7.0 primary raised the FCV to 8.0")
    except pymongo.errors.OperationFailure as exc:
        assert exc.code == 2 and "expected '6.0' or '7.0'" in str(exc)

    # Every member on 8.0 (the old primary restarted on the new binary), then the raise.
    assert old.stop() == 0
    again = launcher.start(*args, dbpath=old.dbpath, port=old.port, version="8.0.4")
    members = [again.client(), secondary]
    wait_until(lambda: any(c.admin.command("hello")["isWritablePrimary"] for c in members)
               or None, timeout=60, what="a primary on 8.0",
               retry=pymongo.errors.PyMongoError)  # fmt: skip
    writable = next(c for c in members if c.admin.command("hello")["isWritablePrimary"])
    writable.admin.command("setFeatureCompatibilityVersion", "8.0", confirm=True)
    for client in members:
        wait_until(lambda c=client: fcv(c) == {"version": "8.0"} or None, timeout=30,
                   what="every member at FCV 8.0", retry=pymongo.errors.PyMongoError)  # fmt: skip
    # The change went through the upgrading state, in the oplog every member replays.
    entries = list(writable.local.oplog.rs.find({"ns": "admin.system.version", "op": "u"}))
    assert [e["o"] for e in entries[-2:]] == [
        {"_id": FCV_ID, "version": "7.0", "targetVersion": "8.0"},
        {"_id": FCV_ID, "version": "8.0"},
    ]


def test_a_node_stopped_in_a_transition_restarts_in_it_and_an_older_binary_refuses_it(launcher):
    node = launcher.start(version="8.0.4")
    client = node.client()
    client.admin.command("setFeatureCompatibilityVersion", "7.0", confirm=True)
    # As a node stopped between the two writes of an upgrade would hold it.
    transition = {"version": "7.0", "targetVersion": "8.0"}
    client.admin.system.version.replace_one({"_id": FCV_ID}, {"_id": FCV_ID, **transition})
    assert node.stop() == 0
    restarted = launcher.start(dbpath=node.dbpath, version="8.0.4")
    assert fcv(restarted.client()) == transition
    # Finishing the interrupted upgrade is running it again.
    restarted.client().admin.command("setFeatureCompatibilityVersion", "8.0", confirm=True)
    assert fcv(restarted.client()) == {"version": "8.0"}
    restarted.client().admin.system.version.replace_one(
        {"_id": FCV_ID}, {"_id": FCV_ID, **transition}
    )
    assert restarted.stop() == 0
    # A 7.0 binary does not know the 8.0 target: the data files are not its to run.
    refused = launcher.start(dbpath=node.dbpath, version="7.0.14", wait=False)
    assert refused.proc.wait(15) == 62
    fatal = [json.loads(line) for line in refused.log_lines() if '"id":20573' in line]
    assert "Invalid feature compatibility version value '8.0'" in fatal[0]["attr"]["error"]


def test_a_downgrade_goes_through_the_downgrading_state(launcher):
    node = launcher.start("--replSet", "rs1", version="8.0.4")
    client = node.client()
    client.admin.command("replSetInitiate", {"_id": "rs1", "members": [
        {"_id": 0, "host": f"127.0.0.1:{node.port}"}]})  # fmt: skip
    wait_until(lambda: client.admin.command("hello")["isWritablePrimary"], timeout=30,
               what="primary", retry=pymongo.errors.PyMongoError)  # fmt: skip
    client.admin.command("setFeatureCompatibilityVersion", "7.0", confirm=True)
    entries = list(client.local.oplog.rs.find({"ns": "admin.system.version", "op": "u"}))
    assert [e["o"] for e in entries[-2:]] == [
        {"_id": FCV_ID, "version": "7.0", "targetVersion": "7.0", "previousVersion": "8.0"},
        {"_id": FCV_ID, "version": "7.0"},
    ]
    assert fcv(client) == {"version": "7.0"}
