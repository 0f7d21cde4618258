"""Backups and restores through the agent's own commands (wap_agent.commands.backup), the
platform's API and moto's S3 on 127.0.0.1, against one-member sets of the mongod double: the
agent's ``backup`` command writes a snapshot the catalogue settles, with its progress on the
platform; the restore wizard's API takes it into another cluster through that cluster's agent and
the verification report is equal; a second restore into the now non-empty target is refused with
the reason; the same cluster takes only the namespaces asked for, renamed, once its name is typed;
a download link reads the archive the manifest describes. No secret in any answer."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import urllib.request
from pathlib import Path
from time import time
from typing import Any

import pytest

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION
from tests.labhosts import REPO
from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
from tests.waiting import wait_until
from tests.webui.test_agent_ingest import batch, body
from tests.webui.test_backups import BUCKET, Backups, moto, platform  # noqa: F401 (fixtures)
from tests.webui.test_backups_sharded import agent_command, report, sharded, write_sharded_snapshot
from tests.webui.test_web import csrf, login
from wap_agent.backup import manifest as mf
from wap_agent.backup import s3 as s3mod
from wap_agent.backup import verify
from wap_agent.backup.hashing import collection_hash
from wap_agent.cli import main
from wap_agent.commands import BadArguments, Context
from wap_agent.commands.backup import Backup, Restore, restore_snapshot
from wap_agent.config import AgentConfig
from webui.services import backups, projects
from webui.services.audit import Actor


def replica_set(launcher: Any, name: str) -> tuple[Any, str]:  # noqa: F811
    node = launcher.start("--replSet", name)
    client = node.client()
    client.admin.command("replSetInitiate", {"_id": name, "members": [
        {"_id": 0, "host": f"127.0.0.1:{node.port}"}]})  # fmt: skip
    wait_until(lambda: client.admin.command("hello").get("isWritablePrimary"), timeout=30,
               what=f"a primary of {name}")  # fmt: skip
    return client, f"mongodb://127.0.0.1:{node.port}/?directConnection=true"


class Agent:
    """One host's agent as the platform sees it: its token, its commands pulled, each run with the
    agent's own command object and its progress and outcome reported through the API."""

    def __init__(self, web: Backups, token: str, uri: str, tmp: Path) -> None:
        self.platform, self.token, self.uri = web, token, uri
        self.headers = {"Authorization": f"Bearer {token}"}
        self.config = AgentConfig(url="http://platform", token_file=tmp / "token",
                                  queue_dir=tmp / "queue", mongodb_uris=(uri,))  # fmt: skip
        self.progress: list[str] = []

    def alive(self) -> None:
        assert self.platform.send(body(batch(1)), token=self.token).status_code == 200

    def run(self, command: Any) -> dict[str, Any]:
        (asked,) = [
            c for c in self.platform.client.get("/api/v1/agent/commands", headers=self.headers)
            .get_json()["commands"] if c["name"] == command.name
        ]  # fmt: skip
        client = self.platform.client
        base = f"/api/v1/agent/commands/{asked['id']}"

        def report(message: str, fraction: float | None) -> None:
            self.progress.append(message)
            answer = client.post(f"{base}/progress", headers=self.headers,
                                 json={"message": message, "fraction": fraction})  # fmt: skip
            assert answer.status_code == 200, answer.get_json()

        context = Context(self.config, asked["id"], report)
        try:
            outcome = {"state": "succeeded",
                       "result": command.run(command.check(asked["args"]), context)}  # fmt: skip
        except Exception as exc:  # as the agent's runner reports a command that raises
            outcome = {"state": "failed", "reason": str(exc)}
        answer = client.post(f"{base}/result", headers=self.headers, json=outcome)
        assert answer.status_code == 200, answer.get_json()
        return outcome


def second_host(web: Backups, uri: str, tmp: Path) -> tuple[Agent, dict[str, Any]]:
    """Host db2 with its agent, and a cluster on it to restore into."""
    project = web.project["id"]
    host = web.api("POST", f"/projects/{project}/hosts",
                        json={"name": "db2", "address": "10.0.0.2"}).get_json()  # fmt: skip
    token = web.api("POST", f"/projects/{project}/hosts/{host['id']}/agent-token")
    agent = Agent(web, token.get_json()["token"], uri, tmp)
    agent.alive()
    admin = Actor(None, "admin", "admin", "tests")
    cluster = projects.create_cluster(web.store, admin, project, "orders-copy", [host["id"]],
                                      "steps.yml")  # fmt: skip
    return agent, cluster


def done_snapshot(platform: Backups) -> dict[str, Any]:  # noqa: F811 (the fixture's type)
    """A snapshot of the platform's cluster, backed up now by its agent and settled."""
    platform.policy()
    platform.agent_alive()
    snapshot = platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups").get_json()
    platform.agent_backs_up()
    backups.tick(platform.store, platform.settings)
    return snapshot


def new_host(platform: Backups, name: str) -> tuple[str, dict[str, Any]]:  # noqa: F811
    """The project's id and a new host of it (no agent)."""
    project = platform.project["id"]
    host = platform.api("POST", f"/projects/{project}/hosts",
                        json={"name": name, "address": "10.0.0.9"}).get_json()  # fmt: skip
    return project, host


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's host's own AWS credentials (boto3's chain reads the environment)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)


def no_secret(*answers: Any) -> None:
    for answer in answers:
        assert FAKE_SECRET not in answer.get_data(as_text=True)


def test_backup_and_restore_through_the_agents_commands_verified(
    platform: Backups,  # noqa: F811 (the fixture)
    launcher: Any,  # noqa: F811 (the fixture)
    aws_env: None,
    tmp_path: Path,
) -> None:
    source, source_uri = replica_set(launcher, "rs0")
    target, target_uri = replica_set(launcher, "rs1")
    source.shop.orders.insert_many(
        [{"n": i, "sku": f"s{i % 97}", "at": i * 1.5, "tags": ["a", i], "sub": {"x": i}}
         for i in range(2000)]
    )  # fmt: skip
    source.shop.orders.create_index("n", unique=True)
    source.shop.orders.create_index([("sku", 1), ("at", -1)])
    source.crm.people.insert_many([{"name": f"p{i}"} for i in range(150)])
    source.admin.command("createUser", "reader", pwd="not-a-secret-here",
                         roles=[{"role": "read", "db": "shop"}])  # fmt: skip
    assert platform.policy(compression="gzip", users_and_roles=True).status_code == 200
    agent = Agent(platform, platform.token, source_uri, tmp_path / "db1")
    agent.alive()
    snapshot = platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups").get_json()

    backed_up = agent.run(Backup())
    assert backed_up["state"] == "succeeded", backed_up
    assert any("3 of 3 collections, 2,151 documents" in m for m in agent.progress), agent.progress
    backups.tick(platform.store, platform.settings)
    (done,) = platform.catalogue()["snapshots"]
    # 2,150 documents and the user (users and roles asked in the policy)
    assert (done["id"], done["status"], done["documents"]) == (snapshot["id"], "done", 2151)

    # into another cluster, through its host's agent
    other, cluster = second_host(platform, target_uri, tmp_path / "db2")
    path = f"/snapshots/{done['id']}/restores"
    started = platform.api("POST", path, json={"target": "cluster", "cluster_id": cluster["_id"],
                                               "users_and_roles": True})  # fmt: skip
    assert started.status_code == 202, started.get_json()
    restore = started.get_json()
    assert (restore["status"], restore["cluster_name"]) == ("running", "orders-copy")
    assert other.run(Restore())["state"] == "succeeded"
    seen = platform.api("GET", f"/restores/{restore['id']}").get_json()
    assert seen["progress"]["message"].startswith("restore:")
    assert restore["id"] in backups.tick(platform.store, platform.settings)["restored"]
    report = platform.api("GET", f"/restores/{restore['id']}").get_json()
    assert report["status"] == "done", report["verification"]["collections"]
    assert report["verification"]["equal"]
    rows = {r["ns"]: r for r in report["verification"]["collections"]}
    assert {ns: r["count"] for ns, r in rows.items()} == {"crm.people": 150, "shop.orders": 2000}
    assert rows["shop.orders"]["indexes"] == 3
    for ns in rows:
        db, name = ns.split(".")
        assert collection_hash(target[db][name]) == collection_hash(source[db][name])
    assert platform.api("GET", path).get_json()[0]["verification"]["equal"]
    (user,) = target.admin.command("usersInfo", {"user": "reader", "db": "admin"})["users"]
    assert user["roles"] == [{"role": "read", "db": "shop"}]  # users and roles, as asked

    # again into the same target, now holding documents: refused, nothing reported done
    again = platform.api("POST", path, json={"target": "cluster", "cluster_id": cluster["_id"]})
    refused = other.run(Restore())
    assert refused["state"] == "failed" and "shop.orders" in refused["reason"], refused
    backups.tick(platform.store, platform.settings)
    failed = platform.api("GET", f"/restores/{again.get_json()['id']}").get_json()
    assert failed["status"] == "failed" and failed["reason"] == refused["reason"]
    assert failed["verification"] is None

    # the same cluster: its name typed; only shop, renamed
    wrong = platform.api("POST", path, json={"target": "same", "confirm": "order"})
    assert wrong.status_code == 422 and "orders" in str(wrong.get_json())
    same = platform.api("POST", path, json={"target": "same", "confirm": "orders",
                                            "include": ["shop.*"],
                                            "renames": ["shop.$c$=shop_copy.$c$"]})  # fmt: skip
    assert same.status_code == 202, same.get_json()
    assert agent.run(Restore())["state"] == "succeeded"
    backups.tick(platform.store, platform.settings)
    copied = platform.api("GET", f"/restores/{same.get_json()['id']}").get_json()
    assert copied["verification"]["equal"], copied
    assert [r["ns"] for r in copied["verification"]["collections"]] == ["shop_copy.orders"]
    assert collection_hash(source.shop_copy.orders) == collection_hash(source.shop.orders)

    # a time-limited link to the archive, as the manifest describes it
    link = platform.api("POST", f"/snapshots/{done['id']}/download")
    stored = mf.read(platform.s3, BUCKET, done["manifest_key"])
    with urllib.request.urlopen(link.get_json()["links"][0]["url"], timeout=30) as answer:
        assert hashlib.sha256(answer.read()).hexdigest() == stored.files[0].sha256
    assert "--gzip" in link.get_json()["command"]
    actions = [(e["action"], e["outcome"]) for e in platform.audit("backup.")]
    assert ("backup.download", "ok") in actions and ("backup.restore.done", "ok") in actions
    assert ("backup.restore.failed", "failed") in actions
    assert ("backup.restore", "refused") in actions  # the name typed wrong
    no_secret(link, started, same, platform.api("GET", path),
              platform.api("GET", "/audit?action=backup."))  # fmt: skip


def test_the_commands_check_their_arguments() -> None:
    good = {"snapshot_id": "20261207T070000Z-abcdef", "bucket": "b", "project_id": "p",
            "cluster_id": "c", "compression": "zstd"}  # fmt: skip
    assert Backup().check(good)["oplog"] is True
    for bad, says in (
        ({**good, "secret_access_key": "x"}, "unknown argument(s): secret_access_key"),
        ({**good, "snapshot_id": "../x"}, "snapshot_id"),
        ({**good, "compression": "lz4"}, "compression: gzip, zstd or null"),
        ({**good, "endpoint_url": "file:///etc/passwd"}, "endpoint_url"),
    ):
        with pytest.raises(BadArguments, match=r"^" + says.split("(")[0]):
            Backup().check(bad)
    restore = {"bucket": "b", "manifest_key": "p/c/snapshots/s/manifest.json"}
    assert Restore().check(restore)["oplog_replay"] is True
    assert Restore().check({**restore, "include": ["shop.*"]})["oplog_replay"] is False
    with pytest.raises(BadArguments, match="as many of one as of the other"):
        Restore().check({**restore, "rename_from": ["a.*"]})
    with pytest.raises(BadArguments, match="manifest_key"):
        Restore().check({**restore, "manifest_key": "p/c/snapshots/s/rs0.archive"})


def test_the_verification_report_tells_a_replayed_change_from_a_wrong_copy() -> None:
    index = [{"v": 2, "key": {"_id": 1}, "name": "_id_"},
             {"v": 2, "key": {"sku": 1, "at": -1}, "name": "sku_1_at_-1"}]  # fmt: skip
    made = mf.Manifest(
        snapshot_id="s", project_id="p", cluster_id="c", cluster_name="n", topology="replicaset",
        mongodb_version="8.0.4", fcv="8.0", started_at=1.0, finished_at=2.0, oplog_start=None,
        oplog_end=None, files=[],
        collections=[mf.Collection("shop", "orders", 10, 100, "blake2b64-sum:aa", indexes=index),
                     mf.Collection("shop", "items", 5, 50, "blake2b64-sum:bb", indexes=index[:1]),
                     mf.Collection("shop", "recent", 0, 0, "", type="view")],
    )  # fmt: skip
    keys = [{"name": "_id_", "key": [["_id", 1]]}, {"name": "sku_1_at_-1",
                                                    "key": [["sku", 1], ["at", -1]]}]  # fmt: skip
    orders = {"ns": "shop.orders", "source": "shop.orders", "count": 10, "hash": "aa",
              "indexes": keys, "copied": {"count": 10, "hash": "aa"}}  # fmt: skip
    items = {"ns": "shop.items", "source": "shop.items", "count": 5, "hash": "bb",
             "indexes": [{"name": "_id_", "key": [["_id", 1]]}],
             "copied": {"count": 5, "hash": "bb"}}  # fmt: skip
    report = verify.verification(made, {"collections": [orders, items]})
    assert report["equal"] and report["documents"] == 15 and not report["note"]

    # a compound key in another order is another index
    turned = {
        **orders,
        "indexes": [keys[0], {"name": "sku_1_at_-1", "key": [["at", -1], ["sku", 1]]}],
    }
    report = verify.verification(made, {"collections": [turned, items]})
    assert not report["equal"]
    assert report["collections"][1]["differences"] == ["index set differs"]

    # writes made during the dump, replayed after the copy: equal, and said
    replayed = {**orders, "count": 12, "hash": "cc"}
    report = verify.verification(made, {"collections": [replayed, items], "oplog": {"applied": 4}})
    assert report["equal"], report
    assert (
        report["note"] == "4 oplog entries were replayed after the copy, changing 1"
        " collection(s) since the dump read them"
    )
    assert report["collections"][1]["changed_by_replay"][0] == "count 12, the manifest says 10"

    # a copy that differs from the manifest is a difference, replay or not
    wrong = {**replayed, "copied": {"count": 9, "hash": "aa"}}
    report = verify.verification(made, {"collections": [wrong, items], "oplog": {"applied": 4}})
    assert report["collections"][1]["differences"] == [
        "the copy: 9 documents, the manifest says 10"
    ]

    # a collection of the snapshot left out of a whole restore; not when some were selected
    report = verify.verification(made, {"collections": [orders]})
    assert not report["equal"]
    assert report["collections"][0] == {
        "ns": "shop.items",
        "source": "shop.items",
        "equal": False,
        "expected_count": 5,
        "differences": ["in the snapshot, not restored"],
    }
    assert verify.verification(made, {"collections": [orders]}, selected=True)["equal"]
    nothing = verify.verification(made, {"collections": []}, selected=True)
    assert not nothing["equal"]
    assert nothing["note"] == "the namespaces selected match no collection of the snapshot"
    empty = dataclasses.replace(made, collections=made.collections[2:])  # a view only
    assert verify.verification(empty, {"collections": []})["equal"]


def test_the_restore_wizard_and_the_verification_on_the_snapshot(platform: Backups) -> None:  # noqa: F811
    client = platform.client
    assert login(client, "admin") == 302
    platform.policy()
    platform.agent_alive()
    started = platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups").get_json()
    platform.agent_backs_up(b"z" * 5000)
    backups.tick(platform.store, platform.settings)
    cluster_page = client.get(f"/clusters/{platform.cluster['_id']}/backups").get_data(True)
    assert "never restored" in cluster_page
    path = f"/snapshots/{started['id']}"
    page = client.get(path).get_data(as_text=True)
    assert 'id="restore-form"' in page and "Never restored yet" in page

    # refused: the name typed wrong, kept with the reason; a new cluster without its fields
    form = {"csrf_token": csrf(client, path), "target": "same", "confirm": "ordres",
            "include": "shop.*", "renames": "shop.$c$=copy.$c$"}  # fmt: skip
    refused = client.post(f"{path}/restore", data=form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "type the cluster&#39;s name, orders, to restore into it" in text
    assert 'value="ordres"' in text and "shop.$c$=copy.$c$</textarea>" in text
    new = client.post(f"{path}/restore", data={**form, "target": "new", "new_name": "",
                                               "new_replica_set": "rs9"})  # fmt: skip
    text = new.get_data(as_text=True)
    assert new.status_code == 422 and 'id="r-new_name"' in text
    assert "1 to 63 letters" in text and "pick 1, 3, 5 or 7 hosts" in text
    assert 'value="rs9"' in text

    # started from the wizard: the restore's page follows it; the agent reports; verified
    answer = client.post(f"{path}/restore", data={**form, "confirm": "orders"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    restore_path = answer.headers["Location"]
    headers = {"Authorization": f"Bearer {platform.token}"}
    (command,) = [c for c in client.get("/api/v1/agent/commands", headers=headers)
                  .get_json()["commands"] if c["name"] == "restore"]  # fmt: skip
    assert command["args"]["rename_to"] == ["copy.$c$"]
    client.post(f"/api/v1/agent/commands/{command['id']}/progress", headers=headers,
                json={"message": "restore: 0 of 1 collections", "fraction": 0.25})  # fmt: skip
    page = client.get(restore_path).get_data(as_text=True)
    assert 'data-status="running"' in page and "restore: 0 of 1 collections" in page
    assert 'value="0.25"' in page
    held = {"ns": "copy.orders", "source": "shop.orders", "count": 42, "hash": "0a",
            "indexes": [], "copied": {"count": 42, "hash": "0a"}}  # fmt: skip
    client.post(f"/api/v1/agent/commands/{command['id']}/result", headers=headers,
                json={"state": "succeeded", "result": {"collections": [held]}})  # fmt: skip
    backups.tick(platform.store, platform.settings)
    page = client.get(restore_path).get_data(as_text=True)
    assert 'data-status="done"' in page and 'data-ns="copy.orders" data-equal="yes"' in page
    snapshot_page = client.get(path).get_data(as_text=True)
    assert 'data-equal="yes"' in snapshot_page and "equal to the snapshot" in snapshot_page
    cluster_page = client.get(f"/clusters/{platform.cluster['_id']}/backups").get_data(True)
    assert f'href="{restore_path}">equal</a>' in cluster_page

    # the download links, shown once on the snapshot's page
    links = client.post(f"{path}/download", data={"csrf_token": csrf(client, path)})
    text = links.get_data(as_text=True)
    assert 'id="download-links"' in text and "rs.archive.gz</a>" in text
    assert "mongorestore --uri" in text and "--gzip" in text
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in text  # Signature Version 4
    assert FAKE_SECRET not in text  # a link names the key's id, as any presigned link does
    for shown in (snapshot_page, page, cluster_page):
        assert FAKE_SECRET not in shown and FAKE_KEY not in shown


def test_wap_agent_backup_to_and_restore_from_a_store_on_a_terminal(
    moto: str,  # noqa: F811 (the fixture)
    launcher: Any,  # noqa: F811 (the fixture)
    aws_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the playbooks run on a member: the snapshot in the platform's layout, with its
    manifest; restored from it into another set, verified; exit 1 when the target is not empty."""
    source, source_uri = replica_set(launcher, "rs3")
    target, target_uri = replica_set(launcher, "rs4")
    source.app.events.insert_many([{"i": i, "at": i * 0.5} for i in range(700)])
    source.app.events.create_index([("at", -1), ("i", 1)])
    store = ["--endpointUrl", moto, "--region", "eu-west-1"]
    assert main(["backup", "--uri", source_uri, "--oplog", "--zstd", "--quiet", *store,
                 "--to", f"s3://{BUCKET}/terminal", "--project", "p9", "--cluster", "c9",
                 "--clusterName", "events"]) == 0  # fmt: skip
    made = json.loads(capsys.readouterr().out)
    assert made["manifest_key"].startswith("terminal/p9/c9/snapshots/")
    assert made["documents"] == 700
    url = f"s3://{BUCKET}/{made['manifest_key']}"
    assert main(["restore", "--uri", target_uri, "--oplogReplay", "--quiet", *store,
                 "--from", url]) == 0  # fmt: skip
    restored = json.loads(capsys.readouterr().out)
    assert restored["verification"]["equal"], restored["verification"]
    assert collection_hash(target.app.events) == collection_hash(source.app.events)
    assert main(["restore", "--uri", target_uri, "--quiet", *store, "--from", url]) == 1
    assert "the target is not empty: app.events (700 documents)" in capsys.readouterr().err


def test_a_restore_into_a_new_cluster_waits_for_its_deployment_and_agent(
    platform: Backups,  # noqa: F811 (the fixture)
) -> None:
    snapshot = done_snapshot(platform)
    project, host = new_host(platform, "db3")
    token = platform.api("POST", f"/projects/{project}/hosts/{host['id']}/agent-token")
    new = {"name": "orders-new", "host_ids": [host["id"]], "mongodb_version": "7.0.14",
           "auth": False, "tls": False}  # fmt: skip
    # the repository's playbooks (the test app's dir has stand-ins only)
    settings = dataclasses.replace(platform.settings, playbooks_dir=REPO / "playbooks")
    admin = Actor(None, "admin", "admin", "tests")
    restore = backups.start_restore(platform.store, settings, admin, snapshot["id"],
                                    {"target": "new", "deployment": new})  # fmt: skip
    assert (restore["status"], restore["cluster_name"]) == ("waiting", "orders-new")
    job = {"_id": restore["deploy_job_id"]}
    assert platform.store.jobs.find_one(job)["playbook"] == "deploy_replicaset.yml"

    def status() -> str:
        backups.tick(platform.store, platform.settings)
        return platform.api("GET", f"/restores/{restore['_id']}").get_json()["status"]

    assert status() == "waiting"  # its deployment is queued
    platform.store.jobs.update_one(job, {"$set": {"status": "successful", "finished_at": time()}})
    assert status() == "waiting"  # deployed, but no agent on db3 heard of yet
    assert platform.send(body(batch(1)), token=token.get_json()["token"]).status_code == 200
    assert status() == "running"
    headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
    given = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()["commands"]
    assert [(c["name"], c["args"]["restore_id"]) for c in given] == [("restore", restore["_id"])]

    # a deployment that fails fails its restore, saying so
    again = {**new, "name": "orders-new2"}
    failing = backups.start_restore(platform.store, settings, admin, snapshot["id"],
                                    {"target": "new", "deployment": again})  # fmt: skip
    platform.store.jobs.update_one({"_id": failing["deploy_job_id"]},
                                   {"$set": {"status": "failed"}})  # fmt: skip
    backups.tick(platform.store, platform.settings)
    ended = platform.api("GET", f"/restores/{failing['_id']}").get_json()
    assert (ended["status"], ended["reason"]) == ("failed", "the target's deployment ended failed")


def test_without_an_agent_a_restore_runs_restore_cluster_yml_as_a_job(
    platform: Backups,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """The target's hosts have no agent: the restore is a job on the target cluster with the
    store's credential and the request in its variables (no secret), verified from the result
    the role reports with set_stats."""
    snapshot = done_snapshot(platform)
    project, host = new_host(platform, "db4")
    admin = Actor(None, "admin", "admin", "tests")
    cluster = projects.create_cluster(platform.store, admin, project, "orders-job",
                                      [host["id"]], "steps.yml")  # fmt: skip
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / backups.RESTORE_PLAYBOOK).write_text("- hosts: all\n  tasks: []\n")
    settings = dataclasses.replace(platform.settings, playbooks_dir=playbooks)
    restore = backups.start_restore(
        platform.store, settings, admin, snapshot["id"],
        {"target": "cluster", "cluster_id": cluster["_id"], "include": ["shop.*"],
         "renames": "shop.$c$=copy.$c$"},
    )  # fmt: skip
    assert (restore["status"], restore["via"]) == ("running", "job")
    job = platform.store.jobs.find_one({"_id": restore["job_id"]})
    assert (job["playbook"], job["cluster_id"]) == ("restore_cluster.yml", cluster["_id"])
    assert job["credential_ids"] == [platform.credential["id"]]
    variables = job["extra_vars"]
    assert variables["mongodb_backup_renames"] == [{"from": "shop.$c$", "to": "copy.$c$"}]
    assert variables["mongodb_backup_manifest_key"].endswith("/manifest.json")
    assert FAKE_SECRET not in str(variables) and FAKE_KEY not in str(variables)
    assert backups.tick_restores(platform.store, settings) == []  # the job runs

    held = {"ns": "copy.orders", "source": "shop.orders", "count": 42, "hash": "0a",
            "indexes": [], "copied": {"count": 42, "hash": "0a"}}  # fmt: skip
    ended = {"$set": {"status": "successful", "finished_at": time()}}
    platform.store.jobs.update_one({"_id": job["_id"]}, ended)
    platform.store.job_events.insert_one(  # the recap, with what the role reported
        {"job_id": job["_id"], "counter": 9, "event": "playbook_on_stats",
         "artifact_data": {"wap_backup_result": {"collections": [held], "documents": 42}}}
    )  # fmt: skip
    assert backups.tick_restores(platform.store, settings) == [restore["_id"]]
    done = platform.api("GET", f"/restores/{restore['_id']}").get_json()
    assert (done["status"], done["via"], done["documents"]) == ("done", "job", 42)
    assert done["verification"]["equal"], done["verification"]


def test_writes_made_during_the_backup_are_replayed_and_the_report_says_so(
    moto: str,  # noqa: F811 (the fixture)
    launcher: Any,  # noqa: F811 (the fixture)
    aws_env: None,
) -> None:
    """The agent's commands' own functions: writes made while the dump reads come back by the
    oplog's replay; the copy equals the manifest, the target the source, and the report is
    equal, saying which collection the replay changed."""
    source, source_uri = replica_set(launcher, "rs9")
    target, target_uri = replica_set(launcher, "rs10")
    source.app.people.insert_many([{"_id": i, "v": "x" * 200} for i in range(3000)])
    source.app.quiet.insert_many([{"_id": i} for i in range(10)])
    wrote: list[bool] = []

    def midway(event: dict[str, Any]) -> None:
        if event.get("event") == "documents" and event.get("ns") == "app.people" and not wrote:
            wrote.append(True)
            source.app.people.insert_one({"_id": 5000, "v": "late"})
            source.app.people.delete_one({"_id": 7})

    client = s3mod.client(moto, REGION, FAKE_KEY, FAKE_SECRET)
    args = {"snapshot_id": mf.snapshot_id(time()), "bucket": BUCKET, "prefix": "during",
            "project_id": "p", "cluster_id": "c", "cluster_name": "people",
            "compression": "gzip", "oplog": True}  # fmt: skip
    made = mf.back_up(source_uri, args, s3=client, progress=midway)
    assert wrote
    checked = Restore().check({"bucket": BUCKET, "manifest_key": made["manifest_key"]})
    result = restore_snapshot(target_uri, checked, client, lambda event: None)
    report = verify.verification(mf.read(client, BUCKET, made["manifest_key"]), result)
    assert report["equal"], report
    assert report["note"].endswith("changing 1 collection(s) since the dump read them")
    rows = {r["ns"]: r for r in report["collections"]}
    assert rows["app.people"]["changed_by_replay"] and not rows["app.quiet"]["changed_by_replay"]
    for name in ("people", "quiet"):
        assert collection_hash(target.app[name]) == collection_hash(source.app[name])


def test_an_agent_that_refuses_backups_is_replaced_by_the_playbooks_jobs(
    platform: Backups,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """An agent without backup or restore on its allow-list refuses the command; the platform's
    backup_cluster.yml and restore_cluster.yml jobs do the work instead, with the same request."""
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    for name in (backups.PLAYBOOK, backups.RESTORE_PLAYBOOK):
        (playbooks / name).write_text("- hosts: all\n  tasks: []\n")
    settings = dataclasses.replace(platform.settings, playbooks_dir=playbooks)
    headers = {"Authorization": f"Bearer {platform.token}"}

    def refuse(name: str) -> None:
        (command,) = [c for c in platform.client.get("/api/v1/agent/commands", headers=headers)
                      .get_json()["commands"] if c["name"] == name]  # fmt: skip
        answer = platform.client.post(
            f"/api/v1/agent/commands/{command['id']}/result", headers=headers,
            json={"state": "refused", "reason": f"{name!r} is not on this agent's allow-list"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.get_json()

    snapshot = done_snapshot(platform)
    restore = platform.api("POST", f"/snapshots/{snapshot['id']}/restores",
                           json={"target": "same", "confirm": "orders",
                                 "renames": ["shop.$c$=copy.$c$"]}).get_json()  # fmt: skip
    refuse("restore")
    backups.tick(platform.store, settings)
    shown = platform.api("GET", f"/restores/{restore['id']}").get_json()
    assert (shown["status"], shown["via"]) == ("running", "job")
    job = platform.store.jobs.find_one({"_id": shown["job_id"]})
    assert job["playbook"] == backups.RESTORE_PLAYBOOK
    assert job["extra_vars"]["mongodb_backup_renames"] == [{"from": "shop.$c$", "to": "copy.$c$"}]

    # a backup now (one at a time per cluster: done_snapshot's has ended)
    started = platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups").get_json()
    refuse("backup")
    backups.tick(platform.store, settings)
    entry = backups.get_snapshot(platform.store, Actor(None, "admin", "admin", "t"), started["id"])
    assert (entry["status"], entry["via"]) == ("running", "job")
    job = platform.store.jobs.find_one({"_id": entry["job_id"]})
    assert job["playbook"] == backups.PLAYBOOK
    assert job["extra_vars"]["wap_backup"]["snapshot_id"] == started["id"]


def test_a_failed_restore_is_restored_again_with_drop_once_its_target_is_typed(
    platform: Backups,  # noqa: F811
) -> None:
    """The way out of a restore that failed midway: its page shows the engine's reason (which
    collections it left complete) and offers the same restore with drop, the target's name typed;
    the API the same; refusals audited. The wizard's drop into another cluster needs its name."""
    snapshot = done_snapshot(platform)
    asked = {"target": "same", "confirm": "orders", "include": ["shop.*"]}
    started = platform.api("POST", f"/snapshots/{snapshot['id']}/restores", json=asked)
    assert started.status_code == 202, started.get_json()
    failed = started.get_json()
    headers = {"Authorization": f"Bearer {platform.token}"}
    client = platform.client
    (command,) = [c for c in client.get("/api/v1/agent/commands", headers=headers)
                  .get_json()["commands"] if c["name"] == "restore"]  # fmt: skip
    reason = ("RestoreError: the snapshot is damaged: truncated archive. Left in the target:"
              " complete: shop.orders; partly inserted: shop.lines. Restore again with drop to"
              " replace what this restore wrote")  # fmt: skip
    client.post(f"/api/v1/agent/commands/{command['id']}/result", headers=headers,
                json={"state": "failed", "reason": reason})  # fmt: skip
    backups.tick(platform.store, platform.settings)
    assert platform.api("GET", f"/restores/{failed['id']}").get_json()["status"] == "failed"

    assert login(client, "admin") == 302
    path = f"/restores/{failed['id']}"
    page = client.get(path).get_data(as_text=True)
    assert "complete: shop.orders; partly inserted: shop.lines" in page
    assert 'id="restore-again"' in page and "Type orders to restore into it again" in page
    mistyped = client.post(f"{path}/again", data={"csrf_token": csrf(client, path),
                                                  "confirm": "ordres"})  # fmt: skip
    text = mistyped.get_data(as_text=True)
    assert mistyped.status_code == 422 and 'value="ordres"' in text
    assert "type the cluster&#39;s name, orders, to restore into it again" in text
    untyped = platform.api("POST", f"{path}/again", json={"confirm": "nope"})
    assert untyped.status_code == 422
    refused = platform.audit("backup.restore")[0]
    assert refused["outcome"] == "refused" and refused["detail"]["again_of"] == failed["id"]

    again = platform.api("POST", f"{path}/again", json={"confirm": "orders"})
    assert again.status_code == 202, again.get_json()
    entry = again.get_json()
    assert (entry["again_of"], entry["target"], entry["cluster_name"], entry["drop"]) == (
        failed["id"], "same", "orders", True
    )  # fmt: skip
    assert entry["include"] == ["shop.*"] and entry["snapshot_id"] == snapshot["id"]
    (second,) = [c for c in client.get("/api/v1/agent/commands", headers=headers)
                 .get_json()["commands"] if c["name"] == "restore"]  # fmt: skip
    assert second["args"]["drop"] is True and second["args"]["include"] == ["shop.*"]
    page = client.get(f"/restores/{entry['id']}").get_data(as_text=True)
    assert f'href="{path}">a failed one</a> left' in page and 'id="restore-again"' not in page
    running = platform.api("POST", f"/restores/{entry['id']}/again", json={"confirm": "orders"})
    assert running.status_code == 409 and "only a failed one" in str(running.get_json())

    # the wizard's drop into another cluster asks for its name as well
    admin = Actor(None, "admin", "admin", "tests")
    copy = projects.create_cluster(platform.store, admin, platform.project["id"], "copy",
                                   [platform.host["id"]], "steps.yml")  # fmt: skip
    into = {"target": "cluster", "cluster_id": copy["_id"], "drop": True}
    refused = platform.api("POST", f"/snapshots/{snapshot['id']}/restores", json=into)
    assert refused.status_code == 422 and refused.get_json()["errors"]["json"] == {
        "drop_confirm": ["type the cluster's name, copy, to drop its collections of the"
                         " snapshot's names"]}  # fmt: skip
    typed = platform.api("POST", f"/snapshots/{snapshot['id']}/restores",
                         json={**into, "drop_confirm": "copy"})  # fmt: skip
    assert typed.status_code == 202, typed.get_json()


def test_a_failed_sharded_restore_is_restored_again_into_its_target_emptied(
    platform: Backups,  # noqa: F811
) -> None:
    """A sharded snapshot restores only into a cluster holding no database, which a failed
    restore leaves holding some: restored again, the agent is asked to drop what it holds."""
    platform.cluster = sharded(platform, "shop")
    platform.policy()
    platform.agent_alive()
    platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups")
    command = agent_command(platform, "backup")
    write_sharded_snapshot(platform, command["args"])
    report(platform, command, {"snapshot_id": command["args"]["snapshot_id"]})
    backups.tick(platform.store, platform.settings)
    (snapshot,) = platform.catalogue()["snapshots"]
    copy = sharded(platform, "shop-copy")
    started = platform.api("POST", f"/snapshots/{snapshot['id']}/restores",
                           json={"target": "cluster", "cluster_id": copy["_id"]})  # fmt: skip
    failed = started.get_json()
    headers = {"Authorization": f"Bearer {platform.token}"}
    first = agent_command(platform, "restore")
    platform.client.post(f"/api/v1/agent/commands/{first['id']}/result", headers=headers,
                         json={"state": "failed", "reason": "RestoreError: shard shard2 -> "
                               "shard2: the server failed. Left in the target: ..."})  # fmt: skip
    backups.tick(platform.store, platform.settings)

    again = platform.api("POST", f"/restores/{failed['id']}/again", json={"confirm": "shop-copy"})
    assert again.status_code == 202, again.get_json()
    assert (again.get_json()["drop"], again.get_json()["again_of"]) == (True, failed["id"])
    second = agent_command(platform, "restore")
    assert second["args"]["drop"] is True and second["args"]["router"] == "10.0.0.1:27017"
