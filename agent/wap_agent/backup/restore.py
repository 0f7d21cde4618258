"""Restore a snapshot (ours, or mongodump's archive or directory) as mongorestore does.

1. Read the prelude (the archive's, or the directory's metadata files) and decide, per namespace,
   whether it is restored and under which name (``--nsInclude``/``--nsExclude``/``--nsFrom``/
   ``--nsTo``). The server's own namespaces (``local``, ``config``, ``admin.system.*``) are left
   out; ``admin.system.users``/``system.roles`` are restored only when asked.
2. Refuse the whole restore, before writing anything, when a target collection holds documents,
   unless ``drop`` (then the targets are dropped first).
3. Create each collection with its options; stream the documents, inserting them in parallel
   batches (unordered, raw BSON passed through untouched); a batch that fails fails the restore
   with the namespace and the server's reason: partial data is never reported as success.
4. Build the indexes once the data is in; create the views.
5. With ``oplog_replay``: apply the snapshot's oplog with applyOps, up to its end or
   ``oplog_limit`` (exclusive), skipping what mongorestore skips (no-ops, ``config``/``local``
   namespaces, index-build bookkeeping), collecting index builds to run after the replay,
   unpacking nested applyOps and committed transactions.

Returns the summary: per-collection counts, bytes and content hashes of what was inserted (the
same figures as the dump's summary), indexes built, views, the oplog entries applied and the
last one's timestamp.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import bson
import pymongo
from bson.binary import UUID_SUBTYPE, Binary
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

from wap_agent.backup.archive import OPLOG_COLLECTION, OPLOG_DB, ArchiveError, ArchiveReader
from wap_agent.backup.compression import decompress_reader
from wap_agent.backup.directory import DirectoryReader
from wap_agent.backup.dump import client_for, plain, timestamp_dict
from wap_agent.backup.hashing import ContentHash
from wap_agent.backup.metadata import CollectionMetadata, MetadataError
from wap_agent.backup.namespaces import NamespaceError, Selector

Progress = Callable[[dict], None]
# config collections mongorestore keeps when it replays an oplog (common/dumprestore/config.go).
CONFIG_KEPT = {"chunks", "collections", "databases", "settings", "shards", "tags", "version"}
SKIPPED_OP_TYPES = {"n", "cd", "ci", "cu", "km"}
SKIPPED_COMMANDS = {"startIndexBuild", "abortIndexBuild", "setMultikeyMetadata", "dropIdent"}
REPLAYED_COMMANDS = {
    "create", "drop", "dropDatabase", "renameCollection", "applyOps", "dropIndexes",
    "deleteIndexes", "createIndexes", "commitIndexBuild", "collMod", "convertToCapped",
    "emptycapped", "dbCheck", "commitTransaction", "abortTransaction",
}  # fmt: skip
AUTH = {"admin.system.users", "admin.system.roles"}
# CRUD entries go to applyOps together, within the command size limit (16 MB) with room to spare.
OPLOG_BATCH_OPS = 500
OPLOG_BATCH_BYTES = 8 << 20


class RestoreError(RuntimeError):
    """The restore failed or was refused; the message names the namespace and the reason. A
    restore that failed once it had begun writing also says which collections it left complete
    (``complete``: their documents all inserted), which partly and which untouched."""

    complete: list[str] | None = None


@dataclass
class RestoreOptions:
    """``directory``: ``source`` is a dump directory (a path) rather than an archive stream.
    ``more_oplog``: batches of raw oplog entries replayed after the snapshot's own, under the
    same limit and with the same transactions pending (a point-in-time restore's followed oplog).
    ``preserve_uuid``: collections are created with the snapshot's UUIDs (mongorestore's
    --preserveUUID: an applyOps create with ``ui``), as a sharded collection's must be, the same
    on every shard and in the config servers' catalogue.
    """

    directory: bool = False
    drop: bool = False
    oplog_replay: bool = False
    oplog_limit: Timestamp | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    rename_from: list[str] = field(default_factory=list)
    rename_to: list[str] = field(default_factory=list)
    users_and_roles: bool = False
    parallel: int = 4
    batch_docs: int = 1000
    batch_bytes: int = 4 << 20
    progress: Progress | None = None
    more_oplog: Iterable[list[bytes]] | None = None
    preserve_uuid: bool = False


@dataclass
class _Target:
    source: str  # the namespace in the snapshot
    ns: str  # where it goes
    meta: CollectionMetadata
    hash: ContentHash = field(default_factory=ContentHash)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list = field(default_factory=list)
    pending_bytes: int = 0
    batches: int = 0  # sent to be inserted
    inserted: int = 0  # of them, inserted whole
    ended: bool = False  # its EOF block read: no more documents

    @property
    def complete(self) -> bool:
        return self.ended and self.inserted == self.batches

    @property
    def db(self) -> str:
        return self.ns.split(".", 1)[0]

    @property
    def collection(self) -> str:
        return self.ns.split(".", 1)[1]

    @property
    def data_collection(self) -> str:
        """Where the documents go: a time series' are its buckets."""
        if self.meta.type == "timeseries":
            return f"system.buckets.{self.collection}"
        return self.collection


def parse_oplog_limit(text: str) -> Timestamp:
    """``<seconds>[:<ordinal>]``, as mongorestore's --oplogLimit."""
    seconds, _, ordinal = text.partition(":")
    try:
        return Timestamp(int(seconds), int(ordinal or 0))
    except ValueError:
        raise RestoreError(
            f"--oplogLimit {text!r}: expected <seconds>[:<ordinal>], e.g. 1700000000:1"
        ) from None


def _skipped_namespace(ns: str) -> bool:
    db, _, coll = ns.partition(".")
    if db in ("local", "config") or coll.startswith("__mdb_internal"):
        return True
    if coll == "system.views" or coll == "system.profile":
        return True  # views come from their metadata
    return db == "admin" and coll.startswith("system.") and ns not in AUTH


class Restorer:
    def __init__(self, uri: str, source: BinaryIO | Path, options: RestoreOptions) -> None:
        self.options = options
        try:
            self.selector = Selector(
                include=options.include, exclude=options.exclude,
                rename_from=options.rename_from, rename_to=options.rename_to,
            )  # fmt: skip
        except NamespaceError as exc:
            raise RestoreError(str(exc)) from None
        if options.oplog_replay and self.selector.active:
            raise RestoreError(
                "--oplogReplay cannot be used with --nsInclude, --nsExclude or --nsFrom/--nsTo: "
                "the oplog may touch any namespace"
            )
        if options.oplog_limit is not None and not options.oplog_replay:
            raise RestoreError("--oplogLimit needs --oplogReplay")
        self.client = client_for(uri)
        self.source = source
        self.targets: dict[str, _Target] = {}  # by the data's namespace in the snapshot
        self.views: list[_Target] = []
        self.auth: dict[str, list[bytes]] = {}
        self.failures: list[str] = []
        self.futures: list[Future] = []
        self.slots = threading.BoundedSemaphore(max(1, options.parallel) * 2)
        self.pool = ThreadPoolExecutor(max_workers=max(1, options.parallel))
        self.index_builds: dict[str, list[dict]] = {}
        self.oplog_applied = 0
        self.oplog_last: Timestamp | None = None
        self.transactions: dict[tuple, list[dict]] = {}
        self.oplog_batch: list[dict] = []
        self.oplog_batch_bytes = 0

    def progress(self, **event: Any) -> None:
        if self.options.progress is not None:
            self.options.progress(event)

    # -- reading -----------------------------------------------------------------------------

    def open(self):
        batch = min(self.options.batch_bytes, 1 << 20)  # what is read before it is queued
        if self.options.directory:
            return DirectoryReader(Path(self.source), batch)
        stream, _ = decompress_reader(self.source)  # type: ignore[arg-type]
        return ArchiveReader(stream, batch)

    def plan(self, reader) -> None:
        for space in reader.namespaces:
            if space.is_oplog:
                continue
            ns = space.ns
            try:
                meta = CollectionMetadata.from_json(space.metadata, space.collection, ns)
            except MetadataError as exc:
                raise RestoreError(str(exc)) from None
            if ns in AUTH:
                if self.options.users_and_roles:
                    self.auth[ns] = []
                continue
            if _skipped_namespace(ns) or not self.selector.selected(ns):
                continue
            target = _Target(ns, self.selector.target(ns), meta)
            if meta.type == "view":
                self.views.append(target)
                continue
            data = (
                f"{space.db}.system.buckets.{space.collection}" if meta.type == "timeseries" else ns
            )
            self.targets[data] = target

    def check_targets(self) -> None:
        busy = []
        for target in [*self.targets.values(), *self.views]:
            database = self.client[target.db]
            existing = list(database.list_collections(filter={"name": target.collection}))
            if not existing:
                continue
            if self.options.drop:
                database.drop_collection(target.collection)
                continue
            if existing[0].get("type") == "view":
                busy.append(f"{target.ns} (a view)")
                continue
            count = database[target.collection].estimated_document_count()
            if count:
                busy.append(f"{target.ns} ({count} documents)")
        if busy:
            raise RestoreError(
                "the target is not empty: " + ", ".join(busy) + ". Restore into an empty "
                "deployment, select other namespaces, or pass --drop to replace them"
            )

    def create_collections(self) -> None:
        for target in self.targets.values():
            options = {k: v for k, v in target.meta.options.items() if k != "uuid"}
            database = self.client[target.db]
            if database.list_collection_names(filter={"name": target.collection}):
                continue
            if self.options.preserve_uuid and target.meta.uuid:
                entry = {"op": "c", "ns": f"{target.db}.$cmd",
                         "ui": Binary(bytes.fromhex(target.meta.uuid), UUID_SUBTYPE),
                         "o": {"create": target.collection, **options}}  # fmt: skip
                self._command(target.ns, self.client.admin, "applyOps", [entry])
            else:
                self._command(target.ns, database, "create", target.collection, **options)

    def _command(self, ns: str, database, name: str, value: Any, **body: Any) -> dict:
        try:
            return database.command(name, value, **body)
        except pymongo.errors.OperationFailure as exc:
            raise RestoreError(f"{ns}: {name} failed: {_reason(exc)}") from None

    # -- data --------------------------------------------------------------------------------

    def add_documents(self, target: _Target, docs: list[bytes]) -> None:
        for doc in docs:
            target.pending.append(doc)
            target.pending_bytes += len(doc)
            if (
                len(target.pending) >= self.options.batch_docs
                or target.pending_bytes >= self.options.batch_bytes
            ):
                self.submit(target)

    def submit(self, target: _Target) -> None:
        if not target.pending:
            return
        batch, target.pending, target.pending_bytes = target.pending, [], 0
        if self.failures:
            raise RestoreError(self.failures[0])
        self.slots.acquire()
        target.batches += 1
        self.futures.append(self.pool.submit(self._insert, target, batch))
        self.futures = [f for f in self.futures if not f.done()]

    def _insert(self, target: _Target, batch: list[bytes]) -> None:
        try:
            if self.failures:
                return
            collection = self.client[target.db][target.data_collection]
            collection.insert_many(
                [RawBSONDocument(doc) for doc in batch],
                ordered=False,
                bypass_document_validation=True,
            )
            with target.lock:
                target.hash.update(batch)
                target.inserted += 1
            self.progress(event="documents", ns=target.ns, count=len(batch),
                          bytes=sum(map(len, batch)))  # fmt: skip
        except pymongo.errors.BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or [{}]
            first = errors[0]
            self.failures.append(
                f"{target.ns}: {len(errors)} of {len(batch)} documents refused by the server, "
                f"the first: {first.get('errmsg', first)}"
            )
        except pymongo.errors.PyMongoError as exc:
            self.failures.append(f"{target.ns}: inserting failed: {_reason(exc)}")
        finally:
            self.slots.release()

    def drain(self) -> None:
        for target in self.targets.values():
            self.submit(target)
        for future in list(self.futures):
            future.result()
        self.futures = []
        if self.failures:
            raise RestoreError(self.failures[0])

    def build_indexes(self) -> None:
        for target in self.targets.values():
            specs = [_index_spec(i) for i in target.meta.indexes if i.get("name") != "_id_"]
            if specs:
                self._command(target.ns, self.client[target.db], "createIndexes",
                              target.collection, indexes=specs)  # fmt: skip
                self.progress(event="indexes", ns=target.ns, count=len(specs))

    def create_views(self) -> None:
        for view in self.views:
            options = dict(view.meta.options)
            source = options.pop("viewOn", None)
            pipeline = options.pop("pipeline", [])
            self._command(view.ns, self.client[view.db], "create", view.collection,
                          viewOn=source, pipeline=pipeline, **options)  # fmt: skip

    def restore_auth(self) -> dict:
        """Roles first, through createRole/updateRole (MongoDB's restore role may not write
        admin.system.roles itself; mongorestore merges them with a server command too), each
        after the roles it inherits; then users, written to admin.system.users as the restore
        role may."""
        counts = {}
        roles = [bson.decode(raw) for raw in self.auth.get("admin.system.roles", [])]
        if roles:
            self.restore_roles(roles)
            counts["admin.system.roles"] = len(roles)
        for ns, docs in self.auth.items():
            if ns == "admin.system.roles":
                continue
            collection = self.client.admin[ns.split(".", 1)[1]]
            for raw in docs:
                doc = bson.decode(raw)
                try:
                    collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)
                except pymongo.errors.PyMongoError as exc:
                    raise RestoreError(f"{ns}: {doc.get('_id')}: {_reason(exc)}") from None
            counts[ns] = len(docs)
        return counts

    def restore_roles(self, roles: list[dict]) -> None:
        pending = {f"{r['db']}.{r['role']}": r for r in roles}
        while pending:
            ready = [
                name for name, r in pending.items()
                if not any(f"{i['db']}.{i['role']}" in pending for i in r.get("roles", []))
            ]  # fmt: skip
            if not ready:  # inheriting in a circle: MongoDB refuses it, and so does this
                raise RestoreError(
                    f"admin.system.roles: roles inherit in a circle: {sorted(pending)}"
                )
            for name in sorted(ready):
                role = pending.pop(name)
                fields = {k: role[k] for k in ("privileges", "roles", "authenticationRestrictions")
                          if k in role}  # fmt: skip
                db = self.client[role["db"]]
                try:
                    known = db.command("rolesInfo", role["role"])["roles"]
                    verb = "updateRole" if known else "createRole"
                    db.command(verb, role["role"], **fields)
                except pymongo.errors.PyMongoError as exc:
                    raise RestoreError(f"admin.system.roles: {name}: {_reason(exc)}") from None

    # -- the oplog ---------------------------------------------------------------------------

    def replay(self, docs: list[bytes]) -> bool:
        """Apply oplog entries; False once the limit is reached."""
        for raw in docs:
            entry = bson.decode(raw)
            ts = entry.get("ts")
            if (
                self.options.oplog_limit is not None
                and ts is not None
                and not (ts < self.options.oplog_limit)
            ):
                return False
            self.handle(entry)
            if ts is not None:
                self.oplog_last = ts
        return True

    def handle(self, entry: dict) -> None:
        kind, ns = entry.get("op"), str(entry.get("ns", ""))
        if kind in SKIPPED_OP_TYPES:
            return
        db, _, coll = ns.partition(".")
        if coll.startswith("__mdb_internal") or db == "local":
            return
        if db == "config" and coll not in CONFIG_KEPT and coll != "$cmd":
            return
        if kind == "c":
            self.handle_command(entry, db)
            return
        if db == "admin" and coll.startswith("system.") and ns not in AUTH:
            return
        self.queue(entry)

    def handle_command(self, entry: dict, db: str) -> None:
        command = entry.get("o") or {}
        name = next(iter(command), "")
        if name in SKIPPED_COMMANDS:
            return
        if name not in REPLAYED_COMMANDS:
            raise RestoreError(
                f"the oplog holds a {name!r} command ({timestamp_dict(entry.get('ts'))}) that "
                "cannot be replayed"
            )
        key = _txn_key(entry)
        if name == "applyOps":
            ops = list(command.get("applyOps") or [])
            if key is not None and (command.get("partialTxn") or command.get("prepare")):
                self.transactions.setdefault(key, []).extend(ops)
                return
            ops = self.transactions.pop(key, []) + ops if key is not None else ops
            for op in ops:
                self.handle(op)
            return
        if name == "commitTransaction":
            for op in self.transactions.pop(key, []):
                self.handle(op)
            return
        if name == "abortTransaction":
            self.transactions.pop(key, None)
            return
        if name in ("createIndexes", "commitIndexBuild"):
            coll = command[name]
            specs = command.get("indexes") or [{k: v for k, v in command.items() if k != name}]
            self.index_builds.setdefault(f"{db}.{coll}", []).extend(specs)
            return
        if name == "create":
            created = f"{db}.{command['create']}"
            if any(t.ns == created for t in self.targets.values()):
                return  # created after the window opened, before the listing: already restored
            if self.options.drop:  # not among the snapshot's collections --drop dropped
                self.flush_oplog()
                self.client[db].drop_collection(command["create"])
        if name in ("drop", "dropDatabase", "renameCollection"):
            self.move_index_builds(db, name, command)
        if name in ("dropIndexes", "deleteIndexes"):
            pending = self.index_builds.get(f"{db}.{command[name]}", [])
            self.index_builds[f"{db}.{command[name]}"] = [
                s for s in pending if s.get("name") != command.get("index")
            ]
        self.queue(entry, alone=True)

    def move_index_builds(self, db: str, name: str, command: dict) -> None:
        """Index builds deferred to the replay's end follow their collection: gone with a drop
        (a collection made again under the name has none of them), moved by a rename."""
        if name == "dropDatabase":
            for ns in [ns for ns in self.index_builds if ns.split(".", 1)[0] == db]:
                del self.index_builds[ns]
            return
        if name == "drop":
            self.index_builds.pop(f"{db}.{command['drop']}", None)
            return
        moved = self.index_builds.pop(str(command["renameCollection"]), None)
        self.index_builds.pop(str(command.get("to")), None)  # a dropped target's builds
        if moved:
            self.index_builds[str(command["to"])] = moved

    def queue(self, entry: dict, alone: bool = False) -> None:
        op = {k: v for k, v in entry.items() if k in ("op", "ns", "o", "o2", "b")}
        if alone:
            self.flush_oplog()
            self.apply([op])
            return
        size = len(bson.encode(op))
        if self.oplog_batch and self.oplog_batch_bytes + size > OPLOG_BATCH_BYTES:
            self.flush_oplog()
        self.oplog_batch.append(op)
        self.oplog_batch_bytes += size
        if len(self.oplog_batch) >= OPLOG_BATCH_OPS:
            self.flush_oplog()

    def flush_oplog(self) -> None:
        if self.oplog_batch:
            batch, self.oplog_batch, self.oplog_batch_bytes = self.oplog_batch, [], 0
            self.apply(batch)

    def apply(self, ops: list[dict]) -> None:
        try:
            self.client.admin.command("applyOps", ops, bypassDocumentValidation=True)
        except pymongo.errors.OperationFailure as exc:
            details = exc.details or {}
            index = max(0, int(details.get("applied", 1)) - 1)
            op = ops[min(index, len(ops) - 1)]
            raise RestoreError(
                f"oplog replay failed on {op.get('ns')} ({op.get('op')}): {_reason(exc)}"
            ) from None
        self.oplog_applied += len(ops)
        self.progress(event="oplog", count=len(ops))

    def build_replayed_indexes(self) -> None:
        for ns, specs in self.index_builds.items():
            if specs:
                db, coll = ns.split(".", 1)
                self._command(ns, self.client[db], "createIndexes", coll,
                              indexes=[_index_spec(s) for s in specs])  # fmt: skip

    # -- the whole -----------------------------------------------------------------------------

    def run(self) -> dict:
        started = datetime.datetime.now(datetime.timezone.utc).isoformat()
        clock = time.monotonic()
        try:
            reader = self.open()
        except (ArchiveError, OSError) as exc:
            raise RestoreError(f"cannot read the snapshot: {exc}") from None
        self.plan(reader)
        self.check_targets()
        try:
            return self._run(reader, started, clock)
        except RestoreError as exc:
            raise self._left_behind(str(exc)) from None
        except pymongo.errors.PyMongoError as exc:
            raise self._left_behind(f"the server failed: {_reason(exc)}") from None

    def _left_behind(self, reason: str) -> RestoreError:
        """The error of a restore that failed once it had begun writing, saying what it left."""
        targets = sorted(self.targets.values(), key=lambda t: t.ns)
        complete = [t.ns for t in targets if t.complete]
        partly = [t.ns for t in targets if not t.complete and t.inserted]
        untouched = [t.ns for t in targets if not t.complete and not t.inserted]
        if targets and len(complete) == len(targets):
            left = (f"every collection's documents were inserted ({len(targets)}); what failed"
                    " came after them")  # fmt: skip
        else:
            left = "; ".join(
                f"{what}: {_names(spaces)}"
                for what, spaces in (("complete", complete), ("partly inserted", partly),
                                     ("not started", untouched)) if spaces
            )  # fmt: skip
        error = RestoreError(
            f"{reason}. Left in the target: {left or 'nothing'}. Restore again with drop to "
            "replace what this restore wrote"
        )
        error.complete = complete
        return error

    def _run(self, reader, started: str, clock: float) -> dict:
        self.create_collections()
        self.progress(event="start", collections=len(self.targets),
                      bytes=sum(n.size for n in reader.namespaces))  # fmt: skip
        replaying = self.options.oplog_replay
        data_done = False
        try:
            for event in reader.events():
                key = (event.db, event.collection)
                if key == (OPLOG_DB, OPLOG_COLLECTION):
                    if not replaying or event.kind != "documents":
                        continue
                    if not data_done:
                        self.finish_data(reader)
                        data_done = True
                    replaying = self.replay(event.docs)
                    continue
                if event.kind != "documents":
                    if event.ns in self.targets:  # its last documents go now, not at the end
                        self.targets[event.ns].ended = True
                        self.submit(self.targets[event.ns])
                    continue
                if event.ns in self.auth:
                    self.auth[event.ns].extend(event.docs)
                    continue
                target = self.targets.get(event.ns)
                if target is not None:
                    self.add_documents(target, event.docs)
        except ArchiveError as exc:
            self._stop(finish_queued=True)
            raise RestoreError(f"the snapshot is damaged: {exc}") from None
        except BaseException:
            self._stop()
            raise
        cut = [ns for ns in reader.unfinished() if not self._is_view(ns)]
        if cut:
            self._stop(finish_queued=True)
            raise RestoreError(
                "the snapshot ends before these namespaces are complete: " + ", ".join(cut)
            )
        if not data_done:
            self.finish_data(reader)
        if replaying and self.options.more_oplog is not None:
            for docs in self.options.more_oplog:
                if not self.replay(docs):
                    break
        self.flush_oplog()
        self.build_replayed_indexes()
        self.pool.shutdown()
        auth = self.restore_auth()
        return {
            "started_at": started,
            "ended_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "duration_seconds": round(time.monotonic() - clock, 3),
            "collections": sorted(
                (
                    {
                        "ns": t.ns,
                        "source": t.source,
                        "count": t.hash.count,
                        "bytes": t.hash.bytes,
                        "hash": t.hash.hexdigest(),
                        "indexes": plain(t.meta.indexes),
                    }
                    for t in self.targets.values()
                ),
                key=lambda c: c["ns"],
            ),
            "views": [v.ns for v in self.views],
            "users_and_roles": auth,
            "oplog": {
                "applied": self.oplog_applied,
                "last": timestamp_dict(self.oplog_last),
            }
            if self.options.oplog_replay
            else None,
        }

    def _is_view(self, ns: str) -> bool:
        return any(v.source == ns for v in self.views)

    def finish_data(self, reader) -> None:
        self.drain()
        for target in self.targets.values():
            self.progress(event="collection", ns=target.ns, count=target.hash.count,
                          bytes=target.hash.bytes)  # fmt: skip
        self.build_indexes()
        self.create_views()

    def _stop(self, finish_queued: bool = False) -> None:
        """Stop inserting. `finish_queued`: the snapshot is damaged past what was read, so the
        batches already queued (documents read whole) are inserted first, leaving the
        collections read to their end complete; else they are dropped."""
        if not finish_queued:
            self.failures.append("stopped")
        with contextlib.suppress(Exception):
            self.pool.shutdown(wait=True, cancel_futures=not finish_queued)
        self.failures.append("stopped")


def _names(spaces: list[str], most: int = 10) -> str:
    shown = ", ".join(spaces[:most])
    return shown + (f" and {len(spaces) - most} more" if len(spaces) > most else "")


def _txn_key(entry: dict) -> tuple | None:
    lsid = entry.get("lsid")
    if lsid is None or entry.get("txnNumber") is None:
        return None
    return (bson.encode(lsid), int(entry["txnNumber"]))


def _index_spec(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in ("ns", "background", "v")}


def _reason(exc: pymongo.errors.PyMongoError) -> str:
    details = getattr(exc, "details", None) or {}
    code = details.get("codeName") or details.get("code")
    message = details.get("errmsg") or str(exc)
    return f"{message} ({code})" if code else message


def restore(uri: str, source: BinaryIO | Path, *, options: RestoreOptions | None = None) -> dict:
    """Restore ``source`` (an archive stream, or a dump directory with ``options.directory``)
    into the deployment ``uri`` names. Raises :class:`RestoreError` with the reason."""
    return Restorer(uri, source, options or RestoreOptions()).run()
