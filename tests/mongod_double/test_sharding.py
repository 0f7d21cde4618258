"""Sharding: a config server replica set, two shard replica sets and mongos routers of doubles,
driven with unmodified pymongo through mongos. Each test names the MongoDB page it checks."""

from __future__ import annotations

import pytest
from bson import Int64, MinKey
from pymongo.errors import OperationFailure

from tests.mongod_double.shardedset import SHARDS, initiate, start_cluster, start_mongos
from tests.waiting import wait_until

DRAIN_TIMEOUT = 30.0


def add_shards(cluster, client) -> None:
    for name in SHARDS:
        assert client.admin.command("addShard", cluster.shard_host(name))["shardAdded"] == name


def shard_counts(cluster, db: str, coll: str) -> dict[str, int]:
    return {name: cluster.shard_client(name)[db][coll].count_documents({}) for name in SHARDS}


def error_code(call) -> int:
    with pytest.raises(OperationFailure) as info:
        call()
    return info.value.code


def test_mongos_version_and_configdb_required(launcher):
    """mongos --version prints "mongos version"; without --configdb, or with a configdb that is
    not a replica set connection string, mongos refuses to start (exit 2), and it rejects
    mongod-only options such as --dbpath as unrecognised.

    Source: https://www.mongodb.com/docs/manual/reference/program/mongos/ (--configdb: "the
    config servers must be deployed as a replica set"; mongos has no storage options)
    """
    version = launcher.run("--version", program="mongos")
    assert version.returncode == 0 and version.stdout.startswith("mongos version v")
    missing = launcher.run("--port", "1", program="mongos")
    assert missing.returncode == 2
    assert "BadValue: error: no args for --configdb" in missing.stderr
    standalone = launcher.run("--configdb", "127.0.0.1:1", program="mongos")
    assert standalone.returncode == 2
    assert "configdb supports only replica set connection string" in standalone.stderr
    dbpath = launcher.run("--configdb", "cfg/127.0.0.1:1", "--dbpath", "/tmp", program="mongos")
    assert dbpath.returncode == 2 and "unrecognised option '--dbpath'" in dbpath.stderr


def test_hashed_sharding_spreads_documents_and_routes_queries(launcher):
    """addShard and listShards; shardCollection with a hashed key on an empty collection
    pre-splits two chunks per shard, so 1,000 inserts land on both shards; finds with the shard
    key target one shard, others scatter and gather (sort, skip, limit merged); count, distinct
    and aggregate $group add up across shards; a second mongos sees the same catalog.

    Sources: https://www.mongodb.com/docs/manual/reference/command/addShard/,
    https://www.mongodb.com/docs/manual/reference/command/listShards/,
    https://www.mongodb.com/docs/manual/reference/command/shardCollection/,
    https://www.mongodb.com/docs/manual/core/hashed-sharding/,
    https://www.mongodb.com/docs/manual/core/sharded-cluster-query-router/,
    https://www.mongodb.com/docs/manual/reference/config-database/
    """
    cluster = start_cluster(launcher, routers=2)
    client = cluster.router_client(0)
    hello = client.admin.command("hello")
    assert hello["msg"] == "isdbgrid" and "setName" not in hello
    add_shards(cluster, client)
    shards = client.admin.command("listShards")["shards"]
    assert [(s["_id"], s["host"], s["state"]) for s in shards] == [
        (name, cluster.shard_host(name), 1) for name in SHARDS
    ]
    # Since 6.0 shardCollection does not need enableSharding first.
    reply = client.admin.command("shardCollection", "app.users", key={"uid": "hashed"})
    assert reply["collectionsharded"] == "app.users"
    coll_doc = client.config.collections.find_one({"_id": "app.users"})
    assert coll_doc["key"] == {"uid": "hashed"} and coll_doc["unique"] is False
    chunks = list(client.config.chunks.find({"uuid": coll_doc["uuid"]}))
    assert sorted(c["shard"] for c in chunks) == ["shard1", "shard1", "shard2", "shard2"]

    users = client.app.users
    users.insert_many([{"uid": i, "group": i % 7, "name": f"user{i}"} for i in range(1000)])
    counts = shard_counts(cluster, "app", "users")
    assert all(n > 0 for n in counts.values()) and sum(counts.values()) == 1000
    assert users.count_documents({}) == 1000

    # Targeted: the shard key pins one shard, which alone holds the document.
    doc = users.find_one({"uid": 421})
    assert doc["name"] == "user421"
    holders = [n for n in SHARDS if cluster.shard_client(n).app.users.find_one({"uid": 421})]
    assert len(holders) == 1
    # Scatter-gather with sort, skip and limit merged on the router.
    page = list(users.find({"group": 3}, {"_id": 0, "uid": 1}).sort("uid", -1).skip(2).limit(5))
    expected = sorted((i for i in range(1000) if i % 7 == 3), reverse=True)[2:7]
    assert [d["uid"] for d in page] == expected
    assert len(list(users.find({"group": {"$lt": 2}}).batch_size(50))) == 286
    assert users.count_documents({"group": 0}) == 143
    assert sorted(users.distinct("group")) == list(range(7))
    groups = list(
        users.aggregate(
            [{"$match": {"uid": {"$gte": 100}}}, {"$group": {"_id": "$group", "n": {"$sum": 1}}}]
        )
    )
    assert sum(g["n"] for g in groups) == 900 and len(groups) == 7

    # Writes routed by key; a multi update reaches every shard.
    assert users.update_one({"uid": 7}, {"$set": {"name": "seven"}}).modified_count == 1
    assert users.update_many({"group": 1}, {"$set": {"odd": True}}).modified_count == 143
    assert users.delete_many({"group": 6}).deleted_count == 142
    # 7.0: a single update must target one shard (shard key or _id), as before 7.1.
    assert error_code(lambda: users.update_one({"group": 2}, {"$set": {"x": 1}})) == 72

    # The second router reads the same catalog and data.
    other = cluster.router_client(1)
    assert [s["_id"] for s in other.admin.command("listShards")["shards"]] == list(SHARDS)
    assert other.app.users.count_documents({}) == 858
    assert other.app.users.find_one({"uid": 7})["name"] == "seven"
    # Unsharded collections live on the database's primary shard.
    other.app.notes.insert_one({"_id": 1})
    primary = client.config.databases.find_one({"_id": "app"})["primary"]
    assert cluster.shard_client(primary).app.notes.count_documents({}) == 1
    assert "notes" in client.app.list_collection_names()
    names = client.list_database_names()
    assert "app" in names and "config" in names


def test_ranged_sharding_split_and_move_chunk(launcher):
    """A ranged shard key starts as one chunk on the primary shard; split and moveChunk move
    the upper range's documents to the other shard, and finds by key are routed to the owner.

    Sources: https://www.mongodb.com/docs/manual/core/ranged-sharding/,
    https://www.mongodb.com/docs/manual/reference/command/split/,
    https://www.mongodb.com/docs/manual/reference/command/moveChunk/
    """
    cluster = start_cluster(launcher)
    client = cluster.router_client()
    add_shards(cluster, client)
    client.admin.command("balancerStop")
    assert client.admin.command("balancerStatus")["mode"] == "off"
    client.admin.command("enableSharding", "shop", primaryShard="shard1")
    client.admin.command("shardCollection", "shop.orders", key={"n": 1})
    orders = client.shop.orders
    orders.insert_many([{"n": i} for i in range(100)])
    assert shard_counts(cluster, "shop", "orders") == {"shard1": 100, "shard2": 0}
    client.admin.command("split", "shop.orders", middle={"n": 60})
    client.admin.command("moveChunk", "shop.orders", find={"n": 75}, to="shard2")
    assert shard_counts(cluster, "shop", "orders") == {"shard1": 60, "shard2": 40}
    assert orders.find_one({"n": 75})["n"] == 75 and orders.count_documents({}) == 100
    assert [d["n"] for d in orders.find({}).sort("n", 1).limit(3)] == [0, 1, 2]


def test_remove_shard_drains_and_completes(launcher):
    """removeShard marks the shard draining (state "started", dbsToMove lists the databases it
    is primary for), the balancer moves its chunks ("ongoing" with remaining.chunks/dbs),
    movePrimary moves the unsharded collections, then removeShard completes; every document
    ends on the remaining shard and the totals are unchanged.

    Sources: https://www.mongodb.com/docs/manual/reference/command/removeShard/,
    https://www.mongodb.com/docs/manual/tutorial/remove-shards-from-cluster/,
    https://www.mongodb.com/docs/manual/reference/command/movePrimary/
    """
    cluster = start_cluster(launcher)
    client = cluster.router_client()
    add_shards(cluster, client)
    client.admin.command("enableSharding", "app", primaryShard="shard2")
    client.admin.command("shardCollection", "app.events", key={"_id": "hashed"})
    client.app.events.insert_many([{"_id": i} for i in range(300)])
    client.app.notes.insert_many([{"k": i} for i in range(10)])
    assert all(n > 0 for n in shard_counts(cluster, "app", "events").values())

    started = client.admin.command("removeShard", "shard2")
    assert started["state"] == "started" and started["shard"] == "shard2"
    assert started["dbsToMove"] == ["app"]

    def drained() -> dict | None:
        status = client.admin.command("removeShard", "shard2")
        assert status["state"] == "ongoing", status
        return status if status["remaining"]["chunks"] == 0 else None

    status = wait_until(
        drained,
        timeout=DRAIN_TIMEOUT,
        every=0.2,
        what="shard2's chunks to drain",
        seen=lambda: client.admin.command("removeShard", "shard2"),
    )
    assert status["remaining"]["dbs"] == 1 and status["dbsToMove"] == ["app"]
    client.admin.command("movePrimary", "app", to="shard1")
    done = client.admin.command("removeShard", "shard2")
    assert done["state"] == "completed" and done["msg"] == "removeshard completed successfully"
    assert [s["_id"] for s in client.admin.command("listShards")["shards"]] == ["shard1"]
    assert shard_counts(cluster, "app", "events") == {"shard1": 300, "shard2": 0}
    assert shard_counts(cluster, "app", "notes") == {"shard1": 10, "shard2": 0}
    assert client.app.events.count_documents({}) == 300
    assert client.app.notes.count_documents({}) == 10


def test_add_shard_finds_the_primary_through_any_seed(launcher):
    """addShard reaches the replica set's primary whichever seed comes first (a secondary here,
    as after a rolling restart that ended with the old primary), as MongoDB's shard targeter
    does with a primary-only read preference.

    Sources: https://www.mongodb.com/docs/manual/reference/command/addShard/ ("<replica_set>/
    <hostname><:port>,<hostname><:port>, ..."), https://www.mongodb.com/docs/manual/tutorial/
    convert-replica-set-to-replicated-shard-cluster/ (the set's members restarted as shardsvr,
    then sh.addShard with its seed list)
    """
    config = launcher.start("--configsvr", "--replSet", "cfg")
    initiate(config, "cfg")
    router = start_mongos(launcher, f"cfg/127.0.0.1:{config.port}")
    members = [launcher.start("--shardsvr", "--replSet", "rsA") for _ in range(2)]
    seeds = [f"127.0.0.1:{m.port}" for m in members]
    members[1].client().admin.command("replSetInitiate", {"_id": "rsA", "members": [
        {"_id": 0, "host": seeds[0], "priority": 0}, {"_id": 1, "host": seeds[1]}]})  # fmt: skip
    primary = members[1].client()
    wait_until(lambda: primary.admin.command("hello").get("isWritablePrimary"), timeout=30,
               what="rsA's primary")  # fmt: skip
    first = members[0].client(directConnection=True)
    wait_until(lambda: first.admin.command("hello").get("secondary"), timeout=30,
               what="the first seed a secondary")  # fmt: skip
    client = router.client()
    added = client.admin.command("addShard", f"rsA/{seeds[0]},{seeds[1]}")
    assert added["shardAdded"] == "rsA"
    assert client.admin.command("listShards")["shards"][0]["host"].startswith("rsA/")


def test_catalog_survives_restart(launcher):
    """The catalog is ordinary data in the config servers' config database: after every
    process restarts on its dbPath, a new mongos routes to the same shards and chunks.

    Source: https://www.mongodb.com/docs/manual/core/sharded-cluster-config-servers/
    """
    cluster = start_cluster(launcher)
    client = cluster.router_client()
    add_shards(cluster, client)
    client.admin.command("shardCollection", "app.items", key={"k": "hashed"})
    client.app.items.insert_many([{"k": i} for i in range(200)])
    before = shard_counts(cluster, "app", "items")
    nodes = [*cluster.routers, *cluster.shards.values(), cluster.config]
    for node in nodes:
        assert node.stop() == 0
    config = launcher.start(
        "--configsvr", "--replSet", "cfg", dbpath=cluster.config.dbpath, port=cluster.config.port
    )
    for name, node in cluster.shards.items():
        launcher.start("--shardsvr", "--replSet", name, dbpath=node.dbpath, port=node.port)
    router = start_mongos(launcher, f"cfg/127.0.0.1:{config.port}")
    client = router.client()
    shards = wait_until(
        lambda: client.admin.command("listShards")["shards"],
        timeout=30,
        every=0.2,
        what="the restarted mongos to list the shards",
        retry=OperationFailure,
    )
    assert [s["_id"] for s in shards] == list(SHARDS)
    assert client.config.collections.find_one({"_id": "app.items"})["key"] == {"k": "hashed"}
    assert client.app.items.count_documents({}) == 200
    assert client.app.items.find_one({"k": 123})["k"] == 123
    assert shard_counts(cluster, "app", "items") == before


def test_key_file_cluster_users_live_on_config_servers(launcher, tmp_path):
    """With a key file everywhere, the routers reach the config servers and shards as the
    internal __system user; clients must authenticate; the first user is created through mongos
    under the localhost exception and stored on the config servers, and logging in through
    either router works with it.

    Sources: https://www.mongodb.com/docs/manual/tutorial/deploy-sharded-cluster-with-keyfile-access-control/,
    https://www.mongodb.com/docs/manual/core/localhost-exception/ (sharded clusters: users
    created through mongos are stored on the config servers)
    """
    keyfile = tmp_path / "keyfile"
    keyfile.write_text("c2hhcmRpbmcta2V5LWZvci10aGUtZG91Ymxl\n")
    keyfile.chmod(0o400)
    cluster = start_cluster(launcher, 2, "--keyFile", str(keyfile))
    anonymous = cluster.router_client(0)
    anonymous.admin.command("createUser", "admin", pwd="secret", roles=["root"])
    assert error_code(lambda: anonymous.admin.command("listShards")) == 13
    stored = cluster.config.client(
        username="__system",
        password="c2hhcmRpbmcta2V5LWZvci10aGUtZG91Ymxl",
        authSource="local",
        authMechanism="SCRAM-SHA-256",
    )
    assert stored.admin["system.users"].find_one({"_id": "admin.admin"})["roles"]
    client = cluster.router_client(1, username="admin", password="secret")
    add_shards(cluster, client)
    client.admin.command("shardCollection", "app.c", key={"k": "hashed"})
    client.app.c.insert_many([{"k": i} for i in range(100)])
    assert client.app.c.count_documents({}) == 100
    app = cluster.router_client(0, username="admin", password="secret")
    app.admin.command("createUser", "reader", pwd="pw", roles=[{"role": "read", "db": "app"}])
    reader = cluster.router_client(1, username="reader", password="pw", authSource="admin")
    assert reader.app.c.count_documents({}) == 100
    assert error_code(lambda: reader.app.c.insert_one({"k": -1})) == 13
    assert (
        error_code(
            lambda: cluster.router_client(0, username="admin", password="no").admin.command("ping")
        )
        == 18
    )


def test_sharding_errors(launcher):
    """Bad input gets MongoDB's codes: a standalone or a replica set without --shardsvr cannot
    be a shard, nor can a config server or a set under the wrong name; an unknown shard is
    ShardNotFound (70); shardCollection refuses admin, malformed namespaces, unique hashed
    keys and changing a key; unknown commands are CommandNotFound (59), as on mongod.

    Sources: https://www.mongodb.com/docs/manual/reference/command/addShard/,
    https://www.mongodb.com/docs/manual/reference/command/removeShard/,
    https://www.mongodb.com/docs/manual/reference/command/shardCollection/,
    https://www.mongodb.com/docs/manual/reference/error-codes/
    """
    cluster = start_cluster(launcher)
    client = cluster.router_client()
    admin = client.admin
    standalone = launcher.start()
    plain_set = launcher.start("--replSet", "plain")
    initiate(plain_set, "plain")
    assert error_code(lambda: admin.command("addShard", f"127.0.0.1:{standalone.port}")) == 193
    code = error_code(lambda: admin.command("addShard", f"x/127.0.0.1:{standalone.port}"))
    assert code == 96  # host did not return a set name
    assert error_code(lambda: admin.command("addShard", f"plain/127.0.0.1:{plain_set.port}")) == 193
    wrong = f"other/127.0.0.1:{cluster.shards['shard1'].port}"
    assert error_code(lambda: admin.command("addShard", wrong)) == 96
    assert error_code(lambda: admin.command("addShard", cluster.config_db)) == 96
    assert (
        error_code(
            lambda: admin.command("addShard", cluster.routers[0].uri.split("/")[2].split("?")[0])
        )
        == 20
    )
    add_shards(cluster, client)
    assert error_code(lambda: admin.command("removeShard", "nope")) == 70
    assert error_code(lambda: admin.command("shardCollection", "admin.x", key={"a": 1})) == 20
    assert error_code(lambda: admin.command("shardCollection", "nodot", key={"a": 1})) == 73
    unique_hashed = {"key": {"a": "hashed"}, "unique": True}
    assert error_code(lambda: admin.command("shardCollection", "app.c", **unique_hashed)) == 2
    admin.command("shardCollection", "app.c", key={"a": 1})
    assert error_code(lambda: admin.command("shardCollection", "app.c", key={"b": 1})) == 23
    assert admin.command("shardCollection", "app.c", key={"a": 1})["ok"] == 1
    assert error_code(lambda: client.app.command("shardCollection", "app.d", key={"a": 1})) == 13
    assert error_code(lambda: admin.command("replSetGetStatus")) == 59
    assert error_code(lambda: admin.command("noSuchCommand")) == 59


def test_tarball_mongos_routes(launcher, tarballs):
    """The tarball's bin/mongos (a zipapp run by a bare python3) is the router: it reaches the
    config servers, adds a shard and routes an insert to it.

    Source: https://www.mongodb.com/docs/manual/reference/program/mongos/
    """
    cluster = start_cluster(launcher, routers=0)
    binary = tarballs["7.0.14"] / "bin" / "mongos"
    router = start_mongos(launcher, cluster.config_db, executable=str(binary))
    client = router.client()
    assert client.admin.command("buildInfo")["version"] == "7.0.14"
    client.admin.command("addShard", cluster.shard_host("shard1"))
    client.app.c.insert_one({"_id": 1})
    assert cluster.shard_client("shard1").app.c.count_documents({}) == 1


def test_each_router_records_itself_in_config_mongos(launcher):
    """Every mongos writes {_id: "<host name>:<port>", ping, up, waiting, mongoVersion} into
    config.mongos on the config servers when it starts (and every 30 s after), which sh.status
    and tools read to list the routers.

    Source: https://www.mongodb.com/docs/manual/reference/config-database/#mongodb-data-config.mongos
    """
    cluster = start_cluster(launcher, 2)
    config = cluster.config.client().config
    names = {r.client().admin.command("serverStatus")["host"] for r in cluster.routers}
    found = wait_until(lambda: len(docs := list(config.mongos.find())) == 2 and docs,
                       timeout=10, what="two routers in config.mongos")  # fmt: skip
    assert {d["_id"] for d in found} == names
    assert {d["_id"].rpartition(":")[2] for d in found} == {str(r.port) for r in cluster.routers}
    for doc in found:
        assert doc["mongoVersion"] == "7.0.14" and doc["waiting"] is True
        assert doc["up"] >= 0 and doc["ping"] is not None


def test_zones_on_shards_and_their_key_ranges(launcher):
    """A shard's zones are its config.shards tags, a zone's ranges config.tags documents, with
    MongoDB's checks: an unknown shard is ShardNotFound (70); a range needs a zone some shard has
    (ZoneNotFound, 177), a prefix of the shard key (ShardKeyNotFound, 61, completed with MinKey),
    NumberLong bounds on a hashed field (InvalidOptions, 72), min < max (BadValue) and no overlap
    (RangeOverlapConflict, 178); a zone with ranges cannot leave its last shard (ZoneStillInUse,
    163); zone null removes exactly the range named; an unsharded collection takes its bounds
    as given.

    Sources: https://www.mongodb.com/docs/manual/reference/command/addShardToZone/,
    https://www.mongodb.com/docs/manual/reference/command/removeShardFromZone/,
    https://www.mongodb.com/docs/manual/reference/command/updateZoneKeyRange/,
    https://www.mongodb.com/docs/manual/reference/config-database/,
    https://www.mongodb.com/docs/manual/reference/error-codes/
    """
    cluster = start_cluster(launcher)
    client = cluster.router_client()
    admin = client.admin
    add_shards(cluster, client)
    admin.command("shardCollection", "shop.orders", key={"n": 1})
    admin.command("shardCollection", "shop.pairs", key={"a": 1, "b": 1})
    admin.command("shardCollection", "shop.hashed", key={"k": "hashed"})
    admin.command("addShardToZone", "shard1", zone="eu")
    admin.command("addShardToZone", "shard1", zone="eu")  # once
    assert error_code(lambda: admin.command("addShardToZone", "nope", zone="eu")) == 70
    shards = {s["_id"]: s.get("tags", []) for s in admin.command("listShards")["shards"]}
    assert shards == {"shard1": ["eu"], "shard2": []}

    def zone(ns: str, low: dict, high: dict, name: str | None) -> dict:
        return admin.command("updateZoneKeyRange", ns, min=low, max=high, zone=name)

    zone("shop.orders", {"n": 0}, {"n": 50}, "eu")
    zone("shop.pairs", {"a": 1}, {"a": 5}, "eu")  # a prefix of the key
    zone("other.plain", {"x": 1}, {"x": 5}, "eu")  # not sharded: as given
    assert error_code(lambda: zone("shop.orders", {"n": 40}, {"n": 60}, "eu")) == 178
    assert error_code(lambda: zone("shop.orders", {"n": 60}, {"n": 70}, "us")) == 177
    assert error_code(lambda: zone("shop.orders", {"n": 70}, {"n": 60}, "eu")) == 2
    assert error_code(lambda: zone("shop.orders", {"x": 60}, {"x": 70}, "eu")) == 61
    assert error_code(lambda: zone("shop.hashed", {"k": 1}, {"k": 9}, "eu")) == 72
    zone("shop.hashed", {"k": MinKey()}, {"k": Int64(0)}, "eu")
    tags = cluster.config.client().config.tags
    ranges = {d["ns"]: (d["min"], d["max"], d["tag"]) for d in tags.find({}, {"_id": 0})}
    assert ranges == {
        "shop.orders": ({"n": 0}, {"n": 50}, "eu"),
        "shop.pairs": ({"a": 1, "b": MinKey()}, {"a": 5, "b": MinKey()}, "eu"),
        "other.plain": ({"x": 1}, {"x": 5}, "eu"),
        "shop.hashed": ({"k": MinKey()}, {"k": Int64(0)}, "eu"),
    }

    assert error_code(lambda: admin.command("removeShardFromZone", "shard1", zone="eu")) == 163
    zone("shop.orders", {"n": 0}, {"n": 60}, None)  # not exactly a range: nothing removed
    assert tags.count_documents({}) == 4
    for ns, (low, high, _) in ranges.items():
        zone(ns, low, high, None)
    assert tags.count_documents({}) == 0
    admin.command("removeShardFromZone", "shard1", zone="eu")
    assert error_code(lambda: admin.command("removeShardFromZone", "nope", zone="eu")) == 70
    assert all(not s.get("tags") for s in admin.command("listShards")["shards"])
