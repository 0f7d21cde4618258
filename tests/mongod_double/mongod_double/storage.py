"""Data in dbPath: the query engine's in-memory databases, a write-ahead journal and snapshots.

Every change to data goes through :meth:`Storage.apply` with one operation in oplog entry form
(``{op: i|u|d|c|n, ns, o, o2?, ui?}``). ``apply`` changes the engine, appends the operation to the
journal (so it survives ``kill -9``), and, when a replication hook is set, appends an oplog entry to
``local.oplog.rs``. Restart = load the last snapshot, then replay the journal records after it.
A replica set secondary (phase 2) applies the entries it pulls through the same ``apply``.

Files in dbPath: ``mongod.lock`` (flock, holds the pid while running, emptied on clean shutdown as
mongod does), ``double-snapshot.bson`` (every collection at journal sequence N) and
``double-journal.bson`` (``{s: seq, op, oplog?}`` records after the snapshot: an operation and
its oplog entry in one record, written at once).
"""

from __future__ import annotations

import copy
import datetime
import fcntl
import os
import struct
import threading
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import bson
import mongomock
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import CodecOptions
from bson.objectid import ObjectId
from mongomock.helpers import hashdict

from mongod_double import engine
from mongod_double.capped import CappedCollection
from mongod_double.errors import (
    DUPLICATE_KEY,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    CommandError,
    StartupError,
)
from mongod_double.version import Version

CODEC = CodecOptions(document_class=dict, tz_aware=False)
LOCK_FILE = "mongod.lock"
SNAPSHOT_FILE = "double-snapshot.bson"
JOURNAL_FILE = "double-journal.bson"
SNAPSHOT_FORMAT = 1
JOURNAL_COMPACT_BYTES = 64 * 1024 * 1024
OPLOG_NS = "local.oplog.rs"
FCV_ID = "featureCompatibilityVersion"
FCV_NS = "admin.system.version"
EXIT_DBPATH_PROBLEM = 100
EXIT_NEED_UPGRADE = 62


class OplogHook(Protocol):
    """How the write path asks replication for oplog entries (see :meth:`Storage.apply`)."""

    def entry_for(self, op: dict) -> dict | None:
        """The entry for ``op`` (None when this node keeps no oplog); raises to refuse it."""

    def logged(self, entry: dict) -> None:
        """``entry`` is applied and in the oplog."""


def new_uuid() -> Binary:
    return Binary.from_uuid(uuid.uuid4(), UuidRepresentation.STANDARD)


def split_ns(ns: str) -> tuple[str, str]:
    db, _, coll = ns.partition(".")
    return db, coll


@dataclass
class CollectionMeta:
    uuid: Binary
    options: dict = field(default_factory=dict)
    indexes: list[dict] = field(default_factory=list)  # secondary indexes, creation order

    def to_doc(self) -> dict:
        return {"uuid": self.uuid, "options": self.options, "indexes": self.indexes}

    @classmethod
    def from_doc(cls, doc: dict) -> CollectionMeta:
        return cls(doc["uuid"], doc.get("options", {}), doc.get("indexes", []))


def duplicate_key_error(ns: str, index: dict, doc: dict) -> CommandError:
    """E11000 as mongod words it, with keyPattern and keyValue."""
    key_value = {}
    for path in index["key"]:
        value: object = doc
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        key_value[path] = value
    shown = ", ".join(f"{k}: {_shell_repr(v)}" for k, v in key_value.items())
    msg = (
        f"E11000 duplicate key error collection: {ns} index: {index['name']} dup key: {{ {shown} }}"
    )
    return CommandError(DUPLICATE_KEY, msg, keyPattern=dict(index["key"]), keyValue=key_value)


def key_query(spec: dict, doc: dict) -> dict:
    """The query for the documents holding ``doc``'s key of the index ``spec`` (a missing
    field as null)."""
    query = {}
    for path in spec["key"]:
        try:
            query[path] = mongomock.helpers.get_value_by_dot(doc, path)
        except KeyError:
            query[path] = None
    return query


def _shell_repr(value: object) -> str:
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, ObjectId):
        return f"ObjectId('{value}')"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k}: {_shell_repr(v)}" for k, v in value.items()) + " }"
    return str(value)


class Storage:
    def __init__(self, dbpath: str, version: Version, oplog_size_bytes: int = 990 * 1024**2):
        self.dbpath = os.path.abspath(dbpath)
        self.version = version
        self.oplog_size_bytes = oplog_size_bytes
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.engine = engine.MongoClient()
        self.catalog: dict[str, CollectionMeta] = {}
        self.capped: dict[str, CappedCollection] = {}
        self.seq = 0
        self.journal_bytes = 0
        self._journal_fd: int | None = None
        self._lock_fd: int | None = None
        self._dirty = False
        # Set by replication: the oplog entry of an operation about to be applied (or None),
        # then told the entry was written (see OplogHook).
        self.oplog_hook: OplogHook | None = None
        self.fcv = version.fcv
        self.fcv_document: dict = {"version": version.fcv}
        self.fresh = False
        # serverStatus' cache bytes: each collection's data size, kept as a running total (a
        # write adds its document's size and takes away the one it replaced or deleted), and
        # measured again only when that cannot be known (namespaces, or "<db>." for a command
        # on a database), rather than every collection at every call (10,000 took 3.5 s).
        self._sizes: dict[str, int] = {}
        self._sizes_stale: set[str] = set()
        # A transaction's operations from its partialTxn entries, applied with its last entry.
        self._partial_txn: list[dict] = []

    # -- lifecycle -----------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.dbpath, name)

    def open(self) -> None:
        if not os.path.isdir(self.dbpath):
            raise StartupError(
                EXIT_DBPATH_PROBLEM,
                20557,
                "DBException in initAndListen, terminating",
                {
                    "error": f"NonExistentPath: Data directory {self.dbpath} not found. Create the "
                    "missing directory or specify another path using (1) the --dbpath command "
                    "line option, or (2) by adding the 'storage.dbPath' option in the "
                    "configuration file."
                },
            )
        self._acquire_lock_file()
        snapshot_seq = self._load_snapshot()
        self._replay_journal(snapshot_seq)
        self._journal_fd = os.open(self.path(JOURNAL_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._check_fcv()

    def _acquire_lock_file(self) -> None:
        path = self.path(LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StartupError(
                EXIT_DBPATH_PROBLEM,
                20557,
                "DBException in initAndListen, terminating",
                {
                    "error": f"DBPathInUse: Unable to lock the lock file: {path} "
                    f"({os.strerror(exc.errno or 11)}). Another mongod instance is already "
                    f"running on the {self.dbpath} directory"
                },
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._lock_fd = fd

    def close(self) -> None:
        """Clean shutdown: snapshot, empty journal, empty and unlock mongod.lock."""
        with self.lock:
            if self._journal_fd is None:
                return
            self.checkpoint()
            os.close(self._journal_fd)
            self._journal_fd = None
            if self._lock_fd is not None:
                os.ftruncate(self._lock_fd, 0)
                os.fsync(self._lock_fd)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    def sync(self) -> None:
        """Flush the journal to disk (called periodically, like mongod's journal flusher)."""
        with self.lock:
            if self._dirty and self._journal_fd is not None:
                os.fsync(self._journal_fd)
                self._dirty = False

    # -- snapshot and journal ------------------------------------------------------------

    def _load_snapshot(self) -> int:
        path = self.path(SNAPSHOT_FILE)
        if not os.path.exists(path):
            self.fresh = not os.path.exists(self.path(JOURNAL_FILE))
            return 0
        with open(path, "rb") as handle:
            data = handle.read()
        docs = bson.decode_all(data, CODEC)
        header = docs[0]
        for ns, meta_doc in header["catalog"].items():
            self._create(ns, CollectionMeta.from_doc(meta_doc))
        for record in docs[1:]:
            self._insert_raw(record["n"], record["d"])
        self.seq = header["seq"]
        self._partial_txn = header.get("partialTxn", [])
        return header["seq"]

    def _replay_journal(self, after_seq: int) -> None:
        path = self.path(JOURNAL_FILE)
        if not os.path.exists(path):
            return
        with open(path, "rb") as handle:
            data = handle.read()
        pos = 0
        while pos + 4 <= len(data):
            (size,) = struct.unpack_from("<i", data, pos)
            if size < 5 or pos + size > len(data):
                break
            try:
                record = bson.decode(data[pos : pos + size], CODEC)
            except Exception:
                break
            if record["s"] > after_seq:
                self._apply_idempotent(record["op"])
                if "oplog" in record:
                    self._apply_idempotent({"op": "i", "ns": OPLOG_NS, "o": record["oplog"]})
                self.seq = record["s"]
            pos += size
        if pos < len(data):  # a torn last record from a crash: cut it off
            with open(path, "r+b") as handle:
                handle.truncate(pos)
        self.journal_bytes = pos

    def checkpoint(self) -> None:
        """Write a snapshot of everything at the current sequence, then start a new journal."""
        with self.lock:
            tmp = self.path(SNAPSHOT_FILE + ".tmp")
            with open(tmp, "wb") as handle:
                catalog = {ns: meta.to_doc() for ns, meta in self.catalog.items()}
                header = {"format": SNAPSHOT_FORMAT, "seq": self.seq, "catalog": catalog,
                          "partialTxn": self._partial_txn}  # fmt: skip
                handle.write(bson.encode(header, codec_options=CODEC))
                for ns in self.catalog:
                    for doc in self.documents(ns):
                        handle.write(bson.encode({"n": ns, "d": doc}, codec_options=CODEC))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path(SNAPSHOT_FILE))
            if self._journal_fd is not None:
                os.ftruncate(self._journal_fd, 0)
                os.fsync(self._journal_fd)
            self.journal_bytes = 0
            dir_fd = os.open(self.dbpath, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _journal(self, op: dict, entry: dict | None = None) -> None:
        """One record, one write: an operation and its oplog entry reach the journal together,
        as a change and its oplog entry are one storage transaction in mongod (a kill -9
        between two writes left a document whose entry no restart replayed)."""
        self.seq += 1
        record = {"s": self.seq, "op": op}
        if entry is not None:
            record["oplog"] = entry
        data = bson.encode(record, codec_options=CODEC)
        if self._journal_fd is not None:
            os.write(self._journal_fd, data)
            self._dirty = True
        self.journal_bytes += len(data)

    # -- the write path ------------------------------------------------------------------

    def apply(self, op: dict, replicated: dict | None = None, logged: bool = True) -> dict | None:
        """Apply one operation, journal it, and log it to the oplog. Returns the oplog entry.

        ``replicated``: the oplog entry a secondary fetched from its sync source; it is logged
        as it is (its ``ts``/``t`` kept) and the operation is applied idempotently, as MongoDB
        applies oplog entries. ``logged=False``: a node's own bookkeeping that no oplog records
        (initial sync's clone, rollback's refetch).

        A logged operation asks the oplog hook for its entry *before* touching the engine: the
        hook refuses (NotWritablePrimary) on a member that is no longer primary, so no change is
        ever applied without its entry, and the entry is only kept once the change is.
        """
        with self.lock:
            db, coll = split_ns(op["ns"])
            entry = None
            size_before = self._size_of_target(op)
            if replicated is not None:
                self._apply_idempotent(op)
                entry = replicated
            else:
                if (
                    logged
                    and self.oplog_hook is not None
                    and db != "local"
                    and coll != "system.profile"
                ):
                    entry = self.oplog_hook.entry_for(op)
                self._apply_to_engine(op)
            if entry is not None:
                self._apply_to_engine({"op": "i", "ns": OPLOG_NS, "o": entry})
            if op["ns"] == FCV_NS:
                self._read_fcv()
            self._count_size(op, size_before)
            self._journal(op, entry)
            if entry is not None and replicated is None:
                self.oplog_hook.logged(entry)
            self.changed.notify_all()
            if self.journal_bytes > JOURNAL_COMPACT_BYTES:
                self.checkpoint()
            return entry

    def _apply_to_engine(self, op: dict) -> None:
        kind, ns = op["op"], op["ns"]
        if kind == "i":
            if ns not in self.catalog:
                self._create(ns, CollectionMeta(op.get("ui") or new_uuid()))
            self._insert_raw(ns, op["o"])
        elif kind == "u":
            self._replace_raw(ns, op["o2"]["_id"], op["o"])
        elif kind == "d":
            if ns in self.capped:
                self.capped[ns].delete(op["o"]["_id"])
            else:
                self.collection(ns).delete_one({"_id": op["o"]["_id"]})
        elif kind == "c":
            self._apply_command(split_ns(ns)[0], op["o"], op.get("ui"))
        elif kind != "n":
            raise ValueError(f"unknown operation type {kind!r}")

    def _apply_idempotent(self, op: dict) -> None:
        """Oplog application: an insert of an existing _id replaces it, an update of a missing
        document inserts it, a delete of a missing one, a create of an existing collection, a
        drop of a missing one and an index that exists are no-ops."""
        kind, ns = op["op"], op["ns"]
        if kind == "i" and ns in self.catalog and not ns.startswith("local."):
            _id = op["o"].get("_id")
            if self._has_id(ns, _id):
                self._replace_raw(ns, _id, op["o"])
                return
        elif kind == "u":
            if ns not in self.catalog:
                self._create(ns, CollectionMeta(op.get("ui") or new_uuid()))
            if not self._has_id(ns, op["o2"]["_id"]):
                self._insert_raw(ns, op["o"])
                return
        elif kind == "d":
            if ns not in self.catalog:
                return
        elif kind == "c":
            db = split_ns(ns)[0]
            name = next(iter(op["o"]))
            target = f"{db}.{op['o'][name]}" if isinstance(op["o"][name], str) else None
            if name == "create" and target in self.catalog:
                return
            if name in ("drop", "createIndexes", "dropIndexes", "collMod") and (
                target not in self.catalog
            ):
                return
            if name == "createIndexes" and any(
                i["name"] == op["o"].get("name") for i in self.catalog[target].indexes
            ):
                return
            if name == "dropIndexes" and not any(
                i["name"] == op["o"].get("index") for i in self.catalog[target].indexes
            ):
                return
            if name == "renameCollection" and op["o"]["renameCollection"] not in self.catalog:
                return
        self._apply_to_engine(op)

    def _has_id(self, ns: str, _id: object) -> bool:
        """Is there a document with this _id? A lookup in the engine's store, as the _id index
        answers it: a query would scan the collection, once per entry a secondary applies."""
        if ns in self.capped:
            return self.capped[ns].find_id(_id) is not None
        key = hashdict(_id) if isinstance(_id, dict) else _id
        try:
            return key in self.collection(ns)._store
        except TypeError:  # an _id the store cannot hash: ask the slow way
            return self.collection(ns).find_one({"_id": _id}, {"_id": 1}) is not None

    def _apply_command(self, db: str, o: dict, ui: Binary | None) -> None:
        name = next(iter(o))
        if name == "create":
            options = {k: v for k, v in o.items() if k != "create"}
            self._create(f"{db}.{o['create']}", CollectionMeta(ui or new_uuid(), options))
        elif name == "drop":
            self._drop(f"{db}.{o['drop']}")
        elif name == "createIndexes":
            ns = f"{db}.{o['createIndexes']}"
            spec = {k: v for k, v in o.items() if k != "createIndexes"}
            self._create_index(ns, spec)
        elif name == "dropIndexes":
            ns = f"{db}.{o['dropIndexes']}"
            self.collection(ns).drop_index(o["index"])
            meta = self.catalog[ns]
            meta.indexes = [i for i in meta.indexes if i["name"] != o["index"]]
        elif name == "renameCollection":
            self._rename(o["renameCollection"], o["to"], bool(o.get("dropTarget")))
        elif name == "collMod":  # an index's expireAfterSeconds (applyOps); nothing else
            ns = f"{db}.{o['collMod']}"
            change = o.get("index") or {}
            for spec in self.catalog[ns].indexes:
                if spec["name"] == change.get("name") or spec["key"] == change.get("keyPattern"):
                    spec["expireAfterSeconds"] = change["expireAfterSeconds"]
                    self.collection(ns).drop_index(spec["name"])
                    self._engine_index(ns, spec)
        elif name == "replSetTruncateOplogAfter":  # rollback; journaled, never in the oplog
            capped = self.capped.get(OPLOG_NS)
            if capped is not None:
                capped.cut_after("ts", o[name])
        elif name == "dropDatabase":
            for ns in [n for n in self.catalog if split_ns(n)[0] == db]:
                self._drop(ns)
        elif name == "applyOps":  # a transaction's commit: its operations at once, under the lock
            if o.get("partialTxn"):
                self._partial_txn.extend(o["applyOps"])
                return
            # The last entry's count says how many operations the transaction's partial entries
            # hold: only those (the newest), not what a transaction cut short left pending.
            pending, self._partial_txn = self._partial_txn, []
            earlier = int(o.get("count") or len(o["applyOps"])) - len(o["applyOps"])
            for inner in (pending[len(pending) - earlier :] if earlier > 0 else []) + o["applyOps"]:
                self._apply_idempotent(inner)
        else:
            raise ValueError(f"unknown command operation {name!r}")

    def _create(self, ns: str, meta: CollectionMeta) -> None:
        self.catalog[ns] = meta
        if meta.options.get("capped"):
            size = meta.options.get("size", 4096)
            if ns == OPLOG_NS:
                size = self.oplog_size_bytes
            self.capped[ns] = CappedCollection(size, meta.options.get("max"))
        else:
            db, coll = split_ns(ns)
            self.engine._store[db].create_collection(coll)
            for spec in meta.indexes:
                self._engine_index(ns, spec)

    def _create_index(self, ns: str, spec: dict) -> None:
        self._engine_index(ns, spec)
        self.catalog[ns].indexes.append(spec)

    def _engine_index(self, ns: str, spec: dict) -> None:
        kwargs = {"name": spec["name"]}
        # Not expireAfterSeconds: the engine would drop expired documents by itself on any read,
        # on secondaries too and with no oplog entry. mongod's TTL monitor deletes them on the
        # primary through the write path, and the deletes replicate (expire_ttl).
        for option in ("unique", "sparse", "partialFilterExpression"):
            if option in spec:
                kwargs[option] = spec[option]
        try:
            self.collection(ns).create_index(list(spec["key"].items()), **kwargs)
        except mongomock.DuplicateKeyError as exc:
            dup = self._find_duplicate(ns, spec)
            if dup is not None:
                raise duplicate_key_error(ns, spec, dup) from exc
            raise CommandError(
                DUPLICATE_KEY, "E11000 duplicate key error collection: " + ns
            ) from exc

    def _find_duplicate(self, ns: str, spec: dict) -> dict | None:
        seen: list = []
        for doc in self.documents(ns):
            key = []
            for path in spec["key"]:
                try:
                    key.append(mongomock.helpers.get_value_by_dot(doc, path))
                except KeyError:
                    key.append(None)
            if key in seen:
                return doc
            seen.append(key)
        return None

    def _drop(self, ns: str) -> None:
        self.catalog.pop(ns, None)
        if self.capped.pop(ns, None) is None:
            self.collection(ns).drop()

    def _rename(self, source: str, target: str, drop_target: bool) -> None:
        if target in self.catalog:
            self._drop(target)
        meta = self.catalog.pop(source)
        docs = self.documents(source)
        if self.capped.pop(source, None) is None:
            self.collection(source).drop()
        self._create(target, CollectionMeta(meta.uuid, meta.options, []))
        for doc in docs:
            self._insert_raw(target, doc)
        for spec in meta.indexes:
            self._create_index(target, spec)

    def _insert_raw(self, ns: str, doc: dict) -> None:
        capped = self.capped.get(ns)
        if capped is not None:
            if not ns.startswith("local.") and "_id" in doc and capped.find_id(doc["_id"]):
                raise duplicate_key_error(ns, {"key": {"_id": 1}, "name": "_id_"}, doc)
            capped.insert(doc)
            return
        try:
            self.collection(ns).insert_one(doc)
        except mongomock.DuplicateKeyError as exc:
            raise self._duplicate_for(ns, doc) from exc

    def _replace_raw(self, ns: str, _id: object, doc: dict) -> None:
        capped = self.capped.get(ns)
        if capped is not None:
            capped.replace(_id, copy.deepcopy(doc))
            return
        try:
            self.collection(ns).replace_one({"_id": _id}, copy.deepcopy(doc))
        except mongomock.DuplicateKeyError as exc:
            raise self._duplicate_for(ns, doc) from exc

    def _duplicate_for(self, ns: str, doc: dict) -> CommandError:
        """Name the unique index that ``doc`` collides with."""
        coll = self.collection(ns)
        specs = [{"key": {"_id": 1}, "name": "_id_"}] + [
            s for s in self.catalog[ns].indexes if s.get("unique")
        ]
        for spec in specs:
            query = key_query(spec, doc)
            others = [d for d in coll.find(query, {"_id": 1}) if d["_id"] != doc.get("_id")]
            if others or (spec["name"] == "_id_" and coll.count_documents(query) > 0):
                return duplicate_key_error(ns, spec, doc)
        return CommandError(DUPLICATE_KEY, f"E11000 duplicate key error collection: {ns}")

    # -- reads ---------------------------------------------------------------------------

    def collection(self, ns: str) -> mongomock.Collection:
        db, coll = split_ns(ns)
        return self.engine[db][coll]

    def exists(self, ns: str) -> bool:
        return ns in self.catalog

    def documents(self, ns: str) -> list[dict]:
        capped = self.capped.get(ns)
        if capped is not None:
            return capped.documents()
        return list(self.collection(ns).find({}))

    def count(self, ns: str) -> int:
        capped = self.capped.get(ns)
        if capped is not None:
            return len(capped)
        if ns not in self.catalog:
            return 0
        return len(self.collection(ns)._store)

    def databases(self) -> list[str]:
        return sorted({split_ns(ns)[0] for ns in self.catalog})

    def collections(self, db: str) -> list[str]:
        return sorted(split_ns(ns)[1] for ns in self.catalog if split_ns(ns)[0] == db)

    def data_size(self, ns: str) -> int:
        """The BSON bytes of the documents of ``ns``, read in the engine's store (a query
        copies each document: 27 s for 200,000)."""
        capped = self.capped.get(ns)
        if capped is not None:
            return capped.total_size
        if ns not in self.catalog:
            return 0
        stored = self.collection(ns)._store.documents
        return sum(len(bson.encode(d, codec_options=CODEC)) for d in stored)

    def _stored_size(self, op: dict) -> int | None:
        """The BSON size of the stored document a write is about (0: none), looked up by _id
        in the engine's store; None when its _id cannot be looked up so."""
        _id = (op.get("o2") if op["op"] == "u" else op["o"]) or {}
        if "_id" not in _id:
            return None
        key = hashdict(_id["_id"]) if isinstance(_id["_id"], dict) else _id["_id"]
        try:
            doc = self.collection(op["ns"])._store[key]
        except KeyError:
            return 0
        except TypeError:
            return None
        return len(bson.encode(doc, codec_options=CODEC))

    def _size_of_target(self, op: dict) -> int | None:
        """Before a write whose collection's size is kept: its document's size; else None."""
        ns = op["ns"]
        if op["op"] not in ("i", "u", "d") or ns in self.capped or ns not in self._sizes:
            return None
        if ns in self._sizes_stale or f"{split_ns(ns)[0]}." in self._sizes_stale:
            return None
        return self._stored_size(op)

    def _count_size(self, op: dict, before: int | None) -> None:
        """After a write: its collection's size moved by what it changed, or marked to be
        measured again."""
        ns = op["ns"]
        if op["op"] == "c":
            self._sizes_stale.add(f"{split_ns(ns)[0]}.")
            self._sizes_stale.update(inner["ns"] for inner in op["o"].get("applyOps") or [])
            if "renameCollection" in op["o"]:
                self._sizes_stale.update((op["o"]["renameCollection"], op["o"]["to"]))
            return
        after = None if before is None else self._stored_size(op)
        if after is None:
            self._sizes_stale.add(ns)
        else:
            self._sizes[ns] += after - before

    def total_data_size(self) -> int:
        """Every collection's data size summed: kept as writes go, measured again when a write
        could not be counted; capped ones keep their total as they go."""
        with self.lock:
            stale, self._sizes_stale = self._sizes_stale, set()
            dbs = {name for name in stale if name.endswith(".")}
            for ns in [ns for ns in self._sizes if ns not in self.catalog]:
                del self._sizes[ns]
            total = 0
            for ns in self.catalog:
                capped = self.capped.get(ns)
                if capped is not None:
                    total += capped.total_size
                    continue
                if ns in stale or ns not in self._sizes or f"{split_ns(ns)[0]}." in dbs:
                    self._sizes[ns] = self.data_size(ns)
                total += self._sizes[ns]
            return total

    def expire_ttl(self, now: datetime.datetime) -> int:
        """One pass of the TTL monitor on a primary: every document whose TTL index field holds
        a date (or an array of dates, the earliest counting) at least expireAfterSeconds before
        ``now`` is deleted through the write path, so that each delete is in the oplog and
        replicates (mongod 6.1+ groups a batch of them in one applyOps entry, ttlMonitorBatch
        Deletes; the double logs one delete each, as earlier versions do). Compound and
        non-date values are left, as mongod leaves them. Returns the number deleted."""
        deleted = 0
        with self.lock:
            for ns, meta in list(self.catalog.items()):
                for spec in meta.indexes:
                    expire = spec.get("expireAfterSeconds")
                    if expire is None or len(spec["key"]) != 1 or ns not in self.catalog:
                        continue
                    field = next(iter(spec["key"]))
                    cutoff = now - datetime.timedelta(seconds=float(expire))
                    for doc in self.collection(ns).find({}, {field: 1}):
                        when = _earliest_date(_field_value(doc, field))
                        if when is not None and when <= cutoff:
                            self.delete(ns, doc["_id"])
                            deleted += 1
        return deleted

    def index_specs(self, ns: str) -> list[dict]:
        """All indexes of ``ns`` as listIndexes shows them (``_id_`` first)."""
        if ns == OPLOG_NS or ns.endswith(".system.profile"):
            return []
        return [{"v": 2, "key": {"_id": 1}, "name": "_id_"}] + [
            {"v": 2, **spec} for spec in self.catalog[ns].indexes
        ]

    # -- helpers for commands (all through apply) ------------------------------------------

    def ensure_collection(self, ns: str) -> None:
        """Implicit collection creation, logged as a create operation like mongod does."""
        if ns not in self.catalog:
            db, coll = split_ns(ns)
            self.apply({"op": "c", "ns": f"{db}.$cmd", "ui": new_uuid(), "o": {"create": coll}})

    def insert(self, ns: str, doc: dict) -> None:
        self.ensure_collection(ns)
        self.apply({"op": "i", "ns": ns, "ui": self.catalog[ns].uuid, "o": doc})

    def replace(self, ns: str, _id: object, doc: dict) -> None:
        self.apply({"op": "u", "ns": ns, "ui": self.catalog[ns].uuid, "o2": {"_id": _id}, "o": doc})

    def delete(self, ns: str, _id: object) -> None:
        self.apply({"op": "d", "ns": ns, "ui": self.catalog[ns].uuid, "o": {"_id": _id}})

    def command_op(self, db: str, o: dict, ns: str | None = None) -> None:
        op: dict = {"op": "c", "ns": f"{db}.$cmd", "o": o}
        if ns is not None and ns in self.catalog:
            op["ui"] = self.catalog[ns].uuid
        self.apply(op)

    def truncate_oplog_after(self, ts) -> None:
        """Remove the oplog entries after ``ts`` (rollback to a common point)."""
        self.apply({"op": "c", "ns": "local.$cmd", "o": {"replSetTruncateOplogAfter": ts}})

    def create_collection(self, ns: str, options: dict) -> None:
        if ns in self.catalog:
            raise CommandError(NAMESPACE_EXISTS, f"Collection {ns} already exists.")
        db, coll = split_ns(ns)
        self.apply(
            {"op": "c", "ns": f"{db}.$cmd", "ui": new_uuid(), "o": {"create": coll, **options}}
        )

    def require(self, ns: str) -> CollectionMeta:
        meta = self.catalog.get(ns)
        if meta is None:
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {ns}")
        return meta

    # -- feature compatibility version ---------------------------------------------------

    def _check_fcv(self) -> None:
        ns = "admin.system.version"
        doc = None
        if ns in self.catalog:
            doc = self.collection(ns).find_one({"_id": FCV_ID})
        if doc is None:
            self.insert(ns, {"_id": FCV_ID, "version": self.version.fcv})
            self.fcv = self.version.fcv
            return
        # A transition's targetVersion / previousVersion must be versions this binary knows too.
        for name in ("version", "targetVersion", "previousVersion"):
            if name in doc and doc[name] not in self.version.startable_fcvs:
                raise StartupError(
                    EXIT_NEED_UPGRADE,
                    20573,
                    "Wrong mongod version",
                    {"error": fcv_startup_error(self.version, doc, doc[name])},
                )
        self._read_fcv()

    def set_fcv(self, document: dict) -> None:
        """Write the FCV document (``version``, and ``targetVersion``/``previousVersion`` in
        a transition); every member's in-memory FCV follows the document as it is applied."""
        self.replace(FCV_NS, FCV_ID, {"_id": FCV_ID, **document})

    def _read_fcv(self) -> None:
        doc = self.collection(FCV_NS).find_one({"_id": FCV_ID}) if FCV_NS in self.catalog else None
        if doc is not None:
            self.fcv = doc.get("version", self.fcv)
            self.fcv_document = {k: v for k, v in doc.items() if k != "_id"}


def fcv_startup_error(version: Version, doc: dict, invalid: object = None) -> str:
    """mongod's "UPGRADE PROBLEM" text for an FCV document this binary cannot run."""
    lts = version.last_lts
    compat = (
        f"https://docs.mongodb.com/master/release-notes/{lts}-compatibility/#feature-compatibility"
    )
    expected = " or ".join(f"'{v}'" for v in version.startable_fcvs)
    shown = ", ".join(f"{k}: {_shell_repr(v)}" for k, v in doc.items())
    return (
        "UPGRADE PROBLEM: Found an invalid featureCompatibilityVersion document (ERROR: "
        "Location4926900: Invalid featureCompatibilityVersion document in admin.system.version: "
        f"{{ {shown} }}. See {compat}. :: caused by :: Invalid feature compatibility version "
        f"value '{doc.get('version') if invalid is None else invalid}'; expected {expected}. "
        f"See {compat}.). If the current "
        f"featureCompatibilityVersion is below {lts}, see the documentation on upgrading at "
        f"https://docs.mongodb.com/master/release-notes/{lts}/#upgrade-procedures."
    )


def _field_value(doc: dict, path: str):
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _earliest_date(value) -> datetime.datetime | None:
    """A TTL field's expiry base: a date, or the earliest date of an array; else None."""
    dates = value if isinstance(value, list) else [value]
    dates = [d if d.tzinfo else d.replace(tzinfo=datetime.UTC) for d in dates
             if isinstance(d, datetime.datetime)]  # fmt: skip
    return min(dates) if dates else None
