"""Capped collections (``local.oplog.rs``, ``<db>.system.profile``, ``create`` with ``capped``).

Kept outside the query engine because their documents keep insertion order, have no ``_id``
unless the writer gave one, and are read by tailable cursors that resume after a record id.
Filtering reuses the engine's matcher (mongomock.filtering).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import bson
from mongomock import filtering

from mongod_double.errors import BAD_VALUE, CommandError


@dataclass
class Record:
    rid: int
    doc: dict
    size: int


class CappedCollection:
    def __init__(self, max_size: int, max_docs: int | None = None) -> None:
        self.max_size = max(int(max_size), 4096)
        self.max_docs = max_docs or None
        self.records: collections.deque[Record] = collections.deque()
        self.total_size = 0
        self.last_rid = 0
        # Bumped when entries are cut from the end (rollback): a tailable cursor opened before
        # loses its position, as mongod's rollback kills the cursors on the oplog.
        self.epoch = 0

    def cut_after(self, key: str, value) -> None:
        """Remove the newest records whose ``key`` is above ``value`` (the oplog after a
        rollback's common point)."""
        cut = False
        while self.records and self.records[-1].doc[key] > value:
            self.total_size -= self.records.pop().size
            cut = True
        if cut:
            self.epoch += 1

    def insert(self, doc: dict) -> int:
        self.last_rid += 1
        size = len(bson.encode(doc))
        self.records.append(Record(self.last_rid, doc, size))
        self.total_size += size
        while len(self.records) > 1 and (
            self.total_size > self.max_size or (self.max_docs and len(self.records) > self.max_docs)
        ):
            self.total_size -= self.records.popleft().size
        return self.last_rid

    def find_id(self, _id: object) -> Record | None:
        """The record whose document has this _id (a user's capped collection has an _id
        index, as mongod gives one to every capped collection outside local)."""
        return next((r for r in self.records if "_id" in r.doc and r.doc["_id"] == _id), None)

    def replace(self, _id: object, doc: dict) -> bool:
        """The document with this _id replaced where it stands (an update keeps a capped
        document's place in natural order); False when there is none."""
        record = self.find_id(_id)
        if record is None:
            return False
        size = len(bson.encode(doc))
        self.total_size += size - record.size
        record.doc, record.size = doc, size
        return True

    def delete(self, _id: object) -> bool:
        record = self.find_id(_id)
        if record is None:
            return False
        self.records.remove(record)
        self.total_size -= record.size
        return True

    def truncate(self) -> None:
        self.records.clear()
        self.total_size = 0

    @property
    def first_rid(self) -> int:
        return self.records[0].rid if self.records else self.last_rid + 1

    def __len__(self) -> int:
        return len(self.records)

    def documents(self) -> list[dict]:
        return [record.doc for record in self.records]

    def scan(self, filter_doc: dict, after_rid: int = 0, reverse: bool = False) -> list[Record]:
        """Records matching ``filter_doc`` with a record id above ``after_rid``, natural order."""
        records = [r for r in self.records if r.rid > after_rid]
        if reverse:
            records.reverse()
        try:
            return [r for r in records if filtering.filter_applies(filter_doc, r.doc)]
        except Exception as exc:  # the engine's matcher rejects a malformed filter
            raise CommandError(BAD_VALUE, str(exc)) from exc


def sort_documents(docs: list[dict], sort: dict) -> list[dict]:
    for key, direction in reversed(list(sort.items())):
        if key == "$natural":
            if direction < 0:
                docs = list(reversed(docs))
            continue
        docs = sorted(
            docs, key=lambda d, k=key: filtering.resolve_sort_key(k, d), reverse=direction < 0
        )
    return docs


def project(doc: dict, projection: dict | None) -> dict:
    """Inclusion or exclusion projection on (dotted) field paths."""
    if not projection:
        return doc
    include_id = bool(projection.get("_id", 1))
    fields = {k: v for k, v in projection.items() if k != "_id"}
    inclusive = any(bool(v) for v in fields.values())
    if inclusive:
        out: dict = {}
        if include_id and "_id" in doc:
            out["_id"] = doc["_id"]
        for path in fields:
            _copy_path(doc, out, path.split("."))
        return out
    out = bson.decode(bson.encode(doc))
    if not include_id:
        out.pop("_id", None)
    for path in fields:
        _drop_path(out, path.split("."))
    return out


def _copy_path(src: dict, dst: dict, parts: list[str]) -> None:
    head = parts[0]
    if head not in src:
        return
    if len(parts) == 1:
        dst[head] = src[head]
    elif isinstance(src[head], dict):
        _copy_path(src[head], dst.setdefault(head, {}), parts[1:])


def _drop_path(doc: dict, parts: list[str]) -> None:
    if len(parts) == 1:
        doc.pop(parts[0], None)
    elif isinstance(doc.get(parts[0]), dict):
        _drop_path(doc[parts[0]], parts[1:])
