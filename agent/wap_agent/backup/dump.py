"""A logical snapshot of one replica set member, as ``mongodump --oplog`` takes it.

One member is read throughout (a secondary by default, or the member named), so the data and the
oplog window come from the same history. The steps:

1. List every database and collection except what mongodump leaves out (``local``, ``config``,
   ``system.profile`` and the server's internal collections; ``admin.system.users`` and
   ``admin.system.roles`` only when users and roles are asked for), with their options, indexes
   and views, and write the prelude.
2. With ``oplog``: note the newest oplog entry (or the start of the oldest open transaction) as
   the window's start, and check the oplog still reaches back to it.
3. Copy the collections, several at a time; each thread holds at most ``batch_bytes`` of raw
   documents before writing them as one segment, so memory is bounded whatever their sizes.
4. With ``oplog``: note the newest entry as the window's end, check the start is still in the
   oplog (a roll-over during the dump would lose writes), and copy the entries between the two.
   Restoring the data and replaying them gives the member's state at the window's end.
   ``oplog_end`` lets a caller choose a later end: a sharded cluster's sets all end at one
   common point (:mod:`wap_agent.backup.sharded`).

``sharding_catalogue`` (a config server's dump) adds the sharding catalogue mongodump leaves out
with the rest of ``config``: ``config.databases``, ``collections``, ``chunks`` and ``tags``.

The summary returned gives per-collection counts, bytes, order-independent content hashes
(:mod:`wap_agent.backup.hashing`), the archive's CRCs, indexes and options, the oplog window and
the start and end times: what a manifest needs.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pymongo
from bson import json_util
from bson.json_util import JSONMode, JSONOptions
from bson.timestamp import Timestamp
from pymongo import uri_parser

from wap_agent import __version__
from wap_agent.backup.archive import OPLOG_COLLECTION, OPLOG_DB, ArchiveWriter, Header, Namespace
from wap_agent.backup.compression import compress_writer
from wap_agent.backup.directory import DirectoryWriter
from wap_agent.backup.hashing import RAW, ContentHash
from wap_agent.backup.metadata import CollectionMetadata, from_listing
from wap_agent.backup.namespaces import Selector

TOOL_VERSION = f"wap-agent {__version__}"
SKIPPED_DATABASES = {"local", "config"}
# Collections the server keeps for itself, which mongodump does not dump.
# Views are recreated from their metadata, so system.views is not copied as data.
SKIPPED_COLLECTIONS = {
    "system.profile", "system.indexBuilds", "system.preimages", "system.keys", "system.views",
}  # fmt: skip
AUTH_COLLECTIONS = {"system.users", "system.roles"}
SHARDING_CATALOGUE = ("databases", "collections", "chunks", "tags")
RELAXED = JSONOptions(json_mode=JSONMode.RELAXED)
# Documents in a collection's first batch, before their size is known (see Dumper.read).
FIRST_BATCH = 16
Progress = Callable[[dict], None]
# Given the dumper and the newest entry of its member's oplog once the data is copied, the
# timestamp the oplog is copied up to (inclusive); the member's oplog must have reached it.
OplogEnd = Callable[["Dumper", Timestamp], Timestamp]


class DumpError(RuntimeError):
    """The dump cannot be taken or would not be consistent; the message says why."""


@dataclass
class DumpOptions:
    """``directory``: write mongodump's directory format under ``out`` (a path) instead of an
    archive to ``out`` (a binary file-like object)."""

    directory: bool = False
    compression: str | None = None
    oplog: bool = False
    member: str | None = None
    users_and_roles: bool = False
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    parallel: int = 4
    batch_bytes: int = 1 << 20
    progress: Progress | None = None
    sharding_catalogue: bool = False
    oplog_end: OplogEnd | None = None
    # Set to stop the copy (another collection failed; with a sharded cluster, another set).
    stop: threading.Event | None = None


@dataclass
class _Item:
    db: str
    meta: CollectionMetadata
    data_collection: str  # what is read: the collection, or system.buckets.X for time series
    size: int = 0

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.meta.name}"


def plain(value: Any) -> Any:
    """BSON values as plain JSON-able ones (Relaxed Extended JSON)."""
    return json.loads(json_util.dumps(value, json_options=RELAXED))


def timestamp_dict(ts: Timestamp | None) -> dict | None:
    return None if ts is None else {"t": ts.time, "i": ts.inc}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def client_for(uri: str, member: str | None = None, **extra: Any) -> pymongo.MongoClient:
    """A client for ``uri``, or directly to ``member`` (host:port) with the URI's credentials
    and TLS options."""
    extra.setdefault("serverSelectionTimeoutMS", 10_000)
    if member is None:
        return pymongo.MongoClient(uri, **extra)
    parsed = uri_parser.parse_uri(uri)
    options = {
        k: v
        for k, v in parsed["options"].items()
        if k.lower() not in ("replicaset", "directconnection")
    }
    if parsed.get("username"):
        options["username"] = parsed["username"]
        options["password"] = parsed["password"]
    return pymongo.MongoClient(member, directConnection=True, **options, **extra)


def choose_member(uri: str, member: str | None) -> str:
    """The member to read: the one named (or the URI's own with directConnection=true), else a
    secondary, else the primary (one-member set or standalone)."""
    if member:
        return member
    if uri_parser.parse_uri(uri)["options"].get("directConnection"):
        return _first_host(uri)  # the URI names its member itself
    with client_for(uri) as client:
        hello = client.admin.command("hello")
    if hello.get("msg") == "isdbgrid":
        raise DumpError("the URI names a mongos: dump each shard's replica set (--oplog needs one)")
    primary = hello.get("primary")
    secondaries = [h for h in hello.get("hosts", []) + hello.get("passives", []) if h != primary]
    if secondaries:
        return sorted(secondaries)[0]
    return hello.get("me") or _first_host(uri)


def _first_host(uri: str) -> str:
    host, port = uri_parser.parse_uri(uri)["nodelist"][0]
    return f"{host}:{port}"


class Dumper:
    def __init__(self, uri: str, out: BinaryIO | Path, options: DumpOptions) -> None:
        self.options = options
        self.selector = Selector(include=options.include, exclude=options.exclude)
        self.uri = uri
        self.member = choose_member(uri, options.member)
        self.client = client_for(uri, self.member, readPreference="secondaryPreferred")
        self.out = out
        self.summary: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self.abort = options.stop or threading.Event()

    def progress(self, **event: Any) -> None:
        if self.options.progress is not None:
            self.options.progress(event)

    # -- what to dump ------------------------------------------------------------------------

    def wanted(self, db: str, coll: str) -> bool:
        if db == "config":
            return self.options.sharding_catalogue and coll in SHARDING_CATALOGUE
        if coll in AUTH_COLLECTIONS and db == "admin":
            return self.options.users_and_roles
        if coll in SKIPPED_COLLECTIONS or coll.startswith(("system.buckets.", "__mdb_internal")):
            return False
        if db == "admin" and coll.startswith("system.") and coll != "system.js":
            return False  # system.version and the server's own admin collections
        return self.selector.selected(f"{db}.{coll}")

    def catalogue(self) -> tuple[list[_Item], list[CollectionMetadata]]:
        items: list[_Item] = []
        views: list[tuple[str, CollectionMetadata]] = []
        for db in self.client.list_database_names():
            if db in SKIPPED_DATABASES and not (db == "config" and self.options.sharding_catalogue):
                continue
            database = self.client[db]
            for entry in database.list_collections():
                name, kind = entry["name"], entry.get("type", "collection")
                if not self.wanted(db, name):
                    continue
                if kind == "view":
                    views.append((db, from_listing(entry, [])))
                    continue
                data = f"system.buckets.{name}" if kind == "timeseries" else name
                indexes = list(database[data if kind != "timeseries" else name].list_indexes())
                meta = from_listing(entry, indexes)
                # The prelude's size stays 0, as mongodump writes it: collStats would cost a
                # command per collection (on some servers a scan) for a figure no reader needs.
                items.append(_Item(db, meta, data))
        self.views = views
        return items, [v for _, v in views]

    # -- the oplog window --------------------------------------------------------------------

    def oplog_ends(self) -> tuple[Timestamp | None, Timestamp | None]:
        oplog = self.client.local["oplog.rs"]
        first = oplog.find_one({}, {"ts": 1}, sort=[("$natural", 1)])
        last = oplog.find_one({}, {"ts": 1}, sort=[("$natural", -1)])
        return (first or {}).get("ts"), (last or {}).get("ts")

    def oplog_start(self) -> Timestamp:
        _, newest = self.oplog_ends()
        if newest is None:
            raise DumpError(
                f"{self.member} has no oplog: --oplog needs a replica set member (start mongod "
                "with --replSet and initiate the set)"
            )
        start = newest
        try:
            open_txn = self.client.config["transactions"].find_one(
                {"state": {"$in": ["prepared", "inProgress"]}},
                sort=[("startOpTime.ts", 1)],
            )
        except pymongo.errors.OperationFailure:
            open_txn = None
        if open_txn and (open_txn.get("startOpTime") or {}).get("ts"):
            start = min(start, open_txn["startOpTime"]["ts"])
        return start

    def check_oplog_reaches(self, start: Timestamp) -> None:
        oldest, _ = self.oplog_ends()
        if oldest is None or oldest > start:
            raise DumpError(
                f"the oplog of {self.member} rolled over during the dump: its oldest entry "
                f"{timestamp_dict(oldest)} is after the dump's start {timestamp_dict(start)}; "
                "writes would be lost. Grow the oplog (replSetResizeOplog) or dump when writes "
                "are fewer"
            )

    # -- copying -----------------------------------------------------------------------------

    def read(self, db: str, collection: str, **find: Any):
        """The documents of ``db.collection`` (raw), as a cursor whose every batch from the
        server holds about ``batch_bytes``: its size in documents is set before each getMore
        from the documents' average size (a cursor's default batches, up to 16 MB for each
        collection read at once, made the dump's memory grow with the collections' sizes)."""
        database = self.client.get_database(db, codec_options=RAW)  # the getMores' too
        cursor = database.cursor_command(
            "find", collection, batchSize=FIRST_BATCH, codec_options=RAW,
            read_preference=pymongo.ReadPreference.SECONDARY_PREFERRED, **find,
        )  # fmt: skip
        return _Sized(cursor, self.options.batch_bytes)

    def copy(self, writer, item: _Item) -> dict:
        digest = ContentHash()
        batch: list[bytes] = []
        held = 0
        with self.read(item.db, item.data_collection) as cursor:
            for doc in cursor:
                if self.abort.is_set():
                    raise DumpError("stopped: another collection or replica set failed")
                raw = doc.raw
                batch.append(raw)
                held += len(raw)
                if held >= self.options.batch_bytes:
                    writer.write_documents(item.db, item.data_collection, batch)
                    digest.update(batch)
                    self.progress(event="documents", ns=item.ns, count=len(batch), bytes=held)
                    batch, held = [], 0
        if batch:
            writer.write_documents(item.db, item.data_collection, batch)
            digest.update(batch)
            self.progress(event="documents", ns=item.ns, count=len(batch), bytes=held)
        crc = writer.finish(item.db, item.data_collection)
        self.progress(event="collection", ns=item.ns, count=digest.count, bytes=digest.bytes)
        return {
            "ns": item.ns,
            "db": item.db,
            "collection": item.meta.name,
            "type": item.meta.type or "collection",
            "count": digest.count,
            "bytes": digest.bytes,
            "hash": digest.hexdigest(),
            "crc64": f"{crc:016x}" if not self.options.directory else None,
            "indexes": plain(item.meta.indexes),
            "options": plain(item.meta.options),
        }

    def copy_oplog(self, writer, start: Timestamp, end: Timestamp) -> int:
        count, batch, held = 0, [], 0
        window = {"ts": {"$gte": start, "$lte": end}}
        with self.read("local", "oplog.rs", filter=window, sort={"$natural": 1}) as entries:
            for entry in entries:
                raw = entry.raw
                _check_oplog_entry(entry)
                batch.append(raw)
                held += len(raw)
                if held >= self.options.batch_bytes:
                    writer.write_documents(OPLOG_DB, OPLOG_COLLECTION, batch)
                    count += len(batch)
                    batch, held = [], 0
        if batch:
            writer.write_documents(OPLOG_DB, OPLOG_COLLECTION, batch)
            count += len(batch)
        writer.finish(OPLOG_DB, OPLOG_COLLECTION)
        self.progress(event="oplog", count=count)
        return count

    def run(self) -> dict:
        started = _now()
        clock = time.monotonic()
        build = self.client.admin.command("buildInfo")
        # The window starts before the catalogue is read: a collection created after the
        # listing is in the oplog, one created before it is in the dump (or both).
        start = self.oplog_start() if self.options.oplog else None
        if start is not None:
            self.check_oplog_reaches(start)
        items, views = self.catalogue()
        try:
            fcv = self.client.admin.command("getParameter", 1, featureCompatibilityVersion=1)[
                "featureCompatibilityVersion"
            ].get("version")
        except pymongo.errors.OperationFailure:
            fcv = None
        namespaces = [
            Namespace(i.db, i.meta.name, i.meta.to_json(), i.size, i.meta.type or "collection")
            for i in items
        ] + [Namespace(db, v.name, v.to_json(), 0, "view") for db, v in self.views]
        if self.options.oplog:
            namespaces.append(Namespace(OPLOG_DB, OPLOG_COLLECTION, "", 0, ""))
        header = Header(
            concurrent_collections=self.options.parallel,
            server_version=str(build.get("version", "")),
            tool_version=TOOL_VERSION,
        )
        with self._writer() as writer:
            writer.write_prelude(header, namespaces)
            self.progress(event="start", collections=len(items), views=len(views),
                          bytes=sum(i.size for i in items))  # fmt: skip
            results = self._copy_all(writer, items)
            end = entries = None
            if start is not None:
                _, end = self.oplog_ends()
                if self.options.oplog_end is not None:
                    end = self.options.oplog_end(self, end)
                self.check_oplog_reaches(start)
                entries = self.copy_oplog(writer, start, end)
            written = writer.bytes_written
        return {
            "format": "directory" if self.options.directory else "archive",
            "compression": self.options.compression,
            "engine": TOOL_VERSION,
            "member": self.member,
            "server_version": header.server_version,
            "fcv": fcv,
            "started_at": started,
            "ended_at": _now(),
            "duration_seconds": round(time.monotonic() - clock, 3),
            "bytes": written,
            "collections": sorted(results, key=lambda r: r["ns"]),
            "views": [
                {"ns": f"{db}.{v.name}", "options": plain(v.options)} for db, v in self.views
            ],
            "users_and_roles": self.options.users_and_roles,
            "oplog": None
            if start is None
            else {"start": timestamp_dict(start), "end": timestamp_dict(end), "entries": entries},
        }

    def _copy_all(self, writer, items: list[_Item]) -> list[dict]:
        results = []
        with ThreadPoolExecutor(max_workers=max(1, self.options.parallel)) as pool:
            futures = [pool.submit(self.copy, writer, item) for item in items]
            for future in futures:
                try:
                    results.append(future.result())
                except BaseException as exc:
                    self.abort.set()
                    self.errors.append(exc)
        if self.errors:
            first = self.errors[0]
            if isinstance(first, DumpError):
                raise first
            raise DumpError(f"the dump failed: {first}") from first
        return results

    def _writer(self):
        if self.options.directory:
            return _Closing(DirectoryWriter(Path(self.out), self.options.compression))
        stream = compress_writer(self.out, self.options.compression)  # type: ignore[arg-type]
        return _Closing(ArchiveWriter(stream), stream)


class _Sized:
    """A command cursor whose every getMore asks for as many documents as fit ``batch_bytes``
    at the running average size of those read (weighted to the latest), so that one reply holds
    about ``batch_bytes``: at least two documents, and the server cuts a reply at 16 MB whatever
    it is asked. Closing it kills the cursor on the server (a copy stopped midway)."""

    def __init__(self, cursor, batch_bytes: int) -> None:
        self.cursor = cursor
        self.batch_bytes = batch_bytes

    def __iter__(self):
        average = 0
        for doc in self.cursor:
            size = len(doc.raw)
            average = size if not average else average + (size - average) // 16
            self.cursor.batch_size(max(2, self.batch_bytes // max(1, average)))
            yield doc

    def __enter__(self) -> _Sized:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cursor.close()


class _Closing:
    """Context manager: the writer, and the compressed stream closed (finished) at the end."""

    def __init__(self, writer, stream=None) -> None:
        self.writer = writer
        self.stream = stream

    def __enter__(self):
        return self.writer

    def __exit__(self, kind, value, tb) -> None:
        if self.stream is not None and kind is None:
            self.stream.close()


def _check_oplog_entry(entry) -> None:
    """Entries that a replay cannot reproduce, which mongodump also refuses in its window."""
    if entry.get("op") != "c":
        return
    command = entry.get("o") or {}
    name = next(iter(command), "")
    if name in ("renameCollection", "importCollection") or "reshard" in name.lower():
        raise DumpError(
            f"a {name} ran during the dump ({entry.get('ns')}): the oplog cannot be replayed "
            "consistently over it. Run the dump again"
        )


def dump(uri: str, out: BinaryIO | Path, *, options: DumpOptions | None = None) -> dict:
    """Dump the member ``uri`` leads to (see the module's docstring) into ``out``: a binary
    file-like object for an archive, a directory path with ``options.directory``. Returns the
    summary. Raises :class:`DumpError` (and pymongo's errors for connection failures)."""
    return Dumper(uri, out, options or DumpOptions()).run()
