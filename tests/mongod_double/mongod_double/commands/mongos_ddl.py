"""mongos's catalog commands and users.

- listDatabases: the union of the shards' databases (sizes summed) with the config servers'
  ``admin`` and ``config``; ``local`` is not listed, as mongos does not list it.
- listCollections, listIndexes: the database's primary shard (sharded collections exist there
  too). create: the primary shard. createIndexes, dropIndexes: every shard that holds the
  collection. drop: every shard, and the collection leaves the catalog. dropDatabase: every
  shard, and the database leaves the catalog.
- The ``config`` database and user management (createUser, updateUser, dropUser, usersInfo,
  grantRolesToUser, revokeRolesFromUser, createRole, dropRole, rolesInfo) run on the config
  server replica set, where a sharded cluster keeps its users.
Sources: https://www.mongodb.com/docs/manual/core/sharded-cluster-config-servers/ ("config
servers store ... authentication configuration information"),
https://www.mongodb.com/docs/manual/reference/command/listDatabases/
"""

from __future__ import annotations

from mongod_double import authz
from mongod_double.commands import Invocation
from mongod_double.commands.crud import collection_name, open_cursor
from mongod_double.commands.mongos_crud import Target, run, run_cursor, shard_body
from mongod_double.errors import NAMESPACE_NOT_FOUND, CommandError
from mongod_double.sharding.cluster import CODEC, Cluster
from mongod_double.sharding.registry import router_command

USER_COMMANDS = (
    "createUser",
    "updateUser",
    "dropUser",
    "dropAllUsersFromDatabase",
    "usersInfo",
    "grantRolesToUser",
    "revokeRolesFromUser",
    "createRole",
    "updateRole",
    "dropRole",
    "rolesInfo",
    "grantPrivilegesToRole",
    "revokePrivilegesFromRole",
    "grantRolesToRole",
    "revokeRolesFromRole",
)


def _cluster(inv: Invocation) -> Cluster:
    return inv.server.cluster


def _config_db(inv: Invocation):
    return _cluster(inv).config_client.get_database(inv.db, codec_options=CODEC)


def _on_config_servers(inv: Invocation) -> dict:
    """Run the client's command on the config server replica set's primary."""
    reply = run(_config_db(inv), shard_body(inv.body))
    inv.server.users_changed()
    return reply


for _name in USER_COMMANDS:
    router_command(_name)(_on_config_servers)


def _shards_holding(target: Target) -> list[str]:
    if target.sharded:
        return [s["_id"] for s in target.cluster.shards()]
    return [target.primary] if target.primary else []


@router_command("listDatabases", admin_only=True)
def list_databases(inv: Invocation) -> dict:
    cluster = _cluster(inv)
    body = shard_body(inv.body)
    body["nameOnly"] = False
    sizes: dict[str, int] = {}
    for shard in cluster.shards():
        reply = run(cluster.shard_db(shard, "admin"), body)
        for entry in reply["databases"]:
            if entry["name"] in ("admin", "config", "local"):
                continue
            sizes[entry["name"]] = sizes.get(entry["name"], 0) + int(entry.get("sizeOnDisk", 0))
    reply = run(cluster.config_client.get_database("admin", codec_options=CODEC), body)
    for entry in reply["databases"]:
        if entry["name"] in ("admin", "config"):
            sizes[entry["name"]] = int(entry.get("sizeOnDisk", 0))
    if inv.body.get("nameOnly"):
        return {"databases": [{"name": name} for name in sorted(sizes)]}
    databases = [
        {"name": name, "sizeOnDisk": size, "empty": size == 0}
        for name, size in sorted(sizes.items())
    ]
    total = sum(sizes.values())
    return {"databases": databases, "totalSize": total, "totalSizeMb": total // (1024 * 1024)}


def _primary_or_config(inv: Invocation):
    if inv.db in ("config", "admin"):
        return _config_db(inv)
    entry = _cluster(inv).database(inv.db)
    if entry is None:
        return None
    return _cluster(inv).shard_db(entry["primary"], inv.db)


@router_command("listCollections")
def list_collections(inv: Invocation) -> dict:
    db = _primary_or_config(inv)
    docs = run_cursor(db, shard_body(inv.body)) if db is not None else []
    if inv.server.security.auth_enabled and inv.body.get("authorizedCollections"):
        docs = [d for d in docs if authz.may_see_collection(inv, inv.db, d["name"])]
    batch_size = (inv.body.get("cursor") or {}).get("batchSize")
    return open_cursor(inv, f"{inv.db}.$cmd.listCollections", docs, batch_size)


@router_command("listIndexes")
def list_indexes(inv: Invocation) -> dict:
    coll = collection_name(inv)
    if inv.db in ("config", "admin"):
        docs = run_cursor(_config_db(inv), shard_body(inv.body))
    else:
        target = Target(inv, coll, create=False)
        shards = _shards_holding(target)
        if not shards:
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {target.ns}")
        docs = run_cursor(target.db(target.primary or shards[0]), shard_body(inv.body))
    batch_size = (inv.body.get("cursor") or {}).get("batchSize")
    return open_cursor(inv, f"{inv.db}.{coll}", docs, batch_size)


@router_command("create")
def create(inv: Invocation) -> dict:
    target = Target(inv, collection_name(inv), create=True)
    if target.sharded:
        return run(target.db(target.routing.chunks[0]["shard"]), shard_body(inv.body))
    return run(target.db(target.primary), shard_body(inv.body))


@router_command("createIndexes")
def create_indexes(inv: Invocation) -> dict:
    target = Target(inv, collection_name(inv), create=True)
    raw = {}
    reply: dict = {}
    for shard in _shards_holding(target):
        reply = run(target.db(shard), shard_body(inv.body))
        raw[_cluster(inv).shard(shard)["host"]] = reply
    return {"raw": raw, **{k: v for k, v in reply.items() if k != "ok"}}


@router_command("dropIndexes", "deleteIndexes")
def drop_indexes(inv: Invocation) -> dict:
    target = Target(inv, collection_name(inv), create=False)
    raw = {}
    for shard in _shards_holding(target):
        raw[_cluster(inv).shard(shard)["host"]] = run(target.db(shard), shard_body(inv.body))
    return {"raw": raw}


@router_command("drop")
def drop(inv: Invocation) -> dict:
    coll = collection_name(inv)
    target = Target(inv, coll, create=False)
    cluster = _cluster(inv)
    for shard in cluster.shards():
        cluster.shard_db(shard, inv.db).drop_collection(coll)
    if target.sharded:
        cluster.config.chunks.delete_many({"uuid": target.routing.doc["uuid"]})
        cluster.config.collections.delete_one({"_id": target.ns})
    return {"ns": target.ns}


@router_command("dropDatabase")
def drop_database(inv: Invocation) -> dict:
    cluster = _cluster(inv)
    if cluster.database(inv.db) is None:
        return {}
    for shard in cluster.shards():
        cluster.shard_db(shard, "admin").client.drop_database(inv.db)
    for coll in cluster.sharded_collections(inv.db):
        cluster.config.chunks.delete_many({"uuid": coll["uuid"]})
        cluster.config.collections.delete_one({"_id": coll["_id"]})
    cluster.config.databases.delete_one({"_id": inv.db})
    return {"dropped": inv.db}
