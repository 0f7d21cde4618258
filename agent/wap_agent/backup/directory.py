"""mongodump's directory format: ``<dir>/<db>/<coll>.bson`` (the documents, concatenated),
``<dir>/<db>/<coll>.metadata.json``, ``<dir>/oplog.bson`` for ``--oplog`` and
``<dir>/prelude.json`` (server and tool versions). With ``--gzip`` every file gets ``.gz``
(ours: ``.zst`` with zstd). Collection names are escaped in file names as Go's
``url.PathEscape`` escapes them (mongo-tools ``util.EscapeCollectionName``); the real name is
in the metadata's ``collectionName``.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote

from wap_agent.backup.archive import (
    MAX_BSON_SIZE,
    MIN_BSON_SIZE,
    OPLOG_COLLECTION,
    OPLOG_DB,
    ArchiveError,
    Event,
    Namespace,
)
from wap_agent.backup.compression import SUFFIXES, compress_writer, decompress_reader
from wap_agent.backup.metadata import CollectionMetadata

_LENGTH = struct.Struct("<i")


def escape(name: str) -> str:
    return quote(name, safe="$&+:=@")


class DirectoryWriter:
    """Same calls as :class:`~wap_agent.backup.archive.ArchiveWriter`, one file per namespace."""

    def __init__(self, root: Path, compression: str | None = None) -> None:
        self.root = Path(root)
        self.compression = compression
        self.suffix = SUFFIXES[compression]
        self.files: dict[tuple[str, str], tuple[BinaryIO, BinaryIO]] = {}
        self.lock = threading.Lock()
        self.bytes_written = 0

    def _path(self, db: str, coll: str, kind: str) -> Path:
        if db == OPLOG_DB and coll == OPLOG_COLLECTION:
            return self.root / f"oplog{kind}{self.suffix}"
        return self.root / db / f"{escape(coll)}{kind}{self.suffix}"

    def _write_small(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as raw, compress_writer(raw, self.compression) as out:
            out.write(data)

    def write_prelude(self, header, namespaces: list[Namespace]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        prelude = {"ServerVersion": header.server_version, "ToolVersion": header.tool_version}
        self._write_small(self.root / f"prelude.json{self.suffix}", json.dumps(prelude).encode())
        for space in namespaces:
            if not space.is_oplog:
                self._write_small(self._path(space.db, space.collection, ".metadata.json"),
                                  space.metadata.encode())  # fmt: skip

    def _open(self, db: str, coll: str) -> BinaryIO:
        key = (db, coll)
        with self.lock:
            if key not in self.files:
                path = self._path(db, coll, ".bson")
                path.parent.mkdir(parents=True, exist_ok=True)
                raw = path.open("wb")
                self.files[key] = (raw, compress_writer(raw, self.compression))
            return self.files[key][1]

    def write_documents(self, db: str, coll: str, docs: list[bytes]) -> None:
        out = self._open(db, coll)
        body = b"".join(docs)
        out.write(body)
        with self.lock:
            self.bytes_written += len(body)

    def finish(self, db: str, coll: str) -> int:
        out = self._open(db, coll)
        with self.lock:
            raw, _ = self.files.pop((db, coll))
        out.close()
        raw.close()
        return 0


def read_bson_stream(stream: BinaryIO, where: str, batch_bytes: int) -> Iterator[list[bytes]]:
    """Concatenated BSON documents, in batches; a cut or corrupt document fails naming
    ``where``, the byte offset and how many documents came before it."""
    batch: list[bytes] = []
    held = offset = count = 0
    while True:
        prefix = stream.read(4)
        if not prefix:
            break
        if len(prefix) < 4:
            raise ArchiveError(f"{where}: truncated at byte {offset} after {count} documents")
        (size,) = _LENGTH.unpack(prefix)
        if size < MIN_BSON_SIZE or size > MAX_BSON_SIZE:
            raise ArchiveError(
                f"{where}: invalid BSON length {size} at byte {offset} after {count} documents"
            )
        rest = b""
        while len(rest) < size - 4:
            chunk = stream.read(size - 4 - len(rest))
            if not chunk:
                break
            rest += chunk
        if len(rest) != size - 4:
            raise ArchiveError(
                f"{where}: truncated at byte {offset} after {count} documents (a document of "
                f"{size} bytes, the file ends after {len(rest) + 4})"
            )
        if rest[-1] != 0:
            raise ArchiveError(
                f"{where}: corrupt document at byte {offset} after {count} documents"
            )
        batch.append(prefix + rest)
        held += size
        offset += size
        count += 1
        if held >= batch_bytes:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def _strip(name: str, suffix: str) -> str | None:
    for compressed in ("", ".gz", ".zst"):
        if name.endswith(suffix + compressed):
            return name[: len(name) - len(suffix + compressed)]
    return None


class DirectoryReader:
    """A directory dump as the archive reader presents an archive: ``namespaces`` (each with its
    metadata text) and ``events()`` (documents in batches, then "eof" per namespace, the oplog
    last)."""

    def __init__(self, root: Path, batch_bytes: int = 1 << 20) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ArchiveError(f"{self.root}: not a directory")
        self.batch_bytes = batch_bytes
        self.namespaces: list[Namespace] = []
        self.data: dict[tuple[str, str], Path] = {}
        self.skipped: list[str] = []
        for db_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            self._scan_db(db_dir)
        for path in sorted(self.root.iterdir()):
            if path.is_file() and _strip(path.name, ".bson") == "oplog":
                self.data[(OPLOG_DB, OPLOG_COLLECTION)] = path
                self.namespaces.append(Namespace(OPLOG_DB, OPLOG_COLLECTION))
        self.server_version = ""
        for name in ("prelude.json", "prelude.json.gz", "prelude.json.zst"):
            if (self.root / name).is_file():
                try:
                    self.server_version = str(
                        json.loads(self._read_small(self.root / name)).get("ServerVersion", "")
                    )
                except ValueError:
                    self.skipped.append(name)

    def _read_small(self, path: Path) -> bytes:
        with path.open("rb") as raw:
            stream, _ = decompress_reader(raw)
            return stream.read()

    def _scan_db(self, db_dir: Path) -> None:
        db = db_dir.name
        metas, bsons = {}, {}
        for path in sorted(db_dir.iterdir()):
            if not path.is_file():
                self.skipped.append(str(path.relative_to(self.root)))
                continue
            stem = _strip(path.name, ".metadata.json")
            if stem is not None:
                metas[stem] = path
                continue
            stem = _strip(path.name, ".bson")
            if stem is not None:
                bsons[stem] = path
            else:
                self.skipped.append(str(path.relative_to(self.root)))
        for stem in sorted(set(metas) | set(bsons)):
            text = self._read_small(metas[stem]).decode() if stem in metas else ""
            meta = CollectionMetadata.from_json(text, unquote(stem), f"{db}.{unquote(stem)}")
            kind = meta.type
            if stem in bsons:
                self.data[(db, meta.name)] = bsons[stem]
            self.namespaces.append(Namespace(db, meta.name, text, 0, kind))

    def events(self) -> Iterator[Event]:
        oplog = (OPLOG_DB, OPLOG_COLLECTION)
        keys = [k for k in self.data if k != oplog] + ([oplog] if oplog in self.data else [])
        for key in keys:
            path = self.data[key]
            with path.open("rb") as raw:
                stream, _ = decompress_reader(raw)
                where = str(path.relative_to(self.root))
                for batch in read_bson_stream(stream, where, self.batch_bytes):
                    yield Event("documents", key[0], key[1], batch)
            yield Event("eof", key[0], key[1])
        for space in self.namespaces:
            if (space.db, space.collection) not in self.data:
                yield Event("eof", space.db, space.collection)

    def unfinished(self) -> list[str]:
        return []
