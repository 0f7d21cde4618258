"""Replica set commands available in phase 1: replSetInitiate of a one-member set.

Multi-member sets (heartbeats, elections, replSetGetStatus, replSetReconfig, ...) are phase 2;
until then a config with other members is refused with NotImplemented rather than accepted.
"""

from __future__ import annotations

from bson.int64 import Int64
from bson.objectid import ObjectId

from mongod_double.commands import Invocation, command
from mongod_double.errors import (
    ALREADY_INITIALIZED,
    INVALID_REPL_SET_CONFIG,
    NO_REPLICATION_ENABLED,
    NODE_NOT_FOUND,
    CommandError,
)
from mongod_double.replication import REPLSET_NS
from mongod_double.storage import OPLOG_NS


@command("replSetInitiate", admin_only=True)
def repl_set_initiate(inv: Invocation) -> dict:
    server = inv.server
    repl = server.replication
    if not server.role.is_replicated:
        raise CommandError(
            NO_REPLICATION_ENABLED, "This node was not started with replication enabled."
        )
    if repl.config is not None:
        raise CommandError(ALREADY_INITIALIZED, "already initialized")
    config = inv.arg if isinstance(inv.arg, dict) else None
    if config is None:
        config = {"_id": repl.set_name, "version": 1, "members": [{"_id": 0, "host": repl.me()}]}
    if config.get("_id") != repl.set_name:
        raise CommandError(
            INVALID_REPL_SET_CONFIG,
            "Attempting to initiate a replica set with "
            f"name {config.get('_id')}, but command line reports {repl.set_name}; "
            "rejecting",
        )
    members = config.get("members")
    if not isinstance(members, list) or not members:
        raise CommandError(
            INVALID_REPL_SET_CONFIG, "Replica set configuration must contain at least one member"
        )
    if not repl.me_in_config(config):
        raise CommandError(
            NODE_NOT_FOUND,
            "No host described in new configuration with "
            f"{{version: {config.get('version', 1)}, term: 0}} for replica set "
            f"{repl.set_name} maps to this node",
        )
    if len(members) > 1:
        raise NotImplementedError("replica sets with more than one member (phase 2)")
    stored = {
        "_id": config["_id"],
        "version": config.get("version", 1),
        "term": 1,
        "members": [
            {
                "_id": m.get("_id", i),
                "host": m["host"],
                "arbiterOnly": False,
                "buildIndexes": True,
                "hidden": False,
                "priority": m.get("priority", 1),
                "tags": m.get("tags", {}),
                "secondaryDelaySecs": Int64(0),
                "votes": m.get("votes", 1),
            }
            for i, m in enumerate(members)
        ],
        "protocolVersion": Int64(1),
        "writeConcernMajorityJournalDefault": True,
        "settings": {
            "chainingAllowed": True,
            "heartbeatIntervalMillis": 2000,
            "heartbeatTimeoutSecs": 10,
            "electionTimeoutMillis": 10000,
            "catchUpTimeoutMillis": -1,
            "catchUpTakeoverDelayMillis": 30000,
            "getLastErrorModes": {},
            "getLastErrorDefaults": {"w": 1, "wtimeout": 0},
            "replicaSetId": ObjectId(),
        },
    }
    storage = server.storage
    with storage.lock:
        storage.create_collection(OPLOG_NS, {"capped": True, "size": storage.oplog_size_bytes})
        storage.insert(REPLSET_NS, stored)
        repl.config = stored
        storage.oplog_hook = repl.oplog_entry
        storage.apply({"op": "n", "ns": "", "o": {"msg": "initiating set"}})
        repl.become_primary()
    return {}
