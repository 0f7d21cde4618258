"""Data in dbPath survives restarts (clean and kill -9); the FCV guards binary upgrades."""

from __future__ import annotations

import json
import shutil
import signal
import struct

import pytest
from pymongo.errors import OperationFailure

from tests.waiting import wait_until


def _fill(client) -> None:
    client.app.items.insert_many([{"_id": i, "v": i} for i in range(50)])
    client.app.items.create_index("v", unique=True)
    client.app.items.update_one({"_id": 3}, {"$set": {"v": 300}})
    client.app.items.delete_one({"_id": 4})
    client.admin.system.users.insert_one({"_id": "admin.root", "user": "root", "db": "admin"})
    client.app.gone.insert_one({})
    client.app.gone.drop()


def _check(client) -> None:
    items = client.app.items
    assert items.count_documents({}) == 49
    assert items.find_one({"_id": 3}) == {"_id": 3, "v": 300}
    assert items.find_one({"_id": 4}) is None
    assert [i["name"] for i in items.list_indexes()] == ["_id_", "v_1"]
    with pytest.raises(OperationFailure):
        items.insert_one({"v": 300})
    assert client.admin.system.users.find_one()["user"] == "root"
    assert "gone" not in client.app.list_collection_names()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["clean", "kill-9"])
def test_data_indexes_and_users_survive_restart(launcher, stop_signal):
    """Documents, indexes and admin.system.users survive a clean stop and a kill -9.

    Source: https://www.mongodb.com/docs/manual/core/journaling/ (writes are durable across a
    crash once journaled).
    """
    node = launcher.start()
    _fill(node.client())
    node.stop(stop_signal)
    restarted = launcher.start(dbpath=node.dbpath)
    _check(restarted.client())


def test_kill_9_with_a_torn_journal_tail_recovers(launcher):
    """A partly written last journal record (a crash mid-write) is discarded at startup.

    Source: https://www.mongodb.com/docs/manual/core/journaling/#journaling-process
    """
    node = launcher.start()
    node.client().app.c.insert_many([{"_id": i} for i in range(10)])
    node.stop(signal.SIGKILL)
    journal = node.dbpath / "double-journal.bson"
    with journal.open("ab") as handle:
        handle.write(b"\x40\x00\x00\x00\x02s\x00")  # the start of a record, cut short
    restarted = launcher.start(dbpath=node.dbpath)
    assert restarted.client().app.c.count_documents({}) == 10


def test_new_dbpath_starts_at_the_binary_fcv_and_set_fcv_rules(launcher):
    """A new dbPath gets FCV = the binary's major.minor in admin.system.version; from 7.0
    setFeatureCompatibilityVersion needs confirm: true and only accepts the last LTS or latest.

    Source: https://www.mongodb.com/docs/manual/reference/command/setFeatureCompatibilityVersion/
    """
    node = launcher.start(version="7.0.14")
    client = node.client()
    assert client.admin.system.version.find_one({"_id": "featureCompatibilityVersion"}) == {
        "_id": "featureCompatibilityVersion",
        "version": "7.0",
    }
    reply = client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
    assert reply["featureCompatibilityVersion"] == {"version": "7.0"}
    with pytest.raises(OperationFailure) as info:
        client.admin.command("setFeatureCompatibilityVersion", "6.0")
    assert info.value.code == 7369100
    assert "re-run this command with 'confirm: true'" in str(info.value)
    with pytest.raises(OperationFailure) as info:
        client.admin.command("setFeatureCompatibilityVersion", "5.0", confirm=True)
    assert info.value.code == 2
    client.admin.command("setFeatureCompatibilityVersion", "6.0", confirm=True)
    reply = client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
    assert reply["featureCompatibilityVersion"] == {"version": "6.0"}


def test_binary_refuses_data_whose_fcv_it_cannot_run(launcher):
    """An 8.0 binary on FCV 6.0 data exits with 62 and mongod's "UPGRADE PROBLEM" message;
    a 7.0 binary still runs it.

    Source: https://www.mongodb.com/docs/manual/release-notes/8.0-upgrade-standalone/
    (prerequisite: FCV 7.0) and https://www.mongodb.com/docs/manual/reference/exit-codes/ (62).
    """
    node = launcher.start(version="7.0.14")
    node.client().admin.command("setFeatureCompatibilityVersion", "6.0", confirm=True)
    assert node.stop() == 0
    refused = launcher.start(dbpath=node.dbpath, version="8.0.4", wait=False)
    assert refused.proc.wait(15) == 62
    fatal = [json.loads(line) for line in refused.log_lines() if '"id":20573' in line]
    assert fatal[0]["s"] == "F" and fatal[0]["msg"] == "Wrong mongod version"
    error = fatal[0]["attr"]["error"]
    assert error.startswith(
        "UPGRADE PROBLEM: Found an invalid featureCompatibilityVersion "
        "document (ERROR: Location4926900: Invalid featureCompatibilityVersion "
        'document in admin.system.version: { _id: "featureCompatibilityVersion"'
        ', version: "6.0" }.'
    )
    assert "expected '7.0' or '7.3' or '8.0'" in error
    again = launcher.start(dbpath=node.dbpath, version="7.0.14")
    reply = again.client().admin.command("getParameter", 1, featureCompatibilityVersion=1)
    assert reply["featureCompatibilityVersion"]["version"] == "6.0"


def test_a_crash_never_keeps_a_write_without_its_oplog_entry(launcher, tmp_path):
    """Wherever a kill -9 cuts the journal, a replica set member restarts with each write and
    its oplog entry together or with neither (in mongod they are one storage transaction): a
    document without its entry is a change no other member can ever get.

    Source: https://www.mongodb.com/docs/manual/core/replica-set-oplog/ (every write is in the
    oplog) and https://www.mongodb.com/docs/manual/core/journaling/
    """
    node = launcher.start("--replSet", "rs0")
    client = node.client()
    config = {"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{node.port}"}]}
    client.admin.command("replSetInitiate", config)
    wait_until(lambda: client.admin.command("hello")["isWritablePrimary"], timeout=30,
               what="the one member to become primary")  # fmt: skip
    for i in range(5):
        client.app.c.insert_one({"_id": i})
    node.stop(signal.SIGKILL)
    journal = (node.dbpath / "double-journal.bson").read_bytes()
    ends, pos = [], 0
    while pos < len(journal):
        pos += struct.unpack_from("<i", journal, pos)[0]
        ends.append(pos)
    for end in ends[-6:]:  # the crash after each of the last writes
        dbpath = tmp_path / f"cut{end}"
        shutil.copytree(node.dbpath, dbpath)
        (dbpath / "mongod.lock").write_text("")
        (dbpath / "double-journal.bson").write_bytes(journal[:end])
        restarted = launcher.start("--replSet", "rs0", dbpath=dbpath, port=node.port)
        member = restarted.client(directConnection=True)
        documents = {d["_id"] for d in member.app.c.find()}
        logged = {e["o"]["_id"] for e in member.local["oplog.rs"].find({"ns": "app.c", "op": "i"})}
        assert documents == logged, f"journal cut at {end} of {len(journal)} bytes"
        restarted.stop(signal.SIGKILL)
