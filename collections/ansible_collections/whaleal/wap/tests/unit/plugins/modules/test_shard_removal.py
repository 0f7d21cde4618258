"""A shard removal's plan and progress, as mongodb_shard reports them (pure)."""

import pytest
from ansible_collections.whaleal.wap.plugins.module_utils.sharding import ShardError
from ansible_collections.whaleal.wap.plugins.modules.mongodb_shard import progress, removal_plan

SHARDS = [{"_id": "rs0"}, {"_id": "rs1"}, {"_id": "rs2", "draining": True}]


def test_the_plan_names_what_moves_and_where():
    assert removal_plan(SHARDS, "rs1", 12, ["app", "shop"], "rs0") == [
        "removeShard rs1: the balancer moves its 12 chunks to rs0",
        "movePrimary app, shop to rs0, once its chunks have moved (databases whose primary "
        "shard it is; their unsharded collections are copied)",
        "removeShard rs1 again until it reports completed",
    ]
    assert len(removal_plan(SHARDS, "rs1", 1, [], None)) == 2


def test_the_last_shard_and_a_target_that_goes_are_refused():
    with pytest.raises(ShardError, match="rs0 is the cluster's last shard"):
        removal_plan([{"_id": "rs0"}], "rs0", 3, [], None)
    with pytest.raises(ShardError, match="rs0 is the cluster's last shard"):
        removal_plan(SHARDS[::2], "rs0", 3, [], None)  # the other one is draining already
    with pytest.raises(ShardError, match="'rs2' is not a shard that stays: one of rs0"):
        removal_plan(SHARDS, "rs1", 0, ["app"], "rs2")


def test_progress_in_words():
    status = {"chunks": 1, "dbs": 1, "dbs_to_move": ["app"], "completed": False}
    assert progress("rs1", status) == "rs1 draining: 1 chunk and 1 database (app) left"
    status = {"chunks": 0, "dbs": 2, "dbs_to_move": [], "completed": False}
    assert progress("rs1", status) == "rs1 draining: 0 chunks and 2 databases left"
    assert progress("rs1", {**status, "completed": True}) == "rs1 removed: nothing left on it"
