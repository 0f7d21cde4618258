# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Operations on one replica set member and changes to it: pure functions, no I/O.

``plan_operation()`` takes the set's configuration and status, the member and the operation, and
returns what will happen in order, or raises ``Refused`` with the reason when the operation would
leave the set without a majority of healthy voting members (then no primary can be elected and
writes with w: majority stop). A member change (add, remove, priority, votes, hidden, delay; an
arbiter added) also returns the desired members, for ``whaleal.wap.mongodb_replicaset``'s
reconfig planner. A resync empties a member's data so that it copies the set again (MongoDB's
"Resync a Member of a Replica Set", automatic initial sync): planned as a stop.
"""

from __future__ import annotations

OPERATIONS = ("start", "stop", "restart", "step_down", "freeze", "resync", "add", "remove",
              "change")  # fmt: skip
CHANGES = ("add", "remove", "change")
HEALTHY = ("PRIMARY", "SECONDARY", "ARBITER")
# A member's fields that whaleal.wap.mongodb_replicaset takes (the others are the server's).
SPEC_FIELDS = ("host", "priority", "votes", "hidden", "arbiterOnly", "buildIndexes", "tags",
               "secondaryDelaySecs")  # fmt: skip


class Refused(ValueError):
    """The operation would leave the set without a majority, or cannot apply (the reason)."""


def majority(votes: int) -> int:
    return votes // 2 + 1


def _votes(member: dict) -> int:
    return int(member.get("votes", 1))


def healthy_voters(members: list[dict], states: dict[str, str]) -> list[str]:
    """The voting members that are up now (PRIMARY, SECONDARY or ARBITER)."""
    return [m["host"] for m in members if _votes(m) and states.get(m["host"]) in HEALTHY]


def _check_majority(members: list[dict], up: list[str], states: dict[str, str], what: str) -> None:
    total = sum(_votes(m) for m in members)
    if total and len(up) < majority(total):
        voters = [m["host"] for m in members if _votes(m)]
        down = [h for h in voters if h in states and states[h] not in HEALTHY]
        raise Refused(
            f"{what} would leave {len(up)} of {total} voting members up: a majority needs "
            f"{majority(total)}, so no primary could be elected"
            + (f" (down already: {', '.join(down)})" if down else "")
        )


def changed_member(current: dict | None, host: str, priority, votes, hidden, delay=None,
                   arbiter=None) -> dict:  # fmt: skip
    """The member's desired spec after a change (or an addition) of priority, votes, hidden,
    delay (secondaryDelaySecs), or an arbiter added."""
    member = {"host": host, **(current or {})}
    for key, value in (("priority", priority), ("votes", votes), ("hidden", hidden),
                       ("secondaryDelaySecs", delay)):  # fmt: skip
        if value is not None:
            member[key] = value
    if delay and hidden is None:
        member["hidden"] = True  # MongoDB: a delayed member should be hidden from clients
    if arbiter:
        member = {"host": host, "arbiterOnly": True, "priority": 0, "votes": 1}
    if member.get("hidden") or member.get("votes", 1) == 0 or member.get("secondaryDelaySecs"):
        member["priority"] = 0  # MongoDB: a hidden, non-voting or delayed member is never elected
    return member


def plan_operation(
    config: dict,
    states: dict[str, str],
    member: str,
    operation: str,
    priority=None,
    votes=None,
    hidden=None,
    delay=None,
    arbiter=None,
) -> dict:
    """What the operation does, in order (``steps``), and for a change the desired ``members``.

    ``states``: each member's state from ``replSetGetStatus`` (``host`` -> ``stateStr``).
    """
    if operation not in OPERATIONS:
        raise Refused(f"unknown operation {operation!r}: one of {', '.join(OPERATIONS)}")
    members = config.get("members", [])
    by_host = {m["host"]: m for m in members}
    current = by_host.get(member)
    if current is None and operation != "add":
        raise Refused(f"{member} is not a member of {config.get('_id')}: members are "
                      f"{', '.join(by_host)}")  # fmt: skip
    if current is not None and operation == "add":
        raise Refused(f"{member} is a member of {config.get('_id')} already")
    state = states.get(member, "UNKNOWN")
    primary = next((h for h, s in states.items() if s == "PRIMARY"), None)
    up = healthy_voters(members, states)
    steps: list[str] = []
    desired = None
    if arbiter and operation != "add":
        raise Refused("a member becomes an arbiter only when added: remove it, then add it as one")
    if operation in ("stop", "restart", "resync"):
        _check_majority(members, [h for h in up if h != member], states, f"stopping {member}")
        if operation == "resync" and current.get("arbiterOnly"):
            raise Refused(f"{member} is an arbiter: it holds no data to copy again")
        if member == primary:
            _check_electable(members, states, member)
            steps.append(f"step {member} down (it is the primary)")
        steps.append(f"stop {member}")
        if operation == "restart":
            steps.append(f"start {member} and wait until it serves again, caught up")
        if operation == "resync":
            steps += [f"empty {member}'s data directory",
                      f"start {member}: it copies the data from the set (initial sync) and "
                      "serves again once caught up"]  # fmt: skip
    elif operation == "start":
        if state in HEALTHY:
            steps.append(f"{member} runs already ({state}): nothing to do")
        else:
            steps.append(f"start {member} and wait until it serves again, caught up")
    elif operation == "step_down":
        if member != primary:
            steps.append(f"{member} is not the primary ({state}): nothing to do")
        else:
            _check_electable(members, states, member)
            steps.append(f"step {member} down and wait for another primary")
    elif operation == "freeze":
        if member == primary:
            raise Refused(f"{member} is the primary: step it down rather than freeze it")
        steps.append(f"freeze {member}: it will not stand for election for the given seconds")
    else:
        desired = _changed(members, member, operation, priority, votes, hidden, delay, arbiter)
        new_up = [h for h in healthy_voters(desired, states) if h in up or h == member]
        if operation == "add":
            new_up = [h for h in new_up if h != member]  # not up until it has synced
        verb = "adding" if operation == "add" else operation
        _check_majority(desired, new_up, states, f"{verb} {member}")
        steps += _change_steps(current, desired, member, operation, primary)
    return {"member": member, "operation": operation, "state": state, "primary": primary,
            "steps": steps, "members": desired}  # fmt: skip


def _check_electable(members: list[dict], states: dict[str, str], member: str) -> None:
    others = [m["host"] for m in members
              if m["host"] != member and float(m.get("priority", 1)) > 0 and _votes(m)
              and states.get(m["host"]) == "SECONDARY"]  # fmt: skip
    if not others:
        raise Refused(f"no other electable member is up to take over from {member}, the primary")


def _changed(members, member, operation, priority, votes, hidden, delay, arbiter) -> list[dict]:
    specs = [{k: m[k] for k in SPEC_FIELDS if k in m} for m in members]
    if operation == "remove":
        return [m for m in specs if m["host"] != member]
    if operation == "add":
        return [*specs, changed_member(None, member, priority, votes, hidden, delay, arbiter)]
    if priority is None and votes is None and hidden is None and delay is None:
        raise Refused("a change needs priority, votes, hidden or delay")
    current = next(m for m in specs if m["host"] == member)
    if current.get("arbiterOnly"):
        raise Refused(f"{member} is an arbiter: remove it and add a data-bearing member instead")
    if delay and priority:
        raise Refused("a delayed member has priority 0 (it must never become the primary)")
    return [changed_member(m, member, priority, votes, hidden, delay) if m["host"] == member
            else m for m in specs]  # fmt: skip


def _change_steps(current, desired, member, operation, primary) -> list[str]:
    if operation == "remove":
        steps = [f"step {member} down (it is the primary)"] if member == primary else []
        return [*steps, f"reconfigure without {member} (its mongod keeps running)"]
    spec = next(m for m in desired if m["host"] == member)
    shown = ("priority", "votes", "hidden", "secondaryDelaySecs")
    fields = ", ".join(f"{k} {spec[k]}" for k in shown
                       if k in spec and (k != "secondaryDelaySecs" or spec[k]))  # fmt: skip
    if operation == "add" and spec.get("arbiterOnly"):
        return [f"reconfigure with {member} added as an arbiter (it votes, holds no data)"]
    if operation == "add":
        return [f"reconfigure with {member} added ({fields or 'defaults'}); it syncs from the set"]
    steps = []
    if member == primary and (spec.get("priority", 1) == 0 or spec.get("votes", 1) == 0):
        steps.append(f"step {member} down (it is the primary and may no longer be elected)")
    return [*steps, f"reconfigure {member}: {fields}"]
