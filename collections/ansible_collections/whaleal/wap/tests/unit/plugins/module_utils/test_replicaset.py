"""The reconfig planner: each step valid under MongoDB's rules, the primary kept, goal reached."""

import random

import pytest
from ansible_collections.whaleal.wap.plugins.module_utils import replicaset as rs


def members(*specs):
    """Current config members: (host, extra fields) with MongoDB's defaults and _id by position."""
    out = []
    for i, spec in enumerate(specs):
        host, extra = (spec, {}) if isinstance(spec, str) else spec
        out.append(dict(rs.normalize_member(dict(extra, host=host)), _id=i))
    return out


def run(current, desired, primary, allow_multiple_arbiters=False):
    """Plan, check every step the way MongoDB and a careful operator would, return the steps."""
    steps = rs.plan(current, desired, primary, allow_multiple_arbiters=allow_multiple_arbiters)
    state = current
    for step in steps:
        if step["action"] == "stepdown":
            assert step["host"] == primary
            remaining = [m for m in state if m["host"] != primary and rs.is_electable(m)]
            assert remaining, "a step-down needs another electable member"
            primary = rs.predict_primary(state, exclude=primary)
            continue
        new = step["members"]
        errors = rs.validate_config(
            new, previous=state, allow_multiple_arbiters=allow_multiple_arbiters
        )
        assert errors == [], (step["changes"], errors)
        assert step["changes"], "a reconfig says what it changes"
        by_host = {m["host"]: m for m in new}
        assert primary in by_host, "the primary is never removed while primary"
        assert rs.is_electable(by_host[primary]), "the primary stays electable while primary"
        assert new != state, "every reconfig changes something"
        state = new
    assert_reached(state, desired)
    assert rs.plan(state, desired, primary, allow_multiple_arbiters) == []
    return steps


def assert_reached(state, desired):
    got = {m["host"]: rs.managed_view(m) for m in state}
    want = {d["host"]: rs.managed_view(d) for d in desired}
    assert got == want


def voting_changes(steps):
    return [c for s in steps if s["action"] == "reconfig" for c in s["changes"]]


def test_nothing_to_do():
    current = members("a:27017", "b:27017", "c:27017")
    desired = [{"host": "a:27017"}, {"host": "b:27017"}, {"host": "c:27017"}]
    assert rs.plan(current, desired, "a:27017") == []


def test_server_float_priorities_compare_equal():
    current = members(("a:1", {"priority": 1.0}), ("b:1", {"priority": 2.0}))
    assert rs.plan(current, [{"host": "a:1"}, {"host": "b:1", "priority": 2}], "a:1") == []


def test_grow_three_to_five_with_new_priorities():
    current = members("a:1", "b:1", "c:1")
    desired = [
        {"host": "a:1", "priority": 3},
        {"host": "b:1", "priority": 2},
        {"host": "c:1"},
        {"host": "d:1", "priority": 0.5},
        {"host": "e:1", "priority": 0.5},
    ]
    steps = run(current, desired, "a:1")
    assert [s["action"] for s in steps] == ["reconfig", "reconfig"]
    # priorities ride along with the first voting change
    assert any("priority 1 -> 3" in c for c in steps[0]["changes"])
    assert sum("add" in c for c in voting_changes(steps)) == 2


def test_shrink_five_to_three_one_voter_at_a_time():
    current = members("a:1", "b:1", "c:1", "d:1", "e:1")
    desired = [{"host": "a:1"}, {"host": "b:1"}, {"host": "c:1"}]
    steps = run(current, desired, "a:1")
    assert len(steps) == 2
    assert all(len(s["changes"]) == 1 and s["changes"][0].startswith("remove") for s in steps)


def test_replace_a_member_grows_before_shrinking():
    current = members("a:1", "b:1", "c:1")
    desired = [{"host": "a:1"}, {"host": "b:1"}, {"host": "d:1"}]
    steps = run(current, desired, "a:1")
    assert steps[0]["changes"][0].startswith("add d:1")
    assert steps[1]["changes"][0].startswith("remove c:1")


def test_replace_in_a_full_set_shrinks_first():
    current = members(*[f"h{i}:1" for i in range(7)])
    desired = [{"host": f"h{i}:1"} for i in range(6)] + [{"host": "new:1"}]
    steps = run(current, desired, "h0:1")
    assert steps[0]["changes"][0].startswith("remove h6:1")


def test_new_member_id_is_fresh():
    current = members("a:1", "b:1", "c:1")
    steps = run(
        current, [{"host": "a:1"}, {"host": "b:1"}, {"host": "c:1"}, {"host": "d:1"}], "a:1"
    )
    assert [m["_id"] for m in steps[0]["members"]] == [0, 1, 2, 3]


def test_change_votes_one_member_per_reconfig():
    current = members("a:1", "b:1", "c:1", "d:1", "e:1")
    desired = [
        {"host": "a:1"},
        {"host": "b:1"},
        {"host": "c:1"},
        {"host": "d:1", "votes": 0},
        {"host": "e:1", "votes": 0},
    ]
    steps = run(current, desired, "a:1")
    assert len(steps) == 2
    for step in steps:
        assert len(step["changes"]) == 1 and "votes 1 -> 0" in step["changes"][0]
        assert "priority 1 -> 0" in step["changes"][0]


def test_non_voting_changes_go_in_one_reconfig():
    current = members("a:1", "b:1", "c:1", ("d:1", {"votes": 0, "priority": 0}))
    desired = [
        {"host": "a:1", "tags": {"dc": "x"}},
        {"host": "b:1", "priority": 2},
        {"host": "c:1", "tags": {"dc": "y"}},
        {"host": "e:1", "votes": 0},
    ]
    steps = run(current, desired, "a:1")
    assert len(steps) == 1
    assert len(steps[0]["changes"]) == 5


def test_hidden_and_delayed_members():
    current = members("a:1", "b:1", "c:1")
    desired = [
        {"host": "a:1"},
        {"host": "b:1"},
        {"host": "c:1", "hidden": True, "secondaryDelaySecs": 3600},
    ]
    steps = run(current, desired, "a:1")
    assert len(steps) == 1
    member = next(m for m in steps[0]["members"] if m["host"] == "c:1")
    assert (member["priority"], member["hidden"], member["votes"]) == (0, True, 1)


def test_add_an_arbiter():
    current = members("a:1", "b:1")
    steps = run(
        current, [{"host": "a:1"}, {"host": "b:1"}, {"host": "arb:1", "arbiterOnly": True}], "a:1"
    )
    added = steps[0]["members"][-1]
    assert added["arbiterOnly"] and added["priority"] == 0 and added["votes"] == 1


def test_replace_an_arbiter_never_has_two():
    current = members("a:1", "b:1", ("arb:1", {"arbiterOnly": True}))
    desired = [{"host": "a:1"}, {"host": "b:1"}, {"host": "arb2:1", "arbiterOnly": True}]
    steps = run(current, desired, "a:1")
    assert steps[0]["changes"][0].startswith("remove arb:1")


def test_turning_a_secondary_into_an_arbiter_removes_and_adds_it():
    current = members("a:1", "b:1", "c:1")
    desired = [{"host": "a:1"}, {"host": "b:1"}, {"host": "c:1", "arbiterOnly": True}]
    steps = run(current, desired, "a:1")
    assert [s["changes"][0].split()[0] for s in steps] == ["remove", "add"]
    assert "to add it back with new arbiterOnly" in steps[0]["changes"][0]


def test_build_indexes_change_readds():
    current = members("a:1", "b:1", "c:1")
    desired = [
        {"host": "a:1"},
        {"host": "b:1"},
        {"host": "c:1", "buildIndexes": False, "hidden": True},
    ]
    steps = run(current, desired, "a:1")
    assert len(steps) == 2


def test_removing_the_primary_steps_it_down_last():
    current = members("a:1", "b:1", "c:1")
    desired = [{"host": "b:1"}, {"host": "c:1"}, {"host": "d:1"}]
    steps = run(current, desired, "a:1")
    assert [s["action"] for s in steps] == ["reconfig", "stepdown", "reconfig"]
    assert steps[2]["changes"][0].startswith("remove a:1")


def test_primary_made_unelectable_is_stepped_down_first():
    current = members("a:1", "b:1", "c:1")
    desired = [{"host": "a:1", "priority": 0}, {"host": "b:1"}, {"host": "c:1"}]
    steps = run(current, desired, "a:1")
    assert [s["action"] for s in steps] == ["stepdown", "reconfig"]


def test_primary_priority_change_needs_no_stepdown():
    current = members("a:1", "b:1", "c:1")
    steps = run(current, [{"host": "a:1", "priority": 5}, {"host": "b:1"}, {"host": "c:1"}], "a:1")
    assert [s["action"] for s in steps] == ["reconfig"]


def test_replace_every_member():
    current = members("a:1", "b:1", "c:1")
    desired = [{"host": "x:1"}, {"host": "y:1"}, {"host": "z:1"}]
    steps = run(current, desired, "b:1")
    assert sum(s["action"] == "stepdown" for s in steps) >= 1


def test_single_member_to_three():
    current = members("a:1")
    steps = run(current, [{"host": "a:1"}, {"host": "b:1"}, {"host": "c:1"}], "a:1")
    assert len(steps) == 2


def test_desired_errors_are_explained():
    with pytest.raises(rs.PlanError, match="must have priority 0"):
        rs.plan(
            members("a:1"), [{"host": "a:1"}, {"host": "b:1", "hidden": True, "priority": 1}], "a:1"
        )
    with pytest.raises(rs.PlanError, match="at most 7 voting"):
        rs.plan(members("a:1"), [{"host": f"h{i}:1"} for i in range(8)], "a:1")
    with pytest.raises(rs.PlanError, match="more than once"):
        rs.plan(members("a:1"), [{"host": "a:1"}, {"host": "a:1"}], "a:1")
    with pytest.raises(rs.PlanError, match="electable"):
        rs.plan(members("a:1"), [{"host": "a:1", "priority": 0}], "a:1")
    with pytest.raises(rs.PlanError, match="several arbiters"):
        rs.plan(
            members("a:1"),
            [
                {"host": "a:1"},
                {"host": "b:1", "arbiterOnly": True},
                {"host": "c:1", "arbiterOnly": True},
            ],
            "a:1",
        )


def test_multiple_arbiters_when_allowed():
    current = members("a:1", "b:1")
    desired = [
        {"host": "a:1"},
        {"host": "b:1"},
        {"host": "x:1", "arbiterOnly": True},
        {"host": "y:1", "arbiterOnly": True},
    ]
    assert len(run(current, desired, "a:1", allow_multiple_arbiters=True)) == 2


def test_unmanaged_member_fields_are_kept():
    current = members(("a:1", {"horizons": {"ext": "a.example.com:1"}}), "b:1", "c:1")
    steps = run(current, [{"host": "a:1", "priority": 2}, {"host": "b:1"}, {"host": "c:1"}], "a:1")
    assert steps[0]["members"][0]["horizons"] == {"ext": "a.example.com:1"}


def test_newly_added_is_not_submitted():
    current = members("a:1", "b:1", "c:1")
    current[2]["newlyAdded"] = True
    steps = rs.plan(
        current, [{"host": "a:1"}, {"host": "b:1"}, {"host": "c:1", "priority": 2}], "a:1"
    )
    assert all("newlyAdded" not in m for m in steps[0]["members"])


def test_initiate_config():
    config = rs.initiate_config("rs0", rs.desired_members([{"host": "a:1"}, {"host": "b:1"}]))
    assert config["_id"] == "rs0"
    assert [(m["_id"], m["host"]) for m in config["members"]] == [(0, "a:1"), (1, "b:1")]
    assert rs.validate_config(config["members"]) == []


def test_config_diff_shows_managed_fields():
    diff = rs.config_diff(members("a:1", "b:1"), [{"host": "a:1", "priority": 2}])
    assert set(diff["before"]["members"]) == {"a:1", "b:1"}
    assert diff["after"]["members"]["a:1"]["priority"] == 2


# The validator itself: a planner checked by a validator that accepts everything proves nothing.


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (
            [
                {"host": "a:1", "_id": 0},
                {"host": "b:1", "_id": 1},
                {"host": "c:1", "_id": 2},
                {"host": "d:1", "_id": 3},
                {"host": "e:1", "_id": 4},
            ],
            "2 voting members change",
        ),
        ([{"host": "a:1", "_id": 0}], "2 voting members change"),
        (
            [
                {"host": "a:1", "_id": 0},
                {"host": "b:1", "_id": 1, "votes": 0, "priority": 0},
                {"host": "c:1", "_id": 2, "votes": 0, "priority": 0},
            ],
            "2 voting members change",
        ),
        (
            [
                {"host": "a:1", "_id": 0},
                {"host": "b:1", "_id": 1},
                {"host": "c:1", "_id": 2, "arbiterOnly": True, "priority": 0},
            ],
            "arbiterOnly cannot",
        ),
    ],
)
def test_validator_rejects_unsafe_reconfigs(new, message):
    previous = members("a:1", "b:1", "c:1")
    assert any(message in e for e in rs.validate_config(new, previous=previous))


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ({"votes": 0, "priority": 1}, "votes=0 must have priority 0"),
        ({"hidden": True, "priority": 1}, "hidden=True must have priority 0"),
        ({"arbiterOnly": True, "priority": 1}, "arbiterOnly=True must have priority 0"),
        ({"arbiterOnly": True, "priority": 0, "votes": 0}, "exactly 1 vote"),
        ({"secondaryDelaySecs": 10, "priority": 1}, "secondaryDelaySecs=10 must have priority 0"),
        ({"buildIndexes": False, "priority": 1}, "buildIndexes=False must have priority 0"),
        ({"votes": 2}, "votes must be 0 or 1"),
        ({"priority": 1001}, "priority must be between"),
    ],
)
def test_validator_member_rules(member, message):
    config = [{"host": "a:1", "_id": 0}, dict(member, host="b:1", _id=1)]
    assert any(message in e for e in rs.validate_config(config))


def test_validator_counts_newly_added_as_non_voting():
    previous = members("a:1", "b:1", "c:1")
    previous[2]["newlyAdded"] = True
    # c is still newlyAdded: adding d is the one voting change
    new = [dict(m) for m in previous] + [{"host": "d:1", "_id": 3}]
    for m in new:
        m.pop("newlyAdded", None)
    assert rs.validate_config(new, previous=previous) == []


def random_member(rng, host):
    kind = rng.choice(
        [
            "plain",
            "plain",
            "plain",
            "priority",
            "nonvoting",
            "hidden",
            "delayed",
            "arbiter",
            "noindex",
        ]
    )
    spec = {"host": host}
    if kind == "priority":
        spec["priority"] = rng.choice([0.5, 2, 3, 10])
    elif kind == "nonvoting":
        spec["votes"] = 0
    elif kind == "hidden":
        spec["hidden"] = True
        spec["votes"] = rng.choice([0, 1])
    elif kind == "delayed":
        spec.update(hidden=True, secondaryDelaySecs=rng.choice([60, 3600]))
    elif kind == "arbiter":
        spec["arbiterOnly"] = True
    elif kind == "noindex":
        spec.update(buildIndexes=False, votes=rng.choice([0, 1]))
    if rng.random() < 0.3:
        spec["tags"] = {"dc": rng.choice(["east", "west"])}
    return spec


def random_config(rng, hosts, size):
    """Random valid members drawn from ``hosts``: at most 7 voters, one arbiter, one electable."""
    while True:
        specs = [random_member(rng, h) for h in rng.sample(hosts, size)]
        normal = [dict(rs.normalize_member(s), _id=i) for i, s in enumerate(specs)]
        if rs.validate_config(normal) == []:
            return specs, normal


@pytest.mark.parametrize("seed", range(300))
def test_random_current_to_random_desired(seed):
    rng = random.Random(seed)
    hosts = [f"h{i}:27017" for i in range(12)]
    current = random_config(rng, hosts, rng.randint(1, 9))[1]
    # ids need not be dense in a real config
    offset = rng.choice([0, 0, 5, 200])
    current = [dict(m, _id=(m["_id"] + offset) % 256) for m in current]
    desired = random_config(rng, hosts, rng.randint(1, 9))[0]
    primary = rng.choice([m["host"] for m in current if rs.is_electable(m)])
    steps = run(current, desired, primary)
    voter_changes = len(
        {m["host"] for m in current if rs.is_voter(m)}
        ^ {d["host"] for d in rs.desired_members(desired) if d["votes"]}
    )
    reconfigs = [s for s in steps if s["action"] == "reconfig"]
    assert len(reconfigs) <= voter_changes + 2 * len(current) + 2


def test_successor_for_the_primary_joins_before_other_voters():
    current = members(
        "p:1",
        ("h1:1", {"hidden": True}),
        ("h2:1", {"hidden": True}),
        ("h3:1", {"hidden": True}),
        ("h4:1", {"hidden": True}),
    )
    desired = [{"host": h, "hidden": True} for h in ("h1:1", "h2:1", "h3:1", "h4:1", "h5:1")]
    desired += [{"host": "e:1"}]
    steps = run(current, desired, "p:1")
    assert steps[0]["changes"][0].startswith("add e:1")


def test_no_successor_possible_is_explained():
    hidden = [f"h{i}:1" for i in range(6)]
    current = members("p:1", *[(h, {"hidden": True}) for h in hidden])
    desired = [{"host": h, "hidden": True} for h in hidden] + [{"host": "e:1"}]
    with pytest.raises(rs.PlanError, match="no other electable member can join first"):
        rs.plan(current, desired, "p:1")
