"""mongos's sharding administration: addShard, listShards, removeShard, enableSharding,
shardCollection, movePrimary, split, moveChunk, balancerStart/Stop/Status, getShardMap,
flushRouterConfig, setFeatureCompatibilityVersion.

Sources (MongoDB 7.0 manual, reference/command/<name>/): addShard, listShards, removeShard,
enableSharding ("Starting in MongoDB 6.0, this command is not required to shard a
collection"), shardCollection, movePrimary, split, moveChunk, balancerStart, balancerStop,
balancerStatus, getShardMap, flushRouterConfig, setFeatureCompatibilityVersion.
"""

from __future__ import annotations

import datetime
import time

import pymongo
from bson.objectid import ObjectId
from pymongo.errors import PyMongoError

from mongod_double import authz
from mongod_double.commands import HOST_UNREACHABLE, Invocation
from mongod_double.commands.mongos_crud import run
from mongod_double.errors import (
    ALREADY_INITIALIZED,
    BAD_VALUE,
    ILLEGAL_OPERATION,
    INVALID_NAMESPACE,
    INVALID_OPTIONS,
    NOT_WRITABLE_PRIMARY,
    TYPE_MISMATCH,
    CommandError,
)
from mongod_double.sharding.cluster import (
    CODEC,
    NAMESPACE_NOT_SHARDED,
    Cluster,
    now_timestamp,
    parse_connection_string,
)
from mongod_double.sharding.keys import ShardKey, chunk_for
from mongod_double.sharding.migration import move_chunk, move_primary
from mongod_double.sharding.registry import router_command
from mongod_double.storage import new_uuid

# What the router's own commands require when access control is on (MongoDB's actions; the
# built-in clusterManager/clusterAdmin/root roles hold them).
CLUSTER = authz.CLUSTER


def _on_target_ns(action: str):
    def rule(inv: Invocation) -> authz.Requirement:
        db, _, coll = str(inv.arg).partition(".")
        return [(("ns", db, coll) if coll else ("db", db), action)]

    return rule


def _on_target_db(action: str):
    return lambda inv: [(("db", str(inv.arg)), action)]


def _on_cluster(action: str):
    return lambda inv: [(CLUSTER, action)]


ROUTER_REQUIREMENTS = {
    "addShard": _on_cluster("addShard"),
    "addshard": _on_cluster("addShard"),
    "listShards": _on_cluster("listShards"),
    "listshards": _on_cluster("listShards"),
    "removeShard": _on_cluster("removeShard"),
    "removeshard": _on_cluster("removeShard"),
    "getShardMap": _on_cluster("getShardMap"),
    "flushRouterConfig": _on_cluster("flushRouterConfig"),
    "flushrouterconfig": _on_cluster("flushRouterConfig"),
    "balancerStart": lambda inv: [(("ns", "config", "settings"), "update")],
    "balancerStop": lambda inv: [(("ns", "config", "settings"), "update")],
    "balancerStatus": lambda inv: [(("ns", "config", "settings"), "find")],
    "enableSharding": _on_target_db("enableSharding"),
    "enablesharding": _on_target_db("enableSharding"),
    "movePrimary": _on_target_db("moveChunk"),
    "moveprimary": _on_target_db("moveChunk"),
    "shardCollection": _on_target_ns("enableSharding"),
    "shardcollection": _on_target_ns("enableSharding"),
    "split": _on_target_ns("splitChunk"),
    "moveChunk": _on_target_ns("moveChunk"),
    "movechunk": _on_target_ns("moveChunk"),
    "isdbgrid": lambda inv: [],
}
for _name, _rule in ROUTER_REQUIREMENTS.items():
    authz.REQUIREMENTS.setdefault(_name, _rule)

FAILED_TO_PARSE = 9
MAX_TIME_MS_EXPIRED = 50
BALANCER_STOP_MS = 60_000
OPERATION_FAILED = 96
NO_SHARDING_ENABLED = 193
IDL_MISSING_FIELD = 40414
HASHED_CHUNKS_PER_SHARD = 2
RESERVED_DATABASES = ("admin", "config", "local")


def _cluster(inv: Invocation) -> Cluster:
    return inv.server.cluster


def _string_arg(inv: Invocation) -> str:
    value = inv.arg
    if not isinstance(value, str):
        raise CommandError(
            TYPE_MISMATCH,
            f"BSON field '{inv.name}.{inv.name}' is the wrong type "
            f"'{type(value).__name__}', expected type 'string'",
        )
    return value


# -- shards ---------------------------------------------------------------------------------


def _greet_one(host: str, kwargs: dict) -> tuple[dict, dict]:
    client = pymongo.MongoClient(host, directConnection=True, **kwargs)
    try:
        return client.admin.command("hello"), client.admin.command("getCmdLineOpts")
    finally:
        client.close()


def _greet(seeds: list[str], kwargs: dict, set_name: str | None) -> tuple[dict, dict]:
    """hello and getCmdLineOpts of the candidate: for a replica set its primary, found through
    the seeds as MongoDB's shard targeter finds it (primary only), whichever seed answers; else
    the first seed that answers (whose hello then says what is wrong)."""
    errors: list[str] = []
    first = None
    for seed in seeds:
        try:
            hello, options = _greet_one(seed, kwargs)
        except PyMongoError as exc:
            errors.append(f"{seed}: {exc}")
            continue
        if not set_name or hello.get("isWritablePrimary"):
            return hello, options
        first = first or (hello, options)
        if hello.get("primary"):
            try:
                found = _greet_one(hello["primary"], kwargs)
            except PyMongoError as exc:
                errors.append(f"{hello['primary']}: {exc}")
                continue
            if found[0].get("isWritablePrimary"):
                return found
    if first is not None:
        return first
    raise CommandError(
        HOST_UNREACHABLE, "couldn't connect to new shard :: caused by :: " + "; ".join(errors)
    )


def _validate_shard(connection: str, seeds: list[str], set_name: str | None, cluster: Cluster):
    """MongoDB's checks of a shard candidate (validateHostAsShard), in its order."""
    hello, options = _greet(seeds, cluster.kwargs, set_name)
    if hello.get("msg") == "isdbgrid":
        raise CommandError(ILLEGAL_OPERATION, "cannot add a mongos as a shard")
    if not hello.get("isWritablePrimary", hello.get("ismaster")):
        raise CommandError(
            NOT_WRITABLE_PRIMARY,
            f"{connection} does not have a master. If this is a replica set, ensure that it has "
            "a healthy primary and that the set has been properly initiated.",
        )
    found = hello.get("setName")
    if not set_name and found:
        raise CommandError(
            OPERATION_FAILED,
            f"host is part of set {found}; use replica set url format "
            "<setname>/<server1>,<server2>, ...",
        )
    if set_name and not found:
        raise CommandError(
            OPERATION_FAILED,
            f"host did not return a set name; is the replica set still initializing? {hello}",
        )
    if set_name and set_name != found:
        raise CommandError(
            OPERATION_FAILED,
            f"the provided connection string ({connection}) does not match the actual set "
            f"name {found}",
        )
    role = (options.get("parsed") or {}).get("sharding", {}).get("clusterRole")
    if role == "configsvr":
        raise CommandError(
            OPERATION_FAILED, f"Cannot add {connection} as a shard since it is a config server"
        )
    members = set(hello.get("hosts", [])) | set(hello.get("passives", []))
    for seed in seeds if set_name else []:
        if seed not in members:
            raise CommandError(
                OPERATION_FAILED,
                f"in seed list {connection}, host {seed} does not belong to replica set "
                f"{found}; found {hello}",
            )
    if role != "shardsvr":
        raise CommandError(
            NO_SHARDING_ENABLED, "Cannot accept sharding commands if not started with --shardsvr"
        )
    return hello


@router_command("addShard", "addshard", admin_only=True)
def add_shard(inv: Invocation) -> dict:
    """Add a replica set as a shard."""
    connection = _string_arg(inv)
    cluster = _cluster(inv)
    set_name, seeds = parse_connection_string(connection)
    if not seeds:
        raise CommandError(FAILED_TO_PARSE, f"Invalid connection string {connection}")
    name = inv.body.get("name") or set_name
    hello = _validate_shard(connection, seeds, set_name, cluster)
    host = f"{set_name}/{','.join(hello.get('hosts', seeds))}"
    for shard in cluster.shards():
        if parse_connection_string(shard["host"])[0] == set_name:
            if shard["_id"] == name:
                return {"shardAdded": name}
            raise CommandError(
                ILLEGAL_OPERATION,
                f"A shard already exists containing the replica set '{set_name}'",
            )
        if shard["_id"] == name:
            raise CommandError(ILLEGAL_OPERATION, f"A shard named {name} already exists")
    cluster.ensure_cluster_id()
    cluster.config.shards.insert_one(
        {"_id": name, "host": host, "state": 1, "topologyTime": now_timestamp()}
    )
    client = cluster.client_for_host(host)
    for db_name in client.list_database_names():
        if db_name not in RESERVED_DATABASES:
            cluster.ensure_database(db_name, primary=name)
    return {"shardAdded": name}


@router_command("listShards", "listshards", admin_only=True)
def list_shards(inv: Invocation) -> dict:
    """The shards of the cluster, from config.shards."""
    return {"shards": _cluster(inv).shards()}


@router_command("getShardMap", admin_only=True)
def get_shard_map(inv: Invocation) -> dict:
    """Each shard's connection string, and the config servers'."""
    cluster = _cluster(inv)
    shard_map = {"config": cluster.config_db}
    connection_strings = {cluster.config_db: "config"}
    hosts = {}
    for shard in cluster.shards():
        shard_map[shard["_id"]] = shard["host"]
        connection_strings[shard["host"]] = shard["_id"]
        for host in parse_connection_string(shard["host"])[1]:
            hosts[host] = shard["_id"]
    for host in parse_connection_string(cluster.config_db)[1]:
        hosts[host] = "config"
    return {"map": shard_map, "hosts": hosts, "connStrings": connection_strings}


def _draining_status(cluster: Cluster, name: str) -> tuple[int, list[str]]:
    chunks = cluster.config.chunks.count_documents({"shard": name})
    dbs = sorted(d["_id"] for d in cluster.config.databases.find({"primary": name}))
    return chunks, dbs


@router_command("removeShard", "removeshard", admin_only=True)
def remove_shard(inv: Invocation) -> dict:
    """Drain a shard (the balancer moves its chunks), then remove it."""
    name = _string_arg(inv)
    cluster = _cluster(inv)
    shard = cluster.shard(name)
    note = "you need to drop or movePrimary these databases"
    if not shard.get("draining"):
        if len(cluster.shards()) <= 1:
            raise CommandError(
                ILLEGAL_OPERATION, "Operation not allowed because it would remove the last shard"
            )
        cluster.config.shards.update_one({"_id": name}, {"$set": {"draining": True}})
        inv.server.balancer.wake()
        _, dbs = _draining_status(cluster, name)
        return {
            "msg": "draining started successfully",
            "state": "started",
            "shard": name,
            "note": note,
            "dbsToMove": dbs,
        }
    chunks, dbs = _draining_status(cluster, name)
    if chunks or dbs:
        return {
            "msg": "draining ongoing",
            "state": "ongoing",
            "remaining": {"chunks": chunks, "dbs": len(dbs), "jumboChunks": 0},
            "note": note,
            "dbsToMove": dbs,
        }
    cluster.config.shards.delete_one({"_id": name})
    return {"msg": "removeshard completed successfully", "state": "completed", "shard": name}


# -- databases ------------------------------------------------------------------------------


def _check_db_name(db: str) -> None:
    if not db or "." in db or " " in db or "$" in db:
        raise CommandError(INVALID_NAMESPACE, f"invalid db name specified: {db}")


@router_command("enableSharding", "enablesharding", admin_only=True)
def enable_sharding(inv: Invocation) -> dict:
    """Create the database in the catalog (not required to shard a collection since 6.0)."""
    db = _string_arg(inv)
    _check_db_name(db)
    if db in ("admin", "local"):
        raise CommandError(
            ILLEGAL_OPERATION, f"Enabling sharding on the {db} database is not allowed"
        )
    cluster = _cluster(inv)
    primary = inv.body.get("primaryShard")
    if primary is not None:
        cluster.shard(primary)
    entry = cluster.ensure_database(db, primary=primary)
    if primary is not None and entry["primary"] != primary:
        raise CommandError(
            117,
            f"Database {db} already exists with primary shard {entry['primary']}, not {primary}",
        )
    return {}


@router_command("movePrimary", "moveprimary", admin_only=True)
def move_primary_command(inv: Invocation) -> dict:
    """Move a database's unsharded collections to another shard and make it the primary."""
    db = _string_arg(inv)
    _check_db_name(db)
    to = inv.body.get("to")
    if not isinstance(to, str) or not to:
        raise CommandError(
            IDL_MISSING_FIELD, "BSON field 'movePrimary.to' is missing but a required field"
        )
    if db in RESERVED_DATABASES:
        raise CommandError(INVALID_OPTIONS, f"Can't move primary for {db} database")
    cluster = _cluster(inv)
    if cluster.database(db) is None:
        raise CommandError(26, f"Database {db} not found")
    cluster.shard(to)
    move_primary(cluster, db, to)
    return {}


# -- collections ----------------------------------------------------------------------------


def _split_ns(ns: object, command: str) -> tuple[str, str]:
    if not isinstance(ns, str):
        raise CommandError(TYPE_MISMATCH, f"BSON field '{command}.{command}' must be a string")
    db, dot, coll = ns.partition(".")
    if not db or not dot or not coll:
        raise CommandError(INVALID_NAMESPACE, f"Invalid namespace specified '{ns}'")
    return db, coll


def _validate_key(key: object) -> dict:
    if not isinstance(key, dict) or not key:
        raise CommandError(BAD_VALUE, "Shard key cannot be empty")
    hashed = 0
    for field, kind in key.items():
        if kind == "hashed":
            hashed += 1
        elif kind not in (1, 1.0):
            raise CommandError(
                BAD_VALUE,
                f"Unsupported shard key pattern {key}. Pattern must either be a single hashed "
                "field, or a list of ascending fields",
            )
        if field.startswith("$"):
            raise CommandError(BAD_VALUE, f"Invalid shard key field {field}")
    if hashed > 1:
        raise CommandError(BAD_VALUE, "A shard key pattern can contain at most one hashed field")
    return {field: kind if kind == "hashed" else 1 for field, kind in key.items()}


def _has_key_index(coll, key: dict) -> bool:
    wanted = list(key.items())
    for index in coll.list_indexes():
        have = list(index["key"].items())
        if have[: len(wanted)] == wanted:
            return True
    return False


@router_command("shardCollection", "shardcollection", admin_only=True)
def shard_collection(inv: Invocation) -> dict:
    """Shard a collection: hashed keys pre-split an empty collection across the shards."""
    ns = inv.arg
    db_name, coll_name = _split_ns(ns, "shardCollection")
    if "key" not in inv.body:
        raise CommandError(
            IDL_MISSING_FIELD, "BSON field 'shardCollection.key' is missing but a required field"
        )
    key = _validate_key(inv.body["key"])
    unique = bool(inv.body.get("unique", False))
    shard_key = ShardKey.from_doc(key)
    if unique and shard_key.hashed_field is not None:
        raise CommandError(
            BAD_VALUE,
            "Hashed shard keys cannot be declared unique. It's possible to ensure uniqueness on "
            "the hashed field by declaring an additional (non-hashed) unique index on the field.",
        )
    if db_name in ("admin", "local") or (db_name == "config" and coll_name != "system.sessions"):
        raise CommandError(ILLEGAL_OPERATION, f"can't shard {db_name} database")
    cluster = _cluster(inv)
    current = cluster.collection(ns)
    if current is not None:
        if current["key"] == key and bool(current.get("unique")) == unique:
            return {"collectionsharded": ns}
        raise CommandError(
            ALREADY_INITIALIZED,
            f"sharding already enabled for collection {ns} with options "
            f"{{ key: {current['key']}, unique: {bool(current.get('unique'))} }}",
        )
    entry = cluster.ensure_database(db_name)
    primary = entry["primary"]
    coll = cluster.shard_db(primary, db_name)[coll_name]
    empty = coll.estimated_document_count() == 0
    if not _has_key_index(coll, key):
        if not empty:
            raise CommandError(
                INVALID_OPTIONS,
                "Please create an index that starts with the proposed shard key before sharding "
                "the collection",
            )
        coll.create_index(list(key.items()), **_unique(unique))
    shards = [s["_id"] for s in cluster.active_shards()]
    if shard_key.hashed_field is not None and empty:
        per_shard = HASHED_CHUNKS_PER_SHARD
        total = int(inv.body.get("numInitialChunks") or per_shard * len(shards))
        total = max(total, 1)
        points = shard_key.hashed_split_points(total)
    else:
        total, points = 1, []
    bounds = [shard_key.global_min(), *points, shard_key.global_max()]
    uuid = _collection_uuid(coll) or new_uuid()
    doc = {
        "_id": ns,
        "lastmodEpoch": ObjectId(),
        "lastmod": datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
        "timestamp": now_timestamp(),
        "uuid": uuid,
        "key": key,
        "unique": unique,
        "noBalance": False,
    }
    chunks = []
    for i in range(total):
        owner = primary if total == 1 else shards[i * len(shards) // total]
        chunks.append(cluster.new_chunk(doc, bounds[i], bounds[i + 1], owner, 1))
        chunks[-1]["lastmod"] = type(chunks[-1]["lastmod"])(1, i)
    for owner in {c["shard"] for c in chunks} - {primary}:
        target = cluster.shard_db(owner, db_name)[coll_name]
        target.create_index(list(key.items()), **_unique(unique))
    cluster.config.chunks.insert_many(chunks)
    cluster.config.collections.insert_one(doc)
    return {"collectionsharded": ns}


def _unique(unique: bool) -> dict:
    return {"unique": True} if unique else {}


def _collection_uuid(coll):
    for info in coll.database.list_collections(filter={"name": coll.name}):
        return (info.get("info") or {}).get("uuid")
    return None


def _routing_or_fail(cluster: Cluster, ns: str):
    routing = cluster.routing(ns)
    if routing is None:
        raise CommandError(NAMESPACE_NOT_SHARDED, f"Collection {ns} is not sharded.")
    return routing


@router_command("split", admin_only=True)
def split(inv: Invocation) -> dict:
    """Split the chunk containing ``middle`` (or ``find``'s key) at ``middle``."""
    ns = inv.arg
    _split_ns(ns, "split")
    cluster = _cluster(inv)
    routing = _routing_or_fail(cluster, ns)
    middle = inv.body.get("middle")
    if not isinstance(middle, dict) or list(middle) != routing.key.fields:
        raise CommandError(BAD_VALUE, "split requires 'middle' with exactly the shard key's fields")
    point = list(middle.values())
    chunk = chunk_for(routing.chunks, point)
    if list(chunk["min"].values()) == point:
        raise CommandError(BAD_VALUE, f"cannot split on initial or final chunk's key: {middle}")
    major = max(c["lastmod"].time for c in routing.chunks)
    upper = cluster.new_chunk(routing.doc, dict(middle), chunk["max"], chunk["shard"], major)
    upper["lastmod"] = type(upper["lastmod"])(major, len(routing.chunks))
    cluster.config.chunks.update_one({"_id": chunk["_id"]}, {"$set": {"max": dict(middle)}})
    cluster.config.chunks.insert_one(upper)
    return {}


@router_command("moveChunk", "movechunk", admin_only=True)
def move_chunk_command(inv: Invocation) -> dict:
    """Move the chunk holding ``find``'s key (or with ``bounds``) to shard ``to``."""
    ns = inv.arg
    _split_ns(ns, "moveChunk")
    cluster = _cluster(inv)
    routing = _routing_or_fail(cluster, ns)
    to = inv.body.get("to")
    if not isinstance(to, str):
        raise CommandError(
            IDL_MISSING_FIELD, "BSON field 'moveChunk.to' is missing but a required field"
        )
    cluster.shard(to)
    if "find" in inv.body:
        key = routing.key.of_filter(inv.body["find"])
        if key is None:
            raise CommandError(BAD_VALUE, "find must contain the full shard key")
    elif "bounds" in inv.body:
        key = list(inv.body["bounds"][0].values())
    else:
        raise CommandError(
            BAD_VALUE, "need to specify either a find query, or both lower and upper bounds."
        )
    chunk = chunk_for(routing.chunks, key)
    move_chunk(cluster, routing, chunk, to)
    return {"millis": 0}


# -- balancer -------------------------------------------------------------------------------


@router_command("balancerStart", admin_only=True)
def balancer_start(inv: Invocation) -> dict:
    """Turn the balancer on (config.settings balancer mode "full")."""
    _cluster(inv).set_balancer("full")
    inv.server.balancer.wake()
    return {}


@router_command("balancerStop", admin_only=True)
def balancer_stop(inv: Invocation) -> dict:
    """Turn the balancer off (mode "off"), then wait, as MongoDB does, until the round in
    progress (whichever router holds the lease) has ended: at most maxTimeMS (60,000 ms by
    default), else MaxTimeMSExpired with the balancer left off."""
    cluster = _cluster(inv)
    cluster.set_balancer("off")
    limit = inv.body.get("maxTimeMS") or BALANCER_STOP_MS
    deadline = time.monotonic() + float(limit) / 1000.0
    while cluster.balancer_round()["inRound"]:
        if time.monotonic() >= deadline:
            raise CommandError(
                MAX_TIME_MS_EXPIRED, "operation exceeded time limit waiting for the balancer round"
            )
        time.sleep(0.05)
    return {}


@router_command("balancerStatus", admin_only=True)
def balancer_status(inv: Invocation) -> dict:
    """The balancer's mode, and whether a round is running and how many ran, for the whole
    cluster (MongoDB's balancer runs on the config server primary, so every router answers the
    same; the double's round state is kept with its lease in config.locks)."""
    state = _cluster(inv).balancer_round()
    return {
        "mode": _cluster(inv).balancer_settings().get("mode", "full"),
        "inBalancerRound": state["inRound"],
        "numBalancerRounds": state["rounds"],
    }


@router_command("flushRouterConfig", "flushrouterconfig", admin_only=True)
def flush_router_config(inv: Invocation) -> dict:
    """The double's routers cache no routing table (each command reads the catalog)."""
    return {"flushed": True}


# -- feature compatibility version ----------------------------------------------------------


@router_command("setFeatureCompatibilityVersion", admin_only=True)
def set_feature_compatibility_version(inv: Invocation) -> dict:
    """setFeatureCompatibilityVersion through mongos, the way MongoDB's manual runs it on a
    sharded cluster: the command (with its confirm) goes to every shard's primary, then to the
    config servers' primary, which changes its own FCV only once every shard has (SERVER-26087).
    A shard's refusal is returned with its own code and message, the config servers unchanged;
    running the command again finishes it (a shard already there does nothing).

    Sources: https://www.mongodb.com/docs/manual/reference/command/setFeatureCompatibilityVersion/
    and the release notes' "Upgrade a Sharded Cluster" ("run setFeatureCompatibilityVersion
    against the admin database" of a mongos)."""
    cluster = _cluster(inv)
    body = {"setFeatureCompatibilityVersion": inv.arg}
    for field in ("confirm", "writeConcern"):
        if field in inv.body:
            body[field] = inv.body[field]
    for shard in cluster.shards():
        run(cluster.shard_db(shard, "admin"), body)
    run(cluster.config_client.get_database("admin", codec_options=CODEC), body)
    return {}
