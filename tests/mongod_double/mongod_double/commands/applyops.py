"""applyOps: oplog entries applied as a client sends them (mongorestore --oplogReplay sends one
entry per command).

From https://www.mongodb.com/docs/manual/reference/command/applyOps/ and the 3.2-4.4 pages that
still describe its fields: ``{applyOps: [entries], bypassDocumentValidation, alwaysUpsert}``;
each entry has ``op`` (i, u, d, c, n), ``ns``, ``o``, ``o2`` (the update's target) and optionally
``ui`` (the collection's UUID, which then names the collection), ``b`` (upsert); the reply is
``{applied: N, results: [true, ...]}``, and on the first failing entry the error with
``applied`` and ``results`` up to and including it (``false``). Behaviour as the oplog
application mode of the command: an insert of an existing ``_id`` replaces the document, an
update is an upsert unless ``alwaysUpsert: false`` (then a missing document fails with
UpdateOperationFailed), a delete of a missing document succeeds. Updates are replacements
(``o`` without operators), ``$v: 2`` diffs (``{diff: {u, i, d, s<field>}}``, arrays with
``a: true``, ``l``, ``u<n>``, ``s<n>``) or ``$set``/``$unset`` documents. Commands: create,
drop, createIndexes, dropIndexes/deleteIndexes, renameCollection, dropDatabase, collMod of an
index's expireAfterSeconds (a TTL change) and a nested applyOps; other collMod changes and other
commands are NotImplemented (238), never ignored.

Under access control it needs the applyOps action on the cluster (restore, dbAdminAnyDatabase,
root) and each entry's own privilege, useUUID and forceUUID for an entry with ``ui``
(mongod_double.authz: the applyOps page's Required Access, SERVER-25994, DOCS-14282).
"""

from __future__ import annotations

import copy

from bson.binary import Binary

from mongod_double.commands import Invocation, command
from mongod_double.commands.ddl import _validate_index_spec, check_db_name
from mongod_double.errors import (
    BAD_VALUE,
    FAILED_TO_PARSE,
    INDEX_NOT_FOUND,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    TYPE_MISMATCH,
    CommandError,
)
from mongod_double.storage import new_uuid, split_ns

UPDATE_OPERATION_FAILED = 175
ENTRY_FIELDS = {"op", "ns", "o", "o2", "ui", "b", "ts", "t", "v", "h", "wall", "lsid", "txnNumber",
                "stmtId", "prevOpTime", "version", "fromMigrate"}  # fmt: skip


@command("applyOps", write=True)
def apply_ops(inv: Invocation) -> dict:
    entries = inv.arg
    if not isinstance(entries, list):
        raise CommandError(TYPE_MISMATCH, "ApplyOps should be an array of ops")
    always_upsert = inv.body.get("alwaysUpsert", True) is not False
    results: list[bool] = []
    storage = inv.server.storage
    with storage.lock:
        for entry in entries:
            try:
                _apply_entry(inv, entry, always_upsert)
            except CommandError as exc:
                results.append(False)
                exc.extra.update({"applied": len(results), "results": results})
                raise
            except NotImplementedError:
                results.append(False)
                raise
            results.append(True)
    return {"applied": len(results), "results": results}


def _namespace(inv: Invocation, entry: dict) -> str:
    ns = entry.get("ns")
    if not isinstance(ns, str):
        raise CommandError(FAILED_TO_PARSE, 'Missing expected field "ns"')
    ui = entry.get("ui")
    if ui is None or entry.get("op") == "c":
        return ns
    if not isinstance(ui, Binary):
        raise CommandError(BAD_VALUE, f"ui must be a UUID, got {ui!r}")
    for name, meta in inv.server.storage.catalog.items():
        if meta.uuid == ui:
            return name
    raise CommandError(
        NAMESPACE_NOT_FOUND,
        f"Failed to apply operation due to missing collection ({ui.as_uuid()}): {entry}",
    )


def _apply_entry(inv: Invocation, entry: object, always_upsert: bool) -> None:
    if not isinstance(entry, dict):
        raise CommandError(FAILED_TO_PARSE, "applyOps entries must be documents")
    unknown = set(entry) - ENTRY_FIELDS
    if unknown:
        raise CommandError(
            40415, f"BSON field 'applyOps.{sorted(unknown)[0]}' is an unknown field."
        )
    kind = entry.get("op")
    ns = _namespace(inv, entry)
    db, coll = split_ns(ns)
    inv.server.replication.check_write(db)
    storage = inv.server.storage
    if kind == "n":
        return
    if kind == "c":
        _apply_command(inv, db, entry.get("o"), always_upsert, entry.get("ui"))
        return
    if not coll:
        raise CommandError(FAILED_TO_PARSE, f"invalid namespace {ns!r} for op {kind!r}")
    document = entry.get("o")
    if not isinstance(document, dict):
        raise CommandError(FAILED_TO_PARSE, f"'o' of a {kind!r} entry must be a document")
    if kind == "i":
        check_db_name(db)
        if "_id" not in document:
            raise NotImplementedError("applyOps insert without _id")
        if storage.exists(ns) and _find(inv, ns, document["_id"]) is not None:
            storage.replace(ns, document["_id"], copy.deepcopy(document))
        else:
            storage.insert(ns, copy.deepcopy(document))
    elif kind == "u":
        target = entry.get("o2")
        if not isinstance(target, dict) or "_id" not in target:
            raise CommandError(FAILED_TO_PARSE, "an update entry needs 'o2' with the _id")
        current = _find(inv, ns, target["_id"]) if storage.exists(ns) else None
        if current is None:
            if not (always_upsert or entry.get("b")):
                raise CommandError(
                    UPDATE_OPERATION_FAILED,
                    f"Failed to apply update due to missing _id: {entry}",
                )
            new = updated({"_id": target["_id"]}, document)
            storage.insert(ns, new)
        else:
            new = updated(current, document)
            storage.replace(ns, target["_id"], new)
    elif kind == "d":
        if "_id" not in document:
            raise NotImplementedError("applyOps delete without _id")
        if storage.exists(ns) and _find(inv, ns, document["_id"]) is not None:
            storage.delete(ns, document["_id"])
    else:
        raise CommandError(FAILED_TO_PARSE, f"unknown op type {kind!r} in applyOps")


def _find(inv: Invocation, ns: str, _id: object) -> dict | None:
    capped = inv.server.storage.capped.get(ns)
    if capped is not None:  # kept outside the query engine, with its _id index
        record = capped.find_id(_id)
        return record.doc if record is not None else None
    return inv.server.storage.collection(ns).find_one({"_id": _id})


def _apply_command(
    inv: Invocation, db: str, o: object, always_upsert: bool, ui: object = None
) -> None:
    """``ui``: a create's collection UUID (kept, as mongorestore --preserveUUID relies on)."""
    if not isinstance(o, dict) or not o:
        raise CommandError(FAILED_TO_PARSE, "a command entry needs 'o' with the command")
    storage = inv.server.storage
    name = next(iter(o))
    arg = o[name]
    if name == "applyOps":
        for nested in arg or []:
            _apply_entry(inv, nested, always_upsert)
        return
    if name == "create":
        ns = f"{db}.{arg}"
        check_db_name(db)
        if storage.exists(ns):
            raise CommandError(NAMESPACE_EXISTS, f"Collection {ns} already exists.")
        options = {k: v for k, v in o.items() if k not in ("create", "idIndex")}
        unsupported = set(options) - {"capped", "size", "max"}
        if unsupported:
            raise NotImplementedError(f"create option(s) {sorted(unsupported)}")
        if ui is not None and not isinstance(ui, Binary):
            raise CommandError(BAD_VALUE, f"ui must be a UUID, got {ui!r}")
        storage.apply({"op": "c", "ns": f"{db}.$cmd", "ui": ui or new_uuid(),
                       "o": {"create": arg, **options}})  # fmt: skip
    elif name == "drop":
        if storage.exists(f"{db}.{arg}"):
            storage.command_op(db, {"drop": arg}, f"{db}.{arg}")
    elif name == "createIndexes":
        ns = f"{db}.{arg}"
        spec = _validate_index_spec({k: v for k, v in o.items() if k != "createIndexes"})
        storage.ensure_collection(ns)
        if any(s["name"] == spec["name"] for s in storage.index_specs(ns)):
            return
        storage.command_op(db, {"createIndexes": arg, "v": 2, **spec}, ns)
    elif name in ("dropIndexes", "deleteIndexes"):
        ns = f"{db}.{arg}"
        index = o.get("index")
        if not storage.exists(ns) or not any(s["name"] == index for s in storage.index_specs(ns)):
            return
        spec = next(s for s in storage.index_specs(ns) if s["name"] == index)
        storage.apply({"op": "c", "ns": f"{db}.$cmd", "ui": storage.catalog[ns].uuid,
                       "o": {"dropIndexes": arg, "index": index}, "o2": spec})  # fmt: skip
    elif name == "renameCollection":
        target = o.get("to")
        if not storage.exists(arg):
            raise CommandError(NAMESPACE_NOT_FOUND, f"Source collection {arg} does not exist")
        if storage.exists(target) and not o.get("dropTarget"):
            raise CommandError(NAMESPACE_EXISTS, "target namespace exists")
        drop_target = bool(o.get("dropTarget"))
        rename = {"renameCollection": arg, "to": target, "stayTemp": False}
        storage.command_op(split_ns(arg)[0], {**rename, "dropTarget": drop_target}, arg)
    elif name == "dropDatabase":
        if storage.collections(db):
            storage.command_op(db, {"dropDatabase": 1})
    elif name == "collMod":
        _coll_mod(inv, db, o)
    else:
        raise NotImplementedError(f"applyOps command entry {name!r}")


def _coll_mod(inv: Invocation, db: str, o: dict) -> None:
    """collMod of an index's expireAfterSeconds (what a TTL change logs); other changes
    (validators, hidden indexes, unique conversion...) are NotImplemented."""
    ns = f"{db}.{o['collMod']}"
    storage = inv.server.storage
    change = o.get("index")
    others = set(o) - {"collMod", "index"}
    if others or not isinstance(change, dict) or set(change) - {"name", "keyPattern",
                                                                 "expireAfterSeconds"}:  # fmt: skip
        raise NotImplementedError(f"collMod other than an index's expireAfterSeconds: {o}")
    if not storage.exists(ns):
        raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {ns}")
    expire = change.get("expireAfterSeconds")
    if not isinstance(expire, (int, float)) or isinstance(expire, bool) or expire < 0:
        raise CommandError(BAD_VALUE, "expireAfterSeconds must be a number >= 0")
    found = [
        s for s in storage.index_specs(ns)
        if s["name"] == change.get("name") or s["key"] == change.get("keyPattern")
    ]  # fmt: skip
    if not found:
        raise CommandError(INDEX_NOT_FOUND, f"cannot find index {change} for ns {ns}")
    storage.command_op(db, {"collMod": o["collMod"], "index": {"name": found[0]["name"],
                       "expireAfterSeconds": expire}}, ns)  # fmt: skip


# -- updates as the oplog records them ----------------------------------------------------


def updated(current: dict, o: dict) -> dict:
    """The document after the update entry ``o``: a replacement, a ``$v: 2`` diff or
    ``$set``/``$unset``."""
    if o.get("$v") == 2 and isinstance(o.get("diff"), dict):
        new = copy.deepcopy(current)
        _apply_diff(new, o["diff"])
        return new
    operators = [k for k in o if k.startswith("$")]
    if not operators:
        return {"_id": current["_id"], **{k: v for k, v in o.items() if k != "_id"}}
    new = copy.deepcopy(current)
    for name in operators:
        if name == "$v":
            continue
        if name == "$set":
            for path, value in o[name].items():
                _set_path(new, path.split("."), copy.deepcopy(value))
        elif name == "$unset":
            for path in o[name]:
                _unset_path(new, path.split("."))
        else:
            raise NotImplementedError(f"update entry with {name}")
    return new


def _apply_diff(doc: dict, diff: dict) -> None:
    for section, body in diff.items():
        if section == "d":
            for field in body:
                doc.pop(field, None)
        elif section in ("u", "i"):
            for field, value in body.items():
                doc[field] = copy.deepcopy(value)
        elif section.startswith("s"):
            field = section[1:]
            child = doc.get(field)
            if body.get("a") is True:
                if not isinstance(child, list):
                    raise CommandError(
                        UPDATE_OPERATION_FAILED, f"array diff on non-array {field!r}"
                    )
                _apply_array_diff(child, body)
            else:
                if not isinstance(child, dict):
                    raise CommandError(UPDATE_OPERATION_FAILED, f"diff on non-object {field!r}")
                _apply_diff(child, body)
        else:
            raise NotImplementedError(f"update diff section {section!r}")


def _apply_array_diff(array: list, diff: dict) -> None:
    if "l" in diff:
        length = int(diff["l"])
        del array[length:]
        array.extend([None] * (length - len(array)))
    for key, value in diff.items():
        if key in ("a", "l"):
            continue
        index = int(key[1:])
        if key.startswith("u"):
            array.extend([None] * (index + 1 - len(array)))
            array[index] = copy.deepcopy(value)
        elif key.startswith("s"):
            child = array[index]
            if value.get("a") is True:
                _apply_array_diff(child, value)
            else:
                _apply_diff(child, value)
        else:
            raise NotImplementedError(f"array diff key {key!r}")


def _set_path(doc: dict, parts: list[str], value: object) -> None:
    for part in parts[:-1]:
        doc = doc.setdefault(part, {})
    doc[parts[-1]] = value


def _unset_path(doc: dict, parts: list[str]) -> None:
    for part in parts[:-1]:
        doc = doc.get(part)
        if not isinstance(doc, dict):
            return
    doc.pop(parts[-1], None)
