"""Backups on the platform, through the app with moto's S3 on 127.0.0.1: a cluster's policy
(refused with a message per field), "back up now" through the host's agent (the command pulled,
the snapshot written to S3 as the agent writes it, the result reported), the catalogue settled
from the manifest, a failure or a missing manifest shown as failed, schedules firing once, retention
deleting exactly what it no longer keeps (objects and entries), every step on the audit log, and
the Backups pages; no secret in any answer or page."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION, moto_server
from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
from tests.waiting import wait_until
from tests.webui.test_agent_ingest import Platform, batch, body
from tests.webui.test_web import csrf, login
from wap_agent.backup import manifest as mf
from wap_agent.backup import s3 as s3mod
from webui.config import Settings
from webui.services import backups, projects
from webui.services.audit import Actor

BUCKET = "wap-backups"
DAY = 86400.0


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        s3mod.client(url, REGION, FAKE_KEY, FAKE_SECRET).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield url


class Backups(Platform):
    """The ingest tests' platform (admin, project p1, host db1 with its agent token), plus an
    AWS credential on moto, a cluster on db1, and the agent's side of a backup."""

    def __init__(self, app: Flask, moto: str) -> None:
        super().__init__(app)
        self.moto = moto
        self.s3 = s3mod.client(moto, REGION, FAKE_KEY, FAKE_SECRET)
        self.settings = app.extensions["wap.settings"]
        fields = {"access_key_id": FAKE_KEY, "secret_access_key": FAKE_SECRET,
                  "endpoint_url": moto}  # fmt: skip
        answer = self.api("POST", f"/projects/{self.project['id']}/credentials",
                          json={"name": "s3", "kind": "aws", "fields": fields})  # fmt: skip
        assert answer.status_code == 201, answer.get_json()
        self.credential = answer.get_json()
        admin = Actor(None, "admin", "admin", "tests")
        self.cluster = projects.create_cluster(
            self.store, admin, self.project["id"], "orders", [self.host["id"]], "steps.yml"
        )

    def policy(self, **change: Any) -> Any:
        data = {"schedule": "0 2 * * *", "keep_last": 2, "max_age_days": None,
                "bucket": BUCKET, "prefix": "wap", "region": REGION,
                "credential_id": self.credential["id"], **change}  # fmt: skip
        return self.api("PUT", f"/clusters/{self.cluster['_id']}/backup-policy", json=data)

    def agent_alive(self) -> None:
        assert self.send(body(batch(1))).status_code == 200

    def agent_backs_up(self, payload: bytes = b"archive", state: str = "succeeded") -> dict:
        """What the agent does with the backup command: pull it, write the snapshot where its
        arguments say, report."""
        headers = {"Authorization": f"Bearer {self.token}"}
        commands = self.client.get("/api/v1/agent/commands", headers=headers).get_json()
        (command,) = [c for c in commands["commands"] if c["name"] == "backup"]
        args = command["args"]
        if state == "succeeded" and payload:
            layout = mf.Layout(args["prefix"], args["project_id"], args["cluster_id"])

            def produce(out: Any) -> dict[str, Any]:
                out.write(payload)
                return {"server_version": "7.0.14", "fcv": "7.0", "compression": "gzip",
                        "collections": [{"db": "shop", "collection": "orders", "count": 42,
                                         "bytes": 4200, "hash": "0a", "indexes": []}],
                        "oplog": {"start": {"t": 1, "i": 1}, "end": {"t": 2, "i": 1}}}  # fmt: skip

            mf.store_snapshot(self.s3, args["bucket"], layout, produce,
                              snapshot=args["snapshot_id"], cluster_name=args["cluster_name"],
                              compression="gzip")  # fmt: skip
        reason = "" if state == "succeeded" else "mongod refused: not authorized"
        report = {"state": state, "result": {"snapshot_id": args["snapshot_id"]}, "reason": reason}
        answer = self.client.post(f"/api/v1/agent/commands/{command['id']}/result",
                                  json=report, headers=headers)  # fmt: skip
        assert answer.status_code == 200, answer.get_json()
        return args

    def catalogue(self) -> dict[str, Any]:
        answer = self.api("GET", f"/clusters/{self.cluster['_id']}/backups")
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def audit(self, prefix: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/audit?action={prefix}").get_json()

    def stored_keys(self) -> list[str]:
        found = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"wap/{self.project['id']}/")
        return [o["Key"] for o in found.get("Contents", [])]


def with_backup_playbook(platform: Backups, tmp_path: Path) -> Settings:
    """The platform's settings with a playbooks dir holding a backup_cluster.yml that does
    nothing: where no agent runs, a backup becomes that job."""
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / backups.PLAYBOOK).write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")
    return dataclasses.replace(platform.settings, playbooks_dir=playbooks)


@pytest.fixture
def platform(app: Flask, moto: str) -> Backups:
    return Backups(app, moto)


def test_a_policy_is_refused_with_a_message_per_field(platform: Backups) -> None:
    answer = platform.policy(schedule="every day", keep_last=0, max_age_days="soon",
                             bucket="My_Bucket", prefix="a//b", region="Europe",
                             credential_id="nope", compression="rar")  # fmt: skip
    assert answer.status_code == 422
    errors = answer.get_json()["errors"]["json"]
    assert "'0 2 * * *' is every day at 02:00" in errors["schedule"][0]
    assert errors["keep_last"] == ["a whole number of snapshots, 1 to 1000"]
    assert errors["max_age_days"] == ["a whole number of days, 1 to 3650, or empty"]
    assert "S3 bucket name" in errors["bucket"][0]
    assert set(errors) == {"schedule", "keep_last", "max_age_days", "bucket", "prefix", "region",
                           "credential_id", "compression"}  # fmt: skip
    every_minute = platform.policy(schedule="* * * * *").get_json()["errors"]["json"]
    assert every_minute["schedule"] == [
        "at most one backup an hour: use a minute field of one value, such as '0'"
    ]
    ssh = platform.api("POST", f"/projects/{platform.project['id']}/credentials",
                       json={"name": "k", "kind": "mongodb",
                             "fields": {"username": "u", "password": "p"}}).get_json()  # fmt: skip
    assert platform.policy(credential_id=ssh["id"]).get_json()["errors"]["json"] == {
        "credential_id": ["an AWS credential of this project"]
    }
    missing = platform.policy(bucket="no-such-bucket-here").get_json()
    assert missing["message"] == "the snapshot store does not answer as given"
    assert (
        "bucket 'no-such-bucket-here' with credential 's3'"
        in missing["errors"]["json"]["bucket"][0]
    )
    assert platform.catalogue()["policy"] is None


def test_a_backup_through_the_agent_lands_in_the_catalogue(platform: Backups) -> None:
    saved = platform.policy()
    assert saved.status_code == 200, saved.get_json()
    assert saved.get_json()["store"]["credential_name"] == "s3"
    cluster = platform.cluster["_id"]
    no_agent = platform.api("POST", f"/clusters/{cluster}/backups")
    assert no_agent.status_code == 409
    assert "no agent on the cluster's hosts" in no_agent.get_json()["message"]
    refused = platform.audit("backup.start")[0]
    assert (refused["outcome"], refused["target"]) == ("refused", "p1/orders")
    assert "no agent" in refused["detail"]["reason"]

    platform.agent_alive()
    started = platform.api("POST", f"/clusters/{cluster}/backups")
    assert started.status_code == 202, started.get_json()
    snapshot = started.get_json()
    assert (snapshot["status"], snapshot["via"], snapshot["trigger"]) == ("running", "agent",
                                                                          "manual")  # fmt: skip
    again = platform.api("POST", f"/clusters/{cluster}/backups")
    assert again.status_code == 409 and "running" in again.get_json()["message"]
    assert platform.policy(keep_last=3).status_code == 200  # saving the policy keeps the lock
    again = platform.api("POST", f"/clusters/{cluster}/backups")
    assert again.status_code == 409 and "running" in again.get_json()["message"]

    payload = b"z" * 6000
    args = platform.agent_backs_up(payload)
    assert args["snapshot_id"] == snapshot["id"] and args["bucket"] == BUCKET
    assert FAKE_SECRET not in str(args) and FAKE_KEY not in str(args)
    assert platform.catalogue()["snapshots"][0]["status"] == "running"  # until the tick reads it
    assert backups.tick(platform.store, platform.settings)["settled"] == [snapshot["id"]]

    (done,) = platform.catalogue()["snapshots"]
    assert (done["status"], done["size"], done["documents"]) == ("done", len(payload), 42)
    assert done["oplog"] == {"start": {"t": 1, "i": 1}, "end": {"t": 2, "i": 1}}
    assert done["mongodb_version"] == "7.0.14" and done["duration"] is not None
    actions = [(e["action"], e["outcome"]) for e in platform.audit("backup.")]
    assert actions[:5] == [("backup.done", "ok"), ("backup.start", "refused"),
                           ("backup.policy", "ok"), ("backup.start", "refused"),
                           ("backup.start", "ok")]  # fmt: skip
    everything = str(platform.catalogue()) + str(platform.audit(""))
    assert FAKE_SECRET not in everything and FAKE_KEY not in everything


def test_a_failed_backup_and_one_without_its_manifest_are_failed(platform: Backups) -> None:
    platform.policy()
    platform.agent_alive()
    cluster = platform.cluster["_id"]
    platform.api("POST", f"/clusters/{cluster}/backups")
    platform.agent_backs_up(state="failed")
    backups.tick(platform.store, platform.settings)
    (failed,) = platform.catalogue()["snapshots"]
    assert (failed["status"], failed["reason"]) == ("failed", "mongod refused: not authorized")

    platform.api("POST", f"/clusters/{cluster}/backups")
    platform.agent_backs_up(payload=b"")  # says it succeeded, wrote nothing
    backups.tick(platform.store, platform.settings)
    latest = platform.catalogue()["snapshots"][0]
    assert latest["status"] == "failed"
    assert "manifest cannot be read" in latest["reason"] and "NoSuchKey" in latest["reason"]
    assert [e["outcome"] for e in platform.audit("backup.failed")] == ["failed", "failed"]


def test_a_schedule_fires_once_per_run_and_survives_a_restart(platform: Backups) -> None:
    platform.policy(schedule="30 4 * * *")
    platform.agent_alive()
    policy = platform.catalogue()["policy"]
    due = policy["next_run_at"]
    assert due % DAY == 4.5 * 3600  # 04:30 UTC
    assert backups.tick(platform.store, platform.settings, at=due - 1)["started"] == []
    # another worker, with its own connection to the store, ticks at the same moment
    other = type(platform.store)(platform.store.uri)
    first = backups.tick(platform.store, platform.settings, at=due + 5)
    second = backups.tick(other, platform.settings, at=due + 5)
    other.close()
    assert len(first["started"]) == 1 and second["started"] == []
    (entry,) = platform.catalogue()["snapshots"]
    assert entry["trigger"] == "schedule" and entry["started_at"] == due + 5
    assert platform.catalogue()["policy"]["next_run_at"] == due + DAY
    # the next run, while this one is still running: refused, on the record
    assert backups.tick(platform.store, platform.settings, at=due + DAY)["refused"]
    refused = platform.audit("backup.start")[0]
    assert refused["outcome"] == "refused" and "running" in refused["detail"]["reason"]


def test_retention_deletes_exactly_what_it_no_longer_keeps(platform: Backups) -> None:
    platform.policy(keep_last=2, max_age_days=13)
    at = 1_800_000_000.0
    ages = [1, 3, 12, 15, 40]  # days: the newest two kept by count, the 12 days old by age
    policy = backups._policies(platform.store).find_one({"_id": platform.cluster["_id"]})
    layout = mf.Layout("wap", platform.project["id"], platform.cluster["_id"])
    ids = []
    for age in ages:
        started = at - age * DAY
        made = mf.store_snapshot(platform.s3, BUCKET, layout, lambda out: {"compression": "gzip"},
                                 cluster_name="orders", started=started)  # fmt: skip
        ids.append(made.snapshot_id)
        backups._snapshots(platform.store).insert_one({
            "_id": made.snapshot_id, "project_id": platform.project["id"],
            "cluster_id": platform.cluster["_id"], "cluster_name": "orders", "status": "done",
            "started_at": started, "finished_at": started + 60, "store": policy["store"],
            "prefix": layout.snapshot(made.snapshot_id), "size": 10,
            "manifest_key": layout.manifest(made.snapshot_id), "trigger": "schedule"})  # fmt: skip
    assert len(platform.stored_keys()) == 2 * len(ages)
    report = backups.tick(platform.store, platform.settings, at=at)
    assert sorted(report["expired"]) == sorted(ids[3:])  # 15 and 40 days old
    kept = [s["id"] for s in platform.catalogue()["snapshots"]]
    assert kept == ids[:3]  # 12 days is younger than 13: kept though not among the newest two
    assert sorted({k.split("/")[4] for k in platform.stored_keys()}) == sorted(ids[:3])
    expired = platform.audit("backup.expire")
    assert sorted(e["detail"]["snapshot_id"] for e in expired) == sorted(ids[3:])
    assert {e["detail"]["objects"] for e in expired} == {2} and expired[0]["actor"] == "system"


def test_expired_keeps_the_newest_and_the_young() -> None:
    at = 100 * DAY
    entries = [{"_id": str(d), "status": "done", "started_at": at - d * DAY} for d in range(8)]
    entries.append({"_id": "f", "status": "failed", "started_at": at - 50 * DAY})
    entries.append({"_id": "g", "status": "failed", "started_at": at - 0.5 * DAY})
    entries.append({"_id": "r", "status": "running", "started_at": at - 60 * DAY})
    expired = [e["_id"] for e in backups.expired(entries, 3, None, at)]
    assert expired == ["3", "4", "5", "6", "7", "f"]  # and the failure older than those kept
    assert [e["_id"] for e in backups.expired(entries, 3, 5, at)] == ["6", "7", "f"]
    assert backups.expired(entries, 10, 1, at) == []  # fewer than 10 done: every record kept


def test_a_snapshot_is_deleted_by_typing_its_id(platform: Backups) -> None:
    platform.policy()
    platform.agent_alive()
    snapshot = platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups").get_json()
    platform.agent_backs_up()
    backups.tick(platform.store, platform.settings)
    path = f"/snapshots/{snapshot['id']}/delete"
    refused = platform.api("POST", path, json={"confirm": "orders"})
    assert refused.status_code == 422 and platform.stored_keys()
    assert platform.api("POST", path, json={"confirm": snapshot["id"]}).status_code == 204
    assert platform.catalogue()["snapshots"] == [] and platform.stored_keys() == []
    assert platform.audit("backup.delete")[0]["detail"]["objects"] == 2


def test_the_backups_pages(platform: Backups) -> None:
    client = platform.client
    assert login(client, "admin") == 302
    home = client.get("/").get_data(as_text=True)
    assert 'href="/backups"' in home
    listing = client.get("/backups").get_data(as_text=True)
    assert "orders" in listing and "set a policy" in listing
    page_path = f"/clusters/{platform.cluster['_id']}/backups"
    form = {"csrf_token": csrf(client, page_path), "schedule": "whenever", "keep_last": "3",
            "bucket": BUCKET, "prefix": "wap", "region": REGION,
            "credential_id": platform.credential["id"], "compression": "gzip",
            "enabled": "on"}  # fmt: skip
    refused = client.post(f"{page_path}/policy", data=form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert 'value="whenever"' in text and "is every day at 02:00" in text  # kept, explained
    form["schedule"] = "0 3 * * *"
    assert client.post(f"{page_path}/policy", data=form).status_code == 302
    platform.agent_alive()
    now_form = {"csrf_token": csrf(client, page_path)}
    assert client.post(f"{page_path}/now", data=now_form).status_code == 302
    platform.agent_backs_up(b"y" * 3000)
    backups.tick(platform.store, platform.settings)
    page = client.get(page_path).get_data(as_text=True)
    assert 'data-status="done"' in page  # the timeline's mark
    assert "<code>0 3 * * *</code>" in page and "3 KiB" in page
    assert 'id="backup-now"' in page and 'id="snapshot-table"' in page
    assert FAKE_SECRET not in page and FAKE_KEY not in page
    assert "done" in client.get("/backups").get_data(as_text=True)


def test_a_worker_runs_a_due_schedule_and_settles_it(
    platform: Backups, start_worker: Callable[..., Any]
) -> None:
    """The worker's reaper process ticks: a policy that falls due (its stored next run, as after a
    restart) starts a backup through the agent, and the agent's report becomes a done snapshot."""
    platform.policy(schedule="15 * * * *")
    platform.agent_alive()
    backups._policies(platform.store).update_one(
        {"_id": platform.cluster["_id"]}, {"$set": {"next_run_at": time.time() - 1}}
    )
    start_worker()

    def scheduled() -> list[dict[str, Any]]:
        return [s for s in platform.catalogue()["snapshots"] if s["trigger"] == "schedule"]

    (entry,) = wait_until(scheduled, timeout=60, what="the scheduled backup", every=0.5)
    assert (entry["status"], entry["via"]) == ("running", "agent")
    platform.agent_backs_up(b"w" * 1234)
    wait_until(lambda: scheduled()[0]["status"] == "done", timeout=60, what="the backup settled",
               every=0.5, seen=lambda: scheduled()[0])  # fmt: skip
    assert scheduled()[0]["size"] == 1234
    assert platform.catalogue()["policy"]["next_run_at"] > time.time()


def test_the_timeline_places_each_snapshot_at_its_start_as_high_as_its_size() -> None:
    at = 1_800_000_000.0
    entries = [
        {"_id": "a", "status": "done", "started_at": at - 15 * DAY, "size": 1000},
        {"_id": "b", "status": "done", "started_at": at - 1 * DAY, "size": 250},
        {"_id": "c", "status": "failed", "started_at": at - 2 * DAY, "size": None},
        {"_id": "d", "status": "done", "started_at": at - 31 * DAY, "size": 5000},
    ]
    picture = backups.timeline(entries, at)
    marks = {m["id"]: m for m in picture["marks"]}
    assert set(marks) == {"a", "b", "c"}  # d is older than the 30 days shown
    assert (marks["a"]["x"], marks["a"]["height"]) == (500.0, 100)
    assert (marks["b"]["height"], marks["c"]["height"], marks["c"]["status"]) == (25, 33, "failed")


def test_the_agents_engine_backs_up_a_replica_set_into_the_catalogue(
    platform: Backups,
    launcher: Any,  # noqa: F811 (the fixture)
) -> None:
    """The whole backup with the real engine: the command's arguments, as the agent is given
    them, run by wap_agent.backup.manifest.back_up against a one-member set of the mongod double
    to moto's S3; the platform settles it from the manifest, and its counts are the set's."""
    node = launcher.start("--replSet", "rs0")
    source = node.client()
    source.admin.command("replSetInitiate", {"_id": "rs0", "members": [
        {"_id": 0, "host": f"127.0.0.1:{node.port}"}]})  # fmt: skip
    wait_until(lambda: source.admin.command("hello").get("isWritablePrimary"), timeout=30,
               what="a primary")  # fmt: skip
    source.shop.orders.insert_many([{"n": i, "sku": f"s{i % 97}"} for i in range(1500)])
    source.crm.people.insert_many([{"name": f"p{i}"} for i in range(120)])
    platform.policy(compression="zstd")
    platform.agent_alive()
    snapshot = platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups").get_json()

    headers = {"Authorization": f"Bearer {platform.token}"}
    (command,) = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()[
        "commands"
    ]
    uri = f"mongodb://127.0.0.1:{node.port}/?directConnection=true"
    result = mf.back_up(uri, command["args"], s3=platform.s3)
    assert result["snapshot_id"] == snapshot["id"] and result["documents"] == 1620
    report = {"state": "succeeded", "result": result}
    platform.client.post(f"/api/v1/agent/commands/{command['id']}/result", json=report,
                         headers=headers)  # fmt: skip
    backups.tick(platform.store, platform.settings)

    (done,) = platform.catalogue()["snapshots"]
    assert (done["status"], done["documents"], done["size"]) == ("done", 1620, result["size"])
    assert done["oplog"]["end"]["t"] >= done["oplog"]["start"]["t"] > 0
    stored = mf.read(platform.s3, BUCKET, done["manifest_key"])
    assert {c.ns: c.count for c in stored.collections} == {"crm.people": 120, "shop.orders": 1500}
    assert stored.files[0].key.endswith("/rs0.archive.zst") and stored.compression == "zstd"


def test_without_an_agent_a_backup_playbook_runs_as_a_job(
    platform: Backups, tmp_path: Path
) -> None:
    """Where no agent runs and the platform has backup_cluster.yml, the backup is a job on the
    cluster with the store's credential (its secret travels as jobs' credentials do, never in
    the job's variables), and the job's end settles the snapshot."""
    settings = with_backup_playbook(platform, tmp_path)
    platform.policy()
    admin = Actor(None, "admin", "admin", "tests")
    entry = backups.start_backup(platform.store, settings, admin, platform.cluster["_id"])
    assert entry["via"] == "job"
    job = platform.api("GET", f"/jobs/{entry['job_id']}").get_json()
    assert (job["playbook"], job["cluster_id"]) == (backups.PLAYBOOK, platform.cluster["_id"])
    assert job["credential_ids"] == [platform.credential["id"]]
    variables = platform.store.jobs.find_one({"_id": entry["job_id"]})["extra_vars"]
    assert variables["wap_backup"]["snapshot_id"] == entry["_id"]
    assert variables["wap_backup"]["bucket"] == BUCKET
    assert (variables["wap_backup"]["project_id"], variables["wap_backup"]["cluster_id"]) == (
        platform.project["id"],
        platform.cluster["_id"],
    )  # the layout backup_cluster.yml writes
    assert FAKE_SECRET not in str(variables) and FAKE_KEY not in str(variables)
    platform.store.jobs.update_one(  # as the worker ends a job whose playbook failed
        {"_id": entry["job_id"]}, {"$set": {"status": "failed", "reason": "mongod unreachable"}}
    )
    backups.tick(platform.store, settings)
    (failed,) = platform.catalogue()["snapshots"]
    assert (failed["status"], failed["reason"]) == ("failed", "mongod unreachable")


def test_an_agent_killed_mid_backup_leaves_no_upload_open_and_no_snapshot(
    platform: Backups,
) -> None:
    """The agent took the command, started the archive's multipart upload and died (a process
    killed never aborts its own upload): with no word from it for AGENT_STALL the backup is
    failed, the upload aborted, and the next backup runs."""
    platform.policy()
    platform.agent_alive()
    cluster = platform.cluster["_id"]
    snapshot = platform.api("POST", f"/clusters/{cluster}/backups").get_json()
    headers = {"Authorization": f"Bearer {platform.token}"}
    (command,) = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()[
        "commands"
    ]
    progress = {"message": "dumping", "fraction": 0.2}
    platform.client.post(f"/api/v1/agent/commands/{command['id']}/progress", json=progress,
                         headers=headers)  # fmt: skip
    key = f"{snapshot['prefix']}/rs0.archive.gz"
    upload = platform.s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    platform.s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                            Body=b"p" * (5 * 1024 * 1024))  # fmt: skip

    def open_uploads() -> list[Any]:
        listed = platform.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=snapshot["prefix"])
        return listed.get("Uploads", [])

    assert backups.tick(platform.store, platform.settings)["settled"] == []  # still running
    assert len(open_uploads()) == 1
    hour_ago = time.time() - backups.AGENT_STALL - 1  # its last word, an hour ago
    platform.store.agent_commands.update_one(
        {"_id": command["id"]},
        {"$set": {"created_at": hour_ago, "started_at": hour_ago, "progress.at": hour_ago}},
    )
    assert backups.tick(platform.store, platform.settings)["settled"] == [snapshot["id"]]
    (failed,) = platform.catalogue()["snapshots"]
    assert failed["status"] == "failed"
    assert failed["reason"] == (
        "no word from its agent for 60 min (running when given up): the agent stopped or lost"
        " the command; 1 open upload(s) aborted, 0 object(s) deleted"
    )
    assert open_uploads() == [] and platform.stored_keys() == []
    assert platform.api("POST", f"/clusters/{cluster}/backups").status_code == 202
