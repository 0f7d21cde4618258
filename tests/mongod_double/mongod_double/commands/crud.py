"""CRUD commands: find, getMore, killCursors, insert, update, delete, findAndModify, count,
distinct, aggregate. Matching, update operators and the pipeline are mongomock's."""

from __future__ import annotations

import copy
import time

import mongomock
from bson.int64 import Int64
from bson.objectid import ObjectId

from mongod_double import crudcheck as check
from mongod_double import views
from mongod_double.capped import project, sort_documents
from mongod_double.commands import Invocation, command
from mongod_double.cursors import FIRST_BATCH_DEFAULT, Cursor
from mongod_double.errors import (
    BAD_VALUE,
    CURSOR_NOT_FOUND,
    FAILED_TO_PARSE,
    INTERRUPTED,
    TYPE_MISMATCH,
    CommandError,
)

MAX_WRITE_BATCH = 100_000
IMMUTABLE_FIELD = 66
CAPPED_POSITION_LOST = 136
AWAIT_DATA_DEFAULT_MS = 1000
_scratch = mongomock.MongoClient()["scratch"]["doc"]

# Each command's own fields (besides the generic arguments), from MongoDB 7.0's IDL files.
FIND_FIELDS = frozenset(
    {
        "find",
        "filter",
        "projection",
        "sort",
        "hint",
        "skip",
        "limit",
        "batchSize",
        "singleBatch",
        "max",
        "min",
        "returnKey",
        "showRecordId",
        "tailable",
        "oplogReplay",
        "noCursorTimeout",
        "awaitData",
        "allowPartialResults",
        "collation",
        "allowDiskUse",
        "let",
        "readOnce",
        "term",
        "$_requestResumeToken",
        "$_resumeAfter",
    }
)
# Accepted but not applied: refused when set (their effect changes what is returned).
FIND_UNSUPPORTED = (
    "max",
    "min",
    "returnKey",
    "showRecordId",
    "$_requestResumeToken",
    "$_resumeAfter",
)
BOOL_FIND_FIELDS = (
    "singleBatch",
    "tailable",
    "awaitData",
    "noCursorTimeout",
    "allowPartialResults",
    "allowDiskUse",
    "returnKey",
    "showRecordId",
    "oplogReplay",
    "readOnce",
)
COUNT_FIELDS = frozenset({"count", "query", "limit", "skip", "hint", "collation", "fields"})
DISTINCT_FIELDS = frozenset({"distinct", "key", "query", "collation"})
AGGREGATE_FIELDS = frozenset(
    {
        "aggregate",
        "pipeline",
        "explain",
        "allowDiskUse",
        "cursor",
        "bypassDocumentValidation",
        "collation",
        "hint",
        "let",
    }
)
INSERT_FIELDS = frozenset({"insert", "documents", "ordered", "bypassDocumentValidation", "stmtIds"})
UPDATE_FIELDS = frozenset(
    {"update", "updates", "ordered", "bypassDocumentValidation", "let", "stmtIds"}
)
UPDATE_STATEMENT_FIELDS = frozenset(
    {"q", "u", "c", "arrayFilters", "multi", "upsert", "upsertSupplied", "collation", "hint"}
)
DELETE_FIELDS = frozenset({"delete", "deletes", "ordered", "let", "stmtIds"})
DELETE_STATEMENT_FIELDS = frozenset({"q", "limit", "collation", "hint"})
FIND_AND_MODIFY_FIELDS = frozenset(
    {
        "query",
        "fields",
        "sort",
        "remove",
        "update",
        "new",
        "upsert",
        "bypassDocumentValidation",
        "collation",
        "arrayFilters",
        "hint",
        "let",
    }
)


def collection_name(inv: Invocation) -> str:
    value = inv.arg
    if not isinstance(value, str):
        raise CommandError(73, f"collection name has invalid type {type(value).__name__}")
    if not value:
        raise CommandError(73, f"Invalid namespace specified '{inv.db}.'")
    return value


def _nonnegative(inv: Invocation, field: str) -> int:
    value = inv.body.get(field, 0) or 0
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise CommandError(TYPE_MISMATCH, f"BSON field '{inv.name}.{field}' is the wrong type")
    if value < 0:
        raise CommandError(
            51024, f"BSON field '{field}' value must be >= 0, actual value '{value}'"
        )
    return int(value)


def _id_first(doc: dict) -> dict:
    """MongoDB puts _id first in projected and aggregated documents; mongomock may not."""
    if "_id" in doc and next(iter(doc)) != "_id":
        return {"_id": doc.pop("_id"), **doc}
    return doc


def _cursor_reply(ns: str, batch: list[dict], cursor_id: int, first: bool) -> dict:
    key = "firstBatch" if first else "nextBatch"
    return {"cursor": {key: batch, "id": Int64(cursor_id), "ns": ns}}


def open_cursor(
    inv: Invocation,
    ns: str,
    docs: list[dict],
    batch_size: int | None,
    single_batch: bool = False,
    limit: int = 0,
) -> dict:
    """Return the first batch; keep the rest on a cursor for getMore."""
    server = inv.server
    cursor = Cursor(
        server.cursors.new_id(),
        ns,
        docs,
        inv.ctx.connection_id,
        dict(inv.body),
        limit=limit,
        no_timeout=bool(inv.body.get("noCursorTimeout")),
    )
    first_size = FIRST_BATCH_DEFAULT if batch_size is None else batch_size
    batch = cursor.next_batch(first_size) if first_size else []
    cursor_id = 0
    if not cursor.exhausted and not single_batch:
        server.cursors.register(cursor)
        cursor_id = cursor.cursor_id
    inv.profile.update(nreturned=len(batch), cursorExhausted=cursor_id == 0)
    if cursor_id:
        inv.profile["cursorid"] = Int64(cursor_id)
    server.metrics.add(server.metrics.document, "returned", len(batch))
    return _cursor_reply(ns, batch, cursor_id, True)


def _scan_metrics(inv: Invocation, ns: str) -> None:
    examined = inv.server.storage.count(ns)
    inv.profile.update(ns=ns, keysExamined=0, docsExamined=examined)
    metrics = inv.server.metrics
    with metrics.lock:
        metrics.scanned_objects += examined
        metrics.collection_scans += 1


def _indexes(inv: Invocation, ns: str) -> list[dict] | None:
    storage = inv.server.storage
    return storage.index_specs(ns) if storage.exists(ns) and ns not in storage.capped else None


def _check_find(inv: Invocation, ns: str) -> dict:
    """mongod's parsing of a find command; returns the filter with ``let`` applied."""
    body = inv.body
    check.check_fields("find", body, FIND_FIELDS, generic=True)
    check.check_generic("find", body)
    check.check_types("find", body, dict.fromkeys(BOOL_FIND_FIELDS, "bool"))
    for name in FIND_UNSUPPORTED:
        if body.get(name):
            raise NotImplementedError(f"the find option {name}")
    query = check.check_filter("find.filter", body.get("filter"))
    check.check_sort("find.sort", body.get("sort"))
    check.check_projection("find.projection", body.get("projection"))
    check.check_collation("find.collation", body.get("collation"))
    check.check_hint("find.hint", body.get("hint"), _indexes(inv, ns))
    query = check.let_filter(query, check.let_values("find.let", body.get("let")))
    check.check_variables(query)
    return query


@command("find", read=True, profile_op="query")
@check.honest("this find")
def find(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    body = inv.body
    query = _check_find(inv, ns)
    sort = body.get("sort") or {}
    hint = body.get("hint")
    if not sort and isinstance(hint, dict) and list(hint) == ["$natural"]:
        sort = {"$natural": hint["$natural"]}  # a $natural hint sets the scan direction
    projection = body.get("projection")
    skip = _nonnegative(inv, "skip")
    limit = _nonnegative(inv, "limit")
    batch_size = body.get("batchSize")
    if batch_size is not None:
        batch_size = _nonnegative(inv, "batchSize")
    tailable = bool(body.get("tailable"))
    await_data = bool(body.get("awaitData"))
    if await_data and not tailable:
        raise CommandError(
            FAILED_TO_PARSE, "Cannot set 'awaitData' without also setting 'tailable'"
        )
    storage = inv.server.storage
    with storage.lock:
        _scan_metrics(inv, ns)
        capped = storage.capped.get(ns)
        if tailable:
            if capped is None:
                raise CommandError(
                    BAD_VALUE,
                    f"error processing query: ns={ns} tailable cursor requested on non capped "
                    "collection",
                )
            if any(key != "$natural" for key in sort):
                raise CommandError(
                    BAD_VALUE, "cannot use tailable option with a sort other than {$natural: 1}"
                )
            return _open_tailable(inv, ns, query, projection, skip, limit, batch_size, await_data)
        if capped is not None:
            records = capped.scan(query)
            docs = (
                sort_documents([r.doc for r in records], sort) if sort else [r.doc for r in records]
            )
            docs = docs[skip:]
            if limit:
                docs = docs[:limit]
            docs = [project(d, projection) for d in docs]
        elif not storage.exists(ns):
            stages = views.find_stages(query, sort, skip, limit, projection)
            docs = views.read(storage, ns, stages) or []
        else:
            docs = list(
                storage.collection(ns).find(
                    query, projection, skip=skip, limit=limit, sort=list(sort.items()) or None
                )
            )
            if projection:
                docs = [_id_first(d) for d in docs]
    return open_cursor(inv, ns, docs, batch_size, bool(body.get("singleBatch")))


def _open_tailable(inv, ns, query, projection, skip, limit, batch_size, await_data) -> dict:
    storage = inv.server.storage
    capped = storage.capped[ns]
    records = capped.scan(query)[skip:]
    first_size = FIRST_BATCH_DEFAULT if batch_size is None else batch_size
    if limit:
        first_size = min(first_size, limit) if first_size else limit
    taken = records[:first_size] if first_size else []
    batch = [project(r.doc, projection) for r in taken]
    last_rid = taken[-1].rid if taken else (records[0].rid - 1 if records else capped.last_rid)
    cursor_id = 0
    # A tailable cursor on an empty capped collection is dead at once (MongoDB's docs).
    if len(capped) and not (inv.body.get("singleBatch")):
        cursor = Cursor(
            inv.server.cursors.new_id(),
            ns,
            [],
            inv.ctx.connection_id,
            dict(inv.body),
            tailable=True,
            await_data=await_data,
            last_rid=last_rid,
            capped_epoch=capped.epoch,
            filter=query,
            projection=projection,
        )
        inv.server.cursors.register(cursor)
        cursor_id = cursor.cursor_id
    inv.profile.update(nreturned=len(batch))
    return _cursor_reply(ns, batch, cursor_id, True)


@command("getMore", read=True, profile_op="getmore")
def get_more(inv: Invocation) -> dict:
    cursor_id = inv.arg
    if not isinstance(cursor_id, int):
        raise CommandError(
            TYPE_MISMATCH, f"Field 'getMore' must be of type long in: {{ getMore: {cursor_id!r} }}"
        )
    coll = inv.body.get("collection")
    if not isinstance(coll, str):
        raise CommandError(40414, "BSON field 'getMore.collection' is missing but a required field")
    server = inv.server
    cursor = server.cursors.get(cursor_id)
    if cursor is None:
        raise CommandError(CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found")
    ns = inv.ns(coll)
    if cursor.ns != ns:
        raise CommandError(
            13,
            f"Requested getMore on namespace '{ns}', but cursor belongs to a "
            f"different namespace {cursor.ns}",
        )
    inv.profile.update(ns=ns, cursorid=Int64(cursor_id))
    batch_size = inv.body.get("batchSize")
    if cursor.tailable:
        batch = _tail(inv, cursor, batch_size)
        alive = server.cursors.get(cursor_id) is not None
    else:
        batch = cursor.next_batch(batch_size)
        alive = not cursor.exhausted
        if not alive:
            server.cursors.remove(cursor_id)
    inv.profile.update(nreturned=len(batch), cursorExhausted=not alive)
    server.metrics.add(server.metrics.document, "returned", len(batch))
    return _cursor_reply(ns, batch, cursor_id if alive else 0, False)


def _tail(inv: Invocation, cursor: Cursor, batch_size: int | None) -> list[dict]:
    """New documents after the cursor's position; awaitData waits up to maxTimeMS for some."""
    server = inv.server
    storage = server.storage
    wait_ms = inv.body.get("maxTimeMS", AWAIT_DATA_DEFAULT_MS) if cursor.await_data else 0
    deadline = time.monotonic() + wait_ms / 1000
    with storage.changed:
        while True:
            capped = storage.capped.get(cursor.ns)
            if capped is None:  # collection dropped: the cursor dies
                server.cursors.remove(cursor.cursor_id)
                return []
            cut = capped.epoch != cursor.capped_epoch  # entries were cut from the end since
            if cut or (cursor.last_rid and cursor.last_rid < capped.first_rid - 1):
                server.cursors.remove(cursor.cursor_id)
                raise CommandError(
                    CAPPED_POSITION_LOST,
                    "CollectionScan died due to position in capped collection being deleted.",
                )
            records = capped.scan(cursor.filter, after_rid=cursor.last_rid)
            if batch_size:
                records = records[:batch_size]
            if records:
                cursor.last_rid = records[-1].rid
                cursor.last_used = time.time()
                return [project(r.doc, cursor.projection) for r in records]
            cursor.last_rid = capped.last_rid
            remaining = deadline - time.monotonic()
            if inv.killed:
                raise CommandError(INTERRUPTED, "operation was interrupted")
            if server.shutdown_requested.is_set():
                raise CommandError(11600, "interrupted at shutdown")
            if remaining <= 0:
                cursor.last_used = time.time()
                return []
            storage.changed.wait(remaining)


@command("killCursors", read=False)
def kill_cursors(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    killed, not_found = [], []
    for cursor_id in inv.body.get("cursors", []):
        cursor = inv.server.cursors.get(cursor_id)
        if cursor is None or cursor.ns != ns:
            not_found.append(Int64(cursor_id))
        else:
            inv.server.cursors.remove(cursor_id)
            killed.append(Int64(cursor_id))
    return {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    }


def _check_batch(inv: Invocation, items: list) -> None:
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_WRITE_BATCH:
        count = len(items) if isinstance(items, list) else 0
        raise CommandError(
            16,
            f"Write batch sizes must be between 1 and {MAX_WRITE_BATCH}. Got {count} operations.",
        )


def _write_error(index: int, exc: CommandError) -> dict:
    error = {"index": index, "code": exc.code}
    error.update(exc.extra)
    error["errmsg"] = exc.errmsg
    error.pop("codeName", None)
    return error


def _statement_error(index: int, exc: Exception) -> dict:
    """A statement's failure as a writeErrors entry; an engine failure is NotImplemented."""
    if isinstance(exc, CommandError):
        return _write_error(index, exc)
    if isinstance(exc, NotImplementedError):
        return _write_error(
            index,
            CommandError(
                check.NOT_IMPLEMENTED, f"not implemented by the mongod double's query engine: {exc}"
            ),
        )
    return _write_error(index, check.engine_refusal("this write statement", exc))


STATEMENT_ERRORS = (CommandError, NotImplementedError, *check.ENGINE_ERRORS)


def _check_write_command(inv: Invocation, allowed: frozenset[str], items: str) -> list:
    body = inv.body
    check.check_fields(inv.name, body, allowed, generic=True)
    check.check_generic(inv.name, body)
    check.check_types(inv.name, body, {"ordered": "bool", "bypassDocumentValidation": "bool"})
    statements = check.require(inv.name, body, items)
    if not isinstance(statements, list):
        raise check.wrong_type(f"{inv.name}.{items}", statements, "array")
    _check_batch(inv, statements)
    for statement in statements:
        if not isinstance(statement, dict):
            raise check.wrong_type(f"{inv.name}.{items}", statement, "object")
    return statements


@command("insert", write=True, profile_op="insert")
def insert(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    docs = _check_write_command(inv, INSERT_FIELDS, "documents")
    ordered = inv.body.get("ordered", True)
    storage = inv.server.storage
    if views.is_view(storage, ns):
        return views.refused_writes(ns, docs, ordered)
    n = 0
    errors = []
    with storage.lock:
        for index, doc in enumerate(docs):
            inv.server.metrics.add(inv.server.metrics.opcounters, "insert")
            try:
                check.check_insert_document(doc)
                if "_id" not in doc:
                    doc = {"_id": ObjectId(), **doc}
                storage.insert(ns, doc)
                n += 1
            except STATEMENT_ERRORS as exc:
                errors.append(_statement_error(index, exc))
                if ordered:
                    break
    inv.server.metrics.add(inv.server.metrics.document, "inserted", n)
    inv.profile.update(ns=ns, ninserted=n)
    reply: dict = {"n": n}
    if errors:
        reply["writeErrors"] = errors
    return reply


def _engine_error(exc: Exception) -> CommandError:
    message = str(exc)
    if "(immutable) field '_id'" in message:
        return CommandError(IMMUTABLE_FIELD, message)
    code = getattr(exc, "code", None)
    return CommandError(code if isinstance(code, int) and code > 0 else BAD_VALUE, message)


def updated_document(doc: dict, query: dict, update, replacement: bool) -> dict:
    """``doc`` after ``update`` (operators, pipeline or replacement), computed by the engine."""
    if replacement:
        if "_id" in update and update["_id"] != doc["_id"]:
            raise CommandError(
                IMMUTABLE_FIELD,
                "After applying the update, the (immutable) field "
                f"'_id' was found to have been altered to _id: {update['_id']!r}",
            )
        return {"_id": doc["_id"], **{k: v for k, v in update.items() if k != "_id"}}
    if isinstance(update, dict):
        check.check_operators_on(doc, update)
    _scratch.delete_many({})
    _scratch.insert_one(copy.deepcopy(doc))
    try:
        _scratch.update_one(query, update)
    except mongomock.OperationFailure as exc:
        raise _engine_error(exc) from exc
    return _scratch.find_one({})


def upserted_document(query: dict, update, replacement: bool) -> dict:
    if replacement and "_id" in update and "_id" in query:
        wanted = query["_id"]
        operators = isinstance(wanted, dict) and any(str(k).startswith("$") for k in wanted)
        if not operators and wanted != update["_id"]:
            raise CommandError(
                IMMUTABLE_FIELD,
                "After applying the update, the (immutable) field '_id' was found to have "
                f"been altered to _id: {update['_id']!r}",
            )
    _scratch.delete_many({})
    try:
        if replacement:
            _scratch.replace_one(query, update, upsert=True)
        else:
            _scratch.update_one(query, update, upsert=True)
    except mongomock.OperationFailure as exc:
        raise _engine_error(exc) from exc
    doc = _scratch.find_one({})
    return {"_id": doc.pop("_id"), **doc}


def check_update_statement(inv: Invocation, path: str, spec: dict, query_field: str = "q") -> None:
    """mongod's parsing of one update statement (a failure fails the whole command)."""
    update_field = "u" if query_field == "q" else "update"
    check.check_filter(f"{path}.{query_field}", spec.get(query_field))
    check.check_types(
        path, spec, {"multi": "bool", "upsert": "bool", "arrayFilters": "array", "c": "object"}
    )
    check.check_collation(f"{path}.collation", spec.get("collation"))
    if spec.get("arrayFilters") is not None:
        raise NotImplementedError("arrayFilters")
    if spec.get("c") is not None and not isinstance(spec.get(update_field), list):
        raise CommandError(51198, "Constant values may only be specified for pipeline updates")


def _statement_variables(inv: Invocation, spec: dict) -> dict:
    variables = check.let_values(f"{inv.name}.let", inv.body.get("let"))
    if spec.get("c"):
        variables = {**variables, **check.let_values(f"{inv.name}.updates.c", spec["c"])}
    return variables


def update_one_statement(
    inv: Invocation,
    ns: str,
    spec: dict,
    sort: dict | None = None,
    variables: dict | None = None,
):
    """Apply one update statement; returns (matched, modified, upserted_id, before, after)."""
    variables = variables or {}
    query = check.let_filter(spec.get("q") or {}, variables)
    update = spec.get("u")
    multi = bool(spec.get("multi"))
    kind = check.check_update_modification(update)
    if kind == "pipeline":
        update = check.let_pipeline(update, variables)
    check.check_variables(query, update if kind == "pipeline" else None)
    check.check_hint(f"{inv.name}.hint", spec.get("hint"), _indexes(inv, ns))
    replacement = kind == "replacement"
    if replacement and multi:
        raise CommandError(
            FAILED_TO_PARSE, "multi update is not supported for replacement-style update"
        )
    storage = inv.server.storage
    docs = []
    if storage.exists(ns):
        cursor = storage.collection(ns).find(query, sort=list(sort.items()) if sort else None)
        docs = list(cursor) if multi else list(cursor.limit(1))
    matched = modified = 0
    before = after = None
    for doc in docs:
        matched += 1
        new = updated_document(doc, query, update, replacement)
        before, after = doc, new
        if new != doc:
            storage.replace(ns, doc["_id"], new)
            modified += 1
    if not docs and spec.get("upsert"):
        new = upserted_document(query, update, replacement)
        storage.insert(ns, new)
        return 0, 0, new["_id"], None, new
    return matched, modified, None, before, after


@command("update", write=True, profile_op="update")
def update(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    statements = _check_write_command(inv, UPDATE_FIELDS, "updates")
    allowed = UPDATE_STATEMENT_FIELDS
    if inv.server.version.series >= (8, 0):
        allowed = allowed | {"sort"}  # updateOne/replaceOne sort: new in 8.0
    for spec in statements:
        check.check_fields("update.updates", spec, allowed, generic=False)
        check.require("update.updates", spec, "q")
        check.require("update.updates", spec, "u")
        check_update_statement(inv, "update.updates", spec)
        if spec.get("multi") and spec.get("sort"):
            raise CommandError(72, "Cannot specify sort with multi=true")
        check.check_sort("update.updates.sort", spec.get("sort"))
    ordered = inv.body.get("ordered", True)
    if views.is_view(inv.server.storage, ns):
        return views.refused_writes(ns, statements, ordered)
    n = n_modified = 0
    upserted = []
    errors = []
    metrics = inv.server.metrics
    with inv.server.storage.lock:
        _scan_metrics(inv, ns)
        for index, spec in enumerate(statements):
            metrics.add(metrics.opcounters, "update")
            try:
                matched, modified, upserted_id, _, _ = update_one_statement(
                    inv, ns, spec, spec.get("sort"), _statement_variables(inv, spec)
                )
            except STATEMENT_ERRORS as exc:
                errors.append(_statement_error(index, exc))
                if ordered:
                    break
                continue
            n += matched
            n_modified += modified
            if upserted_id is not None:
                n += 1
                upserted.append({"index": index, "_id": upserted_id})
    metrics.add(metrics.document, "updated", n_modified)
    inv.profile.update(nMatched=n, nModified=n_modified, nUpserted=len(upserted))
    reply: dict = {"n": n}
    if upserted:
        reply["upserted"] = upserted
    reply["nModified"] = n_modified
    if errors:
        reply["writeErrors"] = errors
    return reply


@command("delete", write=True, profile_op="remove")
def delete(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    statements = _check_write_command(inv, DELETE_FIELDS, "deletes")
    for spec in statements:
        check.check_fields("delete.deletes", spec, DELETE_STATEMENT_FIELDS, generic=False)
        check.check_filter("delete.deletes.q", check.require("delete.deletes", spec, "q"))
        limit = check.require("delete.deletes", spec, "limit")
        if not check.is_number(limit):
            raise check.wrong_type("delete.deletes.limit", limit, check.NUMBER_TYPES)
        check.check_collation("delete.deletes.collation", spec.get("collation"))
    variables = check.let_values("delete.let", inv.body.get("let"))
    ordered = inv.body.get("ordered", True)
    storage = inv.server.storage
    if views.is_view(storage, ns):
        return views.refused_writes(ns, statements, ordered)
    n = 0
    errors = []
    metrics = inv.server.metrics
    with storage.lock:
        _scan_metrics(inv, ns)
        for index, spec in enumerate(statements):
            metrics.add(metrics.opcounters, "delete")
            limit = spec.get("limit", 0)
            if limit not in (0, 1):
                errors.append(
                    _write_error(
                        index,
                        CommandError(
                            FAILED_TO_PARSE,
                            f"The limit field in delete objects must be 0 or 1. Got {limit}",
                        ),
                    )
                )
                if ordered:
                    break
                continue
            if not storage.exists(ns):
                continue
            if ns in storage.capped:
                errors.append(
                    _write_error(
                        index,
                        CommandError(
                            20,
                            f"cannot remove from a capped collection: {ns}",
                        ),
                    )
                )
                if ordered:
                    break
                continue
            try:
                check.check_hint("delete.hint", spec.get("hint"), _indexes(inv, ns))
                query = check.let_filter(spec.get("q") or {}, variables)
                check.check_variables(query)
                cursor = storage.collection(ns).find(query, {"_id": 1})
                targets = list(cursor.limit(1)) if limit == 1 else list(cursor)
            except STATEMENT_ERRORS as exc:
                errors.append(_statement_error(index, exc))
                if ordered:
                    break
                continue
            for doc in targets:
                storage.delete(ns, doc["_id"])
                n += 1
    metrics.add(metrics.document, "deleted", n)
    inv.profile.update(ndeleted=n)
    reply: dict = {"n": n}
    if errors:
        reply["writeErrors"] = errors
    return reply


def _check_find_and_modify(inv: Invocation, ns: str) -> None:
    body = inv.body
    check.check_fields("findAndModify", body, FIND_AND_MODIFY_FIELDS | {inv.name}, generic=True)
    check.check_generic("findAndModify", body)
    check.check_types(
        "findAndModify",
        body,
        {"remove": "bool", "new": "bool", "bypassDocumentValidation": "bool"},
    )
    check_update_statement(inv, "findAndModify", body, "query")
    check.check_sort("findAndModify.sort", body.get("sort"))
    check.check_projection("findAndModify.fields", body.get("fields"))
    check.check_hint("findAndModify.hint", body.get("hint"), _indexes(inv, ns))
    if "update" in body:
        check.check_update_modification(body["update"])


@command("findAndModify", "findandmodify", write=True, profile_op="command")
@check.honest("this findAndModify")
def find_and_modify(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    body = inv.body
    _check_find_and_modify(inv, ns)
    views.refuse(inv.server.storage, ns)
    variables = check.let_values("findAndModify.let", body.get("let"))
    remove = bool(body.get("remove"))
    has_update = "update" in body
    if remove and has_update:
        raise CommandError(FAILED_TO_PARSE, "Cannot specify both an update and remove=true")
    if not remove and not has_update:
        raise CommandError(FAILED_TO_PARSE, "Either an update or remove=true must be specified")
    if remove and body.get("new"):
        raise CommandError(
            FAILED_TO_PARSE,
            "Cannot specify both new=true and remove=true; 'remove' "
            "always returns the deleted document",
        )
    if remove and body.get("upsert"):
        raise CommandError(FAILED_TO_PARSE, "Cannot specify both upsert=true and remove=true ")
    query = check.let_filter(body.get("query") or {}, variables)
    sort = body.get("sort") or {}
    fields = body.get("fields")
    storage = inv.server.storage
    with storage.lock:
        _scan_metrics(inv, ns)
        if remove:
            doc = None
            if storage.exists(ns):
                found = list(
                    storage.collection(ns).find(query, sort=list(sort.items()) or None).limit(1)
                )
                doc = found[0] if found else None
            if doc is not None:
                storage.delete(ns, doc["_id"])
                inv.server.metrics.add(inv.server.metrics.document, "deleted")
            value = project(doc, fields) if doc is not None and fields else doc
            return {"lastErrorObject": {"n": 1 if doc else 0}, "value": value}
        spec = {"q": query, "u": body["update"], "upsert": bool(body.get("upsert"))}
        matched, _, upserted_id, before, after = update_one_statement(
            inv, ns, spec, sort, variables
        )
    last_error: dict = {
        "n": 1 if (matched or upserted_id is not None) else 0,
        "updatedExisting": bool(matched),
    }
    if upserted_id is not None:
        last_error["upserted"] = upserted_id
    value = after if body.get("new") else before
    if value is not None and fields:
        value = project(value, fields)
    return {"lastErrorObject": last_error, "value": value}


@command("count", read=True, profile_op="command")
@check.honest("this count")
def count(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    body = inv.body
    check.check_fields("count", body, COUNT_FIELDS, generic=True)
    check.check_generic("count", body)
    check.check_types("count", body, {"limit": "number"})
    query = check.check_filter("count.query", body.get("query"))
    check.check_collation("count.collation", body.get("collation"))
    check.check_hint("count.hint", body.get("hint"), _indexes(inv, ns))
    skip = _nonnegative(inv, "skip")
    limit = abs(int(body.get("limit") or 0))
    storage = inv.server.storage
    with storage.lock:
        _scan_metrics(inv, ns)
        if not storage.exists(ns):
            n = len(views.read(storage, ns, views.find_stages(query, {}, 0, 0, None)) or [])
        elif ns in storage.capped:
            n = len(storage.capped[ns].scan(query))
        else:
            n = storage.collection(ns).count_documents(query)
    n = max(0, n - skip)
    if limit:
        n = min(n, limit)
    return {"n": n}


@command("distinct", read=True, profile_op="command")
@check.honest("this distinct")
def distinct(inv: Invocation) -> dict:
    ns = inv.ns(collection_name(inv))
    body = inv.body
    allowed = DISTINCT_FIELDS
    if inv.server.version.series >= (7, 1):
        allowed = allowed | {"hint"}  # distinct's hint: new in 7.1
    check.check_fields("distinct", body, allowed, generic=True)
    check.check_generic("distinct", body)
    query = check.check_filter("distinct.query", body.get("query"))
    check.check_collation("distinct.collation", body.get("collation"))
    check.check_hint("distinct.hint", body.get("hint"), _indexes(inv, ns))
    key = body.get("key")
    if not isinstance(key, str):
        raise CommandError(
            40414 if key is None else TYPE_MISMATCH,
            "BSON field 'distinct.key' is missing but a required field"
            if key is None
            else "BSON field 'distinct.key' is the wrong type",
        )
    _check_field_path(key)
    storage = inv.server.storage
    with storage.lock:
        _scan_metrics(inv, ns)
        if not storage.exists(ns):
            return {"values": views.distinct(storage, ns, key, query) or []}
        values = storage.collection(ns).distinct(key, query)
    return {"values": values}


def _check_field_path(path: str) -> None:
    if path == "":
        raise CommandError(40352, "FieldPath cannot be constructed with empty string")
    if path.startswith("$"):
        raise CommandError(16410, "FieldPath field names may not start with '$'.")
    if "" in path.split("."):
        raise CommandError(15998, "FieldPath field names may not be empty strings.")


# MongoDB 7.0's aggregation stages (an unknown name is 40324; mongomock lacks several: 238).
STAGES = frozenset(
    [
        "$addFields",
        "$bucket",
        "$bucketAuto",
        "$changeStream",
        "$changeStreamSplitLargeEvent",
        "$collStats",
        "$count",
        "$currentOp",
        "$densify",
        "$documents",
        "$facet",
        "$fill",
        "$geoNear",
        "$graphLookup",
        "$group",
        "$indexStats",
        "$limit",
        "$listLocalSessions",
        "$listSampledQueries",
        "$listSearchIndexes",
        "$listSessions",
        "$lookup",
        "$match",
        "$merge",
        "$out",
        "$planCacheStats",
        "$project",
        "$redact",
        "$replaceRoot",
        "$replaceWith",
        "$sample",
        "$search",
        "$searchMeta",
        "$set",
        "$setWindowFields",
        "$shardedDataDistribution",
        "$skip",
        "$sort",
        "$sortByCount",
        "$unionWith",
        "$unset",
        "$unwind",
        "$vectorSearch",
    ]
)


def _check_pipeline(pipeline: list) -> None:
    for position, stage in enumerate(pipeline):
        name = check.stage_name(stage)
        if name not in STAGES:
            raise CommandError(40324, f"Unrecognized pipeline stage name: '{name}'")
        if name in ("$out", "$merge") and position != len(pipeline) - 1:
            raise CommandError(40601, f"{name} can only be the final stage in the pipeline")
        if name == "$collStats" and position != 0:
            raise CommandError(40602, "$collStats is only valid as the first stage in a pipeline")


@command("aggregate", read=True, profile_op="command")
@check.honest("this aggregation")
def aggregate(inv: Invocation) -> dict:
    if inv.arg == 1:
        raise NotImplementedError("collectionless aggregate (aggregate: 1)")
    ns = inv.ns(collection_name(inv))
    body = inv.body
    check.check_fields("aggregate", body, AGGREGATE_FIELDS, generic=True)
    check.check_generic("aggregate", body)
    check.check_types(
        "aggregate",
        body,
        {"explain": "bool", "allowDiskUse": "bool", "bypassDocumentValidation": "bool"},
    )
    pipeline = body.get("pipeline")
    if not isinstance(pipeline, list):
        raise CommandError(TYPE_MISMATCH, "'pipeline' option must be specified as an array")
    _check_pipeline(pipeline)
    check.check_collation("aggregate.collation", body.get("collation"))
    check.check_hint("aggregate.hint", body.get("hint"), _indexes(inv, ns))
    pipeline = check.let_pipeline(pipeline, check.let_values("aggregate.let", body.get("let")))
    check.check_variables(pipeline=pipeline)
    if inv.body.get("explain"):
        from mongod_double.commands.diagnostics import query_planner

        return {
            "explainVersion": "1",
            "stages": [{"$cursor": {"queryPlanner": query_planner(inv, ns, {})}}]
            + [dict(s) for s in pipeline],
        }
    cursor_opts = inv.body.get("cursor")
    if not isinstance(cursor_opts, dict):
        raise CommandError(
            FAILED_TO_PARSE,
            "The 'cursor' option is required, except for aggregate with the explain argument",
        )
    if pipeline and "$collStats" in pipeline[0]:
        from mongod_double.commands.stats import coll_stats_stage

        results = [coll_stats_stage(inv, ns, pipeline[0]["$collStats"])]
        if len(pipeline) > 1:
            if any("$out" in stage or "$merge" in stage for stage in pipeline):
                raise NotImplementedError("$collStats followed by $out or $merge")
            source = _scratch.database.client["stats_scratch"]["docs"]
            source.drop()
            source.insert_one({"_id": 0, **copy.deepcopy(results[0])})
            results = [
                _id_first(d) for d in source.aggregate([{"$project": {"_id": 0}}, *pipeline[1:]])
            ]
        return open_cursor(inv, ns, results, cursor_opts.get("batchSize"))
    out_stage = None
    if pipeline and isinstance(pipeline[-1], dict) and "$out" in pipeline[-1]:
        out_stage = pipeline[-1]["$out"]
        pipeline = pipeline[:-1]
    if any(isinstance(s, dict) and "$merge" in s for s in pipeline):
        raise NotImplementedError("$merge")
    storage = inv.server.storage
    with storage.lock:
        _scan_metrics(inv, ns)
        if ns in storage.capped:
            source = _scratch.database.client["capped_scratch"]["docs"]
            source.drop()
            docs = storage.capped[ns].documents()
            if docs:
                source.insert_many(copy.deepcopy(docs))
            results = list(source.aggregate(pipeline))
        elif not storage.exists(ns) and views.is_view(storage, ns):
            results = views.read(storage, ns, pipeline)
        else:
            results = list(storage.collection(ns).aggregate(pipeline))
        results = [_id_first(d) for d in results]
        if out_stage is not None:
            _write_out(inv, out_stage, results)
            results = []
    return open_cursor(inv, ns, results, cursor_opts.get("batchSize"))


def _write_out(inv: Invocation, target, results: list[dict]) -> None:
    """$out: replace the target collection with the results, through the write path."""
    if isinstance(target, dict):
        db, coll = target.get("db", inv.db), target["coll"]
    else:
        db, coll = inv.db, target
    inv.server.replication.check_write(db)
    storage = inv.server.storage
    target_ns = f"{db}.{coll}"
    views.refuse(storage, target_ns)
    if storage.exists(target_ns):
        storage.command_op(db, {"drop": coll}, target_ns)
    storage.ensure_collection(target_ns)
    for doc in results:
        if "_id" not in doc:
            doc = {"_id": ObjectId(), **doc}
        storage.insert(target_ns, doc)
