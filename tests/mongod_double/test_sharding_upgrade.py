"""What a sharded cluster's rolling upgrade asks of the routers: the balancer stopped and its
state read through any mongos, and the feature compatibility version set through a mongos. Each
test names the MongoDB page it checks."""

from __future__ import annotations

import pytest
from pymongo.errors import OperationFailure

from tests.mongod_double.shardedset import SHARDS, start_cluster
from tests.waiting import wait_until


def fcvs(cluster) -> dict[str, str]:
    """Each replica set's FCV, read on its own member."""
    nodes = {"cfg": cluster.config, **cluster.shards}
    return {
        name: node.client().admin.command("getParameter", 1, featureCompatibilityVersion=1)[
            "featureCompatibilityVersion"
        ]["version"]
        for name, node in nodes.items()
    }


def test_balancer_state_is_the_clusters_through_every_router(launcher):
    """balancerStatus answers for the whole cluster (MongoDB's balancer runs on the config
    server primary), so two routers report the same rounds; balancerStop through one waits for
    the round in progress, after which neither reports a round running nor a new one counted;
    balancerStart through the other turns it on for both.

    Sources: https://www.mongodb.com/docs/manual/reference/command/balancerStatus/,
    https://www.mongodb.com/docs/manual/reference/command/balancerStop/ ("If a balancing round
    is in progress, the operation waits for balancing to complete")
    """
    cluster = start_cluster(launcher, 2)
    first, second = cluster.router_client(0), cluster.router_client(1)
    for name in SHARDS:
        first.admin.command("addShard", cluster.shard_host(name))

    def status(client) -> dict:
        return client.admin.command("balancerStatus")

    def both_count_the_same() -> int | None:
        rounds = status(first)["numBalancerRounds"]
        return rounds if rounds >= 2 and status(second)["numBalancerRounds"] == rounds else None

    wait_until(both_count_the_same, timeout=30, what="the same balancer rounds through both",
               seen=lambda: (status(first), status(second)))  # fmt: skip
    second.admin.command("balancerStop")
    stopped = status(first)
    assert (stopped["mode"], stopped["inBalancerRound"]) == ("off", False)
    assert status(second)["numBalancerRounds"] == stopped["numBalancerRounds"]
    first.admin.command("balancerStart")
    assert status(second)["mode"] == "full"


def test_feature_compatibility_version_is_set_through_mongos_on_every_set(launcher):
    """setFeatureCompatibilityVersion run on a mongos changes every shard and the config
    servers; from 7.0 on it needs confirm: true, and without it (or with a version the binaries
    cannot run) it is refused with the shards' own error, nothing changed anywhere.

    Sources: https://www.mongodb.com/docs/manual/reference/command/setFeatureCompatibilityVersion/
    https://www.mongodb.com/docs/manual/release-notes/7.0-upgrade-sharded-cluster/
    """
    cluster = start_cluster(launcher)
    client = cluster.router_client()
    for name in SHARDS:
        client.admin.command("addShard", cluster.shard_host(name))
    assert fcvs(cluster) == {"cfg": "7.0", "shard1": "7.0", "shard2": "7.0"}
    with pytest.raises(OperationFailure) as unconfirmed:
        client.admin.command("setFeatureCompatibilityVersion", "6.0")
    assert unconfirmed.value.code == 7369100 and "confirm: true" in str(unconfirmed.value)
    with pytest.raises(OperationFailure) as unknown:
        client.admin.command("setFeatureCompatibilityVersion", "8.0", confirm=True)
    assert unknown.value.code == 2  # BadValue: 7.0 binaries cannot run FCV 8.0
    assert set(fcvs(cluster).values()) == {"7.0"}
    client.admin.command("setFeatureCompatibilityVersion", "6.0", confirm=True)
    assert fcvs(cluster) == {"cfg": "6.0", "shard1": "6.0", "shard2": "6.0"}
    client.admin.command("setFeatureCompatibilityVersion", "7.0", confirm=True)
    assert set(fcvs(cluster).values()) == {"7.0"}
