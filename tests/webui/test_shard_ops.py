"""Shards and conversions from the cluster's page and the API (issue 16), with a real worker
running the playbooks' plans against doubles on 127.0.0.1 (a host the platform reaches as
itself, connection local): a shard's removal planned from the live catalog, refused for the last
shard, run once the cluster's name is typed (drained for real), the cluster's record then
without it; a new shard's plan; a replica set's conversion planned from the live set (its
members restarted primary last), queued once confirmed, audited, and the cluster recorded as
sharded, its connection string the routers', when that run ends well."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest

from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture)
from tests.mongod_double.shardedset import start_cluster
from tests.webui.helpers import REPO, Api, Proc, wait_for
from tests.webui.test_takeover import ADMIN, ended, replica_set  # noqa: F401 (a fixture)
from webui.config import Settings
from webui.services import deployments
from webui.store import Store, now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(playbooks_dir=REPO / "playbooks")


def _project(api: Api, credential: bool = False) -> tuple[str, str, list[str]]:
    """A project with the local host (and the administrator's credential): ids."""
    project_id = api.call("POST", "/projects", json={"name": "shapes"}).json()["id"]
    host = api.call("POST", f"/projects/{project_id}/hosts", json={
        "name": "local1", "address": "127.0.0.1", "connection": "local"}).json()  # fmt: skip
    credentials = []
    if credential:
        credentials.append(api.call("POST", f"/projects/{project_id}/credentials", json={
            "name": "ops", "kind": "mongodb",
            "fields": {"username": ADMIN[0], "password": ADMIN[1]}}).json()["id"])  # fmt: skip
    return project_id, host["id"], credentials


def _run(api: Api, run_id: str) -> dict:
    return wait_for(lambda: (j := api.call("GET", f"/jobs/{run_id}").json())["status"]
                    in ("successful", "failed") and j, timeout=120, what="the run")  # fmt: skip


def test_a_shard_is_drained_and_removed_from_the_console_and_a_new_one_planned(
    admin_api: Api, start_worker: Callable[[], Proc], store: Store, launcher,  # noqa: F811
) -> None:  # fmt: skip
    sharded = start_cluster(launcher, 1)
    router = sharded.routers[0].port
    client = sharded.router_client()
    for name in ("shard1", "shard2"):
        client.admin.command("addShard", sharded.shard_host(name))
    client.admin.command("shardCollection", "app.events", key={"_id": "hashed"})
    client.app.events.insert_many([{"_id": n} for n in range(100)])
    client.admin.command("enableSharding", "shop", primaryShard="shard2")
    client.shop.orders.insert_many([{"_id": n} for n in range(20)])
    owned = sharded.config.client().config.chunks.count_documents({"shard": "shard2"})
    start_worker()
    admin_api.use_token()
    project_id, host_id, _ = _project(admin_api)
    names = ("shard1", "shard2")
    ports = {n: sharded.shards[n].port for n in names}
    sets = [{"name": n, "port": ports[n], "members": [{"host": f"127.0.0.1:{ports[n]}"}]}
            for n in names]  # fmt: skip
    instances = [{"name": s["name"], "port": s["port"], "replica_set": s["name"],
                  "cluster_role": "shardsvr"} for s in sets]  # fmt: skip
    cluster_id = uuid.uuid4().hex
    store.clusters.insert_one({
        "_id": cluster_id, "project_id": project_id, "name": "sh", "host_ids": [host_id],
        "playbook": "deploy_sharded.yml", "topology": "sharded", "replica_set": None,
        "port": router, "router_port": router, "shards": 2, "routers": 1,
        "mongodb_version": "7.0.14", "security": {"auth": False, "tls": False},
        "credential_ids": [], "created_at": now(), "created_by": "admin",
        "deploy_vars": {
            "wap_sharded_hosts": ["local1"], "wap_mongos_hosts": ["local1"],
            "wap_mongod_instances": instances, "wap_replica_sets": sets,
            "mongodb_sharding_port": router,
            "mongodb_sharding_shards": [{"host": sharded.shard_host(n)} for n in names],
        }})  # fmt: skip
    # Its deploy job's report of the members (what the member table shows).
    reported = [{"host": f"127.0.0.1:{ports[n]}", "replica_set": n, "state": "PRIMARY",
                 "health": 1} for n in names]  # fmt: skip
    store.jobs.insert_one({"_id": uuid.uuid4().hex, "cluster_id": cluster_id,
                           "cluster_action": "deploy", "status": "successful",
                           "created_at": now(), "finished_at": now()})  # fmt: skip
    deploy = store.jobs.find_one({"cluster_id": cluster_id, "cluster_action": "deploy"})
    store.job_events.insert_one({"job_id": deploy["_id"], "event": "playbook_on_stats",
                                 "artifact_data": {"wap_members": reported}})  # fmt: skip
    page = f"/clusters/{cluster_id}"
    shown = admin_api.http.get(admin_api.base + page).text
    assert 'id="shard-add-form"' in shown and 'id="shard-remove-form"' in shown
    assert "<td>shard2</td>" in shown

    api = f"/clusters/{cluster_id}/shard-removals"
    wrong = admin_api.call("POST", api, json={"shard": "shard9"})
    assert wrong.json()["errors"]["json"] == {
        "shard": ["one of the cluster's shards: shard1, shard2"]
    }
    planned = admin_api.form(f"{page}/shard-remove/plan", {"shard": "shard2"}, page=page)
    job_id = re.search(r"/shard-remove/([0-9a-f]{32})$", planned.url).group(1)
    plan = ended(admin_api, f"{api}/{job_id}")
    assert plan.get("status") == "successful", plan
    assert plan["title"] == "Remove shard shard2"
    assert (
        plan["steps"][0] == f"removeShard shard2: the balancer moves its {owned} chunks to shard1"
    )
    assert plan["steps"][1].startswith("movePrimary shop to shard1")
    shown = admin_api.http.get(f"{admin_api.base}{page}/shard-remove/{job_id}").text
    assert "movePrimary shop to shard1" in shown and 'id="plan-confirm"' in shown
    assert not any(s.get("draining") for s in client.admin.command("listShards")["shards"])

    mistyped = admin_api.call(
        "POST", api, json={"dry_run": False, "job_id": job_id, "confirm": "x"}
    )
    assert mistyped.status_code == 422 and mistyped.json()["errors"]["json"] == {
        "confirm": ["type sh"]
    }
    ran = admin_api.form(f"{page}/shard-remove/{job_id}", {"confirm": "sh"},
                         page=f"{page}/shard-remove/{job_id}")  # fmt: skip
    run_id = re.search(r"/jobs/([0-9a-f]{32})$", ran.url).group(1)
    assert _run(admin_api, run_id)["status"] == "successful"
    log = [e.get("stdout", "") for e in admin_api.call("GET", f"/jobs/{run_id}/events").json()]
    assert any("shard2 draining: " in line for line in log)  # the progress in the live log
    assert [s["_id"] for s in client.admin.command("listShards")["shards"]] == ["shard1"]
    assert (
        client.app.events.count_documents({}) == 100
        and client.shop.orders.count_documents({}) == 20
    )
    cluster = store.clusters.find_one({"_id": cluster_id})  # recorded when the run ended well
    assert cluster["shards"] == 1
    assert [s["host"] for s in cluster["deploy_vars"]["mongodb_sharding_shards"]] == [
        sharded.shard_host("shard1")]  # fmt: skip
    assert [s["name"] for s in cluster["deploy_vars"]["wap_replica_sets"]] == ["shard1"]

    shown = admin_api.http.get(admin_api.base + page).text
    assert "<td>shard1</td>" in shown and "<td>shard2</td>" not in shown  # as recorded now

    last = admin_api.call("POST", api, json={"shard": "shard1"})
    assert last.json()["errors"]["json"] == {
        "shard": ["shard1 is the cluster's last shard: MongoDB cannot remove it"]}  # fmt: skip

    added = admin_api.call("POST", f"/clusters/{cluster_id}/shards", json={})
    assert added.status_code == 202, added.text
    plan = ended(admin_api, f"/clusters/{cluster_id}/shards/{added.json()['job']['id']}")
    assert plan.get("status") == "successful", plan
    port = next(p for p in range(27018, 28000) if p not in (27019, router, sets[0]["port"]))
    assert plan["shard"] == "shard2" and plan["steps"][-1].startswith(
        f"addShard shard2/127.0.0.1:{port} through the router on local1")  # fmt: skip
    assert (
        plan["steps"][0] == "install MongoDB and the cluster's keyFile and certificates on local1"
    )

    # Such a run ending well (as the worker records it): the new set is listed, not yet reported.
    variables = store.jobs.find_one({"_id": added.json()["job"]["id"]})["extra_vars"]
    run = {"_id": uuid.uuid4().hex, "cluster_id": cluster_id, "cluster_action": "shard-add",
           "status": "successful", "extra_vars": variables}  # fmt: skip
    deployments.topology_job_finished(store, run)
    assert store.clusters.find_one({"_id": cluster_id})["shards"] == 2
    shown = admin_api.http.get(admin_api.base + page).text
    table = shown[shown.index('id="member-table"') : shown.index("</table>")]
    assert f"<td>{port}</td><td>shard2</td><td>shard member</td>" in table, table

    audit = [(a["action"], a["target"]) for a in admin_api.call("GET", "/audit").json()
             if a["action"].startswith(("cluster.shard", "cluster.topology"))]  # fmt: skip
    assert sorted(audit) == [("cluster.shard_remove", "sh"), ("cluster.topology", "sh"),
                             ("cluster.topology", "sh")]  # fmt: skip


def test_a_replica_set_conversion_is_planned_from_the_live_set_then_recorded_as_sharded(
    admin_api: Api, start_worker: Callable[[], Proc], store: Store,
    replica_set: list[str],  # noqa: F811 (the fixture)
) -> None:  # fmt: skip
    worker = start_worker()
    admin_api.use_token()
    project_id, host_id, credentials = _project(admin_api, credential=True)
    port = int(replica_set[0].rpartition(":")[2])
    cluster_id = uuid.uuid4().hex
    store.clusters.insert_one({
        "_id": cluster_id, "project_id": project_id, "name": "rs", "host_ids": [host_id],
        "playbook": "deploy_replicaset.yml", "topology": "replicaset", "replica_set": "rs0",
        "port": port, "mongodb_version": "7.0.14", "security": {"auth": True, "tls": False},
        "credential_ids": credentials, "created_at": now(), "created_by": "admin",
        "deploy_vars": {"wap_replicaset_hosts": ["local1"], "mongodb_replicaset_name": "rs0",
                        "mongodb_replicaset_port": port, "mongodb_config_auth": True,
                        "mongodb_config_instances": [{"name": "rs0", "port": port,
                                                      "replica_set": "rs0"}]},
    })  # fmt: skip
    page = f"/clusters/{cluster_id}"
    assert 'id="convert-form"' in admin_api.http.get(admin_api.base + page).text
    api = f"/clusters/{cluster_id}/conversions"
    assert admin_api.call("POST", api, json={"routers": 2}).json()["errors"]["json"] == {
        "routers": ["a whole number from 1 to 1 (one per host)"]}  # fmt: skip
    planned = admin_api.form(f"{page}/convert/plan", {"routers": "1"}, page=page)
    job_id = re.search(r"/convert/([0-9a-f]{32})$", planned.url).group(1)
    plan = ended(admin_api, f"{api}/{job_id}")
    assert plan.get("status") == "successful", plan
    assert (
        plan["title"] == "Convert replica set rs0 to a sharded cluster, the set as its first shard"
    )
    restarts = (f"{replica_set[1]}, {replica_set[2]}, {replica_set[0]} (the primary, stepped down "
                "first), each waited for until it serves, caught up")  # fmt: skip
    assert plan["steps"][2].endswith(restarts)
    assert plan["routers"] == ["local1:27017"]
    job = store.jobs.find_one({"_id": job_id})
    assert "mongodb_config_instances" not in job["extra_vars"]  # the playbook sets its own

    worker.kill_all()  # the run is queued and checked, not carried out: no service here
    ran = admin_api.form(
        f"{page}/convert/{job_id}", {"confirm": "rs"}, page=f"{page}/convert/{job_id}"
    )
    run_id = re.search(r"/jobs/([0-9a-f]{32})$", ran.url).group(1)
    run = store.jobs.find_one({"_id": run_id})
    assert (run["playbook"], run["cluster_action"]) == ("convert_cluster.yml", "convert")
    assert "wap_convert_plan_only" not in run["extra_vars"]
    again = admin_api.call("POST", api, json={"dry_run": False, "job_id": job_id, "confirm": "rs"})
    assert again.status_code == 409 and "has run already" in again.json()["message"]
    assert [a["target"] for a in admin_api.call("GET", "/audit").json()
            if a["action"] == "cluster.convert"] == ["rs"]  # fmt: skip

    # The run ends well (as the worker records it): the cluster is a sharded cluster now.
    store.jobs.update_one({"_id": run_id}, {"$set": {"status": "successful"}})
    deployments.topology_job_finished(store, store.jobs.find_one({"_id": run_id}))
    cluster = store.clusters.find_one({"_id": cluster_id})
    assert (cluster["topology"], cluster["shards"], cluster["routers"]) == ("sharded", 1, 1)
    assert cluster["deploy_vars"]["mongodb_sharding_shards"] == [{"host": f"rs0/127.0.0.1:{port}"}]
    shown = admin_api.http.get(admin_api.base + page).text
    assert "mongodb://127.0.0.1:27017/" in shown and 'id="shard-add-form"' in shown
