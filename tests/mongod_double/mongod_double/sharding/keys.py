"""Shard keys: extracting them from documents and filters, hashing, and chunk ownership.

A chunk owns the keys ``min <= key < max`` in BSON comparison order; the first chunk starts at
MinKey and the last ends at MaxKey. Missing shard key fields count as null (MongoDB 4.4+).
Hashed values are 64-bit integers from MD5, as MongoDB's hashed indexes compute them, but not
bit-identical to MongoDB's (the double never shares data files with a real mongod): floating
point numbers are truncated to integers first, so 2.3 and 2 hash alike, as MongoDB documents.
Source: https://www.mongodb.com/docs/manual/core/hashed-sharding/
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import struct
from dataclasses import dataclass

import bson
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from mongomock import filtering

from mongod_double import engine  # noqa: F401  (BSON order for MinKey/MaxKey/Timestamp)
from mongod_double.wire import CODEC

INT64_MIN = -(2**63)
INT64_SPAN = 2**64


def compare(a: list, b: list) -> int:
    """BSON order of two shard key value lists: -1, 0 or 1."""
    if filtering.bson_compare(operator.lt, a, b):
        return -1
    if filtering.bson_compare(operator.lt, b, a):
        return 1
    return 0


def hash_value(value: object) -> Int64:
    """The hashed shard key value of ``value``."""
    if isinstance(value, bool):
        data = b"b" + bytes([value])
    elif isinstance(value, (int, float, Int64, bson.Decimal128)):
        number = float(value.to_decimal()) if isinstance(value, bson.Decimal128) else value
        if isinstance(number, float):
            number = 0 if math.isnan(number) else int(max(min(number, 2**63 - 1), -(2**63)))
        data = b"n" + struct.pack("<q", int(number))
    elif isinstance(value, str):
        data = b"s" + value.encode()
    elif value is None:
        data = b"0"
    else:
        data = b"d" + bson.encode({"v": value}, codec_options=CODEC)
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return Int64(struct.unpack("<q", digest[:8])[0])


def _resolve(doc: dict, path: str) -> object:
    node: object = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _equality(condition: object) -> tuple[bool, object]:
    """Whether a filter condition pins one value, and that value."""
    if isinstance(condition, dict):
        keys = list(condition)
        if keys and all(k.startswith("$") for k in keys):
            if keys == ["$eq"]:
                return True, condition["$eq"]
            return False, None
    if isinstance(condition, (list, bson.Regex)) or hasattr(condition, "pattern"):
        return False, None
    return True, condition


@dataclass(frozen=True)
class ShardKey:
    pattern: tuple[tuple[str, object], ...]

    @classmethod
    def from_doc(cls, key: dict) -> ShardKey:
        return cls(tuple(key.items()))

    @property
    def fields(self) -> list[str]:
        return [name for name, _ in self.pattern]

    @property
    def hashed_field(self) -> str | None:
        return next((name for name, kind in self.pattern if kind == "hashed"), None)

    def _transform(self, values: list) -> list:
        return [
            hash_value(v) if kind == "hashed" else v
            for (_, kind), v in zip(self.pattern, values, strict=True)
        ]

    def of_document(self, doc: dict) -> list:
        """The key (hashed where the pattern says) of a document."""
        return self._transform([_resolve(doc, name) for name in self.fields])

    def of_filter(self, query: dict) -> list | None:
        """The one key a filter pins by equality on every shard key field, or None."""
        values = []
        for name in self.fields:
            if name not in query:
                return None
            pinned, value = _equality(query[name])
            if not pinned:
                return None
            values.append(value)
        return self._transform(values)

    def bound(self, values: list) -> dict:
        return dict(zip(self.fields, values, strict=True))

    def global_min(self) -> dict:
        return self.bound([MinKey()] * len(self.pattern))

    def global_max(self) -> dict:
        return self.bound([MaxKey()] * len(self.pattern))

    def hashed_split_points(self, count: int) -> list[dict]:
        """``count - 1`` bounds cutting the 64-bit hash space into ``count`` equal chunks."""
        points = []
        for i in range(1, count):
            value = Int64(INT64_MIN + (INT64_SPAN * i) // count)
            points.append(self.bound([value] + [MinKey()] * (len(self.pattern) - 1)))
        return points


def owns(chunk: dict, key: list) -> bool:
    """Whether ``min <= key < max``."""
    return (
        compare(list(chunk["min"].values()), key) <= 0
        and compare(key, list(chunk["max"].values())) < 0
    )


def chunk_for(chunks: list[dict], key: list) -> dict:
    """The chunk owning ``key`` (chunks cover the whole key space)."""
    for chunk in chunks:
        if owns(chunk, key):
            return chunk
    raise LookupError(f"no chunk owns shard key {key}")


def sort_chunks(chunks: list[dict]) -> list[dict]:
    def by_min(a: dict, b: dict) -> int:
        return compare(list(a["min"].values()), list(b["min"].values()))

    return sorted(chunks, key=functools.cmp_to_key(by_min))
