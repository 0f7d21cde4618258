"""A sharded cluster restored to one cluster time (wap_agent.backup.pitr with sharded.py's
restore), on local doubles and moto's S3 on 127.0.0.1: two shards, the config servers and a
mongos; a sharded snapshot, then the agent's oplog_follow started for each set through the
router (as the platform's "turn on" asks it), writes through the mongos in three seconds, each
with the shadow it leaves. Restored to the second in the middle into a new cluster whose shards
have other names, through the agent's restore command: every shard at that cluster time, so the
documents through the new mongos equal the shadow at the end of that second (nothing written
after it), each found by its shard key; the report says what each set replayed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.agent.test_oplog_store import BUCKET, moto_bucket
from tests.aws.cloud import FAKE_KEY, FAKE_SECRET
from tests.mongod_double.shardedset import SHARDS, start_cluster
from tests.waiting import wait_until
from wap_agent.backup import pitr
from wap_agent.backup.manifest import Layout, back_up, read
from wap_agent.backup.slices import OplogStore
from wap_agent.commands import Context
from wap_agent.commands.backup import Restore, restore_snapshot
from wap_agent.commands.follow import FollowOplog
from wap_agent.config import AgentConfig

LAYOUT = Layout("pitr", "p1", "sharded")


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_bucket() as client:
        yield client


def newest(client: pymongo.MongoClient) -> Any:
    return client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]


class Writes:
    """Inserts, updates and deletes of shop.orders through the mongos; after each, the second
    its oplog entry has (the newest entry of both shards: the other one's is older) and the
    shadow it leaves."""

    def __init__(self, router: pymongo.MongoClient, shards: list[pymongo.MongoClient]) -> None:
        self.orders, self.shards = router.shop.orders, shards
        self.shadow = {d["_id"]: d for d in self.orders.find()}
        self.history: list[tuple[int, dict]] = []

    def apply(self, first: int, count: int) -> None:
        for n in range(first, first + count):
            key = n % 50
            if n % 5 == 2:
                self.orders.delete_one({"k": key})
                self.shadow.pop(key, None)
            else:
                doc = {"_id": key, "k": key, "v": n}
                self.orders.replace_one({"k": key}, doc, upsert=True)
                self.shadow[key] = doc
            second = max(newest(s) for s in self.shards).time
            self.history.append((second, {k: dict(d) for k, d in self.shadow.items()}))

    def next_second(self) -> None:
        last = self.history[-1][0]
        wait_until(lambda: time.time() >= last + 1, timeout=5, what="the next second")


def test_every_shard_restored_to_one_cluster_time(launcher, s3, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY)  # the agent host's own credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    source = start_cluster(launcher)
    router = source.router_client()
    for name in SHARDS:
        router.admin.command("addShard", source.shard_host(name))
    router.admin.command("shardCollection", "shop.orders", key={"k": "hashed"})
    router.admin.command("balancerStop")  # no chunk moves while the oplog is followed
    router.shop.orders.insert_many([{"_id": i, "k": i, "v": 0} for i in range(50)])
    shards = [source.shard_client(name) for name in SHARDS]
    assert all(s.shop.orders.count_documents({}) for s in shards)  # documents on both
    args = {"snapshot_id": "20261207T190000Z-0a0b0d", "bucket": BUCKET,
            "prefix": LAYOUT.prefix, "project_id": LAYOUT.project_id,
            "cluster_id": LAYOUT.cluster_id, "cluster_name": "shop",
            "compression": "zstd"}  # fmt: skip
    made = back_up(source.routers[0].uri, args, s3=s3)
    manifest = read(s3, BUCKET, made["manifest_key"])
    point = manifest.oplog_end

    # each set followed through the router from the snapshot's point, as the platform asks
    follow = FollowOplog()
    config = AgentConfig(url="http://platform", token_file=tmp_path / "token",
                         queue_dir=tmp_path / "queue",
                         mongodb_uris=(source.routers[0].uri,))  # fmt: skip
    router_at = f"127.0.0.1:{source.routers[0].port}"
    try:
        for each in manifest.sets:
            asked = follow.check({"action": "start", "cluster_id": LAYOUT.cluster_id,
                                  "project_id": LAYOUT.project_id, "prefix": LAYOUT.prefix,
                                  "bucket": BUCKET, "endpoint_url": s3.meta.endpoint_url,
                                  "region": s3.meta.region_name, "replica_set": each["name"],
                                  "router": router_at, "start": point,
                                  "chunk_seconds": 0.3})  # fmt: skip
            assert follow.run(asked, Context(config))["started"]
        writes = Writes(router, shards)
        writes.apply(100, 40)
        writes.next_second()
        writes.apply(140, 40)
        middle = writes.history[-1][0]  # the moment: the end of this second
        writes.next_second()
        writes.apply(180, 40)  # after the moment: none of these in the restore
        sets = {"config": source.config.client(), **dict(zip(SHARDS, shards, strict=True))}
        for client in sets.values():  # what a member's periodic no-op writer does when idle
            client.admin.command("appendOplogNote", data={"msg": "later"})
        for name, client in sets.items():
            store, last = OplogStore(s3, BUCKET, LAYOUT, name), newest(client)
            wait_until(lambda s=store, t=last: (c := s.checkpoint()) is not None and c.ts >= t,
                       timeout=60, what=f"{name}'s oplog durable in the store",
                       seen=store.checkpoint)  # fmt: skip
    finally:
        follow.shutdown()
    status = follow.run(follow.check({"action": "status", "cluster_id": LAYOUT.cluster_id}),
                        Context(config))  # fmt: skip
    assert all(f["error"] == "" for f in status["followers"]), status

    target = start_cluster(launcher)
    trouter = target.router_client()
    trouter.admin.command("addShard", target.shard_host("shard1"), name="west")
    trouter.admin.command("addShard", target.shard_host("shard2"), name="east")
    until = {"t": middle, "i": 0xFFFFFFFF}
    asked = Restore().check({"bucket": BUCKET, "manifest_key": made["manifest_key"],
                             "until": until})  # fmt: skip
    result = restore_snapshot(target.routers[0].uri, asked, s3, lambda event: None)

    expected = [s for second, s in writes.history if second <= middle][-1]
    assert expected != writes.history[-1][1]  # the writes after the moment change something
    assert {d["_id"]: d for d in trouter.shop.orders.find()} == expected
    for key, doc in expected.items():  # each on the shard the restored catalogue routes to
        assert trouter.shop.orders.find_one({"k": key}) == doc
    held = {n: target.shard_client(n).shop.orders.count_documents({}) for n in SHARDS}
    assert all(held.values()) and sum(held.values()) == len(expected)

    moment = result["point_in_time"]
    assert moment["until"]["t"] == middle and set(moment["sets"]) == {*SHARDS, "config"}
    for name in SHARDS:  # every shard replayed its followed oplog up to the same second
        replayed = moment["sets"][name]
        assert replayed["followed_entries"] > 0 and replayed["last"]["t"] <= middle
    report = pitr.verification(manifest, result)
    assert report["equal"], report["collections"]
    assert report["note"].startswith(f"restored to {moment['until']['utc']}")
