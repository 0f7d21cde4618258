"""CRUD conformance of the 7.0 double, checked through unmodified pymongo.

Each case states what MongoDB 7.0 answers, from the CRUD specification
(https://github.com/mongodb/specifications/tree/master/source/crud) and the command pages
(https://www.mongodb.com/docs/manual/reference/command/find/, .../insert/, .../update/,
.../delete/, .../findAndModify/, .../count/, .../distinct/, .../aggregate/), the field-name rules
(https://www.mongodb.com/docs/manual/core/dot-dollar-considerations/) and the error codes of
MongoDB's error_codes.yml. Where the double's engine cannot follow (collation, arrayFilters, a
let value that is an expression, ...), the case expects NotImplemented (238), never a silent
wrong answer; no case may answer InternalError (1).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

import pymongo
import pytest
from bson.regex import Regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from tests.mongod_double.conftest import Launcher

NOT_IMPLEMENTED = 238
DOCS = [{"_id": 1, "x": 1, "s": "a"}, {"_id": 2, "x": 2, "s": "B"}, {"_id": 3, "x": 3, "s": "c"}]
_names = itertools.count()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One 7.0.14 double for the module; each case works on its own collection."""
    launcher = Launcher(tmp_path_factory.mktemp("conformance"))
    try:
        node = launcher.start(version="7.0.14")
        yield node.client()
    finally:
        launcher.cleanup()


@pytest.fixture
def coll(shared: pymongo.MongoClient):
    collection = shared.conformance[f"c{next(_names)}"]
    collection.insert_many([dict(d) for d in DOCS])
    return collection


@dataclass
class Err:
    """The operation fails with this code (top-level or the first write error)."""

    code: int
    contains: str = ""


def outcome(operation: Callable[[], object]) -> object:
    try:
        return operation()
    except BulkWriteError as exc:
        first = exc.details["writeErrors"][0]
        return Err(first["code"], first["errmsg"])
    except OperationFailure as exc:
        return Err(exc.code or 0, str(exc.details.get("errmsg", exc)))


def check(result: object, expected: object) -> None:
    if isinstance(expected, Err):
        assert isinstance(result, Err), f"expected error {expected.code}, got {result!r}"
        assert result.code == expected.code, result
        assert expected.contains in result.contains, result
    else:
        assert not isinstance(result, Err), f"expected {expected!r}, got {result!r}"
        assert result == expected


def ids(cursor) -> list:
    return [d["_id"] for d in cursor]


# (description, operation on the collection, what MongoDB 7.0 answers)
CASES: list[tuple[str, Callable, object]] = [
    # -- insert: field names (5.0+ rules) and _id --------------------------------------------
    (
        "insert a dotted top-level name: stored as is",
        lambda c: (c.insert_one({"_id": 9, "a.b": 1}), c.find_one({"_id": 9}))[1],
        {"_id": 9, "a.b": 1},
    ),
    (
        "insert a $-prefixed name in an embedded document: stored",
        lambda c: (c.insert_one({"_id": 9, "a": {"$b": 1}}), c.find_one({"_id": 9}))[1],
        {"_id": 9, "a": {"$b": 1}},
    ),
    (
        "insert a DBRef-like embedded document",
        lambda c: (c.insert_one({"_id": 9, "a": {"$db": "x"}}), c.find_one({"_id": 9}))[1],
        {"_id": 9, "a": {"$db": "x"}},
    ),
    (
        "insert a dotted name inside _id: stored",
        lambda c: (c.insert_one({"_id": {"a.b": 1}}), c.count_documents({}))[1],
        4,
    ),
    (
        "insert an empty field name: stored",
        lambda c: (c.insert_one({"_id": 9, "": 1}), c.find_one({"_id": 9}))[1],
        {"_id": 9, "": 1},
    ),
    (
        "insert a top-level $-prefixed name: MongoDB stores it, the engine cannot: 238",
        lambda c: c.insert_one({"_id": 9, "$a": 1}),
        Err(NOT_IMPLEMENTED, "$a"),
    ),
    ("insert _id array: InvalidIdField", lambda c: c.insert_one({"_id": [1]}), Err(53)),
    ("insert _id regex: InvalidIdField", lambda c: c.insert_one({"_id": Regex("a")}), Err(53)),
    (
        "insert _id with a $-prefixed name: DollarPrefixedFieldName",
        lambda c: c.insert_one({"_id": {"$a": 1}}),
        Err(52),
    ),
    (
        "insert a duplicate _id: DuplicateKey",
        lambda c: c.insert_one({"_id": 1}),
        Err(11000, "dup key"),
    ),
    (
        "insert unordered: every bad document is a write error with its index",
        lambda c: (
            outcome(lambda: c.insert_many([{"_id": 1}, {"_id": [2]}, {"_id": 10}], ordered=False))
            and c.count_documents({})
        ),
        4,
    ),
    (
        "insert ordered stops at the first error",
        lambda c: (
            (outcome(lambda: c.insert_many([{"_id": 11}, {"_id": 1}, {"_id": 12}])),)
            and ids(c.find({"_id": {"$gt": 3}}))
        ),
        [11],
    ),
    (
        "insert with an unknown field: 40415",
        lambda c: c.database.command("insert", c.name, documents=[{}], bogus=1),
        Err(40415, "insert.bogus"),
    ),
    (
        "insert with bypassDocumentValidation (no validators exist): accepted",
        lambda c: c.insert_one({"_id": 9}, bypass_document_validation=True).inserted_id,
        9,
    ),
    # -- replacement -------------------------------------------------------------------------
    (
        "replace with a dotted top-level name: stored",
        lambda c: (c.replace_one({"_id": 1}, {"a.b": 1}), c.find_one({"_id": 1}))[1],
        {"_id": 1, "a.b": 1},
    ),
    (
        "replace with a $-prefixed embedded name: stored",
        lambda c: (c.replace_one({"_id": 1}, {"a": {"$b": 1}}), c.find_one({"_id": 1}))[1],
        {"_id": 1, "a": {"$b": 1}},
    ),
    (
        "replace with a top-level $-prefixed name (not first): DollarPrefixedFieldName",
        lambda c: c.replace_one({"_id": 1}, {"y": 1, "$a": 1}),
        Err(52, "$replaceWith"),
    ),
    (
        "replace changing _id: ImmutableField",
        lambda c: c.replace_one({"_id": 1}, {"_id": 5}),
        Err(66),
    ),
    (
        "replace upsert with an _id other than the query's: ImmutableField",
        lambda c: c.replace_one({"_id": 7}, {"_id": 8}, upsert=True),
        Err(66),
    ),
    (
        "replace upsert inserts the query's _id",
        lambda c: (c.replace_one({"_id": 7}, {"y": 1}, upsert=True), c.find_one({"_id": 7}))[1],
        {"_id": 7, "y": 1},
    ),
    # -- update operators ----------------------------------------------------------------------
    (
        "update with an unknown modifier: FailedToParse",
        lambda c: c.database.command(
            "update", c.name, updates=[{"q": {}, "u": {"$foo": {"a": 1}}}]
        )["writeErrors"][0]["code"],
        9,
    ),
    (
        "update mixing operators and fields: FailedToParse",
        lambda c: c.database.command(
            "update", c.name, updates=[{"q": {}, "u": {"$set": {"a": 1}, "b": 1}}]
        )["writeErrors"][0]["code"],
        9,
    ),
    (
        "update $set of a non-document: FailedToParse",
        lambda c: c.update_one({"_id": 1}, {"$set": 1}),
        Err(9),
    ),
    (
        "update of one path by two operators: ConflictingUpdateOperators",
        lambda c: c.update_one({"_id": 1}, {"$set": {"a": 1}, "$inc": {"a": 1}}),
        Err(40, "conflict"),
    ),
    (
        "update of a path and its parent: ConflictingUpdateOperators",
        lambda c: c.update_one({"_id": 1}, {"$set": {"a": 1, "a.b": 2}}),
        Err(40),
    ),
    (
        "update of an empty path: EmptyFieldName",
        lambda c: c.update_one({"_id": 1}, {"$set": {"": 1}}),
        Err(56),
    ),
    (
        "update of a path with an empty part: EmptyFieldName",
        lambda c: c.update_one({"_id": 1}, {"$set": {"a..b": 1}}),
        Err(56),
    ),
    (
        "update $set of a top-level $-prefixed name: DollarPrefixedFieldName",
        lambda c: c.update_one({"_id": 1}, {"$set": {"$a": 1}}),
        Err(52),
    ),
    (
        "update $set of a dotted path creates the embedded field",
        lambda c: (c.update_one({"_id": 1}, {"$set": {"a.b": 1}}), c.find_one({"_id": 1}))[1],
        {"_id": 1, "x": 1, "s": "a", "a": {"b": 1}},
    ),
    (
        "update through a scalar: PathNotViable",
        lambda c: c.update_one({"_id": 1}, {"$set": {"x.y": 1}}),
        Err(28),
    ),
    (
        "update $inc of a string: TypeMismatch",
        lambda c: c.update_one({"_id": 1}, {"$inc": {"s": 1}}),
        Err(14),
    ),
    (
        "update $inc by a string: TypeMismatch",
        lambda c: c.update_one({"_id": 1}, {"$inc": {"x": "a"}}),
        Err(14),
    ),
    (
        "update $push to a non-array: BadValue",
        lambda c: c.update_one({"_id": 1}, {"$push": {"s": 1}}),
        Err(2),
    ),
    (
        "update $set of _id: ImmutableField",
        lambda c: c.update_one({"_id": 1}, {"$set": {"_id": 5}}),
        Err(66),
    ),
    (
        "update $rename to itself: BadValue",
        lambda c: c.update_one({"_id": 1}, {"$rename": {"x": "x"}}),
        Err(2),
    ),
    (
        "update with an empty $set: matched, not modified",
        lambda c: c.update_one({"_id": 1}, {"$set": {}}).modified_count,
        0,
    ),
    (
        "updateMany counts matched and modified",
        lambda c: (lambda r: (r.matched_count, r.modified_count))(
            c.update_many({"x": {"$gte": 2}}, {"$set": {"x": 2}})
        ),
        (2, 1),
    ),
    (
        "update upsert with operators takes the query's equality fields",
        lambda c: (
            c.update_one({"_id": 7, "k": 3}, {"$set": {"y": 1}}, upsert=True),
            c.find_one({"_id": 7}),
        )[1],
        {"_id": 7, "k": 3, "y": 1},
    ),
    (
        "update pipeline computes from the document",
        lambda c: (c.update_one({"_id": 2}, [{"$set": {"y": "$x"}}]), c.find_one({"_id": 2}))[1],
        {"_id": 2, "x": 2, "s": "B", "y": 2},
    ),
    (
        "update pipeline with a stage updates cannot use: InvalidOptions",
        lambda c: c.update_one({"_id": 1}, [{"$match": {}}]),
        Err(72),
    ),
    (
        "update with arrayFilters: not implemented",
        lambda c: c.update_one({"_id": 1}, {"$set": {"a.$[e]": 1}}, array_filters=[{"e": 1}]),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "update with a statement field MongoDB 7.0 does not have (sort): 40415",
        lambda c: c.database.command(
            "update", c.name, updates=[{"q": {}, "u": {"$set": {"y": 1}}, "sort": {"x": -1}}]
        ),
        Err(40415, "update.updates.sort"),
    ),
    (
        "update without u: 40414",
        lambda c: c.database.command("update", c.name, updates=[{"q": {}}]),
        Err(40414),
    ),
    (
        "update with constants c on a non-pipeline update: 51198",
        lambda c: c.database.command(
            "update", c.name, updates=[{"q": {}, "u": {"$set": {"y": 1}}, "c": {"v": 1}}]
        ),
        Err(51198),
    ),
    # -- options: let, collation, hint ---------------------------------------------------------
    (
        "find with let: the variable is applied",
        lambda c: ids(c.find({"$expr": {"$eq": ["$_id", "$$id"]}}, let={"id": 2})),
        [2],
    ),
    (
        "aggregate with let: constants and $literal",
        lambda c: list(
            c.aggregate(
                [{"$match": {"_id": 1}}, {"$project": {"_id": 0, "a": "$$x", "b": "$$y"}}],
                let={"x": "foo", "y": {"$literal": "$bar"}},
            )
        ),
        [{"a": "foo", "b": "$bar"}],
    ),
    (
        "aggregate with a let value the engine would have to evaluate: 238",
        lambda c: list(c.aggregate([{"$project": {"a": "$$r"}}], let={"r": {"$rand": {}}})),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "aggregate using an undefined variable: 17276",
        lambda c: list(c.aggregate([{"$project": {"a": "$$nope"}}])),
        Err(17276),
    ),
    (
        "let with a variable name starting upper-case: 16870",
        lambda c: list(c.find({}, let={"Id": 1})),
        Err(16870),
    ),
    (
        "updateOne with let in the filter and in a pipeline",
        lambda c: (
            c.update_one(
                {"$expr": {"$eq": ["$_id", "$$id"]}},
                [{"$set": {"y": "$$v"}}],
                let={"id": 3, "v": 7},
            ),
            c.find_one({"_id": 3}),
        )[1],
        {"_id": 3, "x": 3, "s": "c", "y": 7},
    ),
    (
        "deleteMany with let",
        lambda c: c.delete_many({"$expr": {"$gt": ["$x", "$$m"]}}, let={"m": 1}).deleted_count,
        2,
    ),
    (
        "findOneAndUpdate with let",
        lambda c: c.find_one_and_update(
            {"$expr": {"$eq": ["$_id", "$$id"]}}, {"$set": {"y": 1}}, let={"id": 2}
        )["_id"],
        2,
    ),
    (
        "find with a case-insensitive collation: not implemented (never a binary answer)",
        lambda c: list(c.find({"s": "b"}, collation={"locale": "en", "strength": 2})),
        Err(NOT_IMPLEMENTED, "collation"),
    ),
    (
        "find with the simple collation: binary comparison",
        lambda c: ids(c.find({"s": "b"}, collation={"locale": "simple"})),
        [],
    ),
    (
        "count with a collation: not implemented",
        lambda c: c.count_documents({"s": "b"}, collation={"locale": "en", "strength": 2}),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "distinct with a collation: not implemented",
        lambda c: c.distinct("s", collation={"locale": "en", "strength": 2}),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "deleteMany with a collation: not implemented, nothing deleted",
        lambda c: (
            outcome(
                lambda: c.delete_many({"s": "b"}, collation={"locale": "en", "strength": 2})
            ).code,
            c.count_documents({}),
        ),
        (NOT_IMPLEMENTED, 3),
    ),
    (
        "collation without locale: 40414",
        lambda c: list(c.find({}, collation={"strength": 2})),
        Err(40414),
    ),
    (
        "find hinting an index that does not exist: BadValue",
        lambda c: list(c.find({}).hint("nope_1")),
        Err(2, "hint"),
    ),
    (
        "find hinting _id by key pattern",
        lambda c: ids(c.find({"x": {"$gt": 1}}).hint([("_id", 1)])),
        [2, 3],
    ),
    (
        "find hinting $natural backwards",
        lambda c: ids(c.find({}).hint([("$natural", -1)])),
        [3, 2, 1],
    ),
    (
        "updateOne hinting a missing index: BadValue write error",
        lambda c: c.update_one({"_id": 1}, {"$set": {"y": 1}}, hint="nope_1"),
        Err(2),
    ),
    (
        "deleteOne hinting a missing index: BadValue write error",
        lambda c: c.delete_one({"_id": 1}, hint="nope_1"),
        Err(2),
    ),
    (
        "count hinting a missing index: BadValue",
        lambda c: c.count_documents({}, hint="nope_1"),
        Err(2),
    ),
    (
        "aggregate hinting a missing index: BadValue",
        lambda c: list(c.aggregate([], hint="nope_1")),
        Err(2),
    ),
    (
        "findOneAndDelete hinting a missing index: BadValue",
        lambda c: c.find_one_and_delete({}, hint="nope_1"),
        Err(2),
    ),
    (
        "hint on a sparse index: not implemented (it changes the result)",
        lambda c: (
            c.create_index("x", sparse=True),
            outcome(lambda: list(c.find({}).hint("x_1"))),
        )[1],
        Err(NOT_IMPLEMENTED),
    ),
    (
        "distinct with hint (a 7.1 option) on 7.0: 40415",
        lambda c: c.database.command("distinct", c.name, key="x", hint={"_id": 1}),
        Err(40415),
    ),
    # -- find -----------------------------------------------------------------------------------
    (
        "find with an unknown field: 40415",
        lambda c: c.database.command("find", c.name, bogus=1),
        Err(40415, "find.bogus"),
    ),
    (
        "find with a string filter: TypeMismatch",
        lambda c: c.database.command("find", c.name, filter="x"),
        Err(14),
    ),
    (
        "find with an unknown query operator: BadValue",
        lambda c: list(c.find({"x": {"$foo": 1}})),
        Err(2),
    ),
    (
        "find projection mixing inclusion and exclusion: 31254",
        lambda c: list(c.find({}, {"x": 1, "s": 0})),
        Err(31254),
    ),
    (
        "find projection on a $-prefixed path: 16410",
        lambda c: list(c.find({}, {"$x": 1})),
        Err(16410),
    ),
    (
        "find projection with _id excluded from an inclusion",
        lambda c: list(c.find({"_id": 1}, {"_id": 0, "x": 1})),
        [{"x": 1}],
    ),
    (
        "find projection with an operator ($slice): not implemented",
        lambda c: list(c.find({}, {"x": {"$slice": 1}})),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "find sort with a bad direction: 15975",
        lambda c: c.database.command("find", c.name, sort={"x": 2}),
        Err(15975),
    ),
    (
        "find with a negative cursor limit: one batch of one",
        lambda c: list(c.find().limit(-1)),
        DOCS[:1],
    ),
    (
        "find command with a negative limit: 51024",
        lambda c: c.database.command("find", c.name, limit=-1),
        Err(51024),
    ),
    (
        "find with min/max: not implemented",
        lambda c: list(c.find({}).hint([("_id", 1)]).min([("_id", 2)])),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "find with returnKey: not implemented",
        lambda c: list(c.find({}, return_key=True)),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "find with a negative maxTimeMS: BadValue",
        lambda c: c.database.command("find", c.name, maxTimeMS=-1),
        Err(2),
    ),
    (
        "find with comment, allowDiskUse, maxTimeMS: the same documents",
        lambda c: ids(c.find({}, comment={"why": 1}, allow_disk_use=True, max_time_ms=5000)),
        [1, 2, 3],
    ),
    (
        "find sort, skip, limit",
        lambda c: ids(c.find({}).sort("x", -1).skip(1).limit(1)),
        [2],
    ),
    (
        "find in a transaction on a standalone: IllegalOperation, as mongod",
        lambda c: c.database.command(
            "find", c.name, startTransaction=True, autocommit=False, txnNumber=1
        ),
        Err(20, "only allowed on a replica set member or mongos"),
    ),
    # -- count / distinct / aggregate ---------------------------------------------------------
    ("countDocuments with skip and limit", lambda c: c.count_documents({}, skip=1, limit=3), 2),
    (
        "count command with skip and limit",
        lambda c: c.database.command("count", c.name, skip=1, limit=3)["n"],
        2,
    ),
    (
        "count command with a negative limit",
        lambda c: c.database.command("count", c.name, limit=-1)["n"],
        1,
    ),
    ("estimatedDocumentCount", lambda c: c.estimated_document_count(), 3),
    ("countDocuments on a missing collection", lambda c: c.database.nothing.count_documents({}), 0),
    (
        "count with an unknown field: 40415",
        lambda c: c.database.command("count", c.name, bogus=1),
        Err(40415),
    ),
    ("distinct values", lambda c: sorted(c.distinct("x", {"x": {"$gt": 1}})), [2, 3]),
    (
        "distinct on an empty key: 40352",
        lambda c: c.distinct(""),
        Err(40352),
    ),
    (
        "distinct on a $-prefixed key: 16410",
        lambda c: c.distinct("$x"),
        Err(16410),
    ),
    (
        "aggregate with an unknown stage: 40324",
        lambda c: list(c.aggregate([{"$foo": {}}])),
        Err(40324),
    ),
    (
        "aggregate stage with two fields: 40323",
        lambda c: list(c.aggregate([{"$match": {}, "$limit": 1}])),
        Err(40323),
    ),
    (
        "aggregate with $out not last: 40601",
        lambda c: list(c.aggregate([{"$out": "o"}, {"$match": {}}])),
        Err(40601),
    ),
    (
        "aggregate with an unknown field: 40415",
        lambda c: c.database.command("aggregate", c.name, pipeline=[], cursor={}, bogus=1),
        Err(40415),
    ),
    (
        "aggregate with $merge: not implemented",
        lambda c: list(c.aggregate([{"$merge": {"into": "m"}}])),
        Err(NOT_IMPLEMENTED),
    ),
    (
        "aggregate $group counts agree with countDocuments",
        lambda c: list(c.aggregate([{"$match": {"x": {"$gte": 2}}}, {"$count": "n"}])),
        [{"n": 2}],
    ),
    # -- delete / findAndModify ----------------------------------------------------------------
    (
        "delete statement without limit: 40414",
        lambda c: c.database.command("delete", c.name, deletes=[{"q": {}}]),
        Err(40414, "delete.deletes.limit"),
    ),
    (
        "delete statement with an unknown field: 40415",
        lambda c: c.database.command("delete", c.name, deletes=[{"q": {}, "limit": 0, "x": 1}]),
        Err(40415),
    ),
    ("deleteOne deletes one", lambda c: c.delete_one({"x": {"$gt": 0}}).deleted_count, 1),
    (
        "findOneAndUpdate with sort and returnDocument after",
        lambda c: c.find_one_and_update(
            {}, {"$inc": {"x": 10}}, sort=[("x", -1)], return_document=True
        ),
        {"_id": 3, "x": 13, "s": "c"},
    ),
    (
        "findOneAndReplace with a top-level $-prefixed name (not first): 52",
        lambda c: c.database.command(
            "findAndModify", c.name, query={"_id": 1}, update={"y": 1, "$a": 1}
        ),
        Err(52),
    ),
    (
        "findOneAndUpdate upsert returns the new document",
        lambda c: c.find_one_and_update(
            {"_id": 9}, {"$set": {"y": 1}}, upsert=True, return_document=True
        ),
        {"_id": 9, "y": 1},
    ),
    (
        "findOneAndUpdate with a projection",
        lambda c: c.find_one_and_update({"_id": 1}, {"$set": {"y": 1}}, projection={"x": 1}),
        {"_id": 1, "x": 1},
    ),
    (
        "findAndModify with an unknown field: 40415",
        lambda c: c.database.command("findAndModify", c.name, query={}, remove=True, bogus=1),
        Err(40415),
    ),
    (
        "findAndModify with a string update: FailedToParse",
        lambda c: c.database.command("findAndModify", c.name, query={}, update="x"),
        Err(9),
    ),
    (
        "findOneAndUpdate with arrayFilters: not implemented",
        lambda c: c.find_one_and_update({}, {"$set": {"a.$[e]": 1}}, array_filters=[{"e": 1}]),
        Err(NOT_IMPLEMENTED),
    ),
    # -- bulkWrite ------------------------------------------------------------------------------
    (
        "bulkWrite mixed, ordered: results of every kind",
        lambda c: (
            lambda r: (r.inserted_count, r.matched_count, r.modified_count, r.deleted_count)
        )(
            c.bulk_write(
                [
                    InsertOne({"_id": 4}),
                    UpdateOne({"_id": 1}, {"$set": {"y": 1}}),
                    UpdateMany({}, {"$set": {"z": 1}}),
                    ReplaceOne({"_id": 2}, {"r": 1}),
                    DeleteOne({"_id": 3}),
                ]
            )
        ),
        (1, 6, 6, 1),
    ),
    (
        "bulkWrite unordered: the bad update is a write error with its index",
        lambda c: outcome(
            lambda: c.bulk_write(
                [UpdateOne({"_id": 1}, {"$inc": {"s": 1}}), DeleteOne({"_id": 2})], ordered=False
            )
        ),
        Err(14),
    ),
]


@pytest.mark.parametrize(
    ("operation", "expected"),
    [pytest.param(op, expected, id=name) for name, op, expected in CASES],
)
def test_crud_case(coll, operation, expected):
    """One conformance case: the double answers as MongoDB 7.0 does, or refuses with 238."""
    check(outcome(lambda: operation(coll)), expected)


def test_write_errors_have_mongodb_shape(coll):
    """writeErrors entries carry index, code and errmsg, in statement order (insert command
    output: https://www.mongodb.com/docs/manual/reference/command/insert/#output)."""
    reply = coll.database.command(
        "insert",
        coll.name,
        documents=[{"_id": 1}, {"_id": 20}, {"_id": [1]}, {"_id": {"$x": 1}}],
        ordered=False,
    )
    assert reply["n"] == 1
    errors = reply["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(0, 11000), (2, 53), (3, 52)]
    assert all(isinstance(e["errmsg"], str) and e["errmsg"] for e in errors)
    assert errors[0]["keyPattern"] == {"_id": 1} and errors[0]["keyValue"] == {"_id": 1}


def test_top_level_errors_have_code_name(coll):
    """A command-level error is {ok: 0, errmsg, code, codeName}."""
    with pytest.raises(OperationFailure) as info:
        coll.database.command("find", coll.name, bogus=1)
    assert info.value.details["codeName"] == "Location40415"
    assert info.value.details["errmsg"] == "BSON field 'find.bogus' is an unknown field."
    with pytest.raises(OperationFailure) as info:
        list(coll.find({}, collation={"locale": "fr"}))
    assert info.value.details["codeName"] == "NotImplemented"


def test_version_8_accepts_update_sort_and_distinct_hint(launcher):
    """updateOne/replaceOne take `sort` from 8.0, distinct takes `hint` from 7.1
    (https://www.mongodb.com/docs/manual/reference/command/update/)."""
    client = launcher.start(version="8.0.4").client()
    coll = client.t.c
    coll.insert_many([dict(d) for d in DOCS])
    coll.database.command(
        "update", "c", updates=[{"q": {}, "u": {"$set": {"top": 1}}, "sort": {"x": -1}}]
    )
    assert ids(coll.find({"top": 1})) == [3]
    reply = coll.database.command("distinct", "c", key="x", hint={"_id": 1})
    assert sorted(reply["values"]) == [1, 2, 3]


def test_get_parameter_star_returns_every_parameter(shared):
    """getParameter "*" returns all parameters; showDetails tells which can be set
    (https://www.mongodb.com/docs/manual/reference/command/getParameter/)."""
    admin = shared.admin
    everything = admin.command("getParameter", "*")
    names = set(everything) - {"ok", "$clusterTime", "operationTime"}
    assert {
        "featureCompatibilityVersion",
        "logLevel",
        "cursorTimeoutMillis",
        "authenticationMechanisms",
        "scramIterationCount",
        "scramSHA256IterationCount",
        "enableTestCommands",
    } <= names
    assert len(names) > 7
    assert everything["scramSHA256IterationCount"] == 15000
    assert admin.command("getParameter", {"allParameters": True}).keys() == everything.keys()
    details = admin.command("getParameter", {"showDetails": True}, logLevel=1)["logLevel"]
    assert details == {"value": 0, "settableAtRuntime": True, "settableAtStartup": True}
    with pytest.raises(OperationFailure) as info:
        admin.command("setParameter", 1, scramIterationCount=20000)
    assert info.value.code == NOT_IMPLEMENTED
    assert admin.command("getParameter", 1, scramIterationCount=1)["scramIterationCount"] == 10000


# -- never an internal error -------------------------------------------------------------------

_keys = st.sampled_from(
    [
        "a",
        "b",
        "a.b",
        "$a",
        "",
        "_id",
        "x.0",
        "s",
        "$in",
        "$where",
        "$gt",
        "$exists",
        "$elemMatch",
        "$size",
        "$not",
        "$type",
        "$regex",
        "$all",
        "$mod",
        "$and",
        "$or",
        "$expr",
        "$ne",
        "$nin",
    ]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text("ab$.", max_size=3),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=6,
)
_documents = st.dictionaries(_keys, _values, max_size=4)
_operators = st.sampled_from(
    [
        "$set",
        "$unset",
        "$inc",
        "$mul",
        "$push",
        "$addToSet",
        "$pull",
        "$pop",
        "$rename",
        "$min",
        "$max",
        "$foo",
    ]
)
_updates = st.one_of(
    _documents,
    st.dictionaries(
        _operators, st.dictionaries(_keys, _values, max_size=2), min_size=1, max_size=2
    ),
    st.lists(
        st.dictionaries(
            st.sampled_from(["$set", "$unset", "$match"]), _values, min_size=1, max_size=1
        ),
        max_size=2,
    ),
)


def _no_internal_error(operation: Callable[[], object]) -> object:
    result = outcome(operation)
    if isinstance(result, Err):
        assert result.code != 1, result
        assert "Error(" not in result.contains and "Traceback" not in result.contains, result
    return result


@settings(
    max_examples=int(os.environ.get("CRUD_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(docs=st.lists(_documents, max_size=3), query=_documents, update=_updates)
def test_never_an_internal_error(shared, docs, query, update):
    """Whatever documents, filters and updates a client sends, the double answers MongoDB's
    error or NotImplemented, never InternalError; and when it answers, find, countDocuments
    and an aggregation $match count agree."""
    coll = shared.fuzz[f"f{next(_names)}"]
    db = coll.database
    for doc in docs:
        _no_internal_error(lambda doc=doc: db.command("insert", coll.name, documents=[doc]))
    found = _no_internal_error(lambda: db.command("find", coll.name, filter=query))
    counted = _no_internal_error(lambda: db.command("count", coll.name, query=query))
    grouped = _no_internal_error(
        lambda: db.command(
            "aggregate", coll.name, pipeline=[{"$match": query}, {"$count": "n"}], cursor={}
        )
    )
    if not isinstance(found, Err):
        n = len(found["cursor"]["firstBatch"])
        assert not isinstance(counted, Err) and counted["n"] == n
        if not isinstance(grouped, Err):
            batch = grouped["cursor"]["firstBatch"]
            assert (batch[0]["n"] if batch else 0) == n
    for multi in (False, True):
        _no_internal_error(
            lambda multi=multi: db.command(
                "update", coll.name, updates=[{"q": query, "u": update, "multi": multi}]
            )
        )
    _no_internal_error(
        lambda: db.command("findAndModify", coll.name, query=query, update=update, upsert=True)
    )
    _no_internal_error(lambda: db.command("distinct", coll.name, key="a", query=query))
    _no_internal_error(lambda: db.command("delete", coll.name, deletes=[{"q": query, "limit": 0}]))
    coll.drop()
