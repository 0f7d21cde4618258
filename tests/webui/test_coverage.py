"""The backup coverage API: a cluster's restorable windows and gaps, read from its policy's store
(moto's S3 on 127.0.0.1) where a snapshot and a followed oplog with a gap were written in the
agent's layout."""

from __future__ import annotations

from typing import Any

import bson
from bson.timestamp import Timestamp

from tests.aws.cloud import FAKE_SECRET
from tests.webui.test_backups import BUCKET, Backups, moto, platform  # noqa: F401 (fixtures)
from wap_agent.backup import manifest as mf
from wap_agent.backup.slices import OplogStore, OpTime
from webui.services.coverage import restorable_until

T0 = 1_780_000_200


def entries(*seconds: int) -> list[bytes]:
    return [bson.encode({"ts": Timestamp(s, 1), "t": 3, "op": "n", "ns": "", "o": {}})
            for s in seconds]  # fmt: skip


def at(seconds: int) -> OpTime:
    return OpTime(Timestamp(seconds, 1), 3)


def snapshot(platform: Backups, layout: mf.Layout, end: int) -> str:  # noqa: F811
    def produce(out: Any) -> dict[str, Any]:
        out.write(b"archive")
        return {"server_version": "8.0.4", "fcv": "8.0", "compression": "gzip",
                "collections": [], "oplog": {"start": {"t": end - 5, "i": 1},
                                             "end": {"t": end, "i": 1}}}  # fmt: skip

    made = mf.store_snapshot(platform.s3, BUCKET, layout, produce, cluster_name="orders",
                             replica_set="rs0", compression="gzip",
                             started=float(end - 5))  # fmt: skip
    return made.snapshot_id


def test_the_coverage_shows_each_window_from_its_base_and_the_gap_with_its_bounds(
    platform: Backups,  # noqa: F811
) -> None:
    cluster = platform.cluster["_id"]
    path = f"/clusters/{cluster}/backup-coverage"
    refused = platform.api("GET", path)
    assert refused.status_code == 404 and "no backup policy" in refused.get_json()["message"]

    assert platform.policy().status_code == 200
    layout = mf.Layout("wap", platform.project["id"], cluster)
    base = snapshot(platform, layout, T0 + 10)
    later = snapshot(platform, layout, T0 + 400)
    oplog = OplogStore(platform.s3, BUCKET, layout, "rs0")
    oplog.put_chunk(entries(T0, T0 + 10, T0 + 60), at(T0 - 1))
    oplog.put_chunk(entries(T0 + 100), at(T0 + 60))
    oplog.record_gap(at(T0 + 100), at(T0 + 300), reason="the follower fell behind")
    oplog.put_chunk(entries(T0 + 300, T0 + 400, T0 + 450), None)

    answer = platform.api("GET", path)
    assert answer.status_code == 200, answer.get_json()
    assert FAKE_SECRET not in answer.get_data(as_text=True)
    covered = answer.get_json()
    rs0 = covered["replica_sets"]["rs0"]
    assert [(w["snapshot_id"], w["from"]["t"] - T0, w["until"]["t"] - T0, w["ends"])
            for w in rs0["windows"]] == [(base, 10, 100, "last durable entry"),
                                         (later, 400, 450, "last durable entry")]  # fmt: skip
    [gap] = rs0["gaps"]
    assert (gap["after"]["t"] - T0, gap["resumed"]["t"] - T0) == (100, 300)
    assert gap["reason"] == "the follower fell behind"
    assert covered["restorable_until"] == rs0["windows"][-1]["until"]
    assert covered["restorable_until"]["utc"].endswith("Z")
    assert rs0["last_durable"]["t"] == T0 + 450

    assert platform.api("GET", f"/clusters/{cluster}x/backup-coverage").status_code == 404


def test_restorable_until_is_the_earliest_set_and_none_while_a_set_has_no_window() -> None:
    def window(t: int) -> dict[str, Any]:
        return {"until": {"t": t, "i": 1, "utc": ""}}

    assert restorable_until({"shard0": {"windows": [window(5), window(9)]},
                             "cfg": {"windows": [window(7)]}}) == window(7)["until"]  # fmt: skip
    assert restorable_until({"shard0": {"windows": [window(5)]}, "cfg": {"windows": []}}) is None
    assert restorable_until({}) is None
