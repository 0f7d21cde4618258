"""The pure parts of reading a sharded cluster: one FCV for all its sets."""

from ansible_collections.whaleal.wap.plugins.module_utils.sharded_cluster import cluster_fcv
from ansible_collections.whaleal.wap.plugins.modules.mongodb_balancer import wanted_mode


def test_sets_that_agree_give_their_fcv():
    assert cluster_fcv({"cfg": {"version": "7.0"}, "shard1": {"version": "7.0"}}) == {
        "version": "7.0"
    }
    assert cluster_fcv({}) == {}


def test_sets_that_disagree_or_a_transition_are_a_change_to_finish():
    # An FCV upgrade through a mongos that stopped after a shard: the lowest, targeting the highest.
    assert cluster_fcv({"cfg": {"version": "7.0"}, "shard1": {"version": "8.0"}}) == {
        "version": "7.0",
        "targetVersion": "8.0",
    }
    transition = {"cfg": {"version": "7.0"}, "shard1": {"version": "7.0", "targetVersion": "8.0"}}
    assert cluster_fcv(transition) == {"version": "7.0", "targetVersion": "8.0"}


def test_balancer_modes_wanted():
    assert wanted_mode("full", "stopped") == "off"
    assert wanted_mode("off", "started") == "full"
    assert wanted_mode("autoSplitOnly", "started") == "autoSplitOnly"
    assert wanted_mode("full", None) == "full"
