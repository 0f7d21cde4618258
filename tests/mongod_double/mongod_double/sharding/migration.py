"""Moving data between shards: chunks of sharded collections, and databases' primaries.

A chunk moves as MongoDB's migrations do, in three steps: the recipient gets the collection's
indexes and a copy of the chunk's documents, the catalog commits the new owner (the chunk's
``lastmod`` major version is bumped), and the donor deletes its copies. Between the commit and
the donor's deletion, routers filter the donor's now orphaned documents out of unprojected finds
(as shards do with their filtering metadata); counts may briefly include them.
Sources: https://www.mongodb.com/docs/manual/core/sharding-balancer-administration/
https://www.mongodb.com/docs/manual/reference/command/movePrimary/
"""

from __future__ import annotations

from bson.timestamp import Timestamp
from pymongo import ReplaceOne

from mongod_double.sharding.cluster import Cluster, Routing, now_timestamp
from mongod_double.sharding.keys import owns

SYSTEM_PREFIX = "system."


def copy_indexes(source_coll, target_coll) -> None:
    """Create the collection on the recipient, with the donor's indexes."""
    specs = [
        {k: v for k, v in index.items() if k not in ("v", "ns")}
        for index in source_coll.list_indexes()
        if index["name"] != "_id_"
    ]
    db = target_coll.database
    if specs:
        db.command({"createIndexes": target_coll.name, "indexes": specs})
    elif target_coll.name not in db.list_collection_names():
        db.create_collection(target_coll.name)


def move_chunk(cluster: Cluster, routing: Routing, chunk: dict, to_shard: str) -> None:
    donor = chunk["shard"]
    if donor == to_shard:
        return
    db_name, coll_name = routing.ns.split(".", 1)
    donor_coll = cluster.shard_db(donor, db_name)[coll_name]
    recipient_coll = cluster.shard_db(to_shard, db_name)[coll_name]
    copy_indexes(donor_coll, recipient_coll)
    moving = [doc for doc in donor_coll.find({}) if owns(chunk, routing.key.of_document(doc))]
    if moving:
        recipient_coll.bulk_write(
            [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in moving], ordered=False
        )
    major = max(c["lastmod"].time for c in routing.chunks) + 1
    stamp = now_timestamp()
    cluster.config.chunks.update_one(
        {"_id": chunk["_id"], "shard": donor},
        {
            "$set": {
                "shard": to_shard,
                "lastmod": Timestamp(major, 0),
                "onCurrentShardSince": stamp,
                "history": [{"validAfter": stamp, "shard": to_shard}, *chunk.get("history", [])],
            }
        },
    )
    chunk["shard"] = to_shard
    if moving:
        donor_coll.delete_many({"_id": {"$in": [doc["_id"] for doc in moving]}})


def unsharded_collections(cluster: Cluster, db_name: str, shard: str) -> list[str]:
    sharded = {doc["_id"] for doc in cluster.sharded_collections(db_name)}
    db = cluster.shard_db(shard, db_name)
    return [
        name
        for name in db.list_collection_names()
        if f"{db_name}.{name}" not in sharded and not name.startswith(SYSTEM_PREFIX)
    ]


def move_primary(cluster: Cluster, db_name: str, to_shard: str) -> None:
    """Copy the database's unsharded collections to ``to_shard`` and make it the primary."""
    entry = cluster.database(db_name)
    old = entry["primary"]
    if old == to_shard:
        return
    source = cluster.shard_db(old, db_name)
    target = cluster.shard_db(to_shard, db_name)
    names = unsharded_collections(cluster, db_name, old)
    for name in names:
        copy_indexes(source[name], target[name])
        docs = list(source[name].find({}))
        if docs:
            target[name].bulk_write(
                [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in docs],
                ordered=False,
            )
    version = dict(entry.get("version") or {})
    version["lastMod"] = int(version.get("lastMod", 1)) + 1
    version["timestamp"] = now_timestamp()
    cluster.config.databases.update_one(
        {"_id": db_name}, {"$set": {"primary": to_shard, "version": version}}
    )
    for name in names:
        source[name].drop()
