"""The rolling upgrade's path: what MongoDB allows, and the reasons for what it does not."""

import pytest
from ansible_collections.whaleal.wap.plugins.module_utils.upgrade_plan import (
    UpgradeRefused,
    plan_upgrade,
)

SET60 = {"a:27017": "6.0.20", "b:27017": "6.0.20", "c:27017": "6.0.20"}
ALL = ("a:27017", "b:27017", "c:27017")


def steps(plan):
    return [(s.action, s.version, s.members, s.confirm) for s in plan.steps]


def test_two_majors_go_through_the_middle_one_with_the_fcv_raised_before_the_next():
    plan = plan_upgrade(SET60, "6.0", "8.0.4", releases={"7.0": "7.0.14"})
    assert steps(plan) == [
        ("binaries", "7.0.14", ALL, False),
        ("fcv", "7.0", (), True),
        ("binaries", "8.0.4", ALL, False),
        ("fcv", "8.0", (), True),
    ]
    assert plan.as_dict()["steps"][1]["description"] == "FCV 7.0 (confirm: true)"


def test_a_patch_release_is_one_step_and_the_fcv_stays():
    plan = plan_upgrade({"a:27017": "7.0.2", "b:27017": "7.0.14"}, "7.0", "7.0.14")
    assert steps(plan) == [("binaries", "7.0.14", ("a:27017",), False)]


def test_a_set_already_there_has_nothing_to_do():
    assert plan_upgrade({"a:27017": "8.0.4"}, "8.0", "8.0.4").steps == []


def test_6_to_7_needs_no_confirm_for_nothing_but_the_7_0_fcv():
    plan = plan_upgrade(SET60, "6.0", "7.0.14")
    assert steps(plan) == [("binaries", "7.0.14", ALL, False), ("fcv", "7.0", (), True)]


def test_a_skipped_major_without_its_release_is_refused_with_the_way():
    with pytest.raises(UpgradeRefused, match=r"cannot start on data files of FCV 6.0.*through 7.0"):
        plan_upgrade(SET60, "6.0", "8.0.4")


def test_finalize_leaves_the_last_fcv_but_raises_the_ones_passed_through():
    plan = plan_upgrade(SET60, "6.0", "8.0.4", releases={"7.0": "7.0.14"}, fcv_mode="finalize")
    assert [s.action for s in plan.steps] == ["binaries", "fcv", "binaries"]
    assert "FCV stays 7.0" in plan.notes[0]
    # the later "finalize" run: every member on 8.0, FCV 7.0 -> only the FCV
    done = {h: "8.0.4" for h in SET60}
    assert steps(plan_upgrade(done, "7.0", "8.0.4")) == [("fcv", "8.0", (), True)]


def test_a_run_stopped_midway_resumes_with_the_members_left():
    mixed = {"a:27017": "8.0.4", "b:27017": "7.0.14", "c:27017": "8.0.4"}
    plan = plan_upgrade(mixed, "7.0", "8.0.4")
    assert steps(plan) == [("binaries", "8.0.4", ("b:27017",), False), ("fcv", "8.0", (), True)]


def test_a_lagging_fcv_is_raised_before_the_next_major():
    on70 = {h: "7.0.14" for h in SET60}
    plan = plan_upgrade(on70, "6.0", "8.0.4")
    assert steps(plan)[0] == ("fcv", "7.0", (), True)
    assert steps(plan)[1:] == [("binaries", "8.0.4", ALL, False), ("fcv", "8.0", (), True)]


def test_an_interrupted_fcv_upgrade_is_finished_first():
    on80 = {h: "8.0.4" for h in SET60}
    plan = plan_upgrade(on80, "7.0", "8.0.4", fcv_target="8.0")
    assert steps(plan) == [("fcv", "8.0", (), True)]


def test_an_interrupted_fcv_downgrade_is_refused():
    on80 = {h: "8.0.4" for h in SET60}
    with pytest.raises(UpgradeRefused, match=r"being downgraded to 7.0"):
        plan_upgrade(on80, "7.0", "8.0.4", fcv_target="7.0")


def test_members_two_majors_apart_are_refused():
    with pytest.raises(UpgradeRefused, match=r"more than one major apart"):
        plan_upgrade({"a:27017": "6.0.20", "b:27017": "8.0.4"}, "6.0", "8.0.4")


def test_a_mixed_set_must_be_at_the_older_fcv():
    mixed = {"a:27017": "8.0.4", "b:27017": "7.0.14"}
    with pytest.raises(UpgradeRefused, match=r"must be at FCV 7.0"):
        plan_upgrade(mixed, "6.0", "8.0.4")


def test_downgrade_while_the_fcv_allows_it_is_one_step_back():
    on80 = {h: "8.0.4" for h in SET60}
    plan = plan_upgrade(on80, "7.0", "7.0.14")
    assert steps(plan) == [("binaries", "7.0.14", ALL, False)]


def test_downgrade_past_what_the_fcv_permits_is_refused():
    on80 = {h: "8.0.4" for h in SET60}
    with pytest.raises(UpgradeRefused, match=r"7.0.14 cannot start on data files of FCV 8.0"):
        plan_upgrade(on80, "8.0", "7.0.14")
    with pytest.raises(UpgradeRefused, match=r"one major at most"):
        plan_upgrade(on80, "7.0", "6.0.20")


def test_bad_targets_say_what_is_expected():
    with pytest.raises(UpgradeRefused, match=r"not a release X.Y.Z"):
        plan_upgrade(SET60, "6.0", "8.0")
    with pytest.raises(UpgradeRefused, match=r"rapid release"):
        plan_upgrade(SET60, "6.0", "7.3.1")
    with pytest.raises(UpgradeRefused, match=r"release 7.1.0 given for 7.0"):
        plan_upgrade(SET60, "6.0", "8.0.4", releases={"7.0": "7.1.0"})
    with pytest.raises(UpgradeRefused, match=r"upgrade_fcv 'later'"):
        plan_upgrade(SET60, "6.0", "7.0.14", fcv_mode="later")
