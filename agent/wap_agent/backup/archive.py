"""mongodump's archive format (``--archive``), written and read as a stream.

The layout, from mongo-tools' ``common/archive`` (spec.md, prelude.go, parser.go,
multiplexer.go, demultiplexer.go):

    archive   = magic header prelude-body terminator *(segment | eof-block)
    segment   = namespace-header(EOF false, CRC 0) 1*document terminator
    eof-block = namespace-header(EOF true, CRC c) terminator

``magic`` is 0x8199e26d little-endian (``6d e2 99 81`` on disk). The header is a BSON document
(``concurrent_collections``, ``version`` "0.1", ``server_version``, ``tool_version``); the prelude
body is one BSON document per namespace (``db``, ``collection``, ``metadata`` as the same
Extended JSON that a directory dump's ``.metadata.json`` holds, ``size``, ``type``) closed by the
terminator 0xffffffff, which sits where a BSON length would. Segments of several namespaces
alternate; a namespace's EOF block carries the CRC-64 (Go's ``crc64.ECMA`` table, i.e. the
CRC-64/XZ parameters) of all its documents' bytes. The oplog (``--oplog``) is the namespace
``db: "", collection: "oplog"``. There is no end marker: the stream ends after the last EOF.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import bson
from bson.int64 import Int64
from fastcrc import crc64

MAGIC = b"\x6d\xe2\x99\x81"
TERMINATOR = b"\xff\xff\xff\xff"
FORMAT_VERSION = "0.1"
MIN_BSON_SIZE = 5
MAX_BSON_SIZE = 16 * 1024 * 1024 + 16 * 1024  # the server's limit plus its internal headroom
OPLOG_DB, OPLOG_COLLECTION = "", "oplog"

_LENGTH = struct.Struct("<i")
_CRC_MASK = (1 << 64) - 1


class ArchiveError(Exception):
    """The stream is not a well-formed archive; the message says where and what."""


def crc_update(crc: int, data: bytes) -> int:
    """CRC-64 (Go's crc64.ECMA, CRC-64/XZ) of the bytes so far and ``data``."""
    return crc64.xz(data, crc) if crc else crc64.xz(data)


def crc_to_int64(crc: int) -> Int64:
    """The unsigned CRC as the int64 the EOF header stores (Go's int64(uint64))."""
    return Int64(crc - (1 << 64) if crc >= 1 << 63 else crc)


def crc_from_int64(value: int) -> int:
    return int(value) & _CRC_MASK


@dataclass
class Namespace:
    """One collection (or the oplog) as the prelude describes it."""

    db: str
    collection: str
    metadata: str = ""
    size: int = 0
    type: str = ""

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.collection}"

    @property
    def is_oplog(self) -> bool:
        return self.db == OPLOG_DB and self.collection == OPLOG_COLLECTION


@dataclass
class Header:
    concurrent_collections: int = 1
    version: str = FORMAT_VERSION
    server_version: str = ""
    tool_version: str = ""


@dataclass
class _Track:
    crc: int = 0
    count: int = 0
    size: int = 0
    done: bool = False


class ArchiveWriter:
    """Writes one archive to a binary file-like object, safe for several collection threads.

    ``write_prelude`` first; then each thread calls ``write_documents(db, coll, raw_docs)``
    with a bounded list of raw BSON documents (one segment, written whole under the lock, so
    memory is what the callers hold) and ``finish(db, coll)`` once, which writes the EOF block
    with the namespace's CRC.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.tracks: dict[tuple[str, str], _Track] = {}
        self.bytes_written = 0

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.bytes_written += len(data)

    def write_prelude(self, header: Header, namespaces: list[Namespace]) -> None:
        head = bson.encode(
            {
                "concurrent_collections": int(header.concurrent_collections),
                "version": header.version,
                "server_version": header.server_version,
                "tool_version": header.tool_version,
            }
        )
        parts = [MAGIC, head]
        for space in namespaces:
            parts.append(
                bson.encode(
                    {
                        "db": space.db,
                        "collection": space.collection,
                        "metadata": space.metadata,
                        "size": Int64(space.size),
                        "type": space.type,
                    }
                )
            )
            self.tracks[(space.db, space.collection)] = _Track()
        parts.append(TERMINATOR)
        with self.lock:
            self._write(b"".join(parts))

    def _header(self, db: str, coll: str, eof: bool, crc: int) -> bytes:
        return bson.encode({"db": db, "collection": coll, "EOF": eof, "CRC": crc_to_int64(crc)})

    def write_documents(self, db: str, coll: str, docs: list[bytes]) -> None:
        if not docs:
            return
        track = self.tracks.setdefault((db, coll), _Track())
        if track.done:
            raise ArchiveError(f"{db}.{coll}: documents written after its EOF block")
        body = b"".join(docs)
        crc = crc_update(track.crc, body)
        head = self._header(db, coll, False, 0)
        with self.lock:  # three writes, not one joined copy of the body
            self._write(head)
            self._write(body)
            self._write(TERMINATOR)
        track.crc = crc
        track.count += len(docs)
        track.size += len(body)

    def finish(self, db: str, coll: str) -> int:
        """Write the namespace's EOF block; returns its CRC."""
        track = self.tracks.setdefault((db, coll), _Track())
        track.done = True
        block = self._header(db, coll, True, track.crc) + TERMINATOR
        with self.lock:
            self._write(block)
        return track.crc


@dataclass
class Event:
    """What the reader met next: ``kind`` is "documents" (``docs`` raw BSON, one segment's
    worth or part of it) or "eof" (the namespace is complete and its CRC matched)."""

    kind: str
    db: str
    collection: str
    docs: list[bytes] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.collection}"


class ArchiveReader:
    """Reads an archive from a binary stream without holding more than one batch of it.

    ``header`` and ``namespaces`` are read at construction; ``events()`` yields the segments'
    documents in batches of at most ``batch_bytes`` and an "eof" event per namespace once its
    CRC is checked. Every malformation raises :class:`ArchiveError` naming the namespace (when
    known) and the byte offset.
    """

    def __init__(self, stream: BinaryIO, batch_bytes: int = 1 << 20) -> None:
        self.stream = stream
        self.offset = 0
        self.batch_bytes = batch_bytes
        self.crcs: dict[tuple[str, str], int] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.finished: set[tuple[str, str]] = set()
        magic = self._exact(4, "the magic number")
        if magic != MAGIC:
            raise ArchiveError(
                "stream or file does not appear to be a mongodump archive "
                f"(first bytes {magic.hex()}, expected {MAGIC.hex()})"
            )
        head = self._bson_or_terminator("the archive header")
        if head is None:
            raise ArchiveError("the archive header is missing (a terminator at byte 4)")
        doc = _decode(head, "the archive header", 4)
        self.header = Header(
            concurrent_collections=int(doc.get("concurrent_collections", 1)),
            version=str(doc.get("version", "")),
            server_version=str(doc.get("server_version", "")),
            tool_version=str(doc.get("tool_version", "")),
        )
        self.namespaces: list[Namespace] = []
        while True:
            where = self.offset
            raw = self._bson_or_terminator("the prelude")
            if raw is None:
                break
            meta = _decode(raw, "the prelude", where)
            self.namespaces.append(
                Namespace(
                    db=str(meta.get("db", "")),
                    collection=str(meta.get("collection", "")),
                    metadata=str(meta.get("metadata", "")),
                    size=int(meta.get("size", 0) or 0),
                    type=str(meta.get("type", "") or ""),
                )
            )

    def _read(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.stream.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        self.offset += len(data)
        return data

    def _exact(self, n: int, what: str) -> bytes:
        start = self.offset
        data = self._read(n)
        if len(data) != n:
            raise ArchiveError(
                f"truncated archive: {what} at byte {start} needs {n} bytes, "
                f"the stream ended after {len(data)}"
            )
        return data

    def _bson_or_terminator(self, what: str) -> bytes | None:
        start = self.offset
        prefix = self._exact(4, what)
        if prefix == TERMINATOR:
            return None
        (size,) = _LENGTH.unpack(prefix)
        if size < MIN_BSON_SIZE or size > MAX_BSON_SIZE:
            raise ArchiveError(
                f"corrupted archive: {what} at byte {start} has an invalid BSON length {size}"
            )
        rest = self._exact(size - 4, what)
        if rest[-1] != 0:
            raise ArchiveError(
                f"corrupted archive: {what} at byte {start}: a BSON document not ending in 0x00"
            )
        return prefix + rest

    def events(self) -> Iterator[Event]:
        while True:
            start = self.offset
            first = self._read(4)
            if not first:
                return  # the stream ends at a block boundary: done
            if len(first) < 4:
                raise ArchiveError(f"truncated archive: a block header at byte {start} is cut")
            if first == TERMINATOR:
                raise ArchiveError(
                    f"corrupted archive: a terminator without a block at byte {start} "
                    "(consecutive terminators)"
                )
            (size,) = _LENGTH.unpack(first)
            if size < MIN_BSON_SIZE or size > MAX_BSON_SIZE:
                raise ArchiveError(
                    f"corrupted archive: a namespace header at byte {start} has an invalid "
                    f"BSON length {size}"
                )
            raw = first + self._exact(size - 4, f"a namespace header at byte {start}")
            head = _decode(raw, "a namespace header", start)
            key = (str(head.get("db", "")), str(head.get("collection", "")))
            where = f"{key[0]}.{key[1]}"
            if head.get("EOF"):
                self._check_eof(key, head, where, start)
                if self._exact(4, f"{where}'s EOF block") != TERMINATOR:
                    raise ArchiveError(
                        f"corrupted archive: {where}'s EOF block at byte {start} is not followed "
                        "by a terminator"
                    )
                self.finished.add(key)
                yield Event("eof", key[0], key[1])
                continue
            if key in self.finished:
                raise ArchiveError(f"corrupted archive: {where} has data after its EOF block")
            yield from self._segment(key, where)

    def _segment(self, key: tuple[str, str], where: str) -> Iterator[Event]:
        batch: list[bytes] = []
        held = 0
        crc = self.crcs.get(key, 0)
        count = 0
        while True:
            try:
                raw = self._bson_or_terminator(f"a document of {where}")
            except ArchiveError as exc:
                raise ArchiveError(
                    f"{exc} (after {self.counts.get(key, 0) + count} documents of {where})"
                ) from None
            if raw is None:
                break
            crc = crc_update(crc, raw)
            batch.append(raw)
            held += len(raw)
            count += 1
            if held >= self.batch_bytes:
                self.crcs[key] = crc
                yield Event("documents", key[0], key[1], batch)
                batch, held = [], 0
        self.crcs[key] = crc
        self.counts[key] = self.counts.get(key, 0) + count
        if batch:
            yield Event("documents", key[0], key[1], batch)

    def unfinished(self) -> list[str]:
        """Namespaces of the prelude whose EOF block was never read (a cut archive). Views have
        no data; a time series' data is its buckets collection's."""
        cut = []
        for space in self.namespaces:
            data = space.collection
            if space.type == "view":
                continue
            if space.type == "timeseries":
                data = f"system.buckets.{space.collection}"
            if (space.db, data) not in self.finished:
                cut.append(space.ns)
        return cut

    def _check_eof(self, key: tuple[str, str], head: dict, where: str, start: int) -> None:
        expected = crc_from_int64(head.get("CRC", 0) or 0)
        actual = self.crcs.get(key, 0)
        if expected != actual:
            raise ArchiveError(
                f"CRC mismatch for namespace {where}: the archive's EOF block at byte {start} "
                f"says {expected:#018x}, its {self.counts.get(key, 0)} documents give "
                f"{actual:#018x}"
            )


def _decode(raw: bytes, what: str, offset: int) -> dict:
    try:
        return bson.decode(raw)
    except Exception as exc:  # bson raises several types for malformed input
        raise ArchiveError(f"corrupted archive: {what} at byte {offset}: {exc}") from None
