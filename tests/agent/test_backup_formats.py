"""mongodump's archive and directory formats: ours read back, by our reader and by an independent
one written here from the format's rules; mongodump's own files (tests/agent/compat, see its
NOTICE) read; damage found and named.

The rules (mongo-tools common/archive/spec.md): magic 0x8199e26d little-endian, a BSON header,
the prelude's BSON documents closed by the terminator 0xffffffff, then namespace segments
(header with EOF false, documents, terminator) and EOF blocks (header with EOF true and the
CRC-64 of all the namespace's documents, terminator). The CRC is Go's crc64.ECMA table used by
hash/crc64: CRC-64/XZ, whose check value over "123456789" is 0x995DC9BBDF1939FA.
"""

from __future__ import annotations

import gzip
import io
import struct
import threading
from pathlib import Path

import bson
import pytest

from wap_agent.backup.archive import ArchiveError, ArchiveReader, ArchiveWriter, Header, Namespace
from wap_agent.backup.compression import compress_writer, decompress_reader
from wap_agent.backup.directory import DirectoryReader, DirectoryWriter
from wap_agent.backup.metadata import CollectionMetadata

COMPAT = Path(__file__).parent / "compat"


# -- an independent reader, from the rules above -----------------------------------------------


def _table() -> list[int]:
    poly = 0xC96C5795D7870F42  # ECMA-182, reflected
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


TABLE = _table()


def crc64(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def independent_read(data: bytes) -> tuple[dict, list[dict], dict[str, list[dict]]]:
    """(header, prelude, documents per namespace), every EOF's CRC checked."""
    assert data[:4] == bytes.fromhex("6de29981")
    pos = 4

    def next_block():
        nonlocal pos
        (size,) = struct.unpack_from("<i", data, pos)
        if size == -1:  # 0xffffffff
            pos += 4
            return None
        raw = data[pos : pos + size]
        pos += size
        return raw

    header = bson.decode(next_block())
    prelude = []
    while (raw := next_block()) is not None:
        prelude.append(bson.decode(raw))
    docs: dict[str, list[dict]] = {}
    crcs: dict[str, int] = {}
    while pos < len(data):
        head = bson.decode(next_block())
        ns = f"{head['db']}.{head['collection']}"
        if head["EOF"]:
            assert next_block() is None
            assert head["CRC"] & 0xFFFFFFFFFFFFFFFF == crcs.get(ns, 0), ns
            continue
        while (raw := next_block()) is not None:
            crcs[ns] = crc64(raw, crcs.get(ns, 0))
            docs.setdefault(ns, []).append(bson.decode(raw))
    return header, prelude, docs


def test_the_independent_crc_is_crc64_xz():
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA


# -- ours ----------------------------------------------------------------------------------------


def write_archive(collections: dict[str, list[dict]], segment: int = 7) -> bytes:
    """An archive written by one thread per collection, segments of ``segment`` documents, so
    that they interleave."""
    out = io.BytesIO()
    writer = ArchiveWriter(out)
    spaces = []
    for ns in collections:
        db, coll = ns.split(".", 1)
        options = {"capped": True, "size": 4096} if coll == "c" else {}
        meta = CollectionMetadata(coll, options, [{"v": 2, "key": {"_id": 1}, "name": "_id_"}])
        spaces.append(Namespace(db, coll, meta.to_json(), 0, "collection"))
    writer.write_prelude(Header(concurrent_collections=3, server_version="7.0.14"), spaces)

    def copy(ns: str) -> None:
        db, coll = ns.split(".", 1)
        docs = [bson.encode(d) for d in collections[ns]]
        for i in range(0, len(docs), segment):
            writer.write_documents(db, coll, docs[i : i + segment])
        writer.finish(db, coll)

    threads = [threading.Thread(target=copy, args=(ns,)) for ns in collections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out.getvalue()


COLLECTIONS = {
    "app.a": [{"_id": i, "s": "x" * (i % 50), "n": i * 1.5} for i in range(300)],
    "app.b": [{"_id": f"k{i}", "nested": {"list": [i, {"deep": True}]}} for i in range(200)],
    "other.c": [{"_id": i} for i in range(5)],
    "other.empty": [],
}


def test_our_archive_reads_back_with_the_independent_reader():
    data = write_archive(COLLECTIONS)
    header, prelude, docs = independent_read(data)
    assert header["version"] == "0.1" and header["concurrent_collections"] == 3
    assert [f"{p['db']}.{p['collection']}" for p in prelude] == list(COLLECTIONS)
    meta = CollectionMetadata.from_json(prelude[2]["metadata"], "c", "other.c")
    assert meta.options == {"capped": True, "size": 4096} and meta.name == "c"
    for ns, expected in COLLECTIONS.items():
        assert docs.get(ns, []) == expected


def test_our_archive_reads_back_with_ours_compressed_either_way():
    for compression in (None, "gzip", "zstd"):
        raw = io.BytesIO()
        with compress_writer(raw, compression) as out:
            out.write(write_archive(COLLECTIONS))
        raw.seek(0)
        stream, found = decompress_reader(raw)
        assert found == compression
        reader = ArchiveReader(stream, batch_bytes=512)
        got: dict[str, list[dict]] = {}
        eofs = []
        for event in reader.events():
            if event.kind == "eof":
                eofs.append(event.ns)
            got.setdefault(event.ns, []).extend(bson.decode(d) for d in event.docs)
        assert sorted(eofs) == sorted(COLLECTIONS) and reader.unfinished() == []
        assert {ns: got.get(ns, []) for ns in COLLECTIONS} == COLLECTIONS


def test_a_changed_byte_is_a_crc_mismatch_naming_the_namespace():
    data = bytearray(write_archive({"app.a": COLLECTIONS["app.a"]}))
    spot = data.index(b"x" * 40)
    data[spot] = ord("y")
    reader = ArchiveReader(io.BytesIO(bytes(data)))
    with pytest.raises(ArchiveError, match=r"CRC mismatch for namespace app\.a"):
        list(reader.events())


def test_a_cut_archive_names_the_namespace_and_where():
    data = write_archive({"app.a": COLLECTIONS["app.a"]})
    reader = ArchiveReader(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(ArchiveError, match=r"truncated archive.*documents of app\.a"):
        list(reader.events())
    # cut at a block boundary: every block well formed, the namespace never finished
    cut = data[: data.rindex(b"\xff\xff\xff\xff", 0, len(data) - 10) + 4]
    reader = ArchiveReader(io.BytesIO(cut))
    list(reader.events())
    assert reader.unfinished() == ["app.a"]


def test_not_an_archive():
    with pytest.raises(ArchiveError, match="does not appear to be a mongodump archive"):
        ArchiveReader(io.BytesIO(b'{"json": 1}'))


# -- mongodump's files ---------------------------------------------------------------------------


def test_mongodump_archives_read_with_their_crcs():
    with (COMPAT / "mongorestore" / "test.bar.archive").open("rb") as source:
        reader = ArchiveReader(source)
        assert reader.header.server_version == "3.4.3"
        events = [(e.kind, e.ns, len(e.docs)) for e in reader.events()]
    assert ("documents", "test.bar", 1) in events and ("eof", "test.bar", 0) in events
    # a 5.0 dump: empty segments, a time series collection's buckets as its data
    with (COMPAT / "mongorestore" / "timeseries_dump.archive").open("rb") as source:
        reader = ArchiveReader(source)
        kinds = {n.ns: n.type for n in reader.namespaces}
        docs = sum(len(e.docs) for e in reader.events() if "buckets" in e.ns)
        assert reader.unfinished() == []  # its data is the buckets collection's
    assert kinds["timeseries_test.foo_ts"] == "timeseries" and docs == 10
    # the independent reader agrees with mongodump's CRCs too
    _, _, docs_by_ns = independent_read((COMPAT / "mongorestore" / "test.bar.archive").read_bytes())
    assert len(docs_by_ns["test.bar"]) == 1


def test_mongodump_directories_read_plain_and_gzipped():
    reader = DirectoryReader(COMPAT / "mongorestore" / "oplogdump")
    got = {}
    for event in reader.events():
        got.setdefault(event.ns, 0)
        got[event.ns] += len(event.docs)
    assert got == {"admin.system.version": 1, "db1.c1": 5, ".oplog": 3}
    gz = DirectoryReader(COMPAT / "mongorestore" / "prelude_gzip")
    assert gz.server_version == "7.0.16"
    assert [(e.kind, e.ns, len(e.docs)) for e in gz.events()] == [
        ("documents", "test.foo", 1), ("eof", "test.foo", 0),
    ]  # fmt: skip
    special = DirectoryReader(COMPAT / "mongorestore" / "specialcharacter")
    assert [n.ns for n in special.namespaces] == ["db1.cafés"]


def test_a_partial_bson_file_names_the_file_and_offset(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "coll.bson").write_bytes(
        (COMPAT / "bsondump" / "partial_file.bson").read_bytes()
    )
    reader = DirectoryReader(tmp_path)
    with pytest.raises(
        ArchiveError, match=r"db/coll\.bson: truncated at byte \d+ after \d+ documents"
    ):
        list(reader.events())


def test_our_directory_format_round_trips_with_gzip(tmp_path):
    writer = DirectoryWriter(tmp_path / "dump", "gzip")
    meta = CollectionMetadata("a", indexes=[{"v": 2, "key": {"_id": 1}, "name": "_id_"}])
    writer.write_prelude(Header(server_version="7.0.14"), [Namespace("app", "a", meta.to_json())])
    docs = [bson.encode(d) for d in COLLECTIONS["app.a"]]
    writer.write_documents("app", "a", docs[:100])
    writer.write_documents("app", "a", docs[100:])
    writer.finish("app", "a")
    assert gzip.decompress((tmp_path / "dump" / "app" / "a.bson.gz").read_bytes()) == b"".join(docs)
    text = gzip.decompress((tmp_path / "dump" / "app" / "a.metadata.json.gz").read_bytes())
    assert CollectionMetadata.from_json(text, "a", "app.a").indexes[0]["name"] == "_id_"
    reader = DirectoryReader(tmp_path / "dump")
    assert [bson.decode(d) for e in reader.events() for d in e.docs] == COLLECTIONS["app.a"]
