"""applyOps, as mongorestore --oplogReplay uses it, on a one-member replica set.

Source: https://www.mongodb.com/docs/manual/reference/command/applyOps/ (and the 3.2-4.4 pages
with its fields: ``alwaysUpsert``, ``bypassDocumentValidation``, the ``applied``/``results``
reply), https://www.mongodb.com/docs/manual/core/replica-set-oplog/ (entries' ``op``/``ns``/
``o``/``o2``/``ui``), the ``$v: 2`` update diffs that 5.0+ oplogs hold.
"""

from __future__ import annotations

import pytest
from pymongo.errors import OperationFailure

from tests.waiting import wait_until


@pytest.fixture
def member(launcher):
    node = launcher.start("--replSet", "rs0")
    client = node.client()
    client.admin.command("replSetInitiate")
    wait_until(lambda: client.admin.command("hello")["isWritablePrimary"], timeout=20,
               what="the member to be primary")  # fmt: skip
    return client


def test_crud_entries_apply_and_reach_the_oplog(member):
    coll = member.app.things
    coll.insert_many([{"_id": 1, "a": 1, "arr": [1, 2, 3], "sub": {"x": 1, "y": 2}}, {"_id": 2}])
    reply = member.admin.command(
        "applyOps",
        [
            {"op": "i", "ns": "app.things", "o": {"_id": 3, "a": 3}},
            # an insert of an existing _id replaces it (oplog application is idempotent)
            {"op": "i", "ns": "app.things", "o": {"_id": 2, "b": 2}},
            # a $v: 2 diff: set, insert, delete, a sub-document and an array
            {
                "op": "u",
                "ns": "app.things",
                "o2": {"_id": 1},
                "o": {
                    "$v": 2,
                    "diff": {
                        "u": {"a": 10},
                        "i": {"n": "new"},
                        "ssub": {"d": {"y": False}, "u": {"x": 5}},
                        "sarr": {"a": True, "l": 2, "u1": 20},
                    },
                },
            },
            {"op": "u", "ns": "app.things", "o2": {"_id": 3}, "o": {"$set": {"c.d": 1}}},
            # an update of a missing document is an upsert (alwaysUpsert defaults to true)
            {"op": "u", "ns": "app.things", "o2": {"_id": 4}, "o": {"_id": 4, "r": 1}},
            {"op": "d", "ns": "app.things", "o": {"_id": 99}},  # missing: succeeds
            {"op": "n", "ns": "", "o": {"msg": "noop"}},
        ],
    )
    assert reply["applied"] == 7 and reply["results"] == [True] * 7
    assert list(coll.find(sort=[("_id", 1)])) == [
        {"_id": 1, "a": 10, "arr": [1, 20], "sub": {"x": 5}, "n": "new"},
        {"_id": 2, "b": 2},
        {"_id": 3, "a": 3, "c": {"d": 1}},
        {"_id": 4, "r": 1},
    ]
    logged = list(member.local["oplog.rs"].find({"ns": "app.things"}, sort=[("$natural", -1)]))
    assert {e["op"] for e in logged[:4]} == {"i", "u"}  # applied writes are replicated writes


def test_command_entries_and_failures(member):
    reply = member.admin.command(
        "applyOps",
        [
            {"op": "c", "ns": "app.$cmd", "o": {"create": "capped", "capped": True, "size": 4096}},
            {"op": "i", "ns": "app.capped", "o": {"_id": 1, "k": 1}},
            {"op": "c", "ns": "app.$cmd",
             "o": {"createIndexes": "capped2", "v": 2, "key": {"k": 1}, "name": "k_1"}},
            {"op": "c", "ns": "app.$cmd", "o": {"renameCollection": "app.capped2",
                                                "to": "app.renamed"}},
        ],
    )  # fmt: skip
    assert reply["applied"] == 4
    options = member.app.command("listCollections", filter={"name": "capped"})
    assert options["cursor"]["firstBatch"][0]["options"] == {"capped": True, "size": 4096}
    assert "k_1" in member.app.renamed.index_information()

    with pytest.raises(OperationFailure) as failed:
        member.admin.command(
            "applyOps",
            [
                {"op": "i", "ns": "app.other", "o": {"_id": 1}},
                {"op": "c", "ns": "app.$cmd", "o": {"create": "capped"}},  # exists
            ],
        )
    details = failed.value.details
    assert details["code"] == 48 and details["applied"] == 2
    assert details["results"] == [True, False]

    with pytest.raises(OperationFailure) as strict:
        member.admin.command(
            "applyOps",
            [{"op": "u", "ns": "app.other", "o2": {"_id": 7}, "o": {"$set": {"a": 1}}}],
            alwaysUpsert=False,
        )
    assert strict.value.code == 175

    # a TTL change, as an oplog records collMod of an index
    member.app.ttl.create_index("at", expireAfterSeconds=60)
    member.admin.command("applyOps", [{"op": "c", "ns": "app.$cmd", "o": {
        "collMod": "ttl", "index": {"name": "at_1", "expireAfterSeconds": 3600}}}])  # fmt: skip
    assert member.app.ttl.index_information()["at_1"]["expireAfterSeconds"] == 3600
    with pytest.raises(OperationFailure) as missing:
        member.admin.command("applyOps", [{"op": "c", "ns": "app.$cmd", "o": {
            "collMod": "ttl", "index": {"name": "nope", "expireAfterSeconds": 1}}}])  # fmt: skip
    assert missing.value.code == 27

    with pytest.raises(OperationFailure) as unknown:
        member.admin.command(
            "applyOps",
            [{"op": "c", "ns": "app.$cmd", "o": {"collMod": "other", "validator": {"a": 1}}}],
        )
    assert unknown.value.code == 238  # not implemented by the double, never ignored


def test_under_access_control_applyops_needs_its_action_and_each_entrys_privileges(launcher):
    """applyOps under --auth: the applyOps action on the cluster (in restore, dbAdminAnyDatabase
    and root), then each entry's own privilege (insert, update or remove on its namespace, a
    command's action), and useUUID with forceUUID for an entry naming its collection by UUID.

    Sources: https://www.mongodb.com/docs/manual/reference/command/applyOps/ (Required Access),
    SERVER-25994 (privileges per operation), DOCS-14282 (the applyOps action on the cluster)."""
    node = launcher.start("--auth", "--replSet", "rs0")
    local = node.client()
    local.admin.command("replSetInitiate")
    for _ in range(100):
        if local.admin.command("hello")["isWritablePrimary"]:
            break
    local.admin.command("createUser", "root", pwd="root-pw", roles=["root"])
    root = node.client(username="root", password="root-pw")
    root.admin.command(
        "createUser", "writer", pwd="w-pw", roles=[{"role": "readWrite", "db": "app"}]
    )
    root.admin.command("createUser", "restorer", pwd="r-pw", roles=["restore"])
    root.admin.command(
        "createRole",
        "applier",
        privileges=[
            {"resource": {"cluster": True}, "actions": ["applyOps"]},
            {"resource": {"db": "app", "collection": "a"}, "actions": ["insert"]},
        ],
        roles=[],
    )
    root.admin.command("createUser", "applier", pwd="a-pw", roles=["applier"])
    insert = {"op": "i", "ns": "app.a", "o": {"_id": 1}}

    def refused(user: str, password: str, entries: list) -> int:
        client = node.client(username=user, password=password)
        with pytest.raises(OperationFailure) as failed:
            client.admin.command("applyOps", entries)
        return failed.value.code

    # readWrite on the namespace without the applyOps action: refused.
    assert refused("writer", "w-pw", [insert]) == 13
    # The action and the entry's own privilege: applied; another namespace or op: refused.
    applier = node.client(username="applier", password="a-pw")
    assert applier.admin.command("applyOps", [insert])["applied"] == 1
    assert refused("applier", "a-pw", [{"op": "i", "ns": "app.b", "o": {"_id": 1}}]) == 13
    assert refused("applier", "a-pw", [{"op": "d", "ns": "app.a", "o": {"_id": 1}}]) == 13
    # An entry naming its collection by UUID also needs useUUID and forceUUID: restore has them.
    uuid = root.app.command("listCollections", filter={"name": "a"})["cursor"]["firstBatch"][0][
        "info"]["uuid"]  # fmt: skip
    by_uuid = {"op": "i", "ns": "app.a", "ui": uuid, "o": {"_id": 2}}
    assert refused("applier", "a-pw", [by_uuid]) == 13
    restorer = node.client(username="restorer", password="r-pw")
    assert restorer.admin.command("applyOps", [by_uuid])["applied"] == 1
    assert root.admin.command("applyOps", [{"op": "u", "ns": "app.a", "o2": {"_id": 2},
                                            "o": {"$set": {"x": 1}}}])["applied"] == 1  # fmt: skip
    assert list(root.app.a.find({}, {"_id": 1, "x": 1}).sort("_id", 1)) == [
        {"_id": 1}, {"_id": 2, "x": 1}]  # fmt: skip


def test_a_capped_collection_has_its_id_index(member):
    """A capped collection outside local has an _id index, as mongod creates one for every
    capped collection: a second insert of an _id fails (11000), an applyOps insert of an
    existing _id replaces the document where it stands, in its place in natural order (oplog
    application).

    Sources: https://www.mongodb.com/docs/manual/core/capped-collections/ (the _id index,
    updates) and the applyOps page (an insert of an existing _id as an upsert)."""
    member.logs.create_collection("events", capped=True, size=1 << 20)
    member.logs.events.insert_many([{"_id": i, "e": i} for i in range(5)])
    with pytest.raises(OperationFailure) as duplicate:
        member.logs.events.insert_one({"_id": 4, "e": "again"})
    assert duplicate.value.code == 11000
    member.admin.command("applyOps", [{"op": "i", "ns": "logs.events", "o": {"_id": 4, "e": 40}}])
    assert list(member.logs.events.find()) == [
        {"_id": 0, "e": 0}, {"_id": 1, "e": 1}, {"_id": 2, "e": 2}, {"_id": 3, "e": 3},
        {"_id": 4, "e": 40}]  # fmt: skip
    assert member.logs.events.count_documents({}) == 5
