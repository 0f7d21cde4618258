# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Shard membership and sharded collections: pure decisions, no I/O."""

from __future__ import annotations


class ShardError(ValueError):
    """The request conflicts with the cluster (the message says how)."""


def parse_shard_host(host: str) -> tuple[str | None, list[str]]:
    """``"rs0/h1:27018,h2:27018"`` to ``("rs0", ["h1:27018", "h2:27018"])``."""
    name, sep, seeds = host.partition("/")
    if not sep:
        return None, [h for h in name.split(",") if h]
    return name, [h for h in seeds.split(",") if h]


def shard_plan(shards: list[dict], name: str, host: str | None, state: str) -> dict:
    """What to do for one shard, given ``listShards``' ``shards``.

    Returns ``{"action": "add" | "remove" | "none", "shard": <current entry or None>}``.
    A shard is the same when its name matches; its replica set name must match too (mongos
    keeps the host list up to date itself, so seed lists may differ).
    """
    current = next((s for s in shards if s["_id"] == name), None)
    if state == "absent":
        return {"action": "remove" if current else "none", "shard": current}
    if host is None:
        raise ShardError("host is required to add a shard (for example rs1/db4:27018)")
    wanted_set, seeds = parse_shard_host(host)
    if not seeds:
        raise ShardError(f"host {host!r} names no member: expected <replica set>/<host:port>,...")
    if current is None:
        same_set = [s for s in shards if parse_shard_host(s["host"])[0] == wanted_set]
        if wanted_set and same_set:
            raise ShardError(
                f"Replica set {wanted_set} is already shard {same_set[0]['_id']}; "
                f"use name={same_set[0]['_id']} or remove it first"
            )
        return {"action": "add", "shard": None}
    current_set = parse_shard_host(current["host"])[0]
    if current_set != wanted_set:
        raise ShardError(
            f"Shard {name} is replica set {current_set}, not {wanted_set}: remove it first"
        )
    if current.get("draining"):
        raise ShardError(
            f"Shard {name} is draining (being removed); wait until its removal completes, "
            "then add it again"
        )
    return {"action": "none", "shard": current}


def drain_status(reply: dict) -> dict:
    """The useful part of a ``removeShard`` reply: its state and what still has to move."""
    remaining = reply.get("remaining") or {}
    return {
        "state": reply.get("state", "unknown"),
        "chunks": int(remaining.get("chunks", 0)),
        "dbs": int(remaining.get("dbs", 0)),
        "jumbo_chunks": int(remaining.get("jumboChunks", 0)),
        "dbs_to_move": list(reply.get("dbsToMove") or []),
        "completed": reply.get("state") == "completed",
    }


def normalize_key(key: dict) -> dict:
    """A shard key with MongoDB's value forms: 1 / -1 as int, "hashed" as str."""
    out = {}
    for field, kind in key.items():
        if isinstance(kind, str) and kind != "hashed":
            raise ShardError(f"shard key field {field}: {kind!r} is neither 1 nor 'hashed'")
        out[str(field)] = kind if isinstance(kind, str) else int(kind)
    return out


def collection_plan(current: dict | None, key: dict, unique: bool) -> dict:
    """Shard a collection (``current`` is its ``config.collections`` entry, or None)."""
    wanted = normalize_key(key)
    if current is None or current.get("dropped"):
        return {"action": "shard", "key": wanted}
    have = normalize_key(current.get("key") or {})
    if list(have.items()) != list(wanted.items()):
        raise ShardError(
            f"{current['_id']} is already sharded on {have}, not {wanted}: changing a shard key "
            "is a reshardCollection, which this module does not do"
        )
    if bool(current.get("unique", False)) != bool(unique):
        raise ShardError(f"{current['_id']} is sharded with unique={current.get('unique')}")
    return {"action": "none", "key": have}
