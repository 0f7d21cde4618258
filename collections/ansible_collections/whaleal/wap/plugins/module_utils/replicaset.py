# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Replica set membership planning: pure functions, no I/O.

``plan()`` turns a current replica set configuration and the desired members into the list of
steps that reach the desired members while every intermediate configuration stays valid under
MongoDB's rules for ``replSetReconfig`` (checked by ``validate_config``):

- at most one voting member added, removed or with its votes changed per reconfig (MongoDB 4.4+);
- ``arbiterOnly`` and ``buildIndexes`` cannot change on an existing member: it is removed, then
  added again;
- at most 7 voting members and 50 members; members with 0 votes, hidden, delayed, without
  indexes and arbiters have priority 0; at least one electable member;
- at most one arbiter unless the server runs with ``allowMultipleArbiters``.

On top of MongoDB's rules the plan keeps the set writable: the current primary is never removed
or made unelectable while it is primary; the plan steps it down first, after every other change.
"""

from __future__ import annotations

import copy

MANAGED_FIELDS = (
    "arbiterOnly",
    "buildIndexes",
    "hidden",
    "priority",
    "secondaryDelaySecs",
    "tags",
    "votes",
)
# Fields MongoDB refuses to change on an existing member: it must be removed and added again.
IMMUTABLE_FIELDS = ("arbiterOnly", "buildIndexes")
# Fields the server adds to its own view of a member and refuses (or ignores) in a reconfig.
SERVER_ONLY_FIELDS = ("newlyAdded",)

MAX_MEMBERS = 50
MAX_VOTING_MEMBERS = 7
MAX_MEMBER_ID = 255
MAX_PRIORITY = 1000


class PlanError(ValueError):
    """The desired members cannot be reached (the message says why and what to change)."""


def normalize_member(spec: dict) -> dict:
    """A member spec with every managed field set, MongoDB's defaults filling the gaps.

    ``priority`` defaults to 0 for members that may not be elected (arbiters, hidden, delayed,
    without indexes, without a vote) and to 1 otherwise.
    """
    member = {k: v for k, v in spec.items() if k not in SERVER_ONLY_FIELDS}
    member["host"] = str(spec["host"])
    member["arbiterOnly"] = bool(spec.get("arbiterOnly", False))
    member["buildIndexes"] = bool(spec.get("buildIndexes", True))
    member["hidden"] = bool(spec.get("hidden", False))
    member["secondaryDelaySecs"] = int(spec.get("secondaryDelaySecs") or 0)
    member["tags"] = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
    member["votes"] = int(spec["votes"]) if spec.get("votes") is not None else 1
    if spec.get("priority") is None:
        unelectable = (
            member["arbiterOnly"]
            or member["hidden"]
            or member["secondaryDelaySecs"] > 0
            or not member["buildIndexes"]
            or member["votes"] == 0
        )
        member["priority"] = 0 if unelectable else 1
    else:
        member["priority"] = _number(spec["priority"])
    return member


def _number(value):
    number = float(value)
    return int(number) if number.is_integer() else number


def managed_view(member: dict) -> dict:
    """The managed fields of a member (plus host), for comparison and for diffs."""
    normal = normalize_member(member)
    view = {"host": normal["host"]}
    view.update({k: normal[k] for k in MANAGED_FIELDS})
    return view


def is_voter(member: dict) -> bool:
    return int(member.get("votes", 1)) > 0 and not member.get("newlyAdded", False)


def is_electable(member: dict) -> bool:
    return (
        int(member.get("votes", 1)) > 0
        and _number(member.get("priority", 1)) > 0
        and not member.get("arbiterOnly", False)
        and not member.get("hidden", False)
    )


def validate_member(member: dict) -> list[str]:
    """The rules one member must follow on its own."""
    errors = []
    host = member.get("host", "?")
    votes = member.get("votes", 1)
    priority = _number(member.get("priority", 1))
    if votes not in (0, 1):
        errors.append(f"{host}: votes must be 0 or 1, not {votes!r}")
    if not 0 <= priority <= MAX_PRIORITY:
        errors.append(f"{host}: priority must be between 0 and {MAX_PRIORITY}, not {priority!r}")
    if priority > 0:
        reasons = [
            ("votes", votes == 0),
            ("arbiterOnly", member.get("arbiterOnly", False)),
            ("hidden", member.get("hidden", False)),
            ("secondaryDelaySecs", (member.get("secondaryDelaySecs") or 0) > 0),
            ("buildIndexes", not member.get("buildIndexes", True)),
        ]
        for field, bad in reasons:
            if bad:
                errors.append(
                    f"{host}: a member with {field}={member.get(field)!r} must have priority 0"
                )
    if member.get("arbiterOnly", False) and votes != 1:
        errors.append(f"{host}: an arbiter must have exactly 1 vote")
    if (member.get("secondaryDelaySecs") or 0) < 0:
        errors.append(f"{host}: secondaryDelaySecs must not be negative")
    return errors


def validate_config(
    members: list[dict], previous: list[dict] | None = None, allow_multiple_arbiters: bool = False
) -> list[str]:
    """Every rule MongoDB applies to a replica set configuration, and to a reconfig from
    ``previous`` when it is given. Returns the broken rules (empty when valid)."""
    errors = []
    if not members:
        return ["a replica set needs at least one member"]
    if len(members) > MAX_MEMBERS:
        errors.append(f"at most {MAX_MEMBERS} members, not {len(members)}")
    hosts = [m["host"] for m in members]
    for host in sorted({h for h in hosts if hosts.count(h) > 1}):
        errors.append(f"{host} appears more than once")
    ids = [m.get("_id") for m in members]
    for member_id in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        errors.append(f"member _id {member_id} appears more than once")
    for member_id in ids:
        if not isinstance(member_id, int) or not 0 <= member_id <= MAX_MEMBER_ID:
            errors.append(
                f"member _id {member_id!r} is not an integer between 0 and {MAX_MEMBER_ID}"
            )
    for member in members:
        errors.extend(validate_member(member))
    voters = [m for m in members if int(m.get("votes", 1)) > 0]
    if not voters:
        errors.append("at least one member must vote")
    if len(voters) > MAX_VOTING_MEMBERS:
        errors.append(f"at most {MAX_VOTING_MEMBERS} voting members, not {len(voters)}")
    if not any(is_electable(m) for m in members):
        errors.append("at least one member must be electable (votes 1, priority above 0)")
    arbiters = [m for m in members if m.get("arbiterOnly", False)]
    if len(arbiters) > 1 and not allow_multiple_arbiters:
        errors.append(
            f"{len(arbiters)} arbiters: MongoDB 5.3+ allows one unless allowMultipleArbiters is set"
        )
    if previous is not None:
        errors.extend(_validate_reconfig(previous, members))
    return errors


def _validate_reconfig(previous: list[dict], members: list[dict]) -> list[str]:
    errors = []
    before = {m["_id"]: m for m in previous}
    after = {m["_id"]: m for m in members}
    old_voters = {i for i, m in before.items() if is_voter(m)}
    new_voters = {
        i
        for i, m in after.items()
        if int(m.get("votes", 1)) > 0 and i in before and not before[i].get("newlyAdded", False)
    }
    # A voter MongoDB adds in this reconfig gets newlyAdded and does not count yet, but the
    # single-change rule still counts it as the one voting change of this reconfig.
    added_voters = {i for i, m in after.items() if int(m.get("votes", 1)) > 0 and i not in before}
    changes = len(old_voters ^ new_voters) + len(added_voters)
    if changes > 1:
        errors.append(f"{changes} voting members change in one reconfig: MongoDB allows one")
    for member_id in before.keys() & after.keys():
        for field in IMMUTABLE_FIELDS:
            old = before[member_id].get(field, field == "buildIndexes")
            new = after[member_id].get(field, field == "buildIndexes")
            if bool(old) != bool(new):
                host = after[member_id]["host"]
                errors.append(f"{host}: {field} cannot change on an existing member")
    return errors


def desired_members(specs: list[dict]) -> list[dict]:
    """Normalised desired members, or PlanError listing what is wrong with them."""
    members = [normalize_member(s) for s in specs]
    numbered = [dict(m, _id=i) for i, m in enumerate(members)]
    errors = validate_config(numbered, allow_multiple_arbiters=True)
    if errors:
        raise PlanError("The desired members are not a valid replica set: " + "; ".join(errors))
    return members


def initiate_config(name: str, members: list[dict], settings: dict | None = None) -> dict:
    """The replSetInitiate document for a new set."""
    config = {
        "_id": name,
        "members": [dict(_submitted(m), _id=i) for i, m in enumerate(members)],
    }
    if settings:
        config["settings"] = dict(settings)
    return config


def _submitted(member: dict) -> dict:
    return {k: v for k, v in member.items() if k not in SERVER_ONLY_FIELDS}


def needs_readd(current: dict, desired: dict) -> bool:
    cur = normalize_member(current)
    return any(cur[f] != desired[f] for f in IMMUTABLE_FIELDS)


def member_changes(current: dict, desired: dict) -> list[str]:
    """Human-readable field changes from ``current`` to ``desired`` (both normalised)."""
    cur = normalize_member(current)
    return [f"{f} {cur[f]!r} -> {desired[f]!r}" for f in MANAGED_FIELDS if cur[f] != desired[f]]


def _next_id(members: list[dict], used: set[int]) -> int:
    """A member _id that neither the current nor the new configuration uses: a reused _id
    would make MongoDB take the new member for a changed old one."""
    taken = {m["_id"] for m in members} | used
    candidate = max(taken) + 1 if taken else 0
    if candidate <= MAX_MEMBER_ID:
        return candidate
    for member_id in range(MAX_MEMBER_ID + 1):
        if member_id not in taken:
            return member_id
    raise PlanError(f"no free member _id left between 0 and {MAX_MEMBER_ID}")


def _apply(current: dict, desired: dict) -> dict:
    """``current`` member with the managed fields of ``desired`` (other fields kept)."""
    member = _submitted(current)
    member.update({k: desired[k] for k in MANAGED_FIELDS})
    return member


def _step(state, primary, desired, used_ids, allow_multiple_arbiters):
    """The next step from ``state`` towards ``desired`` (dict by host), or None when done."""
    by_host = {m["host"]: m for m in state}
    removes = [h for h in by_host if h not in desired or needs_readd(by_host[h], desired[h])]
    adds = [h for h in desired if h not in by_host]
    updates = [
        h
        for h in desired
        if h in by_host and h not in removes and member_changes(by_host[h], desired[h])
    ]
    if not (removes or adds or updates):
        return None

    def demotes_primary(host):
        return host == primary and (host in removes or not is_electable(desired[host]))

    def voter_change(host):
        if host in removes:
            return is_voter(by_host[host])
        if host in adds:
            return desired[host]["votes"] > 0
        return is_voter(by_host[host]) != (desired[host]["votes"] > 0)

    new = [copy.deepcopy(_submitted(m)) for m in state]
    notes = []

    def remove(host):
        new[:] = [m for m in new if m["host"] != host]
        if host in desired:
            current = normalize_member(by_host[host])
            fields = "/".join(f for f in IMMUTABLE_FIELDS if current[f] != desired[host][f])
            notes.append(f"remove {host} (to add it back with new {fields})")
        else:
            notes.append(f"remove {host} (no longer wanted)")

    def add(host):
        member_id = _next_id(new + state, used_ids)
        used_ids.add(member_id)
        new.append(dict(_submitted(desired[host]), _id=member_id))
        if desired[host]["arbiterOnly"]:
            kind = "arbiter"
        else:
            kind = "voting" if desired[host]["votes"] else "non-voting"
        notes.append(f"add {host} as _id {member_id} ({kind})")

    def update(host):
        changes = member_changes(by_host[host], desired[host])
        for i, m in enumerate(new):
            if m["host"] == host:
                new[i] = _apply(m, desired[host])
        notes.append(f"update {host}: {', '.join(changes)}")

    actions = {"remove": remove, "add": add, "update": update}
    # Changes that do not touch the voting membership go together in one reconfig.
    for host in removes:
        if not voter_change(host) and not demotes_primary(host):
            remove(host)
    for host in updates:
        if not voter_change(host) and not demotes_primary(host):
            update(host)
    for host in adds:
        if not voter_change(host):
            add(host)
    free_state = copy.deepcopy(new)
    free_notes = list(notes)
    # Then at most one voting change: grow before shrinking, unless the set is full of voters.
    voter_adds = [("add", h) for h in adds if voter_change(h)]
    voter_adds += [
        ("update", h)
        for h in updates
        if voter_change(h) and not demotes_primary(h) and desired[h]["votes"] > 0
    ]
    # Electable members first: the primary may have to hand over to one of them later.
    voter_adds.sort(key=lambda c: not is_electable(desired[c[1]]))
    voter_removes = [("remove", h) for h in removes if voter_change(h) and not demotes_primary(h)]
    voter_removes += [
        ("update", h)
        for h in updates
        if voter_change(h) and not demotes_primary(h) and desired[h]["votes"] == 0
    ]
    # Arbiters leave before others come, so that two never coexist.
    voter_removes.sort(key=lambda c: not by_host[c[1]].get("arbiterOnly", False))
    voters_now = sum(1 for m in new if int(m.get("votes", 1)) > 0)
    candidates = (
        voter_removes + voter_adds
        if voters_now >= MAX_VOTING_MEMBERS
        else (voter_adds + voter_removes)
    )
    for kind, host in candidates:
        saved_ids = set(used_ids)
        actions[kind](host)
        if not validate_config(
            new, previous=state, allow_multiple_arbiters=allow_multiple_arbiters
        ):
            break
        new[:] = copy.deepcopy(free_state)
        notes[:] = list(free_notes)
        used_ids.clear()
        used_ids.update(saved_ids)
    if notes:
        errors = validate_config(
            new, previous=state, allow_multiple_arbiters=allow_multiple_arbiters
        )
        if errors:
            raise PlanError(
                "No valid reconfig found towards the desired members: " + "; ".join(errors)
            )
        return {
            "action": "reconfig",
            "members": sorted(new, key=lambda m: m["_id"]),
            "changes": notes,
        }
    if primary is not None and any(demotes_primary(h) for h in removes + updates):
        if not any(is_electable(m) for m in state if m["host"] != primary):
            raise PlanError(
                f"The primary {primary} must be removed or made unelectable, but no other "
                f"electable member can join first (the set already has {MAX_VOTING_MEMBERS} "
                "voting members). Reach the desired members in two runs: first add an "
                "electable member in place of another voter."
            )
        return {
            "action": "stepdown",
            "host": primary,
            "changes": [
                f"step down the primary {primary} before it is removed or made unelectable"
            ],
        }
    raise PlanError(
        "No valid reconfig found towards the desired members from the current "
        "configuration; check the desired members against MongoDB's rules"
    )


def predict_primary(members: list[dict], exclude: str | None = None) -> str | None:
    """The member most likely to win the next election (highest priority, then lowest _id)."""
    electable = [m for m in members if is_electable(m) and m["host"] != exclude]
    if not electable:
        return None
    best = max(electable, key=lambda m: (_number(m.get("priority", 1)), -m["_id"]))
    return best["host"]


def plan(
    current_members: list[dict],
    specs: list[dict],
    primary: str | None,
    allow_multiple_arbiters: bool = False,
    max_steps: int = 200,
) -> list[dict]:
    """The steps from ``current_members`` (the ``members`` of replSetGetConfig) to ``specs``.

    Each step is ``{"action": "reconfig", "members": [...], "changes": [...]}`` (the complete
    member list to submit) or ``{"action": "stepdown", "host": ..., "changes": [...]}``. After a
    step-down the rest is planned with the predicted next primary; callers that act replan from
    the real configuration after every step.
    """
    desired = {m["host"]: m for m in desired_members(specs)}
    if not allow_multiple_arbiters and sum(m["arbiterOnly"] for m in desired.values()) > 1:
        raise PlanError(
            "the desired members have several arbiters: set allow_multiple_arbiters "
            "(and the server's allowMultipleArbiters parameter) to deploy them"
        )
    state = [copy.deepcopy(_submitted(m)) for m in current_members]
    used_ids = set()
    steps = []
    while True:
        step = _step(state, primary, desired, used_ids, allow_multiple_arbiters)
        if step is None:
            return steps
        steps.append(step)
        if len(steps) > max_steps:
            raise PlanError(f"the plan does not converge after {max_steps} steps")
        if step["action"] == "reconfig":
            state = step["members"]
        else:
            primary = predict_primary(state, exclude=primary)


def config_diff(current_members: list[dict], specs: list[dict]) -> dict:
    """``before`` and ``after`` for Ansible's diff: the managed fields of each member by host."""
    before = {m["host"]: _without_host(managed_view(m)) for m in current_members}
    after = {m["host"]: _without_host(m) for m in (managed_view(s) for s in specs)}
    return {"before": {"members": before}, "after": {"members": after}}


def _without_host(view: dict) -> dict:
    return {k: v for k, v in view.items() if k != "host"}
