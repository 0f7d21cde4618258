"""A three-member replica set of doubles on three lab hosts, driven over the network.

One scenario in order (the tests share the set): initiate, topology as pymongo sees it, majority
writes, secondaries refusing writes, reconfig rules, stepDown and freeze, priority takeover,
kill -9 of the primary and the old primary catching up.

Sources: https://www.mongodb.com/docs/manual/reference/command/replSetInitiate/,
replSetGetStatus/, replSetGetConfig/, replSetReconfig/, replSetStepDown/, replSetFreeze/,
https://www.mongodb.com/docs/manual/reference/command/hello/#replica-sets,
https://www.mongodb.com/docs/manual/core/replica-set-elections/,
https://www.mongodb.com/docs/manual/reference/write-concern/,
https://www.mongodb.com/docs/manual/reference/error-codes/.
"""

from __future__ import annotations

import os
import time

import pytest
from bson.timestamp import Timestamp
from pymongo import ReadPreference, WriteConcern
from pymongo.errors import NotPrimaryError, OperationFailure, PyMongoError, WriteConcernError

from tests.mongod_double.labset import WRITE_CONCERN_TIMEOUT_MS, LabReplicaSet, lab_replica_set
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def rs(tmp_path_factory) -> LabReplicaSet:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, mounts, cgroups)")
    with lab_replica_set(tmp_path_factory.mktemp("rslab")) as replset:
        for name in replset.names:
            replset.start(name)
        yield replset


def _code(call) -> int:
    """The error code a command fails with (10107 comes as pymongo's NotPrimaryError)."""
    with pytest.raises((OperationFailure, NotPrimaryError)) as info:
        call()
    return info.value.details["code"]


def _primary_and_secondaries(rs: LabReplicaSet) -> tuple[str, list[str]]:
    primary = rs.wait_primary()
    return primary, [n for n in rs.names if n != primary]


def test_initiate_three_members_on_three_hosts(rs):
    first = rs.names[0]
    client = rs.direct(first)
    with pytest.raises(OperationFailure) as info:
        client.admin.command("replSetGetStatus")
    assert info.value.code == 94  # NotYetInitialized
    bad = rs.config()
    bad["_id"] = "other"
    with pytest.raises(OperationFailure) as info:
        client.admin.command("replSetInitiate", bad)
    assert info.value.code == 93  # InvalidReplicaSetConfig: _id differs from --replSet
    unreachable = rs.config()
    unreachable["members"].append({"_id": 9, "host": f"{rs.lab.hosts[first]}:27999"})
    with pytest.raises(OperationFailure) as info:
        client.admin.command("replSetInitiate", unreachable)
    assert info.value.code == 74  # NodeNotFound: a proposed member did not answer
    foreign = rs.config()
    foreign["members"] = foreign["members"][1:]
    with pytest.raises(OperationFailure) as info:
        client.admin.command("replSetInitiate", foreign)
    assert info.value.code == 74  # NodeNotFound: this node is not in the config

    started = time.monotonic()
    assert client.admin.command("replSetInitiate", rs.config())["ok"] == 1
    with pytest.raises(OperationFailure) as info:
        client.admin.command("replSetInitiate", rs.config())
    assert info.value.code == 23  # AlreadyInitialized
    primary = rs.wait_primary()
    print(f"\ninitiate -> primary: {time.monotonic() - started:.1f} s")
    for name in rs.names:
        rs.wait_state(name, "PRIMARY" if name == primary else "SECONDARY")


def test_driver_sees_one_primary_and_two_secondaries(rs):
    primary, secondaries = _primary_and_secondaries(rs)
    client = rs.set_client()
    client.admin.command("ping")
    wait_until(
        lambda: len(client.secondaries) == 2,
        timeout=15,
        what="the driver to see two secondaries",
        seen=lambda: f"primary {client.primary}, secondaries {client.secondaries}; {rs.states()}",
    )
    assert client.primary == (rs.lab.hosts[primary], 27017)
    assert client.secondaries == {(rs.lab.hosts[n], 27017) for n in secondaries}

    on_secondary = rs.direct(secondaries[0]).admin
    hello = wait_until(  # the primary is learnt by heartbeat
        lambda: (reply := on_secondary.command("hello")) and "primary" in reply and reply,
        timeout=10,
        what=f"{secondaries[0]} to name the primary in hello",
    )
    assert hello["setName"] == "rs0" and hello["setVersion"] >= 1
    assert hello["isWritablePrimary"] is False and hello["secondary"] is True
    assert sorted(hello["hosts"]) == sorted(rs.address(n) for n in rs.names)
    assert hello["primary"] == rs.address(primary)
    assert hello["me"] == rs.address(secondaries[0])
    assert {"opTime", "lastWriteDate", "majorityOpTime"} <= set(hello["lastWrite"])
    on_primary = rs.direct(primary).admin.command("hello")
    assert on_primary["isWritablePrimary"] is True and "electionId" in on_primary

    primary_admin = rs.direct(primary).admin
    status = wait_until(  # the primary learns members' states by heartbeat
        lambda: (
            (reply := primary_admin.command("replSetGetStatus"))
            and sorted(m["state"] for m in reply["members"]) == [1, 2, 2]
            and reply
        ),
        timeout=15,
        what=f"{primary} to see one PRIMARY and two SECONDARY members",
        seen=rs.states,
    )
    assert status["set"] == "rs0" and status["myState"] == 1 and status["term"] >= 1
    assert status["heartbeatIntervalMillis"] == 2000
    assert status["majorityVoteCount"] == 2 and status["writeMajorityCount"] == 2
    assert status["votingMembersCount"] == 3 and status["writableVotingMembersCount"] == 3
    assert {"lastCommittedOpTime", "appliedOpTime", "durableOpTime"} <= set(status["optimes"])
    by_name = {m["name"]: m for m in status["members"]}
    assert sorted(by_name) == sorted(rs.address(n) for n in rs.names)
    me = by_name[rs.address(primary)]
    assert me["self"] is True and me["stateStr"] == "PRIMARY" and "electionDate" in me
    for name in secondaries:
        member = by_name[rs.address(name)]
        assert member["health"] == 1 and member["state"] == 2 and member["stateStr"] == "SECONDARY"
        assert {"uptime", "optime", "optimeDate", "lastHeartbeat", "lastHeartbeatRecv"} <= set(
            member
        )
        assert member["configVersion"] == status["members"][0]["configVersion"]
        assert isinstance(member["optime"]["ts"], Timestamp)
    secondary_status = wait_until(  # a secondary picks its sync source after a heartbeat
        lambda: (reply := on_secondary.command("replSetGetStatus"))["syncSourceHost"] and reply,
        timeout=15,
        what=f"{secondaries[0]} to pick a sync source",
        seen=rs.states,
    )
    assert secondary_status["syncSourceHost"] == rs.address(primary)


def test_majority_write_is_on_the_secondaries_and_secondaries_refuse_writes(rs):
    _, secondaries = _primary_and_secondaries(rs)
    client = rs.set_client()
    coll = client.app.get_collection(
        "orders", write_concern=WriteConcern("majority", wtimeout=WRITE_CONCERN_TIMEOUT_MS)
    )
    all_three = client.app.get_collection("orders", write_concern=WriteConcern(w=3, wtimeout=5000))
    with rs.explained("majority writes, then a w: 3 insert"):
        coll.insert_many([{"_id": i, "qty": i} for i in range(100)])
        coll.update_one({"_id": 1}, {"$set": {"qty": 1000}})
        coll.delete_one({"_id": 2})
        all_three.insert_one({"_id": "w3"})
    for name in secondaries:
        on_secondary = rs.direct(name).app.orders
        assert on_secondary.count_documents({}) == 100
        assert on_secondary.find_one({"_id": 1})["qty"] == 1000
        assert on_secondary.find_one({"_id": 2}) is None
        with pytest.raises(NotPrimaryError) as info:
            on_secondary.insert_one({"_id": "nope"})
        assert info.value.details["code"] == 10107  # NotWritablePrimary
    reads = client.app.get_collection("orders", read_preference=ReadPreference.SECONDARY)
    assert reads.count_documents({}) == 100

    with pytest.raises(WriteConcernError) as info:
        client.app.get_collection("orders", write_concern=WriteConcern(w=4)).insert_one({})
    assert info.value.code == 100  # UnsatisfiableWriteConcern


def test_reconfig_rules(rs):
    primary, secondaries = _primary_and_secondaries(rs)
    admin = rs.direct(primary).admin
    reply = wait_until(  # heartbeats spread the config
        lambda: (
            (got := admin.command("replSetGetConfig", commitmentStatus=True))["commitmentStatus"]
            and got
        ),
        timeout=10,
        what="the config to be committed",
        seen=rs.states,
    )
    config = reply["config"]
    assert reply["commitmentStatus"] is True
    assert config["_id"] == "rs0" and len(config["members"]) == 3
    assert {"replicaSetId", "electionTimeoutMillis", "heartbeatIntervalMillis"} <= set(
        config["settings"]
    )
    secondary = rs.direct(secondaries[0]).admin
    assert _code(lambda: secondary.command("replSetGetConfig", commitmentStatus=True)) == 10107
    secondary = rs.direct(secondaries[0]).admin  # pymongo marks a NotPrimary server unknown

    same_version = dict(config)
    with pytest.raises(OperationFailure) as info:
        admin.command("replSetReconfig", same_version)
    assert info.value.code == 103  # version must be greater

    two_voters = dict(config, version=config["version"] + 1)
    two_voters["members"] = [dict(m) for m in config["members"]]
    for member in two_voters["members"]:
        if member["host"] != rs.address(primary):
            member.update(votes=0, priority=0)
    with pytest.raises(OperationFailure) as info:
        admin.command("replSetReconfig", two_voters)
    assert info.value.code == 103  # at most one voting member changed per reconfig
    assert "at most 1 voting member" in info.value.details["errmsg"]

    # only the primary reconfigures without force
    assert _code(lambda: secondary.command("replSetReconfig", dict(two_voters))) == 10107

    bad = dict(config, version=config["version"] + 1)
    bad["members"] = [dict(m) for m in config["members"]]
    bad["members"][0]["hidden"] = True
    bad["members"][0]["priority"] = 1
    with pytest.raises(OperationFailure) as info:
        admin.command("replSetReconfig", bad)
    assert info.value.code == 93  # hidden members must have priority 0

    one_voter = dict(config, version=config["version"] + 1)
    one_voter["members"] = [dict(m) for m in config["members"]]
    target = next(m for m in one_voter["members"] if m["host"] == rs.address(secondaries[0]))
    target.update(votes=0, priority=0)
    assert admin.command("replSetReconfig", one_voter)["ok"] == 1
    status = admin.command("replSetGetStatus")
    assert status["votingMembersCount"] == 2 and status["majorityVoteCount"] == 2
    other_admin = rs.direct(secondaries[1]).admin
    wait_until(  # spread by heartbeats
        lambda: (
            other_admin.command("replSetGetConfig")["config"]["version"] == one_voter["version"]
        ),
        timeout=15,
        what=f"{secondaries[1]} to have config version {one_voter['version']}",
        seen=lambda: other_admin.command("replSetGetConfig")["config"]["version"],
    )
    passive = rs.direct(secondaries[0]).admin.command("hello")
    assert passive["passive"] is True and rs.address(secondaries[0]) in passive["passives"]

    restored = admin.command("replSetGetConfig")["config"]
    restored["version"] += 1
    for member in restored["members"]:
        member.update(votes=1, priority=1)
    assert admin.command("replSetReconfig", restored)["ok"] == 1
    assert admin.command("replSetGetConfig", commitmentStatus=True)["commitmentStatus"] in (
        True,
        False,
    )


def test_step_down_and_freeze(rs):
    primary, secondaries = _primary_and_secondaries(rs)
    with pytest.raises(OperationFailure) as info:
        rs.direct(primary).admin.command("replSetFreeze", 30)
    assert info.value.code == 95  # NotSecondary
    assert _code(lambda: rs.direct(secondaries[0]).admin.command("replSetStepDown", 30)) == 10107

    # A frozen secondary never stands: freeze one, step the primary down, the other one wins.
    frozen, other = secondaries
    assert rs.direct(frozen).admin.command("replSetFreeze", 60)["ok"] == 1
    with rs.explained("a majority insert before the step-down"):
        rs.set_client(w="majority").app.c.insert_one({"before": "stepdown"})
    started = time.monotonic()
    admin = rs.direct(primary).admin
    assert admin.command("replSetStepDown", 30, secondaryCatchUpPeriodSecs=10)["ok"] == 1
    new = rs.wait_primary(timeout=20)
    elapsed = time.monotonic() - started
    print(f"\nstepDown -> new primary {new}: {elapsed:.1f} s")
    assert new == other
    rs.wait_state(primary, "SECONDARY")
    # The old primary may not stand again for the stepdown period.
    with pytest.raises(OperationFailure):
        rs.direct(primary).admin.command("replSetStepUp")
    assert rs.direct(frozen).admin.command("replSetFreeze", 0)["info"] == "unfreezing"
    assert rs.direct(primary).admin.command("replSetFreeze", 0)["info"] == "unfreezing"


def test_step_down_without_electable_secondary_fails(rs):
    primary = rs.wait_primary()
    admin = rs.direct(primary).admin
    config = admin.command("replSetGetConfig")["config"]
    config["version"] += 1
    for member in config["members"]:
        if member["host"] != rs.address(primary):
            member["priority"] = 0
    assert admin.command("replSetReconfig", config)["ok"] == 1
    with pytest.raises(OperationFailure) as info:
        admin.command("replSetStepDown", 5, secondaryCatchUpPeriodSecs=1)
    assert info.value.code == 262  # ExceededTimeLimit
    assert "No electable secondaries caught up" in info.value.details["errmsg"]
    assert rs.hello(primary)["isWritablePrimary"] is True
    config["version"] += 1
    for member in config["members"]:
        member["priority"] = 1
    assert admin.command("replSetReconfig", config)["ok"] == 1


def test_priority_takeover(rs):
    primary, secondaries = _primary_and_secondaries(rs)
    admin = rs.direct(primary).admin
    config = admin.command("replSetGetConfig")["config"]
    config["version"] += 1
    favourite = secondaries[0]
    for member in config["members"]:
        member["priority"] = 5 if member["host"] == rs.address(favourite) else 1
    started = time.monotonic()
    assert admin.command("replSetReconfig", config)["ok"] == 1
    new = rs.wait_primary(among=[favourite], timeout=30)
    print(f"\npriority takeover by {new}: {time.monotonic() - started:.1f} s")
    rs.wait_state(primary, "SECONDARY")
    admin = rs.direct(new).admin
    config = admin.command("replSetGetConfig")["config"]
    config["version"] += 1
    for member in config["members"]:
        member["priority"] = 1
    assert admin.command("replSetReconfig", config)["ok"] == 1


def test_kill_primary_elects_a_new_one_and_the_old_one_catches_up(rs):
    primary, secondaries = _primary_and_secondaries(rs)
    client = rs.set_client(w="majority")
    with rs.explained(f"50 majority inserts with {primary} primary"):
        client.app.events.insert_many([{"_id": i} for i in range(50)])

    rs.kill(primary)
    killed = time.monotonic()
    new = rs.wait_primary(among=secondaries, timeout=30)
    elapsed = time.monotonic() - killed
    # How fast is measured by tests/bench/replset_failover.py; here a new primary within the
    # 30 s wait (electionTimeoutMillis is 10 s plus a random offset) is what counts.
    print(f"\nkill -9 primary {primary} -> new primary {new}: {elapsed:.1f} s")

    with rs.explained(f"30 majority inserts with {primary} killed and {new} primary"):
        client.app.events.insert_many([{"_id": i} for i in range(50, 80)])
    status = rs.direct(new).admin.command("replSetGetStatus")
    down = next(m for m in status["members"] if m["name"] == rs.address(primary))
    assert down["health"] == 0 and down["stateStr"] == "(not reachable/healthy)"

    rs.start(primary)
    rs.wait_state(primary, "SECONDARY")
    # The old primary may roll back writes the others never got (state ROLLBACK, reads refused
    # with 13436) before it serves again as a secondary: retry until it does.
    events = rs.direct(primary).app.events
    wait_until(
        lambda: events.count_documents({}) >= 80,
        timeout=30,
        what=f"the restarted {primary} to catch up to 80 events",
        retry=PyMongoError,
        seen=rs.states,
    )
    hashes = {}
    for name in rs.names:
        reply = rs.direct(name).app.command("dbHash")
        hashes[name] = (reply["md5"], sorted(reply["uuids"].items()))
    assert len(set(map(repr, hashes.values()))) == 1, hashes
    assert rs.hello(primary)["primary"] == rs.address(new)
