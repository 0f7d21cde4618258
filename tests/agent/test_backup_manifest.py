"""Snapshot manifests (wap_agent.backup.manifest) and the store's layout, against moto's S3 server:
the archive streamed, the manifest written last and read back whole; a failed dump leaves nothing,
a manifest that cannot be written takes its archive with it; a wrong manifest is refused naming the
field."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Timestamp

from tests.agent.test_backup_s3 import BUCKET, _client, data, listed
from tests.aws.cloud import REGION, moto_server
from wap_agent import __version__
from wap_agent.backup import manifest as mf
from wap_agent.backup.s3 import S3Download, S3TransferError

LAYOUT = mf.Layout("backups", "proj1", "clus1")


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_server() as url:
        client = _client(url)
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield client


def summary(payload: bytes) -> dict[str, Any]:
    """What the engine's dump returns (wap_agent.backup.dump), for a small set."""
    return {
        "format": "archive",
        "compression": "gzip",
        "server_version": "7.0.14",
        "fcv": "7.0",
        "started_at": "2026-11-30T00:53:20.250000+00:00",
        "ended_at": "2026-11-30T00:54:02.500000+00:00",
        "oplog": {"start": {"t": 1_796_000_000, "i": 3}, "end": Timestamp(1_796_000_041, 1)},
        "collections": [
            {"ns": "shop.orders", "db": "shop", "collection": "orders", "type": "collection",
             "count": 1200, "bytes": len(payload), "hash": "00ff00ff00ff00ff",
             "crc64": "fffffffffffffffb",
             "indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"},
                         {"v": 2, "key": {"sku": 1, "at": -1}, "name": "sku_1_at_-1",
                          "unique": True}],
             "options": {}},
        ],
        "views": [{"ns": "shop.recent", "options": {"viewOn": "orders",
                                                    "pipeline": [{"$limit": 5}]}}],
    }  # fmt: skip


def test_a_snapshot_is_its_archive_and_its_manifest_written_last(s3: Any) -> None:
    payload = data(9 * 1024 * 1024 + 7)  # more than one part
    order: list[str] = []
    s3.meta.events.register("before-call.s3.*", lambda model, **_: order.append(model.name))

    def produce(out: Any) -> dict[str, Any]:
        out.write(payload)
        return summary(payload)

    made = mf.store_snapshot(s3, BUCKET, LAYOUT, produce, cluster_name="orders",
                             replica_set="rs0", snapshot="20261207T062300Z-abcdef")  # fmt: skip
    # the archive's upload completes, and then the manifest is written
    assert order[-2:] == ["CompleteMultipartUpload", "PutObject"]
    prefix = "backups/proj1/clus1/snapshots/20261207T062300Z-abcdef"
    keys = sorted([f"{prefix}/manifest.json", f"{prefix}/rs0.archive.gz"])
    assert listed(s3, prefix) == (keys, [])

    stored = mf.read(s3, BUCKET, LAYOUT.manifest(made.snapshot_id))
    assert stored == made
    with S3Download(s3, BUCKET, f"{prefix}/rs0.archive.gz") as archive:
        assert hashlib.sha256(archive.read()).hexdigest() == stored.files[0].sha256
    assert stored.files[0].size == len(payload)
    assert (stored.mongodb_version, stored.fcv, stored.topology) == ("7.0.14", "7.0", "replicaset")
    assert stored.oplog_start == {"t": 1_796_000_000, "i": 3}
    assert stored.oplog_end == {"t": 1_796_000_041, "i": 1}
    assert [c.ns for c in stored.collections] == ["shop.orders", "shop.recent"]
    orders = stored.collections[0]
    assert (orders.count, orders.size) == (1200, len(payload))
    assert (orders.hash, orders.crc64) == ("blake2b64-sum:00ff00ff00ff00ff", "fffffffffffffffb")
    assert orders.indexes[1]["unique"] is True
    assert list(orders.indexes[1]["key"]) == ["sku", "at"]  # a compound key keeps its order
    assert stored.collections[1].type == "view"
    assert (stored.engine, stored.engine_version) == ("wap-agent", __version__)
    assert (stored.documents, stored.finished_at - stored.started_at) == (1200, 42.25)
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read())
    assert body["started_at"] == "2026-11-30T00:53:20.250000Z"
    assert body["totals"] == {"documents": 1200, "data_size": len(payload),
                              "stored_size": len(payload)}  # fmt: skip


def test_a_dump_that_fails_leaves_nothing(s3: Any) -> None:
    def produce(out: Any) -> dict[str, Any]:
        out.write(data(11 * 1024 * 1024))
        raise RuntimeError("the source went away")

    with pytest.raises(RuntimeError, match="went away"):
        mf.store_snapshot(s3, BUCKET, LAYOUT, produce, cluster_name="orders",
                          snapshot="20261207T070000Z-000001")  # fmt: skip
    assert listed(s3, LAYOUT.snapshot("20261207T070000Z-000001")) == ([], [])


def test_no_manifest_no_snapshot(s3: Any) -> None:
    def produce(out: Any) -> dict[str, Any]:
        out.write(b"archive bytes")
        return summary(b"archive bytes")

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("/manifest.json"):
            raise ConnectionError("the store went away")

    s3.meta.events.register("before-parameter-build.s3.PutObject", refuse)
    try:
        with pytest.raises(S3TransferError, match=r"manifest\.json.*the store went away"):
            mf.store_snapshot(s3, BUCKET, LAYOUT, produce, cluster_name="orders",
                              snapshot="20261207T080000Z-000002")  # fmt: skip
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", refuse)
    assert listed(s3, LAYOUT.snapshot("20261207T080000Z-000002")) == ([], [])


def good() -> dict[str, Any]:
    made = mf.Manifest(
        snapshot_id="s", project_id="p", cluster_id="c", cluster_name="n", topology="replicaset",
        mongodb_version="7.0.14", fcv="7.0", started_at=1.0, finished_at=2.0,
        oplog_start={"t": 1, "i": 1}, oplog_end=None,
        collections=[mf.Collection("a", "b", 1, 2, "crc64:00")], files=[],
    )  # fmt: skip
    return made.to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"topology": "ring"}, "'topology': one of replicaset, sharded"),
        ({"cluster": None}, "'cluster': expected {id, name}"),
        ({"started_at": "yesterday"}, "'yesterday' is not a UTC time"),
        ({"collections": [{"db": "a", "name": "b", "count": -1, "size": 0, "hash": ""}]},
         "'collections[0].count': a count of 0 or more"),
        ({"collections": [{"db": "a"}]}, "'collections[0]'"),
        ({"oplog": {"start": {"t": "x"}, "end": None}}, "oplog.start: a BSON timestamp"),
        ({"format_version": 9}, "manifest format 9"),
        ({"kind": "pbm"}, "not a WAP snapshot manifest"),
    ],
)  # fmt: skip
def test_a_wrong_manifest_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    assert mf.parse(json.dumps(good())).fcv == "7.0"
    assert mf.parse(json.dumps(good(), sort_keys=True)).fcv == "7.0"  # as written before 12/2026
    with pytest.raises(mf.ManifestError, match=__import__("re").escape(message)):
        mf.parse(json.dumps(good() | change))
    with pytest.raises(mf.ManifestError, match="not JSON"):
        mf.parse(b"{")


def test_layout_keeps_snapshots_in_time_order_beside_oplog_slices() -> None:
    ids = [mf.snapshot_id(t) for t in (1_796_000_000, 1_796_086_400, 1_796_000_001)]
    assert sorted(ids) == [ids[0], ids[2], ids[1]]
    assert ids[0].startswith("20261130T005320Z-")
    assert LAYOUT.oplog_slice("rs0", (1_796_000_000, 3), (1_796_000_600, 1), "zstd") == (
        "backups/proj1/clus1/oplog/rs0/20261130/20261130005320-3.20261130010320-1.oplog.zst"
    )
    assert LAYOUT.archive("x", "rs0", None) == "backups/proj1/clus1/snapshots/x/rs0.archive"
    assert mf.Layout("", "p", "c").manifest("x") == "p/c/snapshots/x/manifest.json"


def test_the_engines_dump_of_a_mongod_to_s3_is_described_by_its_manifest(
    s3: Any, launcher: Any
) -> None:
    from wap_agent.backup.dump import DumpOptions, dump
    from wap_agent.backup.hashing import collection_hash

    node = launcher.start()
    source = node.client()
    source.shop.orders.insert_many([{"sku": f"s{i}", "n": i} for i in range(2500)])
    source.shop.orders.create_index([("sku", 1)], unique=True)
    source.crm.people.insert_many([{"name": "x" * (i % 50)} for i in range(300)])
    uri = f"mongodb://127.0.0.1:{node.port}/?directConnection=true"
    layout = mf.Layout("wap", "p1", "c1")

    made = mf.store_snapshot(
        s3, BUCKET, layout, lambda out: dump(uri, out, options=DumpOptions(compression="gzip")),
        cluster_name="orders", replica_set="rs0",
    )  # fmt: skip
    stored = mf.read(s3, BUCKET, layout.manifest(made.snapshot_id))
    assert stored == made
    by_ns = {c.ns: c for c in stored.collections}
    for ns, collection in (("shop.orders", source.shop.orders), ("crm.people", source.crm.people)):
        live = collection_hash(collection)
        assert (by_ns[ns].count, by_ns[ns].hash) == (live["count"], f"{mf.HASH}:{live['hash']}")
    assert {i["name"] for i in by_ns["shop.orders"].indexes} == {"_id_", "sku_1"}
    assert stored.mongodb_version and stored.finished_at >= stored.started_at
    key = layout.archive(made.snapshot_id, "rs0", "gzip")
    with S3Download(s3, BUCKET, key) as archive:
        body = archive.read()
    assert body[:2] == b"\x1f\x8b"  # gzip, as mongodump --gzip --archive writes
    assert hashlib.sha256(body).hexdigest() == stored.files[0].sha256
