"""Enabling access control and TLS on a running deployment: the passes MongoDB documents, only
those still needed, and refusals before anything changes."""

import pytest
from ansible_collections.whaleal.wap.plugins.module_utils.security_plan import (
    SecurityRefused,
    connection_ways,
    levels_of,
    plan_security,
)


def procs(*levels):
    return [{"host": f"h{i}:27017", "auth": a, "tls": t} for i, (a, t) in enumerate(levels)]


def names(plan):
    return [
        (s["name"], s["auth_level"], s["tls_mode"], s["login"], s["tls"]) for s in plan["steps"]
    ]


def test_an_open_set_gets_access_control_and_tls_in_three_shared_passes():
    plan = plan_security(procs((0, 0), (0, 0), (0, 0)), auth=True, tls=True)
    assert names(plan) == [
        ("auth_transition+allowTLS", "transitionToAuth", "allowTLS", False, False),
        ("users", "transitionToAuth", "allowTLS", True, False),
        ("auth_enforce+preferTLS", "enforced", "preferTLS", True, False),
        ("requireTLS", "enforced", "requireTLS", True, True),
    ]
    assert (plan["auth_level"], plan["tls_mode"]) == ("enforced", "requireTLS")
    assert plan["steps"][0]["description"] == (
        "restart with the keyFile and transitionToAuth (connections with or without "
        "authentication accepted) and at allowTLS (TLS and plain accepted, peers reached "
        "without TLS)"
    )


def test_access_control_alone_is_the_documented_two_restarts_with_the_users_between():
    plan = plan_security(procs((0, 3), (0, 3)), auth=True, tls=False)
    assert names(plan) == [
        ("auth_transition", "transitionToAuth", "requireTLS", False, True),
        ("users", "transitionToAuth", "requireTLS", True, True),
        ("auth_enforce", "enforced", "requireTLS", True, True),
    ]


def test_a_secured_deployment_plans_nothing_and_a_stopped_run_resumes():
    assert plan_security(procs((2, 3), (2, 3)), auth=True, tls=True)["steps"] == []
    # Stopped in the enforcing pass: the users (already there, nothing changes), then it.
    resumed = plan_security(procs((2, 0), (1, 0), (1, 0)), auth=True, tls=False)
    assert [s["name"] for s in resumed["steps"]] == ["users", "auth_enforce"]
    # Stopped in the preferTLS pass: preferTLS again, then requireTLS.
    tls = plan_security(procs((2, 2), (2, 1)), auth=True, tls=True)
    assert [s["name"] for s in tls["steps"]] == ["preferTLS", "requireTLS"]


def test_until_transition_stops_where_every_process_accepts_both_ways():
    plan = plan_security(procs((0, 0), (0, 0)), auth=True, tls=True, until="transition")
    assert [s["name"] for s in plan["steps"]] == ["auth_transition+allowTLS", "preferTLS", "users"]
    assert (plan["auth_level"], plan["tls_mode"]) == ("transitionToAuth", "preferTLS")
    assert plan_security(procs((1, 2), (1, 2)), True, True, until="transition")["steps"] == []
    # From there to the end: one pass, with credentials, over TLS.
    rest = plan_security(procs((1, 2), (1, 2)), auth=True, tls=True)
    assert names(rest)[-1] == ("auth_enforce+requireTLS", "enforced", "requireTLS", True, True)


def test_tls_alone_keeps_the_access_control_each_process_runs():
    plan = plan_security(procs((2, 0), (2, 0)), auth=False, tls=True)
    assert [(s["auth_level"], s["login"]) for s in plan["steps"]] == [("enforced", True)] * 3
    with pytest.raises(SecurityRefused, match="differ in access control"):
        plan_security(procs((2, 0), (0, 0)), auth=False, tls=True)


def test_refusals_name_the_process_down_and_what_was_not_asked():
    down = procs((0, 0), (0, 0))
    down[1]["error"] = "connection refused"
    with pytest.raises(SecurityRefused, match="h1:27017: connection refused"):
        plan_security(down, auth=True, tls=False)
    with pytest.raises(SecurityRefused, match="access control, TLS or both"):
        plan_security(procs((0, 0)), auth=False, tls=False)
    with pytest.raises(SecurityRefused, match="differ in TLS"):
        plan_security(procs((0, 1), (0, 0)), auth=True, tls=False)


def test_levels_and_the_ways_to_reach_a_process():
    assert levels_of(
        {"auth": False, "transition_to_auth": True, "key_file": "/k", "tls": "preferTLS"}
    ) == (1, 2)
    assert levels_of({"auth": True, "tls": "requireTLS"}) == (2, 3)
    assert levels_of({}) == (0, 0)
    assert connection_ways(True, True) == [
        (False, False),
        (False, True),
        (True, False),
        (True, True),
    ]
    assert connection_ways(False, False) == [(False, False)]
