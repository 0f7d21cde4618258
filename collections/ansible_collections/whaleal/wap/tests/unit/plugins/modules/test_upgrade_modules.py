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
