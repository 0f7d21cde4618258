"""Where a replica set's followed oplog lives in a store, and the checks that keep it continuous.

Under a cluster's root (manifest.Layout), per replica set (agent/docs/backup-storage.md):

    oplog/<rs>/chunks/<first>.<last>.oplog[.gz|.zst]       small objects, seconds apart
    oplog/<rs>/<YYYYMMDD>/<first>.<last>.oplog[.gz|.zst]   slices: chunks of one span compacted
    oplog/<rs>/checkpoint.json                              the last durable entry
    oplog/<rs>/gaps/<from>.<to>.json                        entries lost between two stored ones
    oplog/<rs>/unrestorable/<at>.json                       an entry a replay cannot reproduce
    oplog/<rs>/rolledback/<chunk name>                      a chunk whose tail the set rolled back

Chunks and slices hold oplog entries as mongodump's oplog.bson does (BSON documents one after
another), optionally compressed. Each object's S3 metadata names its first and last entry and
the entry before its first (`prev`), each as an OpTime (timestamp and term): an object continues
the one before it exactly when its `prev` is that one's `last`, so continuity is checked, never
assumed. The first object after a gap has no `prev`; the gap's record says where it starts.
"""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

from wap_agent.backup.compression import compress_writer, decompress_reader
from wap_agent.backup.manifest import Layout
from wap_agent.backup.s3 import S3Download

RAW = CodecOptions(document_class=RawBSONDocument)
DEFAULT_SLICE_SECONDS = 600
# Stored objects' metadata already read, by version (bucket, key, ETag, time); at most KNOWN_MAX
KNOWN: dict[tuple[str, str, Any, str], Stored] = {}
KNOWN_MAX = 20_000


class ContinuityError(RuntimeError):
    """Stored objects that do not follow one another; the message names them."""


@dataclass(frozen=True, order=True)
class OpTime:
    """An oplog entry's identity: its timestamp and the term it was written in (mongod's optime;
    `h`, the hash, stands in for the term on servers that write none)."""

    ts: Timestamp
    term: int = -1

    @classmethod
    def of(cls, entry: Any) -> OpTime:
        term = entry.get("t")
        if term is None:
            term = entry.get("h", -1)
        return cls(entry["ts"], int(term))

    def text(self) -> str:
        return f"{self.ts.time}.{self.ts.inc}.{self.term}"

    @classmethod
    def parse(cls, text: str | None) -> OpTime | None:
        if not text:
            return None
        seconds, inc, term = text.split(".")
        return cls(Timestamp(int(seconds), int(inc)), int(term))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.ts.time, "i": self.ts.inc, "term": self.term, "utc": utc(self.ts)}

    @classmethod
    def from_dict(cls, body: dict | None) -> OpTime | None:
        if not body:
            return None
        return cls(Timestamp(int(body["t"]), int(body["i"])), int(body.get("term", -1)))


def utc(ts: Timestamp) -> str:
    return datetime.datetime.fromtimestamp(ts.time, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


@dataclass(frozen=True)
class Stored:
    """A chunk or slice: its key and the OpTimes its metadata gives."""

    key: str
    first: OpTime
    last: OpTime
    prev: OpTime | None
    count: int

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[1]


def bounds(entries: list[bytes]) -> tuple[OpTime, OpTime]:
    return OpTime.of(RawBSONDocument(entries[0])), OpTime.of(RawBSONDocument(entries[-1]))


def encode(entries: list[bytes], compression: str | None) -> bytes:
    out = io.BytesIO()
    writer = compress_writer(out, compression)
    for raw in entries:
        writer.write(raw)
    writer.close()
    return out.getvalue()


def decode(stream: Any) -> Iterator[RawBSONDocument]:
    reader, _ = decompress_reader(stream)
    yield from bson.decode_file_iter(reader, RAW)


class OplogStore:
    """One replica set's followed oplog in a bucket (an S3 client: boto3's or moto's)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        layout: Layout,
        replica_set: str,
        compression: str | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.layout = layout
        self.replica_set = replica_set
        self.compression = compression
        self.root = f"{layout.root}/oplog/{replica_set}"

    # -- keys --------------------------------------------------------------------------------

    def _name(self, first: OpTime, last: OpTime) -> str:
        key = self.layout.oplog_slice(
            self.replica_set, (first.ts.time, first.ts.inc), (last.ts.time, last.ts.inc),
            self.compression,
        )  # fmt: skip
        return key.rsplit("/", 1)[1]

    def chunk_key(self, first: OpTime, last: OpTime) -> str:
        return f"{self.root}/chunks/{self._name(first, last)}"

    def slice_key(self, first: OpTime, last: OpTime) -> str:
        return self.layout.oplog_slice(
            self.replica_set, (first.ts.time, first.ts.inc), (last.ts.time, last.ts.inc),
            self.compression,
        )  # fmt: skip

    # -- objects -----------------------------------------------------------------------------

    def _put(self, key: str, entries: list[bytes], prev: OpTime | None) -> Stored:
        first, last = bounds(entries)
        metadata = {"first": first.text(), "last": last.text(), "count": str(len(entries))}
        if prev is not None:
            metadata["prev"] = prev.text()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=encode(entries, self.compression),
                           Metadata=metadata)  # fmt: skip
        return Stored(key, first, last, prev, len(entries))

    def put_chunk(self, entries: list[bytes], prev: OpTime | None) -> Stored:
        first, last = bounds(entries)
        return self._put(self.chunk_key(first, last), entries, prev)

    def _listing(self, under: str) -> list[dict[str, Any]]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.root}/{under}"
        ):
            found.extend(page.get("Contents", []))
        return found

    def _keys(self, under: str) -> list[str]:
        return [item["Key"] for item in self._listing(under)]

    def _stored(self, item: dict[str, Any]) -> Stored:
        """The object's OpTimes from its metadata: read once per version of the object (its key,
        ETag and time as the listing gives them), as a chunk or slice is never rewritten in
        place, so that reading a coverage again costs its listings, not a request per object."""
        version = (self.bucket, item["Key"], item.get("ETag"), str(item.get("LastModified")))
        known = KNOWN.get(version)
        if known is not None:
            return known
        meta = self.s3.head_object(Bucket=self.bucket, Key=item["Key"])["Metadata"]
        first, last = OpTime.parse(meta["first"]), OpTime.parse(meta["last"])
        assert first is not None and last is not None
        made = Stored(item["Key"], first, last, OpTime.parse(meta.get("prev")), int(meta["count"]))
        if len(KNOWN) >= KNOWN_MAX:
            KNOWN.pop(next(iter(KNOWN)), None)  # the oldest read
        KNOWN[version] = made
        return made

    def chunks(self) -> list[Stored]:
        found = self._listing("chunks/")
        return sorted((self._stored(i) for i in found), key=lambda s: s.first)

    def slices(self) -> list[Stored]:
        found = [i for i in self._listing("") if i["Key"].split("/")[-2].isdigit()]
        return sorted((self._stored(i) for i in found), key=lambda s: s.first)

    def objects(self) -> list[Stored]:
        """Slices and chunks in order, without the chunks a slice already holds (a compaction
        cut short between writing the slice and deleting its chunks)."""
        slices = self.slices()
        chunks = [c for c in self.chunks() if not any(s.first <= c.first and c.last <= s.last
                                                      for s in slices)]  # fmt: skip
        return sorted(slices + chunks, key=lambda s: s.first)

    def entries(self, stored: Stored) -> Iterator[RawBSONDocument]:
        with S3Download(self.s3, self.bucket, stored.key) as source:
            yield from decode(source)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    # -- records -----------------------------------------------------------------------------

    def _put_json(self, key: str, body: dict) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(body).encode(),
                           ContentType="application/json")  # fmt: skip

    def _get_json(self, key: str) -> dict | None:
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(answer["Body"].read())

    def checkpoint(self) -> OpTime | None:
        body = self.checkpoint_record()
        return OpTime.from_dict(body["last"]) if body else None

    def checkpoint_record(self) -> dict | None:
        """The checkpoint as stored: `last` and `saved_at` (UTC), which a follower also saves
        while idle (its heartbeat): how long ago it last reported."""
        return self._get_json(f"{self.root}/checkpoint.json")

    def save_checkpoint(self, last: OpTime) -> None:
        self._put_json(f"{self.root}/checkpoint.json", {"last": last.to_dict(), "saved_at": now()})

    def record_gap(self, after: OpTime, resumed: OpTime | None, reason: str) -> dict:
        """Entries after `after` (the last stored) up to `resumed` (the first stored again,
        None until known) are lost."""
        body = {"after": after.to_dict(), "resumed": resumed.to_dict() if resumed else None,
                "reason": reason, "detected_at": now()}  # fmt: skip
        end = resumed.text() if resumed else "open"
        key = f"{self.root}/gaps/{after.text()}.{end}.json"
        self._put_json(key, body)
        self.drop_gaps(after, keep=key)  # one gap per start: the newest bounds
        return body

    def drop_gaps(self, after: OpTime, keep: str | None = None) -> None:
        """Forget the gap records that start at `after` (but `keep`)."""
        for key in self._keys(f"gaps/{after.text()}."):
            if key != keep:
                self.delete(key)

    def gaps(self) -> list[dict]:
        """The gap records, in oplog order."""
        return self._records("gaps/", "after")

    def _records(self, under: str, point: str) -> list[dict]:
        found = [body for k in self._keys(under) if (body := self._get_json(k))]
        return sorted(found, key=lambda body: (body[point]["t"], body[point]["i"]))

    def record_unrestorable(self, at: OpTime, prev: OpTime, reason: str) -> dict:
        body = {"at": at.to_dict(), "prev": prev.to_dict(), "reason": reason, "detected_at": now()}
        self._put_json(f"{self.root}/unrestorable/{at.text()}.json", body)
        return body

    def unrestorable(self) -> list[dict]:
        """The unrestorable entries' records, in oplog order."""
        return self._records("unrestorable/", "at")

    def roll_back(self, stored: Stored, keep: list[bytes]) -> Stored | None:
        """The set rolled back past `stored`'s end: the whole chunk goes to rolledback/ (kept for
        inspection, never replayed) and its entries up to the common point (`keep`) are stored
        again as a chunk of their own."""
        self.s3.copy_object(Bucket=self.bucket, Key=f"{self.root}/rolledback/{stored.name}",
                            CopySource={"Bucket": self.bucket, "Key": stored.key})  # fmt: skip
        self.delete(stored.key)
        return self.put_chunk(keep, stored.prev) if keep else None

    # -- compaction --------------------------------------------------------------------------

    def compact(
        self, span: int = DEFAULT_SLICE_SECONDS, before: Timestamp | None = None
    ) -> list[Stored]:
        """Chunks of each span that has ended (a chunk of a later span exists, or the span ends
        at or before `before`) become one slice; the chunks are deleted once it is stored.
        Raises ContinuityError when two chunks do not follow one another."""
        chunks = self.chunks()
        made = []
        groups: dict[int, list[Stored]] = {}
        for chunk in chunks:
            groups.setdefault(chunk.first.ts.time // span, []).append(chunk)
        periods = sorted(groups)
        for period in periods:
            later = period != periods[-1]
            if not later and (before is None or (period + 1) * span > before.time):
                continue
            group = groups[period]
            check_continuous(group)
            entries = [bytes(e.raw) for chunk in group for e in self.entries(chunk)]
            made.append(self._put(self.slice_key(group[0].first, group[-1].last), entries,
                                  group[0].prev))  # fmt: skip
            for chunk in group:
                self.delete(chunk.key)
        return made


def check_continuous(objects: list[Stored]) -> None:
    for before, after in zip(objects, objects[1:]):
        if after.prev != before.last:
            raise ContinuityError(
                f"{after.name} does not continue {before.name}: it follows "
                f"{after.prev.text() if after.prev else 'nothing (a gap)'}, "
                f"the other ends at {before.last.text()}"
            )


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
