"""Taking over a replica set WAP did not create (issue 16): three mongod doubles on 127.0.0.1 with
access control, set up by hand, discovered from one secondary's address by a real worker running
takeover_cluster.yml, shown before anything is registered, then registered; the cluster page shows
its members, and its hosts' agents are being deployed (a deploy_agent.yml job with the discovery's
SSH key). A credential without clusterMonitor is refused naming the role, and nothing is
registered from it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.mongod_double.conftest import Launcher
from tests.waiting import wait_until
from tests.webui.helpers import REPO, Api, Proc, wait_for
from webui.config import Settings
from webui.store import Store

KEY = "takeoverkey" + "k" * 30  # base64 characters only, as mongod requires
ADMIN = ("ops", "ops-password-1")
READER = ("reader", "reader-password-1")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The repository's playbooks; a platform that serves agents (a public URL, a wheelhouse)."""
    wheelhouse = settings.data_dir / "agent-wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    (wheelhouse / "wap_agent-0.1.0-py3-none-any.whl").write_bytes(b"")  # never installed here
    return settings.with_(playbooks_dir=REPO / "playbooks", public_url="http://127.0.0.1:9",
                          agent_wheelhouse=wheelhouse)  # fmt: skip


def initiated_set(launcher: Launcher, *args: str) -> tuple[list, list[str]]:
    """Three doubles started with ``args``, initiated as rs0 (the first preferred), once it has a
    primary: the nodes and their addresses."""
    nodes = [launcher.start("--replSet", "rs0", *args) for _ in range(3)]
    addresses = [f"127.0.0.1:{n.port}" for n in nodes]
    first = nodes[0].client()
    first.admin.command("replSetInitiate", {"_id": "rs0", "members": [
        {"_id": i, "host": a, "priority": 2 if i == 0 else 1} for i, a in enumerate(addresses)
    ]})  # fmt: skip
    wait_until(lambda: first.admin.command("hello").get("isWritablePrimary"), timeout=30,
               what="a primary", retry=pymongo.errors.PyMongoError)  # fmt: skip
    return nodes, addresses


@pytest.fixture
def replica_set(tmp_path: Path) -> Iterator[list[str]]:
    """A secured 3-member set of doubles (keyFile), its administrator and a user with only
    readAnyDatabase, made through the localhost exception: the members' addresses."""
    key = tmp_path / "keyfile"
    key.write_text(KEY)
    key.chmod(0o600)
    launcher = Launcher(tmp_path)
    try:
        nodes, addresses = initiated_set(launcher, "--keyFile", str(key))
        nodes[0].client().admin.command("createUser", ADMIN[0], pwd=ADMIN[1], roles=["root"])
        admin = nodes[0].client(username=ADMIN[0], password=ADMIN[1])
        admin.admin.command("createUser", READER[0], pwd=READER[1], roles=["readAnyDatabase"])
        yield addresses
    finally:
        launcher.cleanup()


def _credential(api: Api, project_id: str, name: str, user: tuple[str, str]) -> str:
    response = api.call("POST", f"/projects/{project_id}/credentials", json={
        "name": name, "kind": "mongodb",
        "fields": {"username": user[0], "password": user[1]}})  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()["id"]


def ended(api: Api, path: str) -> dict[str, Any]:
    """GET path until its status is no longer queued or running (a discovery, a plan)."""
    return wait_for(
        lambda: (a := api.call("GET", path).json())["status"] not in ("queued", "running") and a,
        timeout=90, every=0.5, what=f"{path} to end", seen=lambda: api.call("GET", path).json(),
    )  # fmt: skip


def _discovered(api: Api, project_id: str, job_id: str) -> dict[str, Any]:
    return ended(api, f"/projects/{project_id}/takeover/{job_id}")


def test_a_set_is_discovered_from_one_address_shown_then_registered_with_its_members(
    admin_api: Api,
    start_worker: Callable[[], Proc],
    replica_set: list[str],
    tmp_path: Path,
    settings: Settings,
) -> None:
    worker = start_worker()
    admin_api.use_token()
    project_id = admin_api.call("POST", "/projects", json={"name": "legacy"}).json()["id"]
    reader = _credential(admin_api, project_id, "reader", READER)
    ops = _credential(admin_api, project_id, "ops", ADMIN)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = admin_api.call("POST", f"/projects/{project_id}/credentials", json={
        "name": "hosts", "kind": "ssh_key",
        "fields": {"username": "root", "private_key": key.read_text()}}).json()["id"]  # fmt: skip

    # A credential without clusterMonitor: refused, naming the role; nothing to register.
    started = admin_api.call("POST", f"/projects/{project_id}/takeover", json={
        "address": replica_set[1], "mongodb_credential_id": reader})  # fmt: skip
    assert started.status_code == 202, started.text
    refused = _discovered(admin_api, project_id, started.json()["job"]["id"])
    assert refused["status"] == "failed" and refused["deployment"] is None
    assert "(reader@admin) lacks the roles needed" in refused["reason"]
    assert "clusterMonitor on admin (its roles: readAnyDatabase@admin)" in refused["reason"]
    again = admin_api.call("POST", f"/projects/{project_id}/takeover", json={
        "dry_run": False, "job_id": refused["job"]["id"], "name": "legacy-rs"})  # fmt: skip
    assert again.status_code == 409 and "discovery is failed" in again.json()["message"]

    # The console's form with the administrator: the page shows what was found, nothing more.
    form = admin_api.form(f"/projects/{project_id}/takeover",
                          {"address": replica_set[1], "mongodb_credential_id": ops,
                           "ssh_credential_id": ssh},
                          page=f"/projects/{project_id}/takeover")  # fmt: skip
    job_id = re.search(r"/takeover/([0-9a-f]{32})$", form.url).group(1)
    found = _discovered(admin_api, project_id, job_id)
    assert found["status"] == "successful", found["reason"]
    deployment = found["deployment"]
    assert deployment["topology"] == "replicaset" and deployment["name"] == "rs0"
    assert [(m["host"], m["state"], m["version"], m["priority"])
            for m in deployment["sets"][0]["members"]] == [
        (replica_set[0], "PRIMARY", "7.0.14", 2), (replica_set[1], "SECONDARY", "7.0.14", 1),
        (replica_set[2], "SECONDARY", "7.0.14", 1)]  # fmt: skip
    assert deployment["fcv"] == "7.0" and deployment["hosts"] == ["127.0.0.1"]
    assert deployment["security"]["auth"] is True
    assert deployment["security"]["cluster_auth"] == "keyFile"
    page = admin_api.http.get(f"{admin_api.base}/projects/{project_id}/takeover/{job_id}").text
    assert "Replica set\nrs0, MongoDB 7.0.14, FCV 7.0" in page
    assert "access control on" in page and "Read as ops@admin" in page
    assert 'id="takeover-confirm"' in page
    assert admin_api.call("GET", f"/projects/{project_id}/hosts").json() == []
    assert admin_api.call("GET", f"/projects/{project_id}/clusters").json() == []

    # Confirmed: the host and the cluster are registered, the page shows the members. (The
    # worker stops first: the agents' job stays queued, as 127.0.0.1 is no host to install on.)
    worker.stop()
    confirmed = admin_api.form(f"/projects/{project_id}/takeover/{job_id}", {"name": "legacy-rs"},
                               page=f"/projects/{project_id}/takeover/{job_id}")  # fmt: skip
    cluster_id = confirmed.url.rstrip("/").rsplit("/", 1)[1]
    hosts = admin_api.call("GET", f"/projects/{project_id}/hosts").json()
    assert [(h["name"], h["address"]) for h in hosts] == [("127.0.0.1", "127.0.0.1")]
    cluster = admin_api.call("GET", f"/clusters/{cluster_id}").json()
    assert (cluster["name"], cluster["topology"], cluster["replica_set"],
            cluster["mongodb_version"], cluster["state"]) == (
        "legacy-rs", "replicaset", "rs0", "7.0.14", "registered")  # fmt: skip
    assert cluster["security"] == {"auth": True, "tls": False}
    states = ("PRIMARY", "SECONDARY", "SECONDARY")
    ports = [int(a.rpartition(":")[2]) for a in replica_set]
    members = [(m["port"], m["state"]) for m in cluster["members"]]
    assert members == list(zip(ports, states, strict=True))
    assert cluster["connection_string"] == f"mongodb://{','.join(replica_set)}/?replicaSet=rs0"
    shown = admin_api.http.get(f"{admin_api.base}/clusters/{cluster_id}").text
    for address in replica_set:
        port = address.rpartition(":")[2]
        assert f"<td>{port}</td><td>rs0</td><td>member</td>" in shown
    assert "took it over" in shown and 'id="deploy-form"' not in shown
    # Three members on one host's ports: no layout of WAP's to assume, no upgrade offered.
    assert 'id="upgrade-form"' not in shown
    # Members sharing a port would be laid out as WAP lays a set out (takeover.layout_vars):
    # upgraded and restarted then, never converted (its keyFile and certificates are not known,
    # to secure new config servers and routers with).
    store = Store(settings.mongodb_uri or "")
    try:
        store.clusters.update_one({"_id": cluster_id}, {"$set": {"deploy_vars": {
            "wap_replicaset_hosts": ["127.0.0.1"], "mongodb_replicaset_name": "rs0",
            "mongodb_replicaset_port": 27017, "mongodb_replicaset_tls": False}}})  # fmt: skip
    finally:
        store.close()
    shown = admin_api.http.get(f"{admin_api.base}/clusters/{cluster_id}").text
    assert 'id="upgrade-form"' in shown and 'id="convert-form"' not in shown
    converted = admin_api.call("POST", f"/clusters/{cluster_id}/conversions", json={})
    assert converted.status_code == 409 and "security settings" in converted.json()["message"]
    # Its hosts' agents: a deploy_agent.yml job on the cluster's hosts with the discovery's
    # credentials, as a deploy job ends.
    agents_job = re.search(r"Agents are being deployed on its hosts: job ([0-9a-f]{8})",
                           confirmed.text)  # fmt: skip
    assert agents_job, "the page does not say that the agents are being deployed"
    listed = admin_api.call("GET", f"/projects/{project_id}/jobs").json()
    (job,) = [j for j in listed if j["id"].startswith(agents_job.group(1))]
    assert job["cluster_id"] == cluster_id
    assert (job["playbook"], job["status"]) == ("deploy_agent.yml", "queued")
    assert job["host_ids"] == [hosts[0]["id"]]
    assert admin_api.call("POST", f"/jobs/{job['id']}/cancel").status_code == 202
    # Once only; and the audit log says who discovered and who registered what.
    twice = admin_api.call("POST", f"/projects/{project_id}/takeover", json={
        "dry_run": False, "job_id": job_id, "name": "other"})  # fmt: skip
    assert twice.status_code == 409 and "registered already" in twice.json()["message"]
    audit = admin_api.call("GET", "/audit").json()
    actions = [(a["action"], a["target"]) for a in audit]
    assert ("cluster.takeover", "legacy/legacy-rs") in actions
    (registered,) = [a for a in audit if a["action"] == "cluster.takeover"]
    assert registered["detail"]["agents_job"] == job["id"]
    assert ("host.add", "legacy/127.0.0.1") in actions
    assert sum(a == "cluster.takeover.discover" for a, _ in actions) == 2
    assert ADMIN[1] not in str(audit) and READER[1] not in str(audit)
