"""The pure parts of mongodb_fcv and mongodb_upgrade_info: when the FCV changes, lags, checks."""

import datetime

from ansible_collections.whaleal.wap.plugins.modules import mongodb_fcv, mongodb_upgrade_info


def test_fcv_changes_when_it_differs_or_a_transition_was_left():
    assert mongodb_fcv.fcv_change({"version": "7.0"}, "8.0") is True
    assert mongodb_fcv.fcv_change({"version": "8.0"}, "8.0") is False
    assert mongodb_fcv.fcv_change({"version": "7.0", "targetVersion": "8.0"}, "7.0") is True
    assert mongodb_fcv.fcv_change({"version": "7.0"}, None) is False


def test_lag_is_measured_from_the_primary_and_skips_members_not_serving():
    now = datetime.datetime(2026, 1, 1, 12, 0, 0)
    ago = datetime.timedelta
    status = {"members": [
        {"name": "a:1", "stateStr": "PRIMARY", "optimeDate": now},
        {"name": "b:1", "stateStr": "SECONDARY", "optimeDate": now - ago(seconds=30)},
        {"name": "c:1", "stateStr": "STARTUP2", "optimeDate": now - ago(days=1)},
    ]}  # fmt: skip
    assert mongodb_upgrade_info.lag_seconds(status) == {"a:1": 0.0, "b:1": 30.0}
    assert mongodb_upgrade_info.lag_seconds({"members": []}) == {}


def member(host, state="SECONDARY", version="7.0.14", lag=0.0, health=1):
    return {"host": host, "state": state, "version": version, "lag_seconds": lag, "health": health}


def test_pre_checks_name_what_is_wrong():
    members = [member("a:1", "PRIMARY"), member("b:1", lag=42.0), member("c:1", "RECOVERING")]
    window = {"hours": 0.5, "full": True}
    checks = {c["check"]: c for c in mongodb_upgrade_info.pre_checks(members, "6.0", 10, window, 1)}
    assert checks["members healthy"] == {"check": "members healthy", "ok": False,
                                         "detail": "c:1 RECOVERING"}  # fmt: skip
    assert checks["lag under 10 s"]["detail"] == "b:1 42 s"
    assert checks["FCV equal to the running major"]["ok"] is False
    assert checks["oplog window at least 1 h"]["ok"] is False


def test_pre_checks_pass_on_a_healthy_set_whose_oplog_is_not_full_yet():
    members = [member("a:1", "PRIMARY"), member("b:1"), member("c:1", "ARBITER", version="")]
    window = {"hours": 0.01, "full": False}
    checks = mongodb_upgrade_info.pre_checks(members, "7.0", 10, window, 1)
    assert all(c["ok"] for c in checks), checks


def a_set(name, role, hosts, fcv="7.0", version="7.0.14"):
    states = ["PRIMARY"] + ["SECONDARY"] * (len(hosts) - 1)
    members = [member(h, state, version) for h, state in zip(hosts, states, strict=True)]
    return {"name": name, "role": role, "members": members, "fcv": fcv,
            "oplog_window_hours": 2.0, "oplog_full": True}  # fmt: skip


def test_cluster_checks_name_each_set_the_routers_and_the_balancer():
    sets = [a_set("cfg", "config", ["a:2", "b:2"]), a_set("shard1", "shard", ["a:1", "b:1"])]
    sets[1]["members"][1]["state"] = "RECOVERING"
    routers = [{"host": "a:0", "version": "7.0.14"}, {"host": "b:0", "version": ""}]
    checks = {
        c["check"]: c
        for c in mongodb_upgrade_info.cluster_checks(sets, routers, {"mode": ""}, 10, 1)
    }
    assert checks["cfg: members healthy"]["ok"] is True
    assert checks["shard1: members healthy"] == {"check": "shard1: members healthy", "ok": False,
                                                 "detail": "b:1 RECOVERING"}  # fmt: skip
    assert checks["routers answer"] == {"check": "routers answer", "ok": False,
                                        "detail": "b:0 did not answer"}  # fmt: skip
    assert checks["balancer state known"]["ok"] is False
    good = mongodb_upgrade_info.cluster_checks(sets[:1], routers[:1], {"mode": "full"}, 10, 1)
    assert all(c["ok"] for c in good), good


def test_a_binaries_step_is_grouped_config_servers_first_then_shards_then_routers():
    sets = [a_set("cfg", "config", ["a:2", "b:2"]), a_set("shard1", "shard", ["a:1", "b:1"])]
    routers = [{"host": "a:0", "version": "7.0.14"}]
    groups = mongodb_upgrade_info.group_members(["a:0", "b:1", "a:1", "b:2"], sets, routers)
    assert groups == [
        {"role": "config", "name": "cfg", "members": ["b:2"]},
        {"role": "shard", "name": "shard1", "members": ["b:1", "a:1"]},
        {"role": "routers", "name": "", "members": ["a:0"]},
    ]
    assert mongodb_upgrade_info.describe_groups("binaries 8.0.4", groups) == (
        "binaries 8.0.4: config servers cfg (b:2); then shard shard1 (b:1, a:1); then routers "
        "(a:0), one at a time"
    )


def test_a_rolling_restart_is_one_step_over_every_member_given():
    plan = mongodb_upgrade_info.restart_plan([member("a:1", "PRIMARY"), member("b:1")])
    step = {"action": "restart", "version": "", "members": ["a:1", "b:1"], "confirm": False,
            "description": "restart a:1, b:1, one at a time"}  # fmt: skip
    assert plan.as_dict()["steps"] == [step]
    assert mongodb_upgrade_info.restart_plan([]).steps == []


def test_arbiters_move_with_the_members_and_routers_come_last():
    seen = {
        "members": [member("a:1", "PRIMARY"), member("b:1"), member("c:1", "ARBITER", lag=None)],
        "routers": [{"host": "r:1", "version": "7.0.14"}],
    }
    moved = mongodb_upgrade_info.moving(seen)
    assert [m["host"] for m in moved] == ["a:1", "b:1", "c:1", "r:1"]
    plan = mongodb_upgrade_info.restart_plan(moved)
    assert plan.as_dict()["steps"][0]["members"] == ["a:1", "b:1", "c:1", "r:1"]


def test_a_restarted_member_serves_again_caught_up_at_its_release_or_as_an_arbiter():
    again = mongodb_upgrade_info.serving_again
    assert again(member("b:1", version="8.0.4"), "8.0.4", 10, "a:1")
    assert not again(member("b:1", version="7.0.14"), "8.0.4", 10, "a:1")  # old binaries
    assert not again(member("b:1", version="8.0.4", lag=30.0), "8.0.4", 10, "a:1")
    assert not again(member("b:1", "STARTUP2", version="8.0.4"), "8.0.4", 10, "a:1")
    assert not again(member("b:1", version="8.0.4"), "8.0.4", 10, "")  # no primary yet
    assert again(member("c:1", "ARBITER", version="8.0.4", lag=None), "8.0.4", 10, "a:1")
    assert not again(member("c:1", "ARBITER", version="", lag=None), "8.0.4", 10, "a:1")
