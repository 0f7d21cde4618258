"""collStats (and the $collStats stage), dbStats and dbHash."""

from __future__ import annotations

import datetime
import hashlib
import shutil
import time

import bson
from mongomock import filtering

from mongod_double.commands import Invocation, command
from mongod_double.commands.crud import collection_name
from mongod_double.errors import NAMESPACE_NOT_FOUND, TYPE_MISMATCH, CommandError
from mongod_double.wire import CODEC

INDEX_ENTRY_BYTES = 24


def _scale(inv: Invocation) -> int:
    scale = inv.body.get("scale", 1)
    if not isinstance(scale, (int, float)) or scale < 1:
        raise CommandError(2, "scale has to be >= 1")
    return int(scale)


def storage_stats(server, ns: str, scale: int) -> dict:
    """collStats's figures for ``ns`` (also $collStats's ``storageStats``); 26 when it does not
    exist."""
    storage = server.storage
    with storage.lock:
        if not storage.exists(ns):
            raise CommandError(NAMESPACE_NOT_FOUND, f"Collection [{ns}] not found.")
        count = storage.count(ns)
        size = storage.data_size(ns)
        specs = storage.index_specs(ns)
        capped = ns in storage.capped
        options = storage.catalog[ns].options
    index_sizes = {s["name"]: (count * INDEX_ENTRY_BYTES + 4096) // scale for s in specs}
    storage_size = (size + 4096) // scale
    reply = {
        "size": size // scale,
        "count": count,
        "avgObjSize": size // count if count else 0,
        "numOrphanDocs": 0,
        "storageSize": storage_size,
        "freeStorageSize": 0,
        "capped": capped,
    }
    if capped:
        reply["max"] = options.get("max", 0)
        reply["maxSize"] = options.get("size", 0) // scale
    reply.update(
        nindexes=len(specs),
        indexBuilds=[],
        totalIndexSize=sum(index_sizes.values()),
        totalSize=storage_size + sum(index_sizes.values()),
        indexSizes=index_sizes,
        scaleFactor=scale,
    )
    return reply


@command("collStats", read=True)
def coll_stats(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    return {"ns": ns, **storage_stats(inv.server, ns, _scale(inv))}


COLL_STATS_OPTIONS = ("latencyStats", "storageStats", "count", "queryExecStats")


def coll_stats_stage(inv: Invocation, ns: str, spec) -> dict:
    """The document of a ``$collStats`` stage (the first of its pipeline): ``ns``, ``host``,
    ``localTime`` and what was asked for. latencyStats and queryExecStats need per-collection
    counters the double does not keep: NotImplemented (238).

    Source: https://www.mongodb.com/docs/manual/reference/operator/aggregation/collStats/"""
    if not isinstance(spec, dict):
        raise CommandError(
            TYPE_MISMATCH, f"$collStats must take a nested object but found: $collStats: {spec!r}"
        )
    for field in spec:
        if field not in COLL_STATS_OPTIONS:
            raise CommandError(40415, f"BSON field '$collStats.{field}' is an unknown field.")
    for field in ("latencyStats", "queryExecStats"):
        if field in spec:
            raise NotImplementedError(f"$collStats {field}")
    doc = {
        "ns": ns,
        "host": inv.server.host,
        "localTime": datetime.datetime.now(datetime.UTC),
    }
    if "storageStats" in spec:
        options = spec["storageStats"]
        if not isinstance(options, dict):
            raise CommandError(
                TYPE_MISMATCH,
                "BSON field '$collStats.storageStats' is the wrong type, expected type 'object'",
            )
        scale = options.get("scale", 1)
        if not isinstance(scale, (int, float)) or scale < 1:
            raise CommandError(51024, "BSON field 'scale' value must be >= 1")
        try:
            doc["storageStats"] = storage_stats(inv.server, ns, int(scale))
        except CommandError as exc:
            raise CommandError(
                exc.code,
                f"Unable to retrieve storageStats in $collStats stage :: caused by :: {exc}",
            ) from None
    if "count" in spec:
        with inv.server.storage.lock:
            if not inv.server.storage.exists(ns):
                raise CommandError(
                    NAMESPACE_NOT_FOUND,
                    f"Unable to retrieve count in $collStats stage :: caused by :: "
                    f"Collection [{ns}] not found.",
                )
            doc["count"] = inv.server.storage.count(ns)
    return doc


@command("dbStats", "dbstats", read=True)
def db_stats(inv: Invocation) -> dict:
    scale = _scale(inv)
    storage = inv.server.storage
    with storage.lock:
        colls = storage.collections(inv.db)
        objects = sum(storage.count(f"{inv.db}.{c}") for c in colls)
        data_size = sum(storage.data_size(f"{inv.db}.{c}") for c in colls)
        index_specs = [s for c in colls for s in storage.index_specs(f"{inv.db}.{c}")]
        index_size = sum(
            storage.count(f"{inv.db}.{c}") * INDEX_ENTRY_BYTES + 4096
            for c in colls
            for _ in storage.index_specs(f"{inv.db}.{c}")
        )
    storage_size = data_size + 4096 * len(colls)
    disk = shutil.disk_usage(storage.dbpath)
    return {
        "db": inv.db,
        "collections": len(colls),
        "views": 0,
        "objects": objects,
        "avgObjSize": data_size / objects if objects else 0,
        "dataSize": data_size / scale,
        "storageSize": storage_size / scale,
        "indexes": len(index_specs),
        "indexSize": index_size / scale,
        "totalSize": (storage_size + index_size) / scale,
        "scaleFactor": scale,
        "fsUsedSize": disk.used / scale,
        "fsTotalSize": disk.total / scale,
    }


def _id_order(doc: dict):
    return filtering.resolve_sort_key("_id", doc)


@command("dbHash", "dbhash", read=True)
def db_hash(inv: Invocation) -> dict:
    """md5 of each collection's documents in _id order, and of all the collection hashes."""
    started = time.monotonic()
    wanted = inv.body.get("collections")
    storage = inv.server.storage
    collections: dict[str, str] = {}
    uuids: dict = {}
    capped: list[str] = []
    with storage.lock:
        for coll in storage.collections(inv.db):
            if coll.startswith("system.") and coll not in (
                "system.users",
                "system.roles",
                "system.version",
                "system.js",
            ):
                continue
            if wanted is not None and coll not in wanted:
                continue
            ns = f"{inv.db}.{coll}"
            docs = storage.documents(ns)
            if ns in storage.capped:
                capped.append(coll)
            else:
                docs = sorted(docs, key=_id_order)
            digest = hashlib.md5()
            for doc in docs:
                digest.update(bson.encode(doc, codec_options=CODEC))
            collections[coll] = digest.hexdigest()
            uuids[coll] = storage.catalog[ns].uuid
    overall = hashlib.md5()
    for coll in sorted(collections):
        overall.update(collections[coll].encode())
    return {
        "host": inv.server.host,
        "collections": collections,
        "capped": capped,
        "uuids": uuids,
        "md5": overall.hexdigest(),
        "timeMillis": int((time.monotonic() - started) * 1000),
    }
