"""Databases, collections, views and indexes: create, collMod (of a view), drop,
renameCollection, dropDatabase, listDatabases, listCollections, createIndexes, listIndexes,
dropIndexes. The views themselves are kept by mongod_double.views."""

from __future__ import annotations

import re

from mongod_double import authz, views
from mongod_double.commands import Invocation, command
from mongod_double.commands.crud import collection_name, open_cursor
from mongod_double.errors import (
    BAD_VALUE,
    CANNOT_CREATE_INDEX,
    FAILED_TO_PARSE,
    INDEX_KEY_SPECS_CONFLICT,
    INDEX_NOT_FOUND,
    INDEX_OPTIONS_CONFLICT,
    INVALID_NAMESPACE,
    INVALID_OPTIONS,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    CommandError,
)
from mongod_double.storage import split_ns

CREATE_OPTIONS = {
    "capped",
    "size",
    "max",
    "validator",
    "validationLevel",
    "validationAction",
    "collation",
    "storageEngine",
    "indexOptionDefaults",
    "viewOn",
    "pipeline",
    "timeseries",
    "expireAfterSeconds",
    "clusteredIndex",
    "changeStreamPreAndPostImages",
}
INDEX_OPTIONS = {
    "unique",
    "sparse",
    "expireAfterSeconds",
    "partialFilterExpression",
    "hidden",
    "collation",
    "background",
    "weights",
    "default_language",
    "2dsphereIndexVersion",
}
SUPPORTED_INDEX_OPTIONS = {
    "unique",
    "sparse",
    "expireAfterSeconds",
    "partialFilterExpression",
    "background",
}
INVALID_DB_CHARS = re.compile(r'[/\\. "$\x00]')


def check_db_name(db: str) -> None:
    if not db or INVALID_DB_CHARS.search(db) or len(db) >= 64:
        raise CommandError(INVALID_NAMESPACE, f"Invalid database name: '{db}'")


@command("create", write=True)
def create(inv: Invocation) -> dict:
    check_db_name(inv.db)
    coll = collection_name(inv)
    options = {k: v for k, v in inv.body.items() if k in CREATE_OPTIONS}
    if "viewOn" in options or "pipeline" in options:
        views.create(inv.server.storage, inv.db, coll, options)
        return {}
    unsupported = set(options) - {"capped", "size", "max"}
    if unsupported:
        raise NotImplementedError(f"create option(s) {sorted(unsupported)}")
    if options.get("capped") and not options.get("size"):
        raise CommandError(72, "the 'size' field is required when 'capped' is true")
    with inv.server.storage.lock:
        if views.is_view(inv.server.storage, inv.ns(coll)):
            raise CommandError(NAMESPACE_EXISTS, f"A view already exists. NS: {inv.ns(coll)}")
        inv.server.storage.create_collection(inv.ns(coll), options)
    return {}


@command("collMod", write=True)
def coll_mod(inv: Invocation) -> dict:
    """A view's definition changed (viewOn and pipeline); the double changes no collection."""
    ns = inv.ns(collection_name(inv))
    storage = inv.server.storage
    with storage.lock:
        if views.is_view(storage, ns):
            views.modify(storage, inv.db, inv.arg, inv.body)
            return {}
        if not storage.exists(ns):
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {ns}")
    raise NotImplementedError("collMod of a collection")


@command("drop", write=True)
def drop(inv: Invocation) -> dict:
    coll = collection_name(inv)
    ns = inv.ns(coll)
    storage = inv.server.storage
    with storage.lock:
        if views.is_view(storage, ns):
            views.drop(storage, ns)
            return {"ns": ns}
        if not storage.exists(ns):
            # 7.0 made drop of a missing collection succeed; 6.0 still reports it.
            if inv.server.version.major < 7:
                raise CommandError(NAMESPACE_NOT_FOUND, "ns not found")
            return {}
        count = len(storage.index_specs(ns))
        storage.command_op(inv.db, {"drop": coll}, ns)
    return {"nIndexesWas": count, "ns": ns}


@command("dropDatabase", write=True)
def drop_database(inv: Invocation) -> dict:
    if inv.db in ("local",) and inv.server.role.is_replicated:
        raise CommandError(20, "Cannot drop 'local' database while replication is active")
    storage = inv.server.storage
    with storage.lock:
        if storage.collections(inv.db):
            storage.command_op(inv.db, {"dropDatabase": 1})
    return {"dropped": inv.db}


@command("renameCollection", admin_only=True, write=True)
def rename_collection(inv: Invocation) -> dict:
    source, target = inv.arg, inv.body.get("to")
    if not isinstance(source, str) or not isinstance(target, str):
        raise CommandError(FAILED_TO_PARSE, "'renameCollection' and 'to' must be namespaces")
    for ns in (source, target):
        db, coll = split_ns(ns)
        if not db or not coll:
            raise CommandError(INVALID_NAMESPACE, f"Invalid namespace specified '{ns}'")
    inv.server.replication.check_write(split_ns(target)[0])
    storage = inv.server.storage
    with storage.lock:
        views.refuse(storage, source)
        if not storage.exists(source):
            raise CommandError(NAMESPACE_NOT_FOUND, f"Source collection {source} does not exist")
        if source == target:
            raise CommandError(20, "Can't rename a collection to itself")
        if views.is_view(storage, target):
            raise CommandError(NAMESPACE_EXISTS, f"a view already exists with that name: {target}")
        drop_target = bool(inv.body.get("dropTarget"))
        if storage.exists(target) and not drop_target:
            raise CommandError(NAMESPACE_EXISTS, "target namespace exists")
        storage.command_op(
            split_ns(source)[0],
            {
                "renameCollection": source,
                "to": target,
                "stayTemp": False,
                "dropTarget": drop_target,
            },
            source,
        )
    return {}


@command("listDatabases", admin_only=True, read=True)
def list_databases(inv: Invocation) -> dict:
    storage = inv.server.storage
    name_only = bool(inv.body.get("nameOnly"))
    query = inv.body.get("filter") or {}
    from mongomock import filtering

    # With access control, a user without listDatabases sees the databases they have
    # privileges on (authorizedDatabases), as on mongod.
    auth_on = inv.server.security.auth_enabled
    entries = []
    total = 0
    with storage.lock:
        for db in storage.databases():
            if auth_on and not authz.may_see_database(inv, db):
                continue
            if name_only and not query:  # sizes cost a pass over every document: skip them
                entries.append({"name": db})
                continue
            size = sum(storage.data_size(f"{db}.{c}") for c in storage.collections(db))
            size = max(size, 4096) if size else 8192
            entry = {"name": db} if name_only else {"name": db, "sizeOnDisk": size, "empty": False}
            if query and not filtering.filter_applies(
                query, {"name": db, "sizeOnDisk": size, "empty": False}
            ):
                continue
            entries.append(entry)
            total += size
    if name_only:
        return {"databases": entries}
    return {"databases": entries, "totalSize": total, "totalSizeMb": total // (1024 * 1024)}


@command("listCollections", read=True)
def list_collections(inv: Invocation) -> dict:
    from mongomock import filtering

    storage = inv.server.storage
    name_only = bool(inv.body.get("nameOnly"))
    query = inv.body.get("filter") or {}
    # authorizedCollections: only the collections the user may act on (mongod, access control on).
    only_authorized = inv.server.security.auth_enabled and inv.body.get("authorizedCollections")
    results = []
    with storage.lock:
        for coll in storage.collections(inv.db):
            if only_authorized and not authz.may_see_collection(inv, inv.db, coll):
                continue
            ns = f"{inv.db}.{coll}"
            meta = storage.catalog[ns]
            full = {
                "name": coll,
                "type": "collection",
                "options": dict(meta.options),
                "info": {"readOnly": False, "uuid": meta.uuid},
            }
            specs = storage.index_specs(ns)
            if specs and specs[0]["name"] == "_id_":
                full["idIndex"] = specs[0]
            if query and not filtering.filter_applies(query, full):
                continue
            results.append({"name": coll, "type": "collection"} if name_only else full)
        # Views after the collections, as mongod lists its catalogue's views after them.
        for view in views.all_views(storage, inv.db):
            full = views.listing(view, name_only=False)
            if only_authorized and not authz.may_see_collection(inv, inv.db, full["name"]):
                continue
            if query and not filtering.filter_applies(query, full):
                continue
            results.append(views.listing(view, name_only=True) if name_only else full)
    batch_size = (inv.body.get("cursor") or {}).get("batchSize")
    return open_cursor(inv, f"{inv.db}.$cmd.listCollections", results, batch_size)


def _index_name(key: dict) -> str:
    return "_".join(f"{field}_{direction}" for field, direction in key.items())


@command("createIndexes", write=True)
def create_indexes(inv: Invocation) -> dict:
    coll = collection_name(inv)
    ns = inv.ns(coll)
    specs = inv.body.get("indexes")
    if not isinstance(specs, list) or not specs:
        raise CommandError(BAD_VALUE, "Must specify at least one index to create")
    storage = inv.server.storage
    with storage.lock:
        views.refuse(storage, ns)
        created_collection = not storage.exists(ns)
        if ns in storage.capped:
            raise NotImplementedError("secondary indexes on capped collections")
        storage.ensure_collection(ns)
        before = len(storage.index_specs(ns))
        existing = {s["name"]: s for s in storage.index_specs(ns)}
        to_create = []
        for raw in specs:
            spec = _validate_index_spec(raw)
            same = existing.get(spec["name"])
            if same is not None:
                if {k: v for k, v in same.items() if k != "v"} != spec:
                    raise CommandError(
                        INDEX_KEY_SPECS_CONFLICT,
                        f"An existing index has the same name as the requested "
                        f"index. When index names are not specified, they are "
                        f"auto generated and can cause conflicts. Please refer to "
                        f"our documentation. Requested index: {spec}, existing "
                        f"index: {same}",
                    )
                continue
            for other in existing.values():
                if other["key"] == spec["key"] and other["name"] != spec["name"]:
                    raise CommandError(
                        INDEX_OPTIONS_CONFLICT,
                        f"Index already exists with a different name: {other['name']}",
                    )
            to_create.append(spec)
            existing[spec["name"]] = spec
        for spec in to_create:
            storage.command_op(inv.db, {"createIndexes": coll, "v": 2, **spec}, ns)
        after = len(storage.index_specs(ns))
    reply: dict = {"numIndexesBefore": before, "numIndexesAfter": after}
    if not to_create:
        reply["note"] = "all indexes already exist"
    reply["createdCollectionAutomatically"] = created_collection
    return reply


def _validate_index_spec(raw: dict) -> dict:
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), dict) or not raw["key"]:
        raise CommandError(
            FAILED_TO_PARSE, "The 'key' field is a required property of an index specification"
        )
    key = raw["key"]
    for field, direction in key.items():
        # Hashed indexes (shard keys) are kept in the catalog; queries scan either way.
        if direction == "hashed":
            if raw.get("unique"):
                raise CommandError(
                    CANNOT_CREATE_INDEX,
                    "Currently hashed indexes cannot guarantee uniqueness. Use a regular index.",
                )
            continue
        if isinstance(direction, str) or direction == 0:
            raise NotImplementedError(f"index type {direction!r} on field {field!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise CommandError(
            FAILED_TO_PARSE, "The 'name' field is a required property of an index specification"
        )
    if (name == "_id_" or list(key) == ["_id"]) and raw.get("unique") is False:
        raise CommandError(
            CANNOT_CREATE_INDEX, "The field 'unique' is not valid for an _id index specification."
        )
    unknown = set(raw) - INDEX_OPTIONS - {"key", "name", "v", "ns"}
    if unknown:
        field = sorted(unknown)[0]
        raise CommandError(
            197,
            f"The field '{field}' is not valid for an index specification. Specification: {raw}",
        )
    unsupported = (set(raw) & INDEX_OPTIONS) - SUPPORTED_INDEX_OPTIONS
    if unsupported:
        raise NotImplementedError(f"index option(s) {sorted(unsupported)}")
    spec = {"key": dict(key), "name": name}
    for option in ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression"):
        if option in raw and raw[option] is not False:
            spec[option] = raw[option]
    return spec


@command("listIndexes", read=True)
def list_indexes(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    storage = inv.server.storage
    with storage.lock:
        views.refuse(storage, ns)
        if not storage.exists(ns):
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {ns}")
        specs = storage.index_specs(ns)
    batch_size = (inv.body.get("cursor") or {}).get("batchSize")
    return open_cursor(inv, f"{inv.db}.$cmd.listIndexes.{inv.arg}", specs, batch_size)


@command("dropIndexes", "deleteIndexes", write=True)
def drop_indexes(inv: Invocation) -> dict:
    coll = collection_name(inv)
    ns = inv.ns(coll)
    index = inv.body.get("index")
    storage = inv.server.storage
    with storage.lock:
        views.refuse(storage, ns)
        if not storage.exists(ns):
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns not found {ns}")
        specs = storage.index_specs(ns)
        count = len(specs)
        if index == "*":
            names = [s["name"] for s in specs if s["name"] != "_id_"]
        elif isinstance(index, dict):
            matches = [s["name"] for s in specs if s["key"] == index]
            if not matches:
                raise CommandError(INDEX_NOT_FOUND, f"can't find index with key: {index}")
            names = matches[:1]
        elif isinstance(index, str):
            names = [index]
        elif isinstance(index, list):
            names = list(index)
        else:
            raise CommandError(
                FAILED_TO_PARSE, "BSON field 'dropIndexes.index' is missing but a required field"
            )
        known = {s["name"] for s in specs}
        for name in names:
            if name == "_id_":
                raise CommandError(INVALID_OPTIONS, "cannot drop _id index")
            if name not in known:
                raise CommandError(INDEX_NOT_FOUND, f"index not found with name [{name}]")
        for name in names:
            spec = next(s for s in specs if s["name"] == name)
            op = {"dropIndexes": coll, "index": name}
            storage.apply(
                {
                    "op": "c",
                    "ns": f"{inv.db}.$cmd",
                    "ui": storage.catalog[ns].uuid,
                    "o": op,
                    "o2": dict(spec),
                }
            )
    return {"nIndexesWas": count}
