"""mongos's CRUD: find, getMore, killCursors, insert, update, delete, findAndModify, count,
distinct, aggregate, routed by shard key.

An unsharded collection lives on its database's primary shard: commands go there whole. For a
sharded collection, a filter that pins every shard key field by equality targets the one shard
owning that key; any other filter goes to every shard owning a chunk (scatter-gather) and the
router merges: sort, skip and limit again over the shards' results, sums counts, unions distinct
values, and runs an aggregation pipeline's stages from the first non-per-document stage ($group,
$sort, $limit, ...) on the router over what the shards returned. Inserts go per document to the
shard owning the document's key. The router keeps the merged results on its own cursor.
Sources: https://www.mongodb.com/docs/manual/core/sharded-cluster-query-router/ (targeted and
broadcast operations), https://www.mongodb.com/docs/manual/core/sharding-shard-key/
"""

from __future__ import annotations

import bson
from mongomock.aggregate import process_pipeline

from mongod_double.commands import Invocation
from mongod_double.commands.crud import (
    _check_batch,
    collection_name,
    get_more,
    kill_cursors,
    open_cursor,
)
from mongod_double.errors import INVALID_OPTIONS, CommandError
from mongod_double.sharding.cluster import CODEC, Cluster, Routing
from mongod_double.sharding.keys import chunk_for
from mongod_double.sharding.registry import router_command
from mongod_double.wire import CODEC as WIRE_CODEC

SHARD_KEY_NOT_FOUND = 61
# admin and config live on the config server replica set, as in MongoDB.
CONFIG_SERVER_DATABASES = ("admin", "config")
CONFIG_SERVERS = "config"
# Fields of a client's command that concern the client's session with the router, not the shard.
SESSION_FIELDS = (
    "lsid",
    "$clusterTime",
    "txnNumber",
    "$readPreference",
    "autocommit",
    "startTransaction",
    "batchSize",
    "singleBatch",
)
PER_DOCUMENT_STAGES = ("$match", "$project", "$addFields", "$set", "$unset", "$unwind")
SINGLE_WRITE_UNTARGETED = (
    "A single {kind} on a sharded collection must contain an exact match on _id (and have the "
    "collection default collation) or contain the shard key (and have the simple collation)."
)

router_command("getMore", profile_op="getmore")(get_more)
router_command("killCursors")(kill_cursors)


def shard_body(body: dict) -> dict:
    out = {k: v for k, v in body.items() if k not in SESSION_FIELDS}
    read_concern = out.get("readConcern")
    if isinstance(read_concern, dict):
        out["readConcern"] = {k: v for k, v in read_concern.items() if k != "afterClusterTime"}
    return out


def run(db, body: dict) -> dict:
    """Run a command on a shard; its cluster time is the shard's, not the router's."""
    reply = db.command(body, codec_options=CODEC)
    reply.pop("$clusterTime", None)
    reply.pop("operationTime", None)
    return reply


def run_cursor(db, body: dict) -> list[dict]:
    """Run a cursor command on a shard and read the cursor to its end."""
    reply = run(db, body)
    cursor = reply["cursor"]
    docs = list(cursor.get("firstBatch", []))
    coll = cursor["ns"].split(".", 1)[1]
    cursor_id = cursor["id"]
    while cursor_id:
        more = run(db, {"getMore": cursor_id, "collection": coll})["cursor"]
        docs.extend(more["nextBatch"])
        cursor_id = more["id"]
    return docs


class Target:
    """Where one command on ``db.coll`` goes."""

    def __init__(self, inv: Invocation, coll: str, create: bool) -> None:
        self.cluster: Cluster = inv.server.cluster
        self.db_name = inv.db
        self.coll = coll
        self.ns = f"{inv.db}.{coll}"
        self.routing: Routing | None = None
        self.primary = None
        # Before 7.1, single updates/deletes must target one shard (or pin _id).
        self.single_writes_need_key = inv.server.version.version_array[:2] < [7, 1]
        if inv.db in CONFIG_SERVER_DATABASES:
            self.primary = CONFIG_SERVERS
            return
        self.routing = self.cluster.routing(self.ns)
        if self.routing is None:
            entry = (
                self.cluster.ensure_database(inv.db) if create else self.cluster.database(inv.db)
            )
            self.primary = entry["primary"] if entry else None

    @property
    def sharded(self) -> bool:
        return self.routing is not None

    def db(self, shard: str):
        if shard == CONFIG_SERVERS:
            return self.cluster.config_client.get_database(self.db_name, codec_options=CODEC)
        return self.cluster.shard_db(shard, self.db_name)

    def shards_for(self, query: dict | None) -> list[str]:
        """The shards a filter targets."""
        if self.routing is None:
            return [self.primary] if self.primary else []
        key = self.routing.key.of_filter(query or {})
        if key is not None:
            return [chunk_for(self.routing.chunks, key)["shard"]]
        return self.routing.shard_names()

    def owner(self, doc: dict) -> str:
        return chunk_for(self.routing.chunks, self.routing.key.of_document(doc))["shard"]


def _bson_key(value: object) -> bytes:
    return bson.encode({"v": value}, codec_options=WIRE_CODEC)


# -- reads ----------------------------------------------------------------------------------


def _limit(inv: Invocation) -> tuple[int, bool]:
    limit = inv.body.get("limit") or 0
    if limit < 0:
        return -limit, True
    return int(limit), bool(inv.body.get("singleBatch"))


@router_command("find", profile_op="query")
def find(inv: Invocation) -> dict:
    coll = collection_name(inv)
    target = Target(inv, coll, create=False)
    body = shard_body(inv.body)
    query = body.get("filter") or {}
    limit, single_batch = _limit(inv)
    batch_size = inv.body.get("batchSize")
    shards = target.shards_for(query)
    if len(shards) <= 1:
        docs = run_cursor(target.db(shards[0]), body) if shards else []
        docs = _drop_orphans(target, shards[0], docs, body) if shards else []
        return open_cursor(inv, target.ns, docs, batch_size, single_batch, limit)
    sort = body.pop("sort", None)
    projection = body.get("projection")
    skip = int(body.pop("skip", 0) or 0)
    body.pop("limit", None)
    if limit:
        body["limit"] = limit + skip
    if sort:
        body["sort"] = sort
        body.pop("projection", None)
    docs = []
    for shard in shards:
        docs.extend(_drop_orphans(target, shard, run_cursor(target.db(shard), body), body))
    stages: list[dict] = []
    if sort:
        stages.append({"$sort": sort})
    if skip:
        stages.append({"$skip": skip})
    if limit:
        stages.append({"$limit": limit})
    if sort and projection:
        stages.append({"$project": projection})
    if stages:
        docs = list(process_pipeline(docs, None, stages, None))
    return open_cursor(inv, target.ns, docs, batch_size, single_batch, 0)


def _drop_orphans(target: Target, shard: str, docs: list[dict], body: dict) -> list[dict]:
    """Documents a shard still holds for chunks it no longer owns (a migration's tail)."""
    if not target.sharded or body.get("projection"):
        return docs
    return [doc for doc in docs if target.owner(doc) == shard]


@router_command("count")
def count(inv: Invocation) -> dict:
    coll = collection_name(inv)
    target = Target(inv, coll, create=False)
    body = shard_body(inv.body)
    shards = target.shards_for(body.get("query"))
    if len(shards) == 1 or not shards:
        return {"n": run(target.db(shards[0]), body)["n"]} if shards else {"n": 0}
    skip = int(body.pop("skip", 0) or 0)
    limit = abs(int(body.pop("limit", 0) or 0))
    total = sum(run(target.db(shard), body)["n"] for shard in shards)
    total = max(0, total - skip)
    return {"n": min(total, limit) if limit else total}


@router_command("distinct")
def distinct(inv: Invocation) -> dict:
    coll = collection_name(inv)
    target = Target(inv, coll, create=False)
    body = shard_body(inv.body)
    seen: dict[bytes, object] = {}
    for shard in target.shards_for(body.get("query")):
        for value in run(target.db(shard), body)["values"]:
            seen.setdefault(_bson_key(value), value)
    values = list(seen.values())
    if values:
        wrapped = [{"v": v} for v in values]
        values = [d["v"] for d in process_pipeline(wrapped, None, [{"$sort": {"v": 1}}], None)]
    return {"values": values}


@router_command("aggregate")
def aggregate(inv: Invocation) -> dict:
    coll = inv.arg
    if not isinstance(coll, str):
        raise NotImplementedError("collectionless aggregate on mongos")
    target = Target(inv, coll, create=False)
    body = shard_body(inv.body)
    pipeline = list(body.get("pipeline") or [])
    batch_size = (inv.body.get("cursor") or {}).get("batchSize")
    first_match = pipeline[0].get("$match") if pipeline and "$match" in pipeline[0] else None
    shards = target.shards_for(first_match)
    if len(shards) <= 1:
        docs = run_cursor(target.db(shards[0]), body) if shards else []
        return open_cursor(inv, target.ns, docs, batch_size)
    split = next(
        (i for i, stage in enumerate(pipeline) if next(iter(stage)) not in PER_DOCUMENT_STAGES),
        len(pipeline),
    )
    if any(next(iter(stage)) in ("$out", "$merge", "$lookup") for stage in pipeline[split:]):
        raise NotImplementedError("$out, $merge and $lookup on a sharded collection")
    body["pipeline"] = pipeline[:split]
    body["cursor"] = {}
    docs = []
    for shard in shards:
        docs.extend(run_cursor(target.db(shard), body))
    if pipeline[split:]:
        docs = list(process_pipeline(docs, None, pipeline[split:], None))
    return open_cursor(inv, target.ns, docs, batch_size)


# -- writes ---------------------------------------------------------------------------------


def _merge_write(total: dict, reply: dict, index_map: list[int]) -> None:
    total["n"] += reply.get("n", 0)
    if "nModified" in reply:
        total["nModified"] = total.get("nModified", 0) + reply["nModified"]
    for error in reply.get("writeErrors", []):
        total.setdefault("writeErrors", []).append({**error, "index": index_map[error["index"]]})
    for upserted in reply.get("upserted", []):
        total.setdefault("upserted", []).append({**upserted, "index": index_map[upserted["index"]]})
    if "writeConcernError" in reply:
        total["writeConcernError"] = reply["writeConcernError"]


def _runs(items: list, owners: list[str]) -> list[tuple[str, list[int]]]:
    """Consecutive items going to the same shard, in order (keeps ordered-write semantics)."""
    runs: list[tuple[str, list[int]]] = []
    for index, owner in enumerate(owners):
        if runs and runs[-1][0] == owner:
            runs[-1][1].append(index)
        else:
            runs.append((owner, [index]))
    return runs


@router_command("insert", profile_op="insert")
def insert(inv: Invocation) -> dict:
    coll = collection_name(inv)
    docs = inv.body.get("documents")
    _check_batch(inv, docs)
    target = Target(inv, coll, create=True)
    body = shard_body(inv.body)
    if not target.sharded:
        return run(target.db(target.primary), body)
    for doc in docs:
        if "_id" not in doc:
            doc["_id"] = bson.ObjectId()
    owners = [target.owner(doc) for doc in docs]
    ordered = body.get("ordered", True)
    total: dict = {"n": 0}
    for shard, indexes in _runs(docs, owners):
        reply = run(target.db(shard), {**body, "documents": [docs[i] for i in indexes]})
        _merge_write(total, reply, indexes)
        if ordered and reply.get("writeErrors"):
            break
    return total


def _statement_shards(target: Target, query: dict, single: bool, upsert: bool, kind: str):
    shards = target.shards_for(query)
    if not target.sharded or len(shards) <= 1:
        return shards, False
    if upsert:
        raise CommandError(
            SHARD_KEY_NOT_FOUND,
            "Failed to target upsert by query :: could not extract exact shard key",
        )
    if single:
        pinned_id = "_id" in query and not isinstance(query["_id"], dict)
        if not pinned_id and target.single_writes_need_key:
            raise CommandError(INVALID_OPTIONS, SINGLE_WRITE_UNTARGETED.format(kind=kind))
        return shards, True
    return shards, False


def _write_statements(inv: Invocation, field: str, kind: str) -> dict:
    coll = collection_name(inv)
    statements = inv.body.get(field)
    _check_batch(inv, statements)
    target = Target(inv, coll, create=True)
    body = shard_body(inv.body)
    if not target.sharded:
        return run(target.db(target.primary), body)
    ordered = body.get("ordered", True)
    total: dict = {"n": 0}
    if kind == "update":
        total["nModified"] = 0
    for index, statement in enumerate(statements):
        query = statement.get("q") or {}
        single = not statement.get("multi") if kind == "update" else statement.get("limit") == 1
        try:
            shards, one_of = _statement_shards(
                target, query, single, bool(statement.get("upsert")), kind
            )
        except CommandError as exc:
            error = {"index": index, "code": exc.code, "errmsg": exc.errmsg}
            total.setdefault("writeErrors", []).append(error)
            if ordered:
                break
            continue
        failed = False
        for shard in shards:
            reply = run(target.db(shard), {**body, field: [statement]})
            _merge_write(total, reply, [index])
            failed = failed or bool(reply.get("writeErrors"))
            if one_of and reply.get("n"):
                break
        if ordered and failed:
            break
    return total


@router_command("update", profile_op="update")
def update(inv: Invocation) -> dict:
    return _write_statements(inv, "updates", "update")


@router_command("delete", profile_op="remove")
def delete(inv: Invocation) -> dict:
    return _write_statements(inv, "deletes", "delete")


@router_command("findAndModify", "findandmodify")
def find_and_modify(inv: Invocation) -> dict:
    coll = collection_name(inv)
    target = Target(inv, coll, create=True)
    body = shard_body(inv.body)
    shards = target.shards_for(body.get("query") or {})
    untargeted = target.sharded and len(shards) > 1
    if untargeted and (body.get("upsert") or target.single_writes_need_key):
        raise CommandError(
            SHARD_KEY_NOT_FOUND, "Query for sharded findAndModify must contain the shard key"
        )
    reply: dict = {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None}
    for shard in shards:
        reply = run(target.db(shard), body)
        if reply.get("lastErrorObject", {}).get("n"):
            break
    return reply
