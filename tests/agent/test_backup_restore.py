"""Dump and restore against the mongod double: a 2-member replica set on 127.0.0.1 (dumped from
its secondary) and fresh standalone targets.

What a user checks: the restored deployment equals the source (dbHash, per-collection content
hashes, indexes, collection options, users), writes made while the dump ran are in it (the oplog
replayed), renames land where asked, a non-empty target is refused unless --drop, mongodump's own
archives and directories restore, and damaged input fails naming what is damaged.
"""

from __future__ import annotations

import datetime
import io
import json
import subprocess
import sys
from pathlib import Path

import bson
import pymongo
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

from tests.mongod_double.conftest import Launcher
from tests.waiting import wait_until
from wap_agent.backup.archive import ArchiveWriter, Header, Namespace
from wap_agent.backup.dump import DumpOptions, dump
from wap_agent.backup.hashing import collection_hash
from wap_agent.backup.metadata import CollectionMetadata
from wap_agent.backup.restore import RestoreError, RestoreOptions, restore

COMPAT = Path(__file__).parent / "compat" / "mongorestore"
DATABASES = ("app", "shop")


def every_type(i: int) -> dict:
    return {
        "_id": i,
        "oid": ObjectId(),
        "s": f"text {i} é",
        "i32": i,
        "i64": Int64(i * 10**12),
        "d": i / 3,
        "dec": Decimal128(f"{i}.25"),
        "when": datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=i),
        "bin": Binary(bytes([i % 256]) * 8),
        "uuid": Binary(bytes(16), 4),
        "re": Regex("^a.*", "i"),
        "ts": Timestamp(1700000000, i + 1),
        "min": MinKey(),
        "max": MaxKey(),
        "code": Code("function () { return 1; }"),
        "none": None,
        "flag": i % 2 == 0,
        "nested": {"list": [i, {"deep": [1, "two", 3.0]}], "email": f"u{i}@example.org"},
        "expires": datetime.datetime(2100, 1, 1),
    }


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    launch = Launcher(tmp_path_factory.mktemp("backup"))
    try:
        yield launch
    finally:
        launch.cleanup()


@pytest.fixture(scope="module")
def source(launcher):
    """The set, its data, and the secondary the dumps read."""
    nodes = [launcher.start("--replSet", "rs0") for _ in range(2)]
    primary = nodes[0].client()
    members = [{"_id": i, "host": f"127.0.0.1:{n.port}"} for i, n in enumerate(nodes)]
    members[1]["priority"] = 0  # the first stays primary
    primary.admin.command("replSetInitiate", {"_id": "rs0", "members": members})
    wait_until(lambda: primary.admin.command("hello")["isWritablePrimary"], timeout=30,
               what="a primary", retry=pymongo.errors.PyMongoError)  # fmt: skip
    app, shop = primary.app, primary.shop
    app.people.insert_many([every_type(i) for i in range(600)])
    app.people.create_index("nested.email", unique=True)
    app.people.create_index([("s", 1), ("i32", -1)], name="compound")
    app.people.create_index("expires", expireAfterSeconds=3600)
    app.people.create_index([("oid", "hashed")])
    app.people.create_index("flag", sparse=True)
    app.create_collection("log", capped=True, size=1 << 20, max=5000)
    app.log.insert_many([{"line": n} for n in range(300)])
    shop.orders.insert_many([{"_id": n, "total": Decimal128(f"{n}.99"), "items": list(range(n % 7))}
                             for n in range(800)])  # fmt: skip
    shop.orders.create_index("total", partialFilterExpression={"total": {"$gt": Decimal128("5")}})
    primary.admin.command("createUser", "reader", pwd="s3cret-pass", roles=["readAnyDatabase"])
    uri = "mongodb://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes) + "/?replicaSet=rs0"
    secondary = nodes[1].client()
    wait_until(lambda: secondary.shop.orders.count_documents({}) == 800, timeout=30,
               what="the secondary to catch up", retry=pymongo.errors.PyMongoError)  # fmt: skip
    return {"uri": uri, "primary": primary, "secondary": secondary, "nodes": nodes}


def one_member_set(launcher):
    """A new replica set to restore into (writes and applyOps go through its oplog)."""
    node = launcher.start("--replSet", "target")
    client = node.client()
    client.admin.command("replSetInitiate")
    wait_until(lambda: client.admin.command("hello")["isWritablePrimary"], timeout=30,
               what="the target's primary", retry=pymongo.errors.PyMongoError)  # fmt: skip
    return node


def caught_up(source) -> None:
    primary, secondary = source["primary"], source["secondary"]
    last = primary.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    wait_until(
        lambda: secondary.local["oplog.rs"].find_one({"ts": last}) is not None,
        timeout=30, what="the secondary to apply the primary's last entry",
    )  # fmt: skip


def state(client, databases=DATABASES) -> dict:
    """What a user compares: dbHash per database, and per collection its content hash, indexes
    and options."""
    out = {}
    for name in databases:
        db = client[name]
        hashes = db.command("dbHash")["collections"]
        for entry in db.list_collections():
            coll = entry["name"]
            indexes = {
                spec["name"]: {k: v for k, v in spec.items() if k not in ("v", "ns")}
                for spec in db[coll].list_indexes()
            }
            out[f"{name}.{coll}"] = {
                **collection_hash(db[coll]),
                "dbHash": hashes.get(coll),
                "indexes": indexes,
                "options": entry.get("options", {}),
            }
    return out


def test_dump_with_writes_during_it_restores_to_the_source_state(source, launcher):
    primary = source["primary"]
    wrote = []

    def write_midway(event: dict) -> None:
        if event.get("event") != "documents" or event["ns"] != "app.people" or wrote:
            return
        wrote.append(True)
        primary.app.people.insert_one(every_type(5000))
        primary.app.people.update_one({"_id": 3}, {"$set": {"s": "changed"}, "$inc": {"i32": 1}})
        primary.app.people.update_one({"_id": 590}, {"$set": {"nested.list": [9]}})
        primary.app.people.delete_one({"_id": 7})
        primary.shop.orders.delete_many({"_id": {"$gte": 790}})
        primary.shop.during.insert_many([{"k": n} for n in range(40)])
        caught_up(source)

    out = io.BytesIO()
    summary = dump(source["uri"], out, options=DumpOptions(
        oplog=True, compression="gzip", users_and_roles=True, batch_bytes=16 << 10,
        parallel=3, progress=write_midway,
    ))  # fmt: skip
    assert wrote, "the writes ran while app.people was being copied"
    assert summary["member"] == f"127.0.0.1:{source['nodes'][1].port}"  # the secondary
    assert summary["oplog"]["entries"] >= 40 + 10 + 4
    by_ns = {c["ns"]: c for c in summary["collections"]}
    assert by_ns["app.log"]["options"] == {"capped": True, "size": 1 << 20, "max": 5000}
    assert {"admin.system.users", "app.people", "shop.orders"} <= set(by_ns)

    target = one_member_set(launcher)
    out.seek(0)
    result = restore(target.uri, out, options=RestoreOptions(
        oplog_replay=True, users_and_roles=True, batch_docs=200,
    ))  # fmt: skip
    restored = target.client()
    expected = state(source["secondary"])
    assert state(restored) == expected
    assert restored.app.people.find_one({"_id": 3})["s"] == "changed"
    assert restored.app.people.find_one({"_id": 7}) is None
    assert restored.shop.during.count_documents({}) == 40
    users = restored.admin.command("usersInfo", {"user": "reader", "db": "admin"})["users"]
    assert [u["roles"] for u in users] == [[{"role": "readAnyDatabase", "db": "admin"}]]
    # what was inserted is what was dumped, collection by collection
    restored_by_ns = {c["ns"]: c for c in result["collections"]}
    for ns in ("app.people", "shop.orders", "app.log"):
        assert restored_by_ns[ns]["hash"] == by_ns[ns]["hash"]
        assert restored_by_ns[ns]["count"] == by_ns[ns]["count"]
    assert result["oplog"]["applied"] >= 54

    out.seek(0)
    with pytest.raises(RestoreError, match=r"not empty: .*app\.people \(\d+ documents\).*--drop"):
        restore(target.uri, out)
    out.seek(0)
    restore(target.uri, out, options=RestoreOptions(oplog_replay=True, drop=True))
    assert state(restored) == expected


def test_directory_dump_with_zstd_restores_under_new_names(source, launcher, tmp_path):
    primary = source["nodes"][0]  # a URI with directConnection=true names its member
    summary = dump(primary.uri, tmp_path / "dump", options=DumpOptions(
        directory=True, compression="zstd", include=["app.*"],
    ))  # fmt: skip
    assert {c["ns"] for c in summary["collections"]} == {"app.people", "app.log"}
    assert summary["member"] == f"127.0.0.1:{primary.port}"
    assert (tmp_path / "dump" / "app" / "people.bson.zst").is_file()
    assert (tmp_path / "dump" / "app" / "people.metadata.json.zst").is_file()
    target = launcher.start()
    restore(target.uri, tmp_path / "dump", options=RestoreOptions(
        directory=True, exclude=["app.log"], rename_from=["app.$c$"], rename_to=["copy.$c$"],
    ))  # fmt: skip
    restored = target.client()
    assert "app" not in restored.list_database_names()
    assert restored.copy.list_collection_names() == ["people"]
    assert (
        state(restored, ["copy"])["copy.people"]
        == state(source["secondary"], ["app"])["app.people"]
    )


def test_mongodump_archives_and_directories_restore(launcher):
    target = launcher.start()
    client = target.client()
    restore(target.uri, COMPAT / "oplogdump", options=RestoreOptions(
        directory=True, oplog_replay=True,
    ))  # fmt: skip
    assert sorted(d["x"] for d in client.db1.c1.find()) == list(range(1451, 1461))
    restore(target.uri, COMPAT / "collMod_ttl_index", options=RestoreOptions(
        directory=True, oplog_replay=True,
    ))  # fmt: skip
    ttl = client.mongodump_test_db.coll1.index_information()["a_1"]
    assert ttl["expireAfterSeconds"] == 1000
    restore(target.uri, COMPAT / "coll_with_index", options=RestoreOptions(directory=True))
    assert "f_1" in client.test.foo.index_information()
    restore(target.uri, COMPAT / "specialcharacter", options=RestoreOptions(directory=True))
    assert client.db1["cafés"].count_documents({}) == 1
    with (COMPAT / "test.bar.archive").open("rb") as archive:
        restore(target.uri, archive)
    assert client.test.bar.count_documents({}) == 1
    assert "system.version" not in client.admin.list_collection_names() or (
        client.admin["system.version"].count_documents({"_id": "authSchema"}) == 0
    )
    # a directory dump with --oplogLimit: only the entries before the limit
    other = launcher.start()
    restore(other.uri, COMPAT / "oplogdump", options=RestoreOptions(
        directory=True, oplog_replay=True, oplog_limit=Timestamp(1511064038, 29),
    ))  # fmt: skip
    assert other.client().db1.c1.count_documents({}) == 6


def test_damaged_and_unsupported_input_fails_naming_it(source, launcher):
    target = launcher.start()
    with (
        (COMPAT / "bad-format.archive").open("rb") as archive,
        pytest.raises(RestoreError, match=r"invalid metadata for test\.ixtest"),
    ):
        restore(target.uri, archive)
    with (
        (COMPAT / "timeseries_dump.archive").open("rb") as archive,
        pytest.raises(
            RestoreError, match=r"timeseries_test\.foo_ts: create failed: .*NotImplemented"
        ),
    ):
        restore(target.uri, archive)  # the double has no time series: it says so
    out = io.BytesIO()
    dump(source["uri"], out, options=DumpOptions(include=["shop.orders"]))
    cut = io.BytesIO(out.getvalue()[: len(out.getvalue()) * 2 // 3])
    fresh = launcher.start()
    with pytest.raises(RestoreError, match=r"damaged: truncated archive.*shop\.orders"):
        restore(fresh.uri, cut)


def test_command_line_pipes_a_backup_into_a_restore(source, launcher, tmp_path):
    target = launcher.start()
    agent = [sys.executable, "-m", "wap_agent"]
    summary = tmp_path / "summary.json"
    primary = f"127.0.0.1:{source['nodes'][0].port}"  # a named member rather than a secondary
    backup = subprocess.Popen(
        [*agent, "backup", "--uri", source["uri"], "--archive", "--gzip", "--oplog",
         "--nsInclude", "shop.*", "--member", primary, "--summary", str(tmp_path / "dumped.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    restored = subprocess.run(
        [*agent, "restore", "--uri", target.uri, "--archive=-", "--gzip", "--oplogReplay",
         "--summary", str(summary)],
        stdin=backup.stdout, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    backup.stdout.close()
    backup_err = backup.stderr.read().decode()
    assert backup.wait(60) == 0, backup_err
    assert restored.returncode == 0, restored.stderr
    assert "done dumping shop.orders" in backup_err
    assert json.loads((tmp_path / "dumped.json").read_text())["member"] == primary
    counts = {c["ns"]: c["count"] for c in json.loads(summary.read_text())["collections"]}
    live = source["secondary"].shop
    assert counts == {
        f"shop.{n}": live[n].count_documents({}) for n in live.list_collection_names()
    }
    again = subprocess.run(
        [*agent, "restore", "--uri", target.uri, "--archive", str(tmp_path / "missing.archive")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 1
    assert "wap-agent restore:" in again.stderr and "Traceback" not in again.stderr


def test_a_collection_created_as_the_dump_began_is_restored_once(launcher):
    """The window opens before the listing: a collection created in between is both dumped and
    created by the oplog; the replay must not fail on it, nor lose what the dump copied."""
    out = io.BytesIO()
    writer = ArchiveWriter(out)
    meta = CollectionMetadata("new", indexes=[{"v": 2, "key": {"_id": 1}, "name": "_id_"}])
    writer.write_prelude(
        Header(), [Namespace("app", "new", meta.to_json()), Namespace("", "oplog")]
    )
    writer.write_documents("app", "new", [bson.encode({"_id": 1, "v": "dumped"})])
    writer.finish("app", "new")
    oplog = [
        {"ts": Timestamp(100, 1), "op": "c", "ns": "app.$cmd", "o": {"create": "new"}},
        {"ts": Timestamp(100, 2), "op": "i", "ns": "app.new", "o": {"_id": 1, "v": "first"}},
        {"ts": Timestamp(100, 3), "op": "u", "ns": "app.new", "o2": {"_id": 1},
         "o": {"$v": 2, "diff": {"u": {"v": "dumped"}}}},
        {"ts": Timestamp(100, 4), "op": "i", "ns": "app.new", "o": {"_id": 2, "v": "after"}},
    ]  # fmt: skip
    writer.write_documents("", "oplog", [bson.encode(e) for e in oplog])
    writer.finish("", "oplog")
    target = launcher.start()
    out.seek(0)
    result = restore(target.uri, out, options=RestoreOptions(oplog_replay=True))
    assert result["oplog"]["applied"] == 3 and result["oplog"]["last"] == {"t": 100, "i": 4}
    docs = list(target.client().app.new.find(sort=[("_id", 1)]))
    assert docs == [{"_id": 1, "v": "dumped"}, {"_id": 2, "v": "after"}]
