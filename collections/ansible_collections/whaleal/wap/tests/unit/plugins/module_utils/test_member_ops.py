"""One member's operations and changes: the steps in order, and the refusals that keep a
majority of healthy voting members."""

import pytest
from ansible_collections.whaleal.wap.plugins.module_utils.member_ops import Refused, plan_operation

CONFIG = {"_id": "rs0", "members": [
    {"_id": 0, "host": "a:1", "priority": 2, "votes": 1},
    {"_id": 1, "host": "b:1", "priority": 1, "votes": 1},
    {"_id": 2, "host": "c:1", "priority": 1, "votes": 1},
]}  # fmt: skip
UP = {"a:1": "PRIMARY", "b:1": "SECONDARY", "c:1": "SECONDARY"}
B_DOWN = {**UP, "b:1": "(not reachable/healthy)"}


def test_restarting_the_primary_steps_it_down_first():
    plan = plan_operation(CONFIG, UP, "a:1", "restart")
    assert plan["steps"] == ["step a:1 down (it is the primary)", "stop a:1",
                             "start a:1 and wait until it serves again, caught up"]  # fmt: skip
    assert plan["members"] is None
    assert plan_operation(CONFIG, UP, "c:1", "stop")["steps"] == ["stop c:1"]


def test_stopping_a_second_member_is_refused_with_the_reason():
    reason = (
        r"stopping c:1 would leave 1 of 3 voting members up: a majority needs 2, so no "
        r"primary could be elected \(down already: b:1\)"
    )
    with pytest.raises(Refused, match=reason):
        plan_operation(CONFIG, B_DOWN, "c:1", "stop")
    assert plan_operation(CONFIG, B_DOWN, "b:1", "start")["steps"] == [
        "start b:1 and wait until it serves again, caught up"]  # fmt: skip
    assert "nothing to do" in plan_operation(CONFIG, UP, "b:1", "start")["steps"][0]


def test_step_down_needs_another_electable_member_and_freeze_a_secondary():
    assert "nothing to do" in plan_operation(CONFIG, UP, "b:1", "step_down")["steps"][0]
    lonely = {**UP, "b:1": "RECOVERING", "c:1": "(not reachable/healthy)"}
    with pytest.raises(Refused, match="no other electable member is up"):
        plan_operation(CONFIG, lonely, "a:1", "step_down")
    with pytest.raises(Refused, match="a:1 is the primary: step it down"):
        plan_operation(CONFIG, UP, "a:1", "freeze")


def test_member_changes_give_the_desired_members():
    removed = plan_operation(CONFIG, UP, "c:1", "remove")
    assert [m["host"] for m in removed["members"]] == ["a:1", "b:1"]
    added = plan_operation(CONFIG, UP, "d:1", "add", votes=0)
    assert added["members"][-1] == {"host": "d:1", "votes": 0, "priority": 0}
    hidden = plan_operation(CONFIG, UP, "b:1", "change", hidden=True)
    assert hidden["members"][1] == {"host": "b:1", "priority": 0, "votes": 1, "hidden": True}
    assert hidden["steps"] == ["reconfigure b:1: priority 0, votes 1, hidden True"]
    demoted = plan_operation(CONFIG, UP, "a:1", "change", priority=0)
    assert demoted["steps"][0].startswith("step a:1 down")
    with pytest.raises(Refused, match="a change needs priority, votes, hidden or delay"):
        plan_operation(CONFIG, UP, "b:1", "change")


def test_changes_that_would_lose_the_majority_are_refused():
    # 3 voters with b down: adding a fourth voter makes the majority 3 of 4, with 2 up.
    with pytest.raises(Refused, match=r"adding d:1 would leave 2 of 4 voting members up"):
        plan_operation(CONFIG, B_DOWN, "d:1", "add")
    # Removing a healthy voter while another is down: 1 of 2 up.
    with pytest.raises(Refused, match=r"remove c:1 would leave 1 of 2 voting members up"):
        plan_operation(CONFIG, B_DOWN, "c:1", "remove")
    # Removing the down one is what repairs the set.
    assert [m["host"] for m in plan_operation(CONFIG, B_DOWN, "b:1", "remove")["members"]] == [
        "a:1", "c:1"]  # fmt: skip
    with pytest.raises(Refused, match="x:1 is not a member of rs0"):
        plan_operation(CONFIG, UP, "x:1", "stop")


def test_a_delayed_member_is_hidden_and_never_elected_and_an_arbiter_is_added_as_one():
    delayed = plan_operation(CONFIG, UP, "c:1", "change", delay=3600)
    assert delayed["members"][2] == {"host": "c:1", "priority": 0, "votes": 1, "hidden": True,
                                     "secondaryDelaySecs": 3600}  # fmt: skip
    assert delayed["steps"] == [
        "reconfigure c:1: priority 0, votes 1, hidden True, secondaryDelaySecs 3600"
    ]
    with pytest.raises(Refused, match="a delayed member has priority 0"):
        plan_operation(CONFIG, UP, "c:1", "change", delay=60, priority=1)
    arbiter = plan_operation(CONFIG, UP, "d:1", "add", arbiter=True)
    assert arbiter["members"][-1] == {"host": "d:1", "arbiterOnly": True, "priority": 0,
                                      "votes": 1}  # fmt: skip
    assert arbiter["steps"] == [
        "reconfigure with d:1 added as an arbiter (it votes, holds no data)"
    ]
    with pytest.raises(Refused, match="only when added"):
        plan_operation(CONFIG, UP, "c:1", "change", arbiter=True)
    with_arbiter = {"_id": "rs0", "members": [*CONFIG["members"], arbiter["members"][-1]]}
    with pytest.raises(Refused, match="d:1 is an arbiter: remove it"):
        plan_operation(with_arbiter, {**UP, "d:1": "ARBITER"}, "d:1", "change", votes=0)


def test_a_resync_empties_a_member_and_lets_it_copy_the_set_again():
    resync = plan_operation(CONFIG, UP, "a:1", "resync")
    assert resync["steps"] == [
        "step a:1 down (it is the primary)", "stop a:1", "empty a:1's data directory",
        "start a:1: it copies the data from the set (initial sync) and serves again once "
        "caught up"]  # fmt: skip
    with pytest.raises(Refused, match="stopping c:1 would leave 1 of 3 voting members up"):
        plan_operation(CONFIG, B_DOWN, "c:1", "resync")
    with_arbiter = {
        "_id": "rs0",
        "members": [
            *CONFIG["members"],
            {"_id": 3, "host": "d:1", "arbiterOnly": True, "priority": 0},
        ],
    }
    with pytest.raises(Refused, match="d:1 is an arbiter: it holds no data"):
        plan_operation(with_arbiter, {**UP, "d:1": "ARBITER"}, "d:1", "resync")
