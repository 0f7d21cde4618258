"""Shard add/remove decisions and shard keys."""

import pytest
from ansible_collections.whaleal.wap.plugins.module_utils import sharding as sh

SHARDS = [
    {"_id": "rs0", "host": "rs0/a:27018,b:27018", "state": 1},
    {"_id": "rs1", "host": "rs1/c:27018", "state": 1, "draining": True},
]


def test_parse_shard_host():
    assert sh.parse_shard_host("rs0/a:1,b:1") == ("rs0", ["a:1", "b:1"])
    assert sh.parse_shard_host("a:1") == (None, ["a:1"])


def test_add_a_new_shard():
    assert sh.shard_plan(SHARDS, "rs2", "rs2/d:27018", "present")["action"] == "add"


def test_present_shard_with_other_seeds_is_unchanged():
    assert sh.shard_plan(SHARDS, "rs0", "rs0/b:27018", "present")["action"] == "none"


def test_same_replica_set_under_another_name_is_refused():
    with pytest.raises(sh.ShardError, match="already shard rs0"):
        sh.shard_plan(SHARDS, "other", "rs0/a:27018", "present")


def test_name_taken_by_another_replica_set_is_refused():
    with pytest.raises(sh.ShardError, match="is replica set rs0, not rsX"):
        sh.shard_plan(SHARDS, "rs0", "rsX/a:27018", "present")


def test_draining_shard_cannot_be_re_added():
    with pytest.raises(sh.ShardError, match="draining"):
        sh.shard_plan(SHARDS, "rs1", "rs1/c:27018", "present")


def test_remove():
    assert sh.shard_plan(SHARDS, "rs0", None, "absent")["action"] == "remove"
    assert sh.shard_plan(SHARDS, "nope", None, "absent")["action"] == "none"


def test_host_required_to_add():
    with pytest.raises(sh.ShardError, match="host is required"):
        sh.shard_plan(SHARDS, "rs9", None, "present")


def test_drain_status_from_removeshard_replies():
    started = {
        "msg": "draining started successfully",
        "state": "started",
        "shard": "rs1",
        "dbsToMove": ["shop"],
        "ok": 1,
    }
    ongoing = {
        "msg": "draining ongoing",
        "state": "ongoing",
        "remaining": {"chunks": 12, "dbs": 1, "jumboChunks": 0},
        "dbsToMove": ["shop"],
    }
    completed = {"msg": "removeshard completed successfully", "state": "completed", "shard": "rs1"}
    assert sh.drain_status(started)["dbs_to_move"] == ["shop"]
    assert sh.drain_status(ongoing)["chunks"] == 12
    assert not sh.drain_status(ongoing)["completed"]
    assert sh.drain_status(completed)["completed"]


def test_collection_plan():
    assert sh.collection_plan(None, {"k": 1}, False) == {"action": "shard", "key": {"k": 1}}
    current = {"_id": "db.c", "key": {"k": "hashed"}, "unique": False}
    assert sh.collection_plan(current, {"k": "hashed"}, False)["action"] == "none"
    with pytest.raises(sh.ShardError, match="reshardCollection"):
        sh.collection_plan(current, {"other": 1}, False)
    with pytest.raises(sh.ShardError, match="neither 1 nor 'hashed'"):
        sh.collection_plan(None, {"k": "ranged"}, False)
    dropped = dict(current, dropped=True)
    assert sh.collection_plan(dropped, {"x": 1}, False)["action"] == "shard"


def test_compound_key_order_matters():
    current = {"_id": "db.c", "key": {"a": 1, "b": 1}}
    with pytest.raises(sh.ShardError):
        sh.collection_plan(current, {"b": 1, "a": 1}, False)
