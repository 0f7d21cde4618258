"""Views in the mongod double, through unmodified pymongo: created with ``create`` (viewOn,
pipeline), listed by listCollections, read by find, count, distinct and aggregate through their
pipeline, refused for writes and indexes, changed by collMod, dropped; and replicated, as an
insert into ``<db>.system.views`` in the oplog.

Sources: https://www.mongodb.com/docs/manual/core/views/ (and create-view, "Supported
Operations for Views"), https://www.mongodb.com/docs/manual/reference/command/create/,
https://www.mongodb.com/docs/manual/reference/command/listCollections/ (type "view", options,
info.readOnly), https://www.mongodb.com/docs/manual/reference/command/collMod/ (viewOn and
pipeline), https://www.mongodb.com/docs/manual/reference/system-collections/ (system.views);
the error codes are those of MongoDB's error_codes.yml; SERVER-63305 and TOOLS-4426 (a view's
creation is an insert into system.views in the oplog).
"""

from __future__ import annotations

import pymongo
import pytest
from pymongo.errors import OperationFailure, WriteError

from tests.mongod_double.conftest import Launcher
from tests.waiting import wait_until

COMMAND_NOT_SUPPORTED_ON_VIEW = 166
OPTION_NOT_SUPPORTED_ON_VIEW = 167
BIG = [{"$match": {"a": {"$gte": 6}}}]


def _listing(db, name: str) -> dict | None:
    found = list(db.list_collections(filter={"name": name}))
    return found[0] if found else None


def _code(call) -> int:
    with pytest.raises(OperationFailure) as info:
        call()
    return info.value.code


def test_view_created_listed_and_read_through_its_pipeline(client):
    shop = client.shop
    shop.orders.insert_many([{"_id": i, "a": i, "kind": "x" if i % 2 else "y"} for i in range(10)])
    shop.command("create", "big_orders", viewOn="orders", pipeline=BIG)

    assert _listing(shop, "big_orders") == {
        "name": "big_orders",
        "type": "view",
        "options": {"viewOn": "orders", "pipeline": BIG},
        "info": {"readOnly": True},
    }
    assert _listing(shop, "system.views")["type"] == "collection"
    assert list(shop["system.views"].find()) == [
        {"_id": "shop.big_orders", "viewOn": "orders", "pipeline": BIG}
    ]
    names = shop.list_collection_names(filter={"type": "view"})
    assert names == ["big_orders"]

    # find: the view's pipeline, then the query's filter, sort, skip, limit and projection.
    view = shop.big_orders
    assert [d["_id"] for d in view.find()] == [6, 7, 8, 9]
    found = list(view.find({"kind": "x"}, {"a": 1}).sort("a", -1).skip(1).limit(5))
    assert found == [{"_id": 7, "a": 7}]
    assert view.find_one({"a": 8}, {"_id": 0, "kind": 1}) == {"kind": "y"}
    assert view.count_documents({}) == 4
    assert shop.command("count", "big_orders", query={"kind": "y"})["n"] == 2
    assert sorted(view.distinct("kind")) == ["x", "y"]
    by_kind = [{"$group": {"_id": "$kind", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
    assert list(view.aggregate(by_kind)) == [{"_id": "x", "n": 2}, {"_id": "y", "n": 2}]

    # A view on a view runs both pipelines, the inner one first; the source's changes show.
    shop.command("create", "big_x", viewOn="big_orders", pipeline=[{"$match": {"kind": "x"}}])
    shop.orders.insert_one({"_id": 11, "a": 11, "kind": "x"})
    assert [d["_id"] for d in shop.big_x.find()] == [7, 9, 11]
    # A view on a collection that does not exist reads nothing.
    shop.command("create", "nothing", viewOn="absent", pipeline=[])
    assert list(shop.nothing.find()) == []


def test_view_definitions_checked_as_mongod_checks_them(client):
    shop = client.shop
    shop.create_collection("orders")
    shop.command("create", "big_orders", viewOn="orders", pipeline=BIG)
    # The same definition again is accepted; another, or a collection of that name, is not.
    shop.command("create", "big_orders", viewOn="orders", pipeline=BIG)
    changed = lambda: shop.command("create", "big_orders", viewOn="orders", pipeline=[])  # noqa: E731
    assert _code(changed) == 48  # NamespaceExists
    assert _code(lambda: shop.command("create", "big_orders")) == 48
    assert _code(lambda: shop.command("create", "orders", viewOn="big_orders")) == 48
    # Stages that write are refused in a definition, nested ones with their own codes.
    out = {"$out": "elsewhere"}
    assert _code(lambda: shop.command("create", "v1", viewOn="orders", pipeline=[out])) == (
        OPTION_NOT_SUPPORTED_ON_VIEW
    )
    lookup = {"$lookup": {"from": "orders", "pipeline": [out], "as": "x"}}
    assert _code(lambda: shop.command("create", "v2", viewOn="orders", pipeline=[lookup])) == 51047
    facet = {"$facet": {"f": [{"$merge": {"into": "m"}}]}}
    assert _code(lambda: shop.command("create", "v3", viewOn="orders", pipeline=[facet])) == 40600
    assert _code(lambda: shop.command("create", "v4", pipeline=BIG)) == 72  # InvalidOptions
    assert _code(lambda: shop.command("create", "system.v", viewOn="orders")) == 73
    assert _code(lambda: shop.command("create", "v5", viewOn="orders", capped=True)) == 72
    # A collation other than the simple one is beyond the engine: refused, not ignored.
    french = lambda: shop.command("create", "v6", viewOn="orders", collation={"locale": "fr"})  # noqa: E731
    assert _code(french) == 238  # NotImplemented
    # A view must not, through collMod, come to read itself.
    shop.command("create", "upper", viewOn="big_orders", pipeline=[])
    cycle = lambda: shop.command("collMod", "big_orders", viewOn="upper", pipeline=[])  # noqa: E731
    assert _code(cycle) == 5  # GraphContainsCycle
    assert shop.list_collection_names(filter={"type": "view"}) == ["big_orders", "upper"]


def test_writes_and_indexes_refused_collmod_and_drop(client):
    shop = client.shop
    shop.orders.insert_many([{"_id": i, "a": i} for i in range(10)])
    shop.command("create", "big_orders", viewOn="orders", pipeline=BIG)
    view = shop.big_orders

    with pytest.raises(WriteError) as info:
        view.insert_one({"a": 100})
    assert info.value.code == COMMAND_NOT_SUPPORTED_ON_VIEW
    for write in (
        lambda: view.update_one({"a": 7}, {"$set": {"b": 1}}),
        lambda: view.delete_many({}),
    ):
        with pytest.raises(WriteError) as info:
            write()
        assert info.value.code == COMMAND_NOT_SUPPORTED_ON_VIEW
    for refused in (
        lambda: view.find_one_and_update({"a": 7}, {"$set": {"b": 1}}),
        lambda: view.create_index("a"),
        lambda: list(view.list_indexes()),
        lambda: view.rename("renamed"),
    ):
        assert _code(refused) == COMMAND_NOT_SUPPORTED_ON_VIEW
    assert shop.orders.count_documents({"b": {"$exists": True}}) == 0
    # Nothing else may take a view's name: a rename onto it, an aggregation's $out into it.
    shop.other.insert_one({"_id": 1})
    assert _code(lambda: shop.other.rename("big_orders")) == 48
    out = lambda: list(shop.other.aggregate([{"$out": "big_orders"}]))  # noqa: E731
    assert _code(out) == COMMAND_NOT_SUPPORTED_ON_VIEW
    shop.other.drop()
    assert sorted(shop.list_collection_names()) == ["big_orders", "orders", "system.views"]

    shop.command("collMod", "big_orders", viewOn="orders", pipeline=[{"$match": {"a": 1}}])
    assert _listing(shop, "big_orders")["options"] == {
        "viewOn": "orders",
        "pipeline": [{"$match": {"a": 1}}],
    }
    assert [d["_id"] for d in view.find()] == [1]
    assert _code(lambda: shop.command("collMod", "big_orders", pipeline=[])) == 72

    view.drop()
    assert _listing(shop, "big_orders") is None
    assert shop["system.views"].count_documents({}) == 0
    assert list(view.find()) == []
    assert shop.orders.count_documents({}) == 10


def test_view_definition_replicated_to_a_secondary(launcher: Launcher):
    """A 2-member set: the view's creation is an insert into shop.system.views in the oplog,
    and the secondary lists and reads the same view; collMod and drop follow it."""
    nodes = [launcher.start("--replSet", "views") for _ in range(2)]
    members = [
        {"_id": i, "host": f"127.0.0.1:{n.port}", "priority": 1 - i} for i, n in enumerate(nodes)
    ]
    primary = nodes[0].client()
    primary.admin.command("replSetInitiate", {"_id": "views", "members": members})
    wait_until(
        lambda: primary.admin.command("hello")["isWritablePrimary"],
        timeout=30,
        what="a primary",
        retry=pymongo.errors.PyMongoError,
    )
    secondary = nodes[1].client(readPreference="secondaryPreferred")
    shop, on_secondary = primary.shop, secondary.shop
    shop.orders.insert_many([{"_id": i, "a": i} for i in range(10)])
    shop.command("create", "big_orders", viewOn="orders", pipeline=BIG)

    entry = primary.local["oplog.rs"].find_one({"ns": "shop.system.views"})
    assert entry["op"] == "i"
    assert entry["o"] == {"_id": "shop.big_orders", "viewOn": "orders", "pipeline": BIG}
    wait_until(
        lambda: _listing(on_secondary, "big_orders") == _listing(shop, "big_orders"),
        timeout=20,
        what="the view on the secondary",
    )
    assert [d["_id"] for d in on_secondary.big_orders.find()] == [6, 7, 8, 9]

    shop.command("collMod", "big_orders", viewOn="orders", pipeline=[])
    wait_until(
        lambda: _listing(on_secondary, "big_orders")["options"]["pipeline"] == [],
        timeout=20,
        what="the view changed on the secondary",
    )
    shop.big_orders.drop()
    wait_until(
        lambda: _listing(on_secondary, "big_orders") is None,
        timeout=20,
        what="the view dropped on the secondary",
    )


def test_view_under_access_control(launcher: Launcher):
    """With --auth: read (find on the view) reads it and may not change it; collMod needs the
    collMod action on the view (dbAdmin has it), as createCollection does to create one."""
    node = launcher.start("--auth")
    node.client().admin.command("createUser", "root", pwd="root-pw-1", roles=["root"])
    root = node.client(username="root", password="root-pw-1", authSource="admin")
    root.shop.orders.insert_many([{"_id": i, "a": i} for i in range(10)])
    root.shop.command("createUser", "reader", pwd="reader-pw-1", roles=["read"])
    root.shop.command("createUser", "admin", pwd="admin-pw-1", roles=["dbAdmin"])
    root.shop.command("create", "big_orders", viewOn="orders", pipeline=BIG)

    reader = node.client(username="reader", password="reader-pw-1", authSource="shop").shop
    assert [d["_id"] for d in reader.big_orders.find()] == [6, 7, 8, 9]
    assert reader.list_collection_names(filter={"type": "view"}) == ["big_orders"]
    change = {"viewOn": "orders", "pipeline": []}
    assert _code(lambda: reader.command("collMod", "big_orders", **change)) == 13  # Unauthorized
    assert _code(lambda: reader.command("create", "v", viewOn="orders")) == 13
    admin = node.client(username="admin", password="admin-pw-1", authSource="shop").shop
    admin.command("collMod", "big_orders", **change)
    assert reader.big_orders.count_documents({}) == 10
