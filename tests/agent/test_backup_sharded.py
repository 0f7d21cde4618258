"""A sharded cluster's snapshot (wap_agent.backup.sharded) on local doubles and moto's S3: two
shards (the first with a secondary, which its dump reads), a config server set and a mongos on
127.0.0.1, backed up through the agent's ``backup`` command path while writes go on, restored
into a second cluster whose shards have other names, the zones following their shards.

What a user checks: every document equal through the new cluster's mongos, each found by a query
on its shard key (so it lives on the shard the restored catalogue routes to); the balancer off
while the backup ran and as it was once it ends, also when the backup fails midway (then no
snapshot and no upload are left); one manifest naming each set's archive with the same oplog end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Int64, MaxKey, MinKey

from tests.agent.test_oplog_store import BUCKET, moto_bucket
from tests.mongod_double.shardedset import SHARDS, start_cluster
from tests.waiting import wait_until
from wap_agent.backup.manifest import back_up, read
from wap_agent.backup.sharded import map_shards, set_uri, with_hosts
from wap_agent.backup.verify import verification
from wap_agent.commands.backup import Restore, restore_snapshot

ARGS = {
    "snapshot_id": "20261207T150000Z-0a0b0c",
    "bucket": BUCKET,
    "prefix": "backups",
    "project_id": "p1",
    "cluster_id": "c1",
    "cluster_name": "shop",
    "compression": "gzip",
}


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_bucket() as client:
        yield client


def stored(s3: Any) -> tuple[list[str], list[str]]:
    """The objects under the cluster's prefix and the multipart uploads still open."""
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix="backups/").get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="backups/").get("Uploads", [])
    return sorted(o["Key"] for o in objects), [u["UploadId"] for u in uploads]


def balancer(router) -> str:
    return router.admin.command("balancerStatus")["mode"]


def test_sharded_snapshot_restores_into_a_new_cluster(launcher, s3):
    source = start_cluster(launcher)
    # shard1 gets a secondary, which its dump reads (the primary stays the others' choice)
    primary = source.shard_client("shard1")
    second = launcher.start("--shardsvr", "--replSet", "shard1")
    config = primary.admin.command("replSetGetConfig")["config"]
    config["version"] += 1
    # not voting: the set's majority stays its primary while the new member syncs (a voting one
    # makes it two, and the primary may step down before the member answers)
    config["members"].append(
        {"_id": 1, "host": f"127.0.0.1:{second.port}", "priority": 0, "votes": 0}
    )
    primary.admin.command("replSetReconfig", config)
    wait_until(lambda: second.client().admin.command("hello").get("secondary"), timeout=30,
               what="shard1's second member to be a secondary")  # fmt: skip
    router = source.router_client()
    for name in SHARDS:
        router.admin.command("addShard", source.shard_host(name))
    router.admin.command("shardCollection", "shop.orders", key={"k": "hashed"})
    # zones: each shard in one, shop.orders' hashed key space cut between them
    for shard, zone, low, high in (("shard1", "eu", MinKey(), Int64(0)),
                                   ("shard2", "us", Int64(0), MaxKey())):  # fmt: skip
        router.admin.command("addShardToZone", shard, zone=zone)
        router.admin.command("updateZoneKeyRange", "shop.orders", min={"k": low},
                             max={"k": high}, zone=zone)  # fmt: skip
    router.shop.orders.insert_many([{"_id": i, "k": i, "v": 0} for i in range(300)])
    router.shop.notes.insert_many([{"_id": i, "text": f"note {i}"} for i in range(20)])
    router.shop.orders.create_index("v")
    held = {name: source.shard_client(name).shop.orders.count_documents({}) for name in SHARDS}
    assert all(held.values()) and sum(held.values()) == 300  # documents on both shards
    assert balancer(router) == "full"

    # A backup that fails midway (here: stopped at its first batch) leaves the balancer as it
    # was and nothing in the store.
    def fail(event: dict) -> None:
        if event.get("event") == "documents":
            raise RuntimeError("stopped midway")

    with pytest.raises(Exception, match="stopped midway"):
        back_up(source.routers[0].uri, ARGS, s3=s3, progress=fail)
    assert balancer(router) == "full"
    assert stored(s3) == ([], [])

    # Writes while the dump reads: once one shard has copied shop.orders, every order changes,
    # some are added and some deleted; only the oplog replay to the common point brings them.
    writer = source.router_client()
    seen: dict[str, Any] = {}
    once = threading.Lock()

    def during(event: dict) -> None:
        if event.get("event") != "collection" or event.get("ns") != "shop.orders":
            return
        with once:  # the shards' dumps report from their own threads: the first one writes
            if seen:
                return
            seen["balancer"] = balancer(writer)
            writer.shop.orders.update_many({}, {"$inc": {"v": 1}})
            writer.shop.orders.insert_many([{"_id": 1000 + i, "k": 1000 + i, "v": 5}
                                            for i in range(30)])  # fmt: skip
            writer.shop.orders.delete_many({"_id": {"$lt": 10}})
            writer.shop.notes.update_one({"_id": 3}, {"$set": {"text": "changed"}})

    result = back_up(source.routers[0].uri, ARGS, s3=s3, progress=during)
    assert seen["balancer"] == "off"  # stopped while the backup ran
    assert balancer(router) == "full"  # and back on after it
    want_orders = list(router.shop.orders.find(sort=[("_id", 1)]))
    want_notes = list(router.shop.notes.find(sort=[("_id", 1)]))
    assert len(want_orders) == 320 and want_orders[0]["v"] == 1

    manifest = read(s3, BUCKET, result["manifest_key"])
    assert manifest.topology == "sharded"
    assert [s["name"] for s in manifest.sets] == ["shard1", "shard2", "config"]
    assert {s["role"] for s in manifest.sets} == {"shard", "config"}
    assert all(s["oplog"]["end"] == manifest.oplog_end for s in manifest.sets)
    assert manifest.sets[0]["member"] == f"127.0.0.1:{second.port}"  # the secondary
    keys, uploads = stored(s3)
    assert uploads == []
    assert sorted(keys) == sorted([*(f.key for f in manifest.files), result["manifest_key"]])
    orders = [c for c in manifest.collections if c.ns == "shop.orders"]
    assert sorted(c.replica_set for c in orders) == ["shard1", "shard2"]
    chunks = [c for c in manifest.collections if c.ns == "config.chunks"]
    assert chunks and chunks[0].replica_set == "config"

    target = start_cluster(launcher)
    trouter = target.router_client()
    args = Restore().check({"bucket": BUCKET, "manifest_key": result["manifest_key"]})
    trouter.admin.command("addShard", target.shard_host("shard1"), name="west")
    with pytest.raises(Exception, match="has 2 shards, the target cluster 1"):
        restore_snapshot(target.routers[0].uri, args, s3, lambda event: None)
    trouter.admin.command("addShard", target.shard_host("shard2"), name="east")

    restored = restore_snapshot(target.routers[0].uri, args, s3, lambda event: None)
    report = verification(manifest, restored)
    assert report["equal"], report
    assert {r["shard"] for r in report["collections"]} == {"shard1", "shard2"}
    assert sum(s["oplog"]["applied"] for s in restored["shards"]) > 0
    # the zones follow their shards to the new names (in name order: shard1 east, shard2 west)
    assert [s.get("zones") for s in manifest.sets] == [["eu"], ["us"], []]
    zones = {s["_id"]: s.get("tags") for s in trouter.admin.command("listShards")["shards"]}
    assert zones == restored["zones"] == {"east": ["eu"], "west": ["us"]}
    ranges = [
        sorted(c.config.client().config.tags.find({}, {"_id": 0}), key=lambda r: r["tag"])
        for c in (source, target)
    ]
    assert ranges[0] == ranges[1] and len(ranges[0]) == 2
    assert list(trouter.shop.orders.find(sort=[("_id", 1)])) == want_orders
    assert list(trouter.shop.notes.find(sort=[("_id", 1)])) == want_notes
    for doc in want_orders:  # a query on the shard key goes to the one shard owning the key
        assert trouter.shop.orders.find_one({"k": doc["k"]}) == doc
    shards = {s["_id"] for s in trouter.admin.command("listShards")["shards"]}
    assert {c["shard"] for c in trouter.config.chunks.find()} <= shards
    assert trouter.config.collections.find_one({"_id": "shop.orders"})["key"] == {"k": "hashed"}
    assert {i["name"] for i in trouter.shop.orders.list_indexes()} >= {"v_1", "k_hashed"}
    assert balancer(trouter) == "full"  # the target's balancer on again after the restore

    # A second restore into the same cluster is refused: it is not new any more; with drop (the
    # way out of a restore that failed midway) what it holds is dropped and restored again.
    with pytest.raises(Exception, match="already holds databases"):
        restore_snapshot(target.routers[0].uri, args, s3, lambda event: None)
    trouter.shop.extra.insert_one({"_id": 1})  # not the snapshot's: dropped too
    again = restore_snapshot(target.routers[0].uri, {**args, "drop": True}, s3, lambda e: None)
    assert verification(manifest, again)["equal"]
    assert list(trouter.shop.orders.find(sort=[("_id", 1)])) == want_orders
    assert "extra" not in trouter.shop.list_collection_names()
    assert again["zones"] == {"east": ["eu"], "west": ["us"]}
    assert target.config.client().config.tags.count_documents({}) == 2


def test_each_set_is_reached_as_the_router_is_and_shard_names_map() -> None:
    """The router URI's credentials, database and options go to every set's URI (its hosts and
    name from listShards); the agent's URI is pointed at a router the same way."""
    router = "mongodb://wap:p%40ss@r1:27017,r2:27017/admin?tls=true&directConnection=true"
    assert set_uri(router, "shard1/a:27018,b:27018") == (
        "mongodb://wap:p%40ss@a:27018,b:27018/admin?tls=true&replicaSet=shard1"
    )
    agent = "mongodb://wap:pw@db1:27018/?replicaSet=shard1&authSource=admin"
    assert with_hosts(agent, "r1:27017") == "mongodb://wap:pw@r1:27017/?authSource=admin"
    assert with_hosts("mongodb://db1:27018/?replicaSet=s", "r1:27017") == "mongodb://r1:27017/"
    chunk = {"_id": 1, "shard": "shard1", "history": [{"validAfter": 5, "shard": "shard2"}]}
    names = {"shard1": "east", "shard2": "west"}
    assert map_shards(chunk, names) == {
        "_id": 1, "shard": "east", "history": [{"validAfter": 5, "shard": "west"}]
    }  # fmt: skip
    moved = {"$v": 2, "diff": {"u": {"shard": "shard2", "lastmod": 3}}}
    assert map_shards(moved, names) == {"$v": 2, "diff": {"u": {"shard": "west", "lastmod": 3}}}
    assert map_shards({"_id": "shop", "primary": "shard2"}, names)["primary"] == "west"
