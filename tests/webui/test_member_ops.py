"""A member's operations from the cluster's page (issue 16): the plan read from the live set by a
real worker running member_operation.yml (plan only), shown before anything changes, then run as a
job once the member's address is typed; a stop that would leave the set without a majority is
refused with the reason and cannot be run. The set: three doubles on 127.0.0.1 with access
control (test_takeover's), on a host the platform reaches as itself (connection local)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pymongo
import pytest

from tests.webui.helpers import REPO, Api, Proc, wait_for
from tests.webui.test_takeover import ADMIN, ended, replica_set  # noqa: F401 (a fixture)
from webui.config import Settings
from webui.store import Store, now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(playbooks_dir=REPO / "playbooks")


def _client(address: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(address, directConnection=True, username=ADMIN[0],
                               password=ADMIN[1], serverSelectionTimeoutMS=5000)  # fmt: skip


def _cluster(api: Api, store: Store, addresses: list[str]) -> str:
    """The set registered as a taken-over cluster on a local host, with its administrator."""
    project_id = api.call("POST", "/projects", json={"name": "ops"}).json()["id"]
    host = api.call("POST", f"/projects/{project_id}/hosts", json={
        "name": "local1", "address": "127.0.0.1", "connection": "local"}).json()  # fmt: skip
    credential = api.call("POST", f"/projects/{project_id}/credentials", json={
        "name": "ops", "kind": "mongodb",
        "fields": {"username": ADMIN[0], "password": ADMIN[1]}}).json()  # fmt: skip
    members = [{"host": "local1", "address": "127.0.0.1", "port": int(a.rpartition(":")[2]),
                "replica_set": "rs0", "role": "member", "state": "SECONDARY", "health": 1}
               for a in addresses]  # fmt: skip
    cluster_id = uuid.uuid4().hex
    store.clusters.insert_one({
        "_id": cluster_id, "project_id": project_id, "name": "rs", "host_ids": [host["id"]],
        "playbook": "takeover_cluster.yml", "topology": "replicaset", "replica_set": "rs0",
        "port": members[0]["port"], "mongodb_version": "7.0.14",
        "security": {"auth": True, "tls": False}, "credential_ids": [credential["id"]],
        "deploy_vars": {}, "created_at": now(), "created_by": "admin",
        "taken_over": {"at": now(), "by": "admin", "job_id": "", "address": addresses[0],
                       "members": members, "routers": []}})  # fmt: skip
    return cluster_id


def _plan(api: Api, cluster_id: str, job_id: str) -> dict[str, Any]:
    return ended(api, f"/clusters/{cluster_id}/member-operations/{job_id}")


def test_a_member_change_is_planned_shown_then_run_and_a_stop_without_majority_refused(
    admin_api: Api, start_worker: Callable[[], Proc], store: Store,
    replica_set: list[str],  # noqa: F811 (the fixture)
) -> None:  # fmt: skip
    start_worker()
    admin_api.use_token()
    cluster_id = _cluster(admin_api, store, replica_set)
    page = f"/clusters/{cluster_id}"
    assert 'id="member-ops"' in admin_api.http.get(admin_api.base + page).text

    # Hide the third member: the plan page shows the step; nothing changed yet.
    planned = admin_api.form(f"{page}/members/plan", {"member": replica_set[2],
                             "operation": "change", "hidden": "true"}, page=page)  # fmt: skip
    job_id = re.search(r"/members/plan/([0-9a-f]{32})$", planned.url).group(1)
    plan = _plan(admin_api, cluster_id, job_id)
    assert plan.get("status") == "successful", plan
    assert plan["steps"] == [f"reconfigure {replica_set[2]}: priority 0, votes 1, hidden True"]
    shown = admin_api.http.get(f"{admin_api.base}{page}/members/plan/{job_id}").text
    assert f"reconfigure {replica_set[2]}: priority 0, votes 1, hidden True" in shown
    with _client(replica_set[0]) as client:
        config = client.admin.command("replSetGetConfig")["config"]
        assert not any(m.get("hidden") for m in config["members"])
    wrong = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "dry_run": False, "job_id": job_id, "confirm": replica_set[1]})  # fmt: skip
    assert wrong.status_code == 422
    ran = admin_api.form(f"{page}/members/plan/{job_id}", {"confirm": replica_set[2]},
                         page=f"{page}/members/plan/{job_id}")  # fmt: skip
    run_id = re.search(r"/jobs/([0-9a-f]{32})$", ran.url).group(1)
    job = wait_for(lambda: (j := admin_api.call("GET", f"/jobs/{run_id}").json())["status"]
                   in ("successful", "failed") and j, timeout=90, what="the run")  # fmt: skip
    assert job["status"] == "successful"
    with _client(replica_set[0]) as client:
        config = client.admin.command("replSetGetConfig")["config"]
    found = [(m["host"], m.get("hidden", False), m["priority"]) for m in config["members"]]
    assert found == [(replica_set[0], False, 2), (replica_set[1], False, 1),
                     (replica_set[2], True, 0)]  # fmt: skip
    again = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "dry_run": False, "job_id": job_id, "confirm": replica_set[2]})  # fmt: skip
    assert again.status_code == 409 and "has run already" in again.json()["message"]

    # A delay on the hidden member, through the API: planned, then run.
    delayed = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "member": replica_set[2], "operation": "change", "delay": 3600})  # fmt: skip
    assert delayed.status_code == 202, delayed.text
    delay_plan = _plan(admin_api, cluster_id, delayed.json()["job"]["id"])
    assert delay_plan["steps"] == [f"reconfigure {replica_set[2]}: priority 0, votes 1, hidden "
                                   "True, secondaryDelaySecs 3600"]  # fmt: skip
    plan_id = delay_plan["job"]["id"]
    run = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "dry_run": False, "job_id": plan_id, "confirm": replica_set[2]})  # fmt: skip
    assert run.status_code == 202, run.text
    run_id = run.json()["run_job_id"]
    job = wait_for(lambda: (j := admin_api.call("GET", f"/jobs/{run_id}").json())["status"]
                   in ("successful", "failed") and j, timeout=90, what="the delay")  # fmt: skip
    assert job["status"] == "successful"
    with _client(replica_set[0]) as client:
        (third,) = [m for m in client.admin.command("replSetGetConfig")["config"]["members"]
                    if m["host"] == replica_set[2]]  # fmt: skip
    assert (third["secondaryDelaySecs"], third["hidden"], third["priority"]) == (3600, True, 0)
    wrong_arbiter = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "member": replica_set[2], "operation": "change", "arbiter": True})  # fmt: skip
    assert wrong_arbiter.status_code == 422
    assert "remove the member, then add it" in str(wrong_arbiter.json())

    # One member down: stopping another would leave 1 of 3 voters; refused, and cannot run.
    with _client(replica_set[1]) as client, pytest.raises(pymongo.errors.PyMongoError):
        client.admin.command("shutdown", force=True)
    started = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "member": replica_set[0], "operation": "stop"})  # fmt: skip
    assert started.status_code == 202, started.text
    refused = _plan(admin_api, cluster_id, started.json()["job"]["id"])
    assert refused["status"] == "failed" and refused["steps"] is None
    assert (f"stopping {replica_set[0]} would leave 1 of 3 voting members up: a majority needs 2"
            in refused["reason"])  # fmt: skip
    assert f"(down already: {replica_set[1]})" in refused["reason"]
    blocked = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "dry_run": False, "job_id": refused["job"]["id"], "confirm": replica_set[0]})  # fmt: skip
    assert (
        blocked.status_code == 409
        and "only a plan that was not refused runs" in (blocked.json()["message"])
    )
    with _client(replica_set[0]) as client:
        assert client.admin.command("hello")["isWritablePrimary"]
    audit = admin_api.call("GET", "/audit").json()
    assert [a["target"] for a in audit if a["action"] == "cluster.member"] == [
        f"rs/{replica_set[2]}"] * 2  # the hiding, then the delay  # fmt: skip

    # Stop managing a member: its mongod keeps running, no operation is planned on it.
    left = admin_api.call("POST", f"/clusters/{cluster_id}/members/managed", json={
        "member": replica_set[2], "managed": False})  # fmt: skip
    assert left.json() == {"unmanaged": [replica_set[2]]}
    not_planned = admin_api.call("POST", f"/clusters/{cluster_id}/member-operations", json={
        "member": replica_set[2], "operation": "restart"})  # fmt: skip
    assert not_planned.status_code == 409
    assert f"WAP no longer manages {replica_set[2]}" in not_planned.json()["message"]
    shown = admin_api.http.get(admin_api.base + page).text
    assert f'{replica_set[2]} <span class="muted">not managed</span>' in shown
    with _client(replica_set[2]) as client:
        assert client.admin.command("hello")["secondary"]
    back = admin_api.form(f"{page}/members/managed", {"member": replica_set[2], "managed": "1"},
                          page=page)  # fmt: skip
    assert f"WAP manages {replica_set[2]} again." in back.text
    actions = [a["action"] for a in admin_api.call("GET", "/audit").json()]
    assert "cluster.member.unmanage" in actions and "cluster.member.manage" in actions


def test_a_rolling_restart_is_planned_from_the_live_set_and_runs_only_once_confirmed(
    admin_api: Api, start_worker: Callable[[], Proc], store: Store,
    replica_set: list[str],  # noqa: F811 (the fixture)
) -> None:  # fmt: skip
    """The cluster page offers a rolling restart with a parameter change, and an upgrade: a bad
    request is refused naming the field; the plan, read from the live set by rolling_restart.yml
    (plan only, nothing written), shows every member in order, and an upgrade's plan its steps;
    the restart runs once, after the cluster's name is typed, as a job carrying the change, and
    the audit records it."""
    worker = start_worker()
    admin_api.use_token()
    cluster_id = _cluster(admin_api, store, replica_set)
    port = int(replica_set[0].rpartition(":")[2])
    deployed = {
        "wap_replicaset_hosts": ["local1"],
        "mongodb_replicaset_name": "rs0",
        "mongodb_replicaset_port": port,
        "mongodb_config_instances": [{"name": "rs0", "port": port, "replica_set": "rs0"}],
    }
    store.clusters.update_one({"_id": cluster_id}, {"$set": {"deploy_vars": deployed},
                                                    "$unset": {"taken_over": ""}})  # fmt: skip
    page = f"/clusters/{cluster_id}"
    shown = admin_api.http.get(admin_api.base + page).text
    assert 'id="rolling-form"' in shown and 'id="upgrade-form"' in shown
    api = f"/clusters/{cluster_id}/rolling-restarts"
    bad = admin_api.call("POST", api, json={"set_parameters": {"no such": 1},
                                            "config": {"net": {"port": 1}}})  # fmt: skip
    assert bad.status_code == 422, bad.text
    fields = bad.json()["errors"]["json"]
    assert fields["set_parameters"] == ["no such: not a parameter name"]
    assert fields["config"] == ["net is written from the cluster's settings"]

    planned = admin_api.form(f"{page}/rolling/plan", {"set_parameters": "ttlMonitorSleepSecs=30",
                             "config": ""}, page=page)  # fmt: skip
    assert "/rolling/" in planned.url, (planned.url, re.findall(r'class="flash[^<]*', planned.text))
    job_id = re.search(r"/rolling/([0-9a-f]{32})$", planned.url).group(1)
    plan = ended(admin_api, f"{api}/{job_id}")
    assert plan.get("status") == "successful", plan
    order = f"restart {', '.join(replica_set)}, one at a time"
    assert (plan["title"], plan["steps"]) == ("rolling restart of rs0", [order])
    assert plan["set_parameters"] == {"ttlMonitorSleepSecs": 30}
    shown = admin_api.http.get(f"{admin_api.base}{page}/rolling/{job_id}").text
    assert order in shown and "ttlMonitorSleepSecs=30" in shown

    # An upgrade is planned the same way, from what the set runs (7.0.14) to the release asked.
    upgrades = f"/clusters/{cluster_id}/upgrades"
    wrong_version = admin_api.call("POST", upgrades, json={"version": "8.0"})
    assert wrong_version.json()["errors"]["json"] == {"version": ["a release such as 8.0.4"]}
    started = admin_api.call("POST", upgrades, json={"version": "8.0.4"})
    assert started.status_code == 202, started.text
    upgrade = ended(admin_api, f"{upgrades}/{started.json()['job']['id']}")
    assert upgrade.get("status") == "successful", upgrade
    binaries = f"binaries 8.0.4 on {', '.join(replica_set)}, one at a time"
    assert upgrade["title"] == "upgrade of rs0 to 8.0.4"
    assert upgrade["steps"] == [binaries, "FCV 8.0 (confirm: true)"]

    worker.kill_all()  # the run is queued and checked, not carried out: no service here
    wrong = admin_api.call("POST", api, json={"dry_run": False, "job_id": job_id,
                                              "confirm": "other"})  # fmt: skip
    assert wrong.status_code == 422 and wrong.json()["errors"]["json"] == {"confirm": ["type rs"]}
    ran = admin_api.form(f"{page}/rolling/{job_id}", {"confirm": "rs"},
                         page=f"{page}/rolling/{job_id}")  # fmt: skip
    run_id = re.search(r"/jobs/([0-9a-f]{32})$", ran.url).group(1)
    job = store.jobs.find_one({"_id": run_id})
    assert (job["playbook"], job["cluster_id"]) == ("rolling_restart.yml", cluster_id)
    assert job["extra_vars"]["wap_rolling_set_parameters"] == {"ttlMonitorSleepSecs": 30}
    assert "wap_rolling_plan_only" not in job["extra_vars"]
    assert admin_api.call("GET", f"{api}/{job_id}").json()["run_job_id"] == run_id
    again = admin_api.call("POST", api, json={"dry_run": False, "job_id": job_id,
                                              "confirm": "rs"})  # fmt: skip
    assert again.status_code == 409 and "has run already" in again.json()["message"]
    audit = [a for a in admin_api.call("GET", "/audit").json()
             if a["action"] == "cluster.rolling_restart"]  # fmt: skip
    assert [a["target"] for a in audit] == ["rs"]
