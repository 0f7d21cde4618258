"""The backup coverage API: a cluster's restorable windows and gaps, read from its policy's store
(moto's S3 on 127.0.0.1) where a snapshot and a followed oplog with a gap were written in the
agent's layout; a gap closed by a base snapshot the platform starts by itself, once; what each
set's follower last reported."""

from __future__ import annotations

import time
from typing import Any

import bson
import pytest
from bson.timestamp import Timestamp

from tests.aws.cloud import FAKE_SECRET
from tests.webui.test_backups import BUCKET, Backups, moto, platform  # noqa: F401 (fixtures)
from tests.webui.test_backups_sharded import agent_command, report, sharded, write_sharded_snapshot
from wap_agent.backup import manifest as mf
from wap_agent.backup.slices import OplogStore, OpTime
from wap_agent.commands import BadArguments
from wap_agent.commands.follow import FollowOplog
from webui.services import backups, coverage
from webui.services.coverage import (
    SILENT_AFTER,
    common_windows,
    explain,
    follower_state,
    parse_target,
    restorable_until,
)
from webui.services.errors import Invalid
from webui.store import now

T0 = 1_780_000_200
NOTHING = {"started": [], "closed": [], "waiting": []}  # what a tick did


def entries(*seconds: int) -> list[bytes]:
    return [bson.encode({"ts": Timestamp(s, 1), "t": 3, "op": "n", "ns": "", "o": {}})
            for s in seconds]  # fmt: skip


def at(seconds: int) -> OpTime:
    return OpTime(Timestamp(seconds, 1), 3)


def snapshot(platform: Backups, layout: mf.Layout, end: int, **named: Any) -> str:  # noqa: F811
    def produce(out: Any) -> dict[str, Any]:
        out.write(b"archive")
        return {"server_version": "8.0.4", "fcv": "8.0", "compression": "gzip",
                "collections": [], "oplog": {"start": {"t": end - 5, "i": 1},
                                             "end": {"t": end, "i": 1}}}  # fmt: skip

    made = mf.store_snapshot(platform.s3, BUCKET, layout, produce, cluster_name="orders",
                             replica_set="rs0", compression="gzip", started=float(end - 5),
                             **named)  # fmt: skip
    return made.snapshot_id


def followed_with_a_gap(platform: Backups, layout: mf.Layout) -> OplogStore:  # noqa: F811
    """rs0's oplog stored from T0 to T0+100, lost to T0+300, stored again to T0+450."""
    oplog = OplogStore(platform.s3, BUCKET, layout, "rs0")
    oplog.put_chunk(entries(T0, T0 + 10, T0 + 60), at(T0 - 1))
    oplog.put_chunk(entries(T0 + 100), at(T0 + 60))
    oplog.record_gap(at(T0 + 100), at(T0 + 300), reason="the follower fell behind")
    oplog.put_chunk(entries(T0 + 300, T0 + 400, T0 + 450), None)
    return oplog


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
    followed_with_a_gap(platform, layout)

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

    def target(at: str) -> Any:
        return platform.api("GET", f"{path}/target?at={at}")

    exact = target(f"Timestamp({T0 + 60}, 1)").get_json()
    assert exact["replica_sets"]["rs0"]["snapshot_id"] == base
    assert (exact["last_entry"]["t"], exact["last_entry"]["i"]) == (T0 + 60, 1)
    assert "up to and including that oplog entry" in exact["explained"]
    second = target("2026-05-28 20:37:00").get_json()  # T0 + 420, within the later window
    assert second["replica_sets"]["rs0"]["snapshot_id"] == later
    assert (second["last_entry"]["t"], second["last_entry"]["i"]) == (T0 + 420, 0xFFFFFFFF)
    assert "every oplog entry written in that second or before" in second["explained"]
    in_gap = target(f"{T0 + 200}:1")
    assert in_gap.status_code == 422
    assert "no restorable window of rs0 holds the target" in in_gap.get_json()["message"]
    refused = target("yesterday")
    assert refused.status_code == 422 and "a UTC time" in refused.get_json()["message"]

    assert platform.api("GET", f"/clusters/{cluster}x/backup-coverage").status_code == 404


def test_restorable_until_is_the_earliest_set_and_none_while_a_set_has_no_window() -> None:
    def window(t: int) -> dict[str, Any]:
        return {"until": {"t": t, "i": 1, "utc": ""}}

    assert restorable_until({"shard0": {"windows": [window(5), window(9)]},
                             "cfg": {"windows": [window(7)]}}) == window(7)["until"]  # fmt: skip
    assert restorable_until({"shard0": {"windows": [window(5)]}, "cfg": {"windows": []}}) is None
    assert restorable_until({}) is None


def test_a_gap_starts_one_base_snapshot_which_is_shown_closing_it(
    platform: Backups,  # noqa: F811
) -> None:
    cluster = platform.cluster["_id"]
    assert platform.policy().status_code == 200
    platform.agent_alive()
    layout = mf.Layout("wap", platform.project["id"], cluster)
    base = snapshot(platform, layout, T0 + 10)
    oplog = followed_with_a_gap(platform, layout)
    oplog.save_checkpoint(at(T0 + 450))
    store, settings = platform.store, platform.settings

    started = coverage.tick(store, settings)["started"]
    assert len(started) == 1
    [closing] = platform.catalogue()["snapshots"]
    assert (closing["id"], closing["trigger"], closing["status"]) == (started[0], "gap", "running")
    [said] = platform.audit("backup.gap")
    assert (said["outcome"], said["target"]) == ("ok", "p1/orders")
    assert (said["detail"]["snapshot_id"], said["detail"]["replica_set"]) == (started[0], "rs0")
    assert (said["detail"]["after"]["t"], said["detail"]["resumed"]["t"]) == (T0 + 100, T0 + 300)
    later = now() + coverage.GAP_CHECK_EVERY + 1
    assert coverage.tick(store, settings, at=later) == NOTHING

    # the agent takes it: its end lies after the gap
    headers = {"Authorization": f"Bearer {platform.token}"}
    commands = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()
    [command] = [c for c in commands["commands"] if c["name"] == "backup"]
    snapshot(platform, layout, T0 + 400, snapshot=command["args"]["snapshot_id"])
    report = {"state": "succeeded", "result": {"snapshot_id": started[0]}, "reason": ""}
    answer = platform.client.post(f"/api/v1/agent/commands/{command['id']}/result",
                                  json=report, headers=headers)  # fmt: skip
    assert answer.status_code == 200, answer.get_json()
    assert backups.tick(store, settings)["settled"] == started
    assert coverage.tick(store, settings, at=later + 61) == NOTHING
    assert len(platform.audit("backup.gap")) == 1, "once per gap"
    # a later gap that a done snapshot already ends after is closed by it, with no new backup
    oplog.record_gap(at(T0 + 320), at(T0 + 350), reason="a short outage")
    assert coverage.tick(store, settings, at=later + 122) == {**NOTHING, "closed": started}
    assert platform.audit("backup.gap")[0]["detail"]["taken_before"] is True
    assert len(platform.catalogue()["snapshots"]) == 1

    covered = platform.api("GET", f"/clusters/{cluster}/backup-coverage").get_json()
    rs0 = covered["replica_sets"]["rs0"]
    assert [g["closed_by"] for g in rs0["gaps"]] == started * 2
    assert [(w["snapshot_id"], w["from"]["t"] - T0, w["closes_gap"] and w["closes_gap"]["t"] - T0)
            for w in rs0["windows"]] == [(base, 10, None), (started[0], 400, 100)]  # fmt: skip
    follower = rs0["follower"]
    assert follower["last_durable"]["t"] == T0 + 450 and follower["silent"] is False
    assert FAKE_SECRET not in str(platform.audit("backup."))


def test_a_gap_found_while_a_backup_runs_waits_for_it_said_once(
    platform: Backups,  # noqa: F811
) -> None:
    cluster = platform.cluster["_id"]
    assert platform.policy().status_code == 200
    platform.agent_alive()
    assert platform.api("POST", f"/clusters/{cluster}/backups").status_code == 202
    followed_with_a_gap(platform, mf.Layout("wap", platform.project["id"], cluster))
    store, settings = platform.store, platform.settings

    gap_id = f"{cluster}/rs0/{T0 + 100}.1.3"
    assert coverage.tick(store, settings) == {**NOTHING, "waiting": [gap_id]}
    [said] = platform.audit("backup.gap")
    assert said["outcome"] == "waiting" and "running" in said["detail"]["waiting"]
    later = now() + coverage.GAP_CHECK_EVERY + 1
    assert coverage.tick(store, settings, at=later) == {**NOTHING, "waiting": [gap_id]}
    assert len(platform.audit("backup.gap")) == 1, "said once while it waits"

    platform.agent_backs_up()  # the running backup ends
    backups.tick(store, settings)
    [started] = coverage.tick(store, settings, at=later + 61)["started"]
    assert platform.catalogue()["snapshots"][0]["id"] == started
    assert [e["outcome"] for e in platform.audit("backup.gap")] == ["ok", "waiting"]


def test_a_follower_silent_past_its_heartbeats_is_shown_so() -> None:
    saved = now() - 30
    stamp = OpTime(Timestamp(T0, 1)).to_dict()
    text = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(saved))
    reporting = follower_state({"last": stamp, "saved_at": text}, now())
    assert reporting is not None and reporting["silent"] is False
    assert reporting["last_durable"] == stamp and 29 <= reporting["silent_for"] <= 32
    silent = follower_state({"last": stamp, "saved_at": text}, saved + SILENT_AFTER + 1)
    assert silent is not None and silent["silent"] is True
    assert follower_state(None, now()) is None


def test_a_moment_is_a_utc_second_or_an_exact_oplog_timestamp_and_nothing_else() -> None:
    assert parse_target("Timestamp(1780000650, 1)") == Timestamp(1780000650, 1)
    assert parse_target(" 1780000650:7 ") == Timestamp(1780000650, 7)
    utc = parse_target("2026-05-28 20:37:30 UTC")
    assert parse_target("2026-05-28T20:37:30Z") == utc and utc.timestamp() == 1780000650
    last, why = explain(utc)
    assert (last["t"], last["i"]) == (1780000650, 0xFFFFFFFF) and "whole seconds" in why
    for wrong in ("yesterday", "", "0001-01-01 00:00:00", "2200-01-01 00:00", "9999999999:1"):
        with pytest.raises(Invalid, match="is not a moment to restore to: give a UTC time"):
            parse_target(wrong)


def test_continuous_backup_is_turned_on_through_an_agent_from_the_newest_snapshot(
    platform: Backups,  # noqa: F811
) -> None:
    cluster = platform.cluster["_id"]
    path = f"/clusters/{cluster}/continuous-backup"
    no_policy = platform.api("POST", path, json={"action": "start"})
    assert no_policy.status_code == 409 and "no backup policy" in no_policy.get_json()["message"]
    assert platform.policy().status_code == 200
    no_agent = platform.api("POST", path, json={"action": "start"})
    assert no_agent.status_code == 409 and "no agent" in no_agent.get_json()["message"]
    platform.agent_alive()
    no_base = platform.api("POST", path, json={"action": "start"})
    assert no_base.status_code == 409 and "Back up now" in no_base.get_json()["message"]
    assert platform.api("POST", path, json={"action": "pause"}).status_code == 422

    platform.api("POST", f"/clusters/{cluster}/backups")
    platform.agent_backs_up()
    backups.tick(platform.store, platform.settings)
    started = platform.api("POST", path, json={"action": "start"})
    assert started.status_code == 202, started.get_json()
    assert (started.get_json()["host"], started.get_json()["start"]) == ("db1", {"t": 2, "i": 1})
    stopped = platform.api("POST", path, json={"action": "stop"})
    assert stopped.status_code == 202, stopped.get_json()

    headers = {"Authorization": f"Bearer {platform.token}"}
    pulled = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()["commands"]
    start, stop = [c["args"] for c in pulled if c["name"] == "oplog_follow"]
    assert FollowOplog().check(start) == {
        "action": "start", "cluster_id": cluster, "replica_set": "", "bucket": BUCKET,
        "region": start["region"], "endpoint_url": platform.moto, "project_id": platform.project[
            "id"], "prefix": "wap", "member": "", "compression": "gzip", "start": {"t": 2, "i": 1},
        "chunk_seconds": 2.0, "slice_seconds": 600, "router": "",
    }  # fmt: skip
    assert FollowOplog().check(stop) == {"action": "stop", "cluster_id": cluster,
                                         "replica_set": ""}  # fmt: skip
    said = platform.audit("backup.continuous")
    assert [e["detail"]["action"] for e in said] == ["stop", "start"]
    assert FAKE_SECRET not in str(pulled) + str(said)


def test_the_cluster_windows_are_the_intersection_of_its_sets() -> None:
    def point(t: int) -> dict[str, Any]:
        return {"t": t, "i": 1, "utc": ""}

    def windows(*spans: tuple[int, int]) -> dict[str, Any]:
        return {"windows": [{"from": point(a), "until": point(b)} for a, b in spans]}

    sets = {"shard1": windows((10, 100), (300, 450)), "shard2": windows((10, 80), (300, 500)),
            "config": windows((10, 120), (320, 470))}  # fmt: skip
    assert [(w["from"]["t"], w["until"]["t"]) for w in common_windows(sets)] == [
        (10, 80), (320, 450)]  # fmt: skip
    assert common_windows({**sets, "shard3": windows()}) == []
    assert common_windows({}) == []


def test_a_sharded_cluster_is_followed_per_set_through_its_router_and_restored_to_a_moment(
    platform: Backups,  # noqa: F811
) -> None:
    platform.cluster = sharded(platform, "shop")
    cluster = platform.cluster["_id"]
    path = f"/clusters/{cluster}/continuous-backup"
    assert platform.policy().status_code == 200
    platform.agent_alive()
    no_base = platform.api("POST", path, json={"action": "start"})
    assert no_base.status_code == 409 and "Back up now" in no_base.get_json()["message"]
    assert platform.api("POST", f"/clusters/{cluster}/backups").status_code == 202
    command = agent_command(platform, "backup")
    write_sharded_snapshot(platform, command["args"])
    report(platform, command, {"snapshot_id": command["args"]["snapshot_id"]})
    backups.tick(platform.store, platform.settings)

    started = platform.api("POST", path, json={"action": "start"})
    assert started.status_code == 202, started.get_json()
    answer = started.get_json()
    assert [(s["replica_set"], s["host"]) for s in answer["sets"]] == [
        ("shard1", "db1"), ("shard2", "db1"), ("config", "db1")]  # fmt: skip
    assert answer["start"] == {"t": 9, "i": 2}  # the snapshot's common point
    headers = {"Authorization": f"Bearer {platform.token}"}
    pulled = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()["commands"]
    asked = [FollowOplog().check(c["args"]) for c in pulled if c["name"] == "oplog_follow"]
    assert [(a["replica_set"], a["router"], a["start"]) for a in asked] == [
        (name, "10.0.0.1:27017", {"t": 9, "i": 2}) for name in ("shard1", "shard2", "config")
    ]
    stopped = platform.api("POST", path, json={"action": "stop"})
    assert stopped.status_code == 202 and stopped.get_json()["sets"][0]["replica_set"] == ""
    [said_stop, said_start] = platform.audit("backup.continuous")
    assert [s["replica_set"] for s in said_start["detail"]["sets"]] == [
        "shard1", "shard2", "config"]  # fmt: skip
    assert said_stop["detail"]["action"] == "stop"
    with pytest.raises(BadArguments, match="through a router, the set to follow"):
        FollowOplog().check({**asked[0], "replica_set": ""})

    # to a moment: every set's base is the one snapshot, restored through the target's router
    # with the same last entry (here the snapshot's own point: nothing was followed)
    copy = sharded(platform, "shop-copy")
    path = f"/clusters/{cluster}/point-in-time-restores"
    request = {"target": "cluster", "cluster_id": copy["_id"]}
    late = platform.api("POST", path, json={**request, "at": "Timestamp(9, 3)"})
    assert late.status_code == 422 and "no restorable window of" in late.get_json()["message"]
    started = platform.api("POST", path, json={**request, "at": "Timestamp(9, 2)"})
    assert started.status_code == 202, started.get_json()
    assert sorted(started.get_json()["point_in_time"]["replica_sets"]) == [
        "config", "shard1", "shard2"]  # fmt: skip
    restore = agent_command(platform, "restore")["args"]
    assert (restore["until"], restore["router"]) == ({"t": 9, "i": 2}, "10.0.0.1:27017")
