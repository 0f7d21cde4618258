"""What a sharded cluster's backup and restore use of a replica set member, as MongoDB does it:
appendOplogNote (a set's oplog moved past a common point) and applyOps creating a collection
with the UUID its entry carries (mongorestore --preserveUUID).

Sources: https://www.mongodb.com/docs/manual/reference/command/appendOplogNote/ (``data``, a
document, required; run on the primary; the backup role grants it),
https://www.mongodb.com/docs/manual/reference/command/applyOps/ and mongorestore's
--preserveUUID (https://www.mongodb.com/docs/database-tools/mongorestore/), which creates each
collection with an applyOps ``c`` entry whose ``ui`` is the dumped UUID.
"""

from __future__ import annotations

import uuid

import pytest
from bson.binary import Binary, UuidRepresentation
from pymongo.errors import OperationFailure

from tests.mongod_double.test_applyops import member  # noqa: F401 (a fixture)


def newest(client) -> dict:
    return client.local["oplog.rs"].find_one({}, sort=[("$natural", -1)])


def test_append_oplog_note_writes_a_noop_after_the_newest_entry(member):  # noqa: F811
    member.app.things.insert_one({"_id": 1})
    before = newest(member)["ts"]
    assert member.admin.command("appendOplogNote", data={"msg": "a point"})["ok"] == 1
    entry = newest(member)
    assert (entry["op"], entry["ns"], entry["o"]) == ("n", "", {"msg": "a point"})
    assert entry["ts"] > before
    with pytest.raises(OperationFailure) as missing:
        member.admin.command("appendOplogNote")
    assert missing.value.code == 4  # NoSuchKey
    with pytest.raises(OperationFailure) as wrong:
        member.admin.command("appendOplogNote", data="text")
    assert wrong.value.code == 14  # TypeMismatch


def test_append_oplog_note_needs_a_replica_set(launcher):
    client = launcher.start().client()
    with pytest.raises(OperationFailure) as info:
        client.admin.command("appendOplogNote", data={"msg": "x"})
    assert info.value.code == 76  # NoReplicationEnabled


def test_apply_ops_create_keeps_the_entry_s_uuid(member):  # noqa: F811
    wanted = Binary.from_uuid(uuid.uuid4(), UuidRepresentation.STANDARD)
    member.admin.command(
        "applyOps", [{"op": "c", "ns": "app.$cmd", "ui": wanted, "o": {"create": "kept"}}]
    )
    (info,) = member.app.list_collections(filter={"name": "kept"})
    assert info["info"]["uuid"] == wanted
    created = newest(member)
    assert created["o"] == {"create": "kept"} and created["ui"] == wanted
    # An entry naming the collection by that UUID now reaches it.
    entry = {"op": "i", "ns": "app.other", "ui": wanted, "o": {"_id": 1}}
    member.admin.command("applyOps", [entry])
    assert member.app.kept.find_one() == {"_id": 1}
