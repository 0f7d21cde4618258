"""Replica set configuration documents: validation, defaults, majorities, reconfig rules.

Pure functions (no I/O), after MongoDB's "Replica Set Configuration" reference
(https://www.mongodb.com/docs/manual/reference/replica-configuration/) and the rules of
replSetInitiate / replSetReconfig. Errors are :class:`CommandError` with mongod's codes:
InvalidReplicaSetConfig (93), NewReplicaSetConfigurationIncompatible (103).
"""

from __future__ import annotations

import copy

from bson.int64 import Int64
from bson.objectid import ObjectId

from mongod_double.errors import INVALID_REPL_SET_CONFIG, CommandError

NEW_CONFIG_INCOMPATIBLE = 103
MAX_MEMBERS = 50
MAX_VOTING_MEMBERS = 7
MEMBER_FIELDS = {
    "_id",
    "host",
    "arbiterOnly",
    "buildIndexes",
    "hidden",
    "priority",
    "tags",
    "secondaryDelaySecs",
    "slaveDelay",
    "votes",
    "newlyAdded",
}
CONFIG_FIELDS = {
    "_id",
    "version",
    "term",
    "protocolVersion",
    "writeConcernMajorityJournalDefault",
    "configsvr",
    "members",
    "settings",
}
DEFAULT_SETTINGS = {
    "chainingAllowed": True,
    "heartbeatIntervalMillis": 2000,
    "heartbeatTimeoutSecs": 10,
    "electionTimeoutMillis": 10000,
    "catchUpTimeoutMillis": -1,
    "catchUpTakeoverDelayMillis": 30000,
    "getLastErrorModes": {},
    "getLastErrorDefaults": {"w": 1, "wtimeout": 0},
}


def invalid(message: str) -> CommandError:
    return CommandError(INVALID_REPL_SET_CONFIG, message)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def normalize(config: dict, set_name: str | None) -> dict:
    """Validate ``config`` and return it with every default filled in, as mongod stores it.

    ``set_name`` is the node's ``--replSet``; the config's ``_id`` must match it.
    """
    if not isinstance(config, dict):
        raise invalid("Replica set configuration must be an object")
    for key in config:
        if key not in CONFIG_FIELDS:
            raise invalid(f"Unexpected field {key} in replica set configuration")
    name = config.get("_id")
    if not isinstance(name, str) or not name:
        raise invalid("Replica set configuration must have a non-empty string _id")
    if set_name is not None and name != set_name:
        raise invalid(
            f"Attempting to initiate a replica set with name {name}, but command line "
            f"reports {set_name}; rejecting"
        )
    version = config.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise invalid(f"version field value of {version} is out of range")
    if config.get("protocolVersion", 1) != 1:
        raise invalid("Only protocolVersion 1 is supported")
    members = config.get("members")
    if not isinstance(members, list) or not members:
        raise invalid("Replica set configuration must contain at least one member")
    if len(members) > MAX_MEMBERS:
        raise invalid(
            f"Replica set configuration contains {len(members)} members, but must have "
            f"at most {MAX_MEMBERS}"
        )
    out_members = [_normalize_member(m) for m in members]
    ids = [m["_id"] for m in out_members]
    hosts = [m["host"] for m in out_members]
    for i, member in enumerate(out_members):
        if ids.index(member["_id"]) != i:
            first = ids.index(member["_id"])
            raise invalid(
                f"Found two member configurations with same _id field, members.{first}._id == "
                f"members.{i}._id == {member['_id']}"
            )
        if hosts.index(member["host"]) != i:
            raise invalid(
                f"Found two member configurations with same host field, "
                f"members.{hosts.index(member['host'])}.host == members.{i}.host == "
                f"{member['host']}"
            )
    voting = sum(1 for m in out_members if m["votes"])
    if voting > MAX_VOTING_MEMBERS:
        raise invalid(
            f"Replica set configuration contains {voting} voting members, but must be at "
            f"least 1 and no more than {MAX_VOTING_MEMBERS}"
        )
    if voting == 0:
        raise invalid(
            "Replica set configuration contains 0 voting members, but must be at least 1 "
            f"and no more than {MAX_VOTING_MEMBERS}"
        )
    if not any(m["priority"] > 0 and not m["arbiterOnly"] for m in out_members):
        raise invalid(
            "This config is not valid because it has no electable nodes: every member has "
            "priority 0 or is an arbiter"
        )
    settings = dict(DEFAULT_SETTINGS)
    given = config.get("settings") or {}
    if not isinstance(given, dict):
        raise invalid("settings must be an object")
    settings.update(given)
    for key in ("heartbeatIntervalMillis", "electionTimeoutMillis", "heartbeatTimeoutSecs"):
        if not _number(settings[key]) or settings[key] <= 0:
            raise invalid(f"{key} field value must be positive")
    settings.setdefault("replicaSetId", ObjectId())
    out = {
        "_id": name,
        "version": int(version),
        "term": int(config.get("term", 0)),
        "members": out_members,
        "protocolVersion": Int64(1),
        "writeConcernMajorityJournalDefault": bool(
            config.get("writeConcernMajorityJournalDefault", True)
        ),
        "settings": settings,
    }
    if config.get("configsvr"):
        out["configsvr"] = True
    return out


def _normalize_member(member: object) -> dict:
    if not isinstance(member, dict):
        raise invalid("Replica set member configuration must be an object")
    for key in member:
        if key not in MEMBER_FIELDS:
            raise invalid(f"Unexpected field {key} in replica set member configuration")
    mid = member.get("_id")
    if not isinstance(mid, int) or isinstance(mid, bool) or mid < 0:
        raise invalid(f"_id field value of {mid} is out of range")
    host = member.get("host")
    if not isinstance(host, str) or not host:
        raise invalid("Replica set member configuration must have a host string")
    name, sep, port = host.rpartition(":")
    if not sep:
        name, port = host, "27017"
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid(f"Invalid host field {host!r}: expected HOST:PORT")
    arbiter = bool(member.get("arbiterOnly", False))
    votes = member.get("votes", 1)
    if votes not in (0, 1) or isinstance(votes, bool):
        raise invalid(f"votes field value is {votes} but must be 0 or 1")
    priority = member.get("priority", 0 if arbiter else 1)
    if not _number(priority) or not 0 <= priority <= 1000:
        raise invalid(f"priority field value of {priority} is out of range")
    hidden = bool(member.get("hidden", False))
    build_indexes = bool(member.get("buildIndexes", True))
    delay = member.get("secondaryDelaySecs", member.get("slaveDelay", 0))
    if arbiter and priority != 0:
        raise invalid(f"priority must be 0 when arbiterOnly is true; member {mid} has {priority}")
    if arbiter and not votes:
        raise invalid("Arbiter must vote (cannot have 0 votes)")
    if hidden and priority != 0:
        raise invalid(f"priority must be 0 when hidden=true; member {mid} has {priority}")
    if not votes and priority != 0:
        raise invalid(f"priority must be 0 when non-voting (votes:0); member {mid} has {priority}")
    if not build_indexes and priority != 0:
        raise invalid(f"priority must be 0 when buildIndexes=false; member {mid} has {priority}")
    if delay and priority != 0:
        raise invalid(f"priority must be 0 when secondaryDelaySecs is used; member {mid}")
    out = {
        "_id": mid,
        "host": f"{name}:{port}",
        "arbiterOnly": arbiter,
        "buildIndexes": build_indexes,
        "hidden": hidden,
        "priority": priority,
        "tags": dict(member.get("tags") or {}),
        "secondaryDelaySecs": Int64(delay),
        "votes": votes,
    }
    return out


# -- majorities -----------------------------------------------------------------------------


def voting_members(config: dict) -> list[dict]:
    return [m for m in config["members"] if m["votes"]]


def majority_vote_count(config: dict) -> int:
    """Votes needed to win an election: a strict majority of the voting members."""
    return len(voting_members(config)) // 2 + 1


def writable_voting_count(config: dict) -> int:
    return sum(1 for m in voting_members(config) if not m["arbiterOnly"])


def write_majority_count(config: dict) -> int:
    """Data-bearing voters that must hold a write for ``w: "majority"``."""
    return min(majority_vote_count(config), writable_voting_count(config))


def implicit_default_w(config: dict) -> object:
    """MongoDB 5.0+: ``majority``, except ``1`` when arbiters make a majority unreachable
    with one data-bearing voter down (the PSA rule)."""
    arbiters = sum(1 for m in voting_members(config) if m["arbiterOnly"])
    if arbiters and writable_voting_count(config) <= majority_vote_count(config):
        return 1
    return "majority"


def electable(member: dict) -> bool:
    return member["priority"] > 0 and not member["arbiterOnly"] and not member["hidden"]


# -- reconfig -------------------------------------------------------------------------------


def voting_changes(old: dict, new: dict) -> int:
    """How many voting members a reconfig adds, removes or flips (matched by host)."""
    old_votes = {m["host"]: bool(m["votes"]) for m in old["members"]}
    new_votes = {m["host"]: bool(m["votes"]) for m in new["members"]}
    changes = 0
    for host in set(old_votes) | set(new_votes):
        if old_votes.get(host, False) != new_votes.get(host, False):
            changes += 1
    return changes


def check_reconfig(old: dict, new: dict, force: bool) -> None:
    """MongoDB's rules between the current and a proposed config (both normalized)."""
    if new["_id"] != old["_id"]:
        raise CommandError(
            NEW_CONFIG_INCOMPATIBLE,
            f"New and old configurations differ in replica set name; old was {old['_id']}, "
            f"and new is {new['_id']}",
        )
    if new["settings"].get("replicaSetId") != old["settings"].get("replicaSetId"):
        raise CommandError(
            NEW_CONFIG_INCOMPATIBLE,
            "New and old configurations differ in replica set ID; old was "
            f"{old['settings'].get('replicaSetId')}, and new is "
            f"{new['settings'].get('replicaSetId')}",
        )
    if bool(new.get("configsvr")) != bool(old.get("configsvr")):
        raise CommandError(
            NEW_CONFIG_INCOMPATIBLE, "Cannot change the configsvr field of a replica set"
        )
    old_by_id = {m["_id"]: m for m in old["members"]}
    for member in new["members"]:
        before = old_by_id.get(member["_id"])
        if before is None:
            continue
        if before["host"] != member["host"] and any(
            m["host"] == member["host"] for m in old["members"]
        ):
            raise CommandError(
                NEW_CONFIG_INCOMPATIBLE,
                f"New and old configurations both have members with host of {member['host']} "
                "but in the new configuration the _id field is "
                f"{member['_id']} and in the old configuration it is "
                f"{next(m['_id'] for m in old['members'] if m['host'] == member['host'])} "
                "for replica set " + new["_id"],
            )
        if before["arbiterOnly"] != member["arbiterOnly"]:
            raise CommandError(
                NEW_CONFIG_INCOMPATIBLE,
                f"New and old configurations differ in the setting of the arbiterOnly field "
                f"for member {member['host']}; to make this change, remove then re-add the "
                "member",
            )
    if force:
        return
    if new["version"] <= old["version"]:
        raise CommandError(
            NEW_CONFIG_INCOMPATIBLE,
            f"New replica set configuration version must be greater than old, but "
            f"{new['version']} is not greater than {old['version']} for replica set "
            f"{new['_id']}",
        )
    if voting_changes(old, new) > 1:
        raise CommandError(
            NEW_CONFIG_INCOMPATIBLE,
            "Non-force replica set reconfig can only add or remove at most 1 voting member.",
        )


def with_version(config: dict, version: int, term: int) -> dict:
    out = copy.deepcopy(config)
    out["version"] = version
    out["term"] = term
    return out


def member_by_host(config: dict, host: str) -> dict | None:
    for member in config["members"]:
        if member["host"] == host:
            return member
    return None
