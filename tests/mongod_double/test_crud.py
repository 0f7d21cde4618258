"""CRUD, cursors, indexes and aggregation through unmodified pymongo."""

from __future__ import annotations

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure


def test_insert_find_projection_sort_skip_limit(client):
    """find with filter, projection, sort, skip and limit.

    Source: https://www.mongodb.com/docs/manual/reference/command/find/
    """
    coll = client.test.people
    coll.insert_many([{"_id": i, "name": f"n{i}", "age": 20 + i % 5} for i in range(20)])
    docs = list(coll.find({"age": {"$gte": 23}}, {"name": 1}).sort("_id", -1).skip(1).limit(3))
    assert docs == [
        {"_id": 18, "name": "n18"},
        {"_id": 14, "name": "n14"},
        {"_id": 13, "name": "n13"},
    ]
    assert [list(d) for d in docs] == [["_id", "name"]] * 3
    assert coll.count_documents({"age": 20}) == 4
    assert sorted(coll.distinct("age")) == [20, 21, 22, 23, 24]


def test_find_reply_shape_and_get_more(client):
    """The find reply has cursor.firstBatch / id / ns; getMore returns nextBatch; the cursor
    id is 0 once exhausted.

    Source: https://www.mongodb.com/docs/manual/reference/command/find/#output and
    https://www.mongodb.com/docs/manual/reference/command/getMore/#output
    """
    db = client.test
    db.c.insert_many([{"_id": i} for i in range(5)])
    reply = db.command("find", "c", batchSize=2)
    cursor = reply["cursor"]
    assert [d["_id"] for d in cursor["firstBatch"]] == [0, 1]
    assert cursor["ns"] == "test.c" and cursor["id"] != 0
    more = db.command("getMore", cursor["id"], collection="c", batchSize=2)
    assert [d["_id"] for d in more["cursor"]["nextBatch"]] == [2, 3]
    last = db.command("getMore", cursor["id"], collection="c")
    assert [d["_id"] for d in last["cursor"]["nextBatch"]] == [4]
    assert last["cursor"]["id"] == 0
    with pytest.raises(OperationFailure) as info:
        db.command("getMore", cursor["id"], collection="c")
    assert info.value.code == 43  # CursorNotFound
    single = db.command("find", "c", batchSize=2, singleBatch=True)
    assert single["cursor"]["id"] == 0


def test_kill_cursors_reply(client):
    """killCursors lists killed and unknown cursors.

    Source: https://www.mongodb.com/docs/manual/reference/command/killCursors/#output
    """
    db = client.test
    db.c.insert_many([{"_id": i} for i in range(5)])
    cursor_id = db.command("find", "c", batchSize=1)["cursor"]["id"]
    reply = db.command("killCursors", "c", cursors=[cursor_id, 12345])
    assert reply["cursorsKilled"] == [cursor_id]
    assert reply["cursorsNotFound"] == [12345]
    assert reply["cursorsAlive"] == [] and reply["cursorsUnknown"] == []


def test_update_operators_upsert_and_reply(client):
    """update returns n, nModified and upserted [{index, _id}].

    Source: https://www.mongodb.com/docs/manual/reference/command/update/#output
    """
    db = client.test
    db.c.insert_many([{"_id": 1, "v": 1, "tags": ["a"]}, {"_id": 2, "v": 2, "tags": []}])
    reply = db.command(
        "update",
        "c",
        updates=[
            {"q": {}, "u": {"$inc": {"v": 10}, "$push": {"tags": "x"}}, "multi": True},
            {"q": {"_id": 3}, "u": {"$set": {"v": 3}}, "upsert": True},
            {"q": {"_id": 1}, "u": {"$set": {"v": 11}}},
        ],
    )
    assert reply["n"] == 4 and reply["nModified"] == 2
    assert reply["upserted"] == [{"index": 1, "_id": 3}]
    assert db.c.find_one({"_id": 1}) == {"_id": 1, "v": 11, "tags": ["a", "x"]}
    assert db.c.find_one({"_id": 3}) == {"_id": 3, "v": 3}
    db.c.replace_one({"_id": 2}, {"w": 1})
    assert db.c.find_one({"_id": 2}) == {"_id": 2, "w": 1}
    with pytest.raises(OperationFailure) as info:
        db.c.update_one({"_id": 2}, {"$set": {"_id": 99}})
    assert info.value.code == 66  # ImmutableField


def test_delete_and_find_and_modify(client):
    """delete returns n; findAndModify returns value and lastErrorObject.

    Source: https://www.mongodb.com/docs/manual/reference/command/findAndModify/#output
    """
    db = client.test
    db.c.insert_many([{"_id": i, "k": i % 2} for i in range(6)])
    assert db.c.delete_many({"k": 0}).deleted_count == 3
    reply = db.command("findAndModify", "c", query={"_id": 1}, update={"$set": {"x": 1}}, new=True)
    assert reply["value"] == {"_id": 1, "k": 1, "x": 1}
    assert reply["lastErrorObject"] == {"n": 1, "updatedExisting": True}
    reply = db.command(
        "findAndModify", "c", query={"_id": 50}, update={"$set": {"x": 2}}, upsert=True, new=True
    )
    assert reply["lastErrorObject"] == {"n": 1, "updatedExisting": False, "upserted": 50}
    removed = db.c.find_one_and_delete({"_id": 3})
    assert removed == {"_id": 3, "k": 1}
    with pytest.raises(OperationFailure) as info:
        db.command("findAndModify", "c", query={}, remove=True, update={"$set": {"a": 1}})
    assert info.value.code == 9


def test_unique_index_duplicate_key_write_error(client):
    """A unique index rejects duplicates with E11000, code 11000, in writeErrors.

    Source: https://www.mongodb.com/docs/manual/core/index-unique/ and
    https://www.mongodb.com/docs/manual/reference/command/insert/#output (writeErrors).
    """
    coll = client.test.users
    assert coll.create_index("email", unique=True) == "email_1"
    coll.insert_one({"_id": 1, "email": "a@x"})
    with pytest.raises(DuplicateKeyError) as info:
        coll.insert_one({"_id": 2, "email": "a@x"})
    details = info.value.details
    assert details["code"] == 11000
    assert details["errmsg"] == (
        'E11000 duplicate key error collection: test.users index: email_1 dup key: { email: "a@x" }'
    )
    assert details["keyPattern"] == {"email": 1} and details["keyValue"] == {"email": "a@x"}
    with pytest.raises(BulkWriteError) as bulk:
        coll.insert_many([{"_id": 3, "email": "b"}, {"_id": 1}, {"_id": 4}], ordered=False)
    result = bulk.value.details
    assert result["nInserted"] == 2
    assert [(e["index"], e["code"]) for e in result["writeErrors"]] == [(1, 11000)]
    assert "index: _id_ dup key: { _id: 1 }" in result["writeErrors"][0]["errmsg"]


def test_index_commands(client):
    """createIndexes / listIndexes / dropIndexes replies and errors.

    Source: https://www.mongodb.com/docs/manual/reference/command/createIndexes/#output,
    https://www.mongodb.com/docs/manual/reference/command/dropIndexes/
    """
    db = client.test
    reply = db.command(
        "createIndexes", "c", indexes=[{"key": {"a": 1, "b": -1}, "name": "a_1_b_-1"}]
    )
    assert reply["numIndexesBefore"] == 1 and reply["numIndexesAfter"] == 2
    assert reply["createdCollectionAutomatically"] is True
    again = db.command(
        "createIndexes", "c", indexes=[{"key": {"a": 1, "b": -1}, "name": "a_1_b_-1"}]
    )
    assert again["note"] == "all indexes already exist"
    names = [i["name"] for i in db.c.list_indexes()]
    assert names == ["_id_", "a_1_b_-1"]
    with pytest.raises(OperationFailure) as info:
        db.c.drop_index("nope")
    assert info.value.code == 27  # IndexNotFound
    with pytest.raises(OperationFailure) as info:
        db.c.drop_index("_id_")
    assert info.value.code == 72
    assert db.command("dropIndexes", "c", index="a_1_b_-1")["nIndexesWas"] == 2
    with pytest.raises(OperationFailure) as info:
        db.command("listIndexes", "missing")
    assert info.value.code == 26


def test_aggregate_stages(client):
    """$match $group $sort $limit $skip $project $count $unwind through the cursor form.

    Source: https://www.mongodb.com/docs/manual/reference/command/aggregate/
    """
    coll = client.test.orders
    coll.insert_many(
        [{"_id": i, "cust": "ab"[i % 2], "items": [1, 2], "amt": i} for i in range(10)]
    )
    grouped = list(
        coll.aggregate(
            [
                {"$match": {"amt": {"$gte": 2}}},
                {"$group": {"_id": "$cust", "total": {"$sum": "$amt"}}},
                {"$sort": {"_id": 1}},
            ]
        )
    )
    assert grouped == [{"_id": "a", "total": 20}, {"_id": "b", "total": 24}]
    unwound = list(
        coll.aggregate(
            [
                {"$unwind": "$items"},
                {"$skip": 2},
                {"$limit": 3},
                {"$project": {"_id": 0, "items": 1}},
            ]
        )
    )
    assert unwound == [{"items": 1}, {"items": 2}, {"items": 1}]
    assert list(coll.aggregate([{"$count": "n"}])) == [{"n": 10}]
    with pytest.raises(OperationFailure) as info:
        client.test.command("aggregate", "orders", pipeline=[])
    assert info.value.code == 9  # the cursor option is required


def test_collections_and_databases(client):
    """create / listCollections / renameCollection / drop / dropDatabase / listDatabases.

    Source: https://www.mongodb.com/docs/manual/reference/command/listCollections/#output,
    https://www.mongodb.com/docs/manual/reference/command/renameCollection/,
    https://www.mongodb.com/docs/manual/reference/command/listDatabases/#output
    """
    db = client.shop
    db.create_collection("a")
    with pytest.raises(OperationFailure) as info:
        db.command("create", "a")
    assert info.value.code == 48  # NamespaceExists
    info_doc = next(db.list_collections())
    assert info_doc["name"] == "a" and info_doc["type"] == "collection"
    assert info_doc["idIndex"] == {"v": 2, "key": {"_id": 1}, "name": "_id_"}
    assert "uuid" in info_doc["info"]
    db.a.insert_one({"x": 1})
    client.admin.command("renameCollection", "shop.a", to="shop.b")
    assert db.list_collection_names() == ["b"]
    assert db.b.find_one({}, {"_id": 0}) == {"x": 1}
    with pytest.raises(OperationFailure) as info:
        client.admin.command("renameCollection", "shop.a", to="shop.c")
    assert info.value.code == 26
    listing = client.admin.command("listDatabases")
    assert "shop" in [d["name"] for d in listing["databases"]]
    assert {"totalSize", "totalSizeMb"} <= set(listing)
    assert client.admin.command("listDatabases", nameOnly=True)["databases"][0].keys() == {"name"}
    assert db.command("drop", "b")["ns"] == "shop.b"
    assert db.command("drop", "b")["ok"] == 1  # 7.0: dropping a missing collection succeeds
    db.z.insert_one({})
    assert client.drop_database("shop") is None
    assert "shop" not in client.list_database_names()


def test_stats_and_db_hash(client):
    """collStats, dbStats and dbHash (an md5 per collection that changes with the data).

    Source: https://www.mongodb.com/docs/manual/reference/command/collStats/,
    https://www.mongodb.com/docs/manual/reference/command/dbStats/,
    https://www.mongodb.com/docs/manual/reference/command/dbHash/
    """
    db = client.test
    db.c.insert_many([{"_id": i, "pad": "x" * 10} for i in range(3)])
    stats = db.command("collStats", "c")
    assert stats["ns"] == "test.c" and stats["count"] == 3 and stats["nindexes"] == 1
    assert stats["size"] > 0 and stats["indexSizes"].keys() == {"_id_"}
    dbstats = db.command("dbStats")
    assert dbstats["db"] == "test" and dbstats["collections"] == 1 and dbstats["objects"] == 3
    first = db.command("dbHash")
    assert set(first["collections"]) == {"c"} and len(first["md5"]) == 32
    db.c.update_one({"_id": 1}, {"$set": {"pad": "y"}})
    second = db.command("dbHash")
    assert second["collections"]["c"] != first["collections"]["c"]
    assert db.command("dbHash", collections=["nope"])["collections"] == {}


def test_unacknowledged_writes(node):
    """w:0 writes use moreToCome and still apply.

    Source: https://www.mongodb.com/docs/manual/reference/write-concern/#w-option
    """
    client = node.client(w=0)
    client.test.c.insert_one({"_id": 1})
    check = node.client()
    for _ in range(50):
        if check.test.c.count_documents({}) == 1:
            break
    assert check.test.c.find_one() == {"_id": 1}


def test_unsupported_engine_feature_fails_loudly(client):
    """Unsupported engine features fail loudly (NotImplemented 238), never ok: 1.

    Source: https://www.mongodb.com/docs/manual/reference/error-codes/ (238 NotImplemented).
    """
    db = client.test
    db.c.insert_one({"a": [{"b": 1}]})
    with pytest.raises(OperationFailure) as info:
        db.c.update_one({}, {"$set": {"a.$[e].b": 2}}, array_filters=[{"e.b": 1}])
    assert info.value.code == 238
    assert db.c.find_one({}, {"_id": 0}) == {"a": [{"b": 1}]}  # and nothing was changed
