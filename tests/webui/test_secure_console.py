"""Access control and TLS enabled from the cluster's page (issue 16): offered where the cluster's
recorded settings say they are off; the passes planned by a real worker running
secure_cluster.yml (plan only) from what each member runs, shown before anything changes; the run
queued once the cluster's name is typed, audited as cluster.secure; the credential's password in
no event, answer or page. The set: three doubles on 127.0.0.1 without access control or TLS, on
a host the platform reaches as itself (connection local). The passes themselves are shown on lab
hosts by tests/deploy/test_secure_cluster.py."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymongo
import pytest

from tests.mongod_double.conftest import Launcher
from tests.webui.helpers import REPO, Api, Proc
from tests.webui.test_takeover import ADMIN, ended, initiated_set
from webui.config import Settings
from webui.services import member_ops
from webui.store import Store, now

# The passes of access control and TLS on an open set, as the plan names them (they share
# their restarts: three, the users between the first two).
PASSES = [
    "1. restart with the keyFile and transitionToAuth (connections with or without "
    "authentication accepted) and at allowTLS (TLS and plain accepted, peers reached without TLS)",
    "2. create the administrator and the users",
    "3. restart without transitionToAuth (access control enforced) and at preferTLS (TLS and "
    "plain accepted, peers reached with TLS)",
    "4. restart at requireTLS (only TLS accepted)",
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(playbooks_dir=REPO / "playbooks")


@pytest.fixture
def open_set(tmp_path: Path) -> Iterator[list[str]]:
    """Three doubles in a set, without access control or TLS: the members' addresses."""
    launcher = Launcher(tmp_path)
    try:
        yield initiated_set(launcher)[1]
    finally:
        launcher.cleanup()


def _cluster(api: Api, store: Store, addresses: list[str]) -> str:
    """The set as a cluster WAP deployed on a local host, without security, with a MongoDB
    credential (the administrator access control creates)."""
    project_id = api.call("POST", "/projects", json={"name": "sec"}).json()["id"]
    host = api.call("POST", f"/projects/{project_id}/hosts", json={
        "name": "local1", "address": "127.0.0.1", "connection": "local"}).json()  # fmt: skip
    credential = api.call("POST", f"/projects/{project_id}/credentials", json={
        "name": "ops", "kind": "mongodb",
        "fields": {"username": ADMIN[0], "password": ADMIN[1]}}).json()  # fmt: skip
    port = int(addresses[0].rpartition(":")[2])
    cluster_id = uuid.uuid4().hex
    store.clusters.insert_one({
        "_id": cluster_id, "project_id": project_id, "name": "orders", "host_ids": [host["id"]],
        "playbook": "deploy_replicaset.yml", "topology": "replicaset", "replica_set": "rs0",
        "port": port, "mongodb_version": "7.0.14", "security": {"auth": False, "tls": False},
        "credential_ids": [credential["id"]], "created_at": now(), "created_by": "admin",
        "deploy_vars": {
            "wap_replicaset_hosts": ["local1"], "mongodb_replicaset_name": "rs0",
            "mongodb_replicaset_port": port, "mongodb_security_cluster_name": "sec-orders",
            "mongodb_config_instances": [{"name": "rs0", "port": port, "replica_set": "rs0"}],
            "mongodb_config_auth": False, "mongodb_config_tls_mode": "disabled"}})  # fmt: skip
    return cluster_id


def test_access_control_and_tls_are_planned_from_each_member_then_run_once_confirmed(
    admin_api: Api, start_worker: Callable[[], Proc], store: Store, open_set: list[str]
) -> None:
    worker = start_worker()
    admin_api.use_token()
    cluster_id = _cluster(admin_api, store, open_set)
    page = f"/clusters/{cluster_id}"
    shown = admin_api.http.get(admin_api.base + page).text
    assert 'id="secure-form"' in shown
    assert 'value="auth" checked> Enable access control' in shown
    assert 'value="tls" checked> Enable TLS' in shown

    api = f"/clusters/{cluster_id}/security-changes"
    nothing = admin_api.call("POST", api, json={"what": []})
    assert nothing.status_code == 422
    assert nothing.json()["errors"]["json"] == {
        "what": ["access control (auth), TLS (tls) or both"]
    }

    planned = admin_api.form(f"{page}/secure/plan", {"what": ["auth", "tls"]}, page=page)
    job_id = re.search(r"/secure/([0-9a-f]{32})$", planned.url).group(1)
    plan = ended(admin_api, f"{api}/{job_id}")
    assert plan.get("status") == "successful", plan
    order = f"replica set rs0, member by member ({', '.join(open_set)})"
    assert plan["title"] == "enable access control and TLS on replica set rs0"
    assert [s.partition(": ")[0] for s in plan["steps"]] == PASSES
    assert order in plan["steps"][0]
    assert [(p["host"], p["auth"], p["tls"]) for p in plan["processes"]] == [
        (a, "open", "disabled") for a in open_set]  # fmt: skip
    shown = admin_api.http.get(f"{admin_api.base}{page}/secure/{job_id}").text
    assert "4. restart at requireTLS (only TLS accepted)" in shown and 'id="plan-confirm"' in shown
    with pymongo.MongoClient(open_set[0], directConnection=True) as client:
        opts = client.admin.command("getCmdLineOpts")["parsed"]
        assert "security" not in opts and "tls" not in opts.get("net", {})

    worker.kill_all()  # the run is queued and checked, not carried out: no service here
    wrong = admin_api.call("POST", api, json={"dry_run": False, "job_id": job_id,
                                              "confirm": "other"})  # fmt: skip
    assert wrong.status_code == 422 and wrong.json()["errors"]["json"] == {
        "confirm": ["type orders"]}  # fmt: skip
    ran = admin_api.form(f"{page}/secure/{job_id}", {"confirm": "orders"},
                         page=f"{page}/secure/{job_id}")  # fmt: skip
    run_id = re.search(r"/jobs/([0-9a-f]{32})$", ran.url).group(1)
    job = store.jobs.find_one({"_id": run_id})
    assert (job["playbook"], job["cluster_id"]) == ("secure_cluster.yml", cluster_id)
    assert job["extra_vars"]["wap_secure_auth"] and job["extra_vars"]["wap_secure_tls"]
    assert "wap_secure_plan_only" not in job["extra_vars"]
    again = admin_api.call("POST", api, json={"dry_run": False, "job_id": job_id,
                                              "confirm": "orders"})  # fmt: skip
    assert again.status_code == 409 and "has run already" in again.json()["message"]
    audit = [a for a in admin_api.call("GET", "/audit").json() if a["action"] == "cluster.secure"]
    assert [(a["target"], a["detail"]["what"]) for a in audit] == [("orders", ["auth", "tls"])]

    # The administrator's password: in no event of the plan, no answer, no job, no page.
    events = json.dumps(list(store.job_events.find({"job_id": job_id}, {"_id": 0})), default=str)
    assert '"wap_security_plan"' in events and ADMIN[1] not in events
    for text in (json.dumps(plan), json.dumps(job, default=str), shown,
                 json.dumps(admin_api.call("GET", "/audit").json())):  # fmt: skip
        assert ADMIN[1] not in text


def test_a_run_that_ended_well_is_recorded_in_the_cluster() -> None:
    cluster = {"topology": "sharded", "security": {"auth": False, "tls": False},
               "deploy_vars": {"mongodb_config_auth": False, "mongodb_config_tls_mode": "disabled",
                               "wap_sharded_hosts": ["a"]}}  # fmt: skip
    auth_only = member_ops.recorded_security(cluster, {"auth_level": "enforced",
                                                       "tls_mode": "disabled"})  # fmt: skip
    assert auth_only["security"] == {"auth": True, "tls": False}
    assert auth_only["deploy_vars"]["mongodb_config_key_file"] == "/etc/mongodb/keyfile"
    assert auth_only["deploy_vars"]["mongodb_config_tls_mode"] == "disabled"
    both = member_ops.recorded_security(cluster, {"auth_level": "enforced",
                                                  "tls_mode": "requireTLS"})  # fmt: skip
    assert both["security"] == {"auth": True, "tls": True}
    assert both["deploy_vars"]["mongodb_sharding_tls"] and both["deploy_vars"]["wap_sharded_hosts"]
    # Stopped at the transition: nothing recorded as on.
    half = member_ops.recorded_security(cluster, {"auth_level": "transitionToAuth",
                                                  "tls_mode": "preferTLS"})  # fmt: skip
    assert half["security"] == {"auth": False, "tls": False}
    assert member_ops.security_offers({**cluster, **both}) == {}
    assert member_ops.security_offers({**cluster, **auth_only}) == {"tls": "Enable TLS"}
