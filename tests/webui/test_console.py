"""The operator's console through Flask's test client: the overview and its empty states, the
hosts page, the credential form's errors beside their fields, and clusters on registered hosts
created from the form and from the API alike (the same service: the same cluster and the same
deploy job, variables built from fields and checked as any job's)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.labhosts import REPO
from tests.webui.test_web import api_token, csrf, setup_admin
from webui.config import Settings
from webui.services import deployments
from webui.store import Store, now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The repository's deploy playbooks: their documented variables are what jobs are checked
    against."""
    return settings.with_(playbooks_dir=REPO / "playbooks")


def project_with_hosts(client: FlaskClient, count: int = 3) -> tuple:
    """A set-up platform with an API token, a project, `count` hosts and a MongoDB administrator
    credential: (auth headers, project, host ids, credential)."""
    setup_admin(client)
    auth = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "shop"}, headers=auth).get_json()
    hosts = [
        client.post(
            f"/api/v1/projects/{project['id']}/hosts",
            json={"name": f"db{n}", "address": f"10.7.0.{n}"}, headers=auth,
        ).get_json()["id"]
        for n in range(1, count + 1)
    ]  # fmt: skip
    admin = client.post(
        f"/api/v1/projects/{project['id']}/credentials",
        json={"name": "dba", "kind": "mongodb",
              "fields": {"username": "admin", "password": "a-long-admin-pw"}},
        headers=auth,
    ).get_json()  # fmt: skip
    return auth, project, hosts, admin


def text(client: FlaskClient, path: str) -> str:
    return client.get(path).get_data(as_text=True)


def test_the_overview_says_what_to_do_next_and_counts_what_exists(
    client: FlaskClient, store: Store
) -> None:
    setup_admin(client)
    page = text(client, "/")
    assert "<h1>Overview</h1>" in page and "create a project" in page
    for area in ("Overview", "Projects", "Hosts", "Clusters", "Backups", "Jobs", "Audit", "Users"):
        assert f">{area}</a>" in page, area
    for absent in ("Alerts", "Diagnose"):  # not built yet: not in the navigation
        assert absent not in page
    assert 'aria-current="page">Overview' in page
    auth = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "shop"}, headers=auth).get_json()
    assert "register the hosts" in text(client, "/")
    client.post(f"/api/v1/projects/{project['id']}/hosts",
                json={"name": "db1", "address": "10.7.0.1"}, headers=auth)  # fmt: skip
    page = text(client, "/")
    assert "create a cluster" in page
    counts = re.findall(r'id="tile-(\w+)"><span class="count">(\d+)', page)
    assert dict(counts) == {"projects": "1", "hosts": "1", "clusters": "0", "running": "0",
                            "failed": "0"}  # fmt: skip
    # jobs that failed today count, and link to their page; yesterday's do not
    day = 24 * 3600
    for n, (status, ended) in enumerate((("failed", now() - 60), ("lost", now() - 2 * day),
                                         ("running", None))):  # fmt: skip
        store.jobs.insert_one({"_id": f"{n}" * 32, "project_id": project["id"], "status": status,
                               "playbook": "steps.yml", "created_at": now() - 3 * day,
                               "finished_at": ended, "host_ids": []})  # fmt: skip
    page = text(client, "/")
    counts = dict(re.findall(r'id="tile-(\w+)"><span class="count">(\d+)', page))
    assert counts["failed"] == "1" and counts["running"] == "1"
    assert f'href="/jobs/{"0" * 32}"' in page


def test_hosts_page_registers_a_host_and_shows_errors_beside_the_field(
    client: FlaskClient,
) -> None:
    setup_admin(client)
    auth = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "shop"}, headers=auth).get_json()
    assert "No host yet" in text(client, "/hosts")
    form = {"csrf_token": csrf(client, "/hosts"), "project_id": project["id"], "name": "db1",
            "address": "not an address!", "port": "22", "user": "root"}  # fmt: skip
    bad = client.post("/hosts", data=form)
    page = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert re.search(r'id="h-address"[^>]*aria-invalid="true"', page)
    assert '<span class="field-error">an IP address or a DNS name</span>' in page
    assert 'value="db1"' in page  # what was typed stays
    good = client.post("/hosts", data={**form, "address": "10.7.0.1"})
    assert good.status_code == 302
    page = text(client, "/hosts")
    assert "10.7.0.1:22" in page and ">shop</a>" in page


def test_the_credential_form_shows_its_errors_beside_the_fields(client: FlaskClient) -> None:
    setup_admin(client)
    auth = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "shop"}, headers=auth).get_json()
    path = f"/projects/{project['id']}"
    page = text(client, path)
    assert "data-kind-form" in page and 'data-kind="aws"' in page and "forms.js" in page
    answer = client.post(f"{path}/credentials", data={
        "csrf_token": csrf(client, path), "name": "key", "kind": "ssh_key", "username": "root",
        "private_key": "not a key", "password": "never-shown-again"})  # fmt: skip
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert re.search(r'id="c-private_key"[^>]*aria-invalid="true"', page)
    assert "not a private key this platform can read" in page
    assert 'value="root"' in page and "never-shown-again" not in page


def cluster_form(client: FlaskClient, project_id: str, **fields: Any) -> dict[str, Any]:
    path = f"/projects/{project_id}/clusters/new"
    return {"csrf_token": csrf(client, path), "name": "orders", "topology": "replicaset",
            "mongodb_version": "7.0.14", "replica_set": "rs0", "port": "27017", "auth": "1",
            "tls": "1", **fields}  # fmt: skip


def test_a_replica_set_from_the_form_and_from_the_api_is_the_same_cluster_and_job(
    client: FlaskClient, store: Store
) -> None:
    auth, project, hosts, admin = project_with_hosts(client)
    form = client.get(f"/projects/{project['id']}/clusters/new").get_data(as_text=True)
    assert 'name="topology"' in form and 'name="host_ids"' in form
    assert "playbook" not in form and "extra_vars" not in form  # no playbook, no YAML

    made = client.post(f"/projects/{project['id']}/clusters", data=cluster_form(
        client, project["id"], host_ids=hosts, mongodb_credential_id=admin["id"]))  # fmt: skip
    assert made.status_code == 302 and "/jobs/" in made.headers["Location"]
    by_form = store.clusters.find_one({"name": "orders"})
    job = store.jobs.find_one({"cluster_id": by_form["_id"]})
    assert job["status"] == "queued" and job["cluster_action"] == "deploy"
    assert job["playbook"] == "deploy_replicaset.yml" and job["host_ids"] == hosts
    assert job["credential_ids"] == [admin["id"]]
    variables = job["extra_vars"]
    assert variables["wap_replicaset_hosts"] == ["db1", "db2", "db3"]
    assert variables["mongodb_replicaset_members"] == [
        {"host": "10.7.0.1:27017", "priority": 2}, {"host": "10.7.0.2:27017"},
        {"host": "10.7.0.3:27017"}]  # fmt: skip
    assert variables["mongodb_config_tls_mode"] == "requireTLS"
    assert variables["mongodb_security_cluster_auth"] == "keyfile"
    assert "mongodb_install_tarball" not in variables  # no package: MongoDB's repositories

    by_api = client.post(f"/api/v1/projects/{project['id']}/clusters", headers=auth, json={
        "name": "orders2", "host_ids": hosts, "mongodb_version": "7.0.14",
        "mongodb_credential_id": admin["id"]})  # fmt: skip
    assert by_api.status_code == 201, by_api.get_json()
    body = by_api.get_json()
    assert body["state"] == "deploying" and body["job"]["status"] == "queued"
    assert [m["state"] for m in body["members"]] == ["unknown"] * 3
    assert body["connection_string"] == (
        "mongodb://10.7.0.1:27017,10.7.0.2:27017,10.7.0.3:27017/?replicaSet=rs0&tls=true"
    )
    api_job = store.jobs.find_one({"_id": body["job"]["id"]})
    same = {k: v for k, v in variables.items() if k != "mongodb_security_cluster_name"}
    assert {k: v for k, v in api_job["extra_vars"].items()
            if k != "mongodb_security_cluster_name"} == same  # fmt: skip
    assert api_job["extra_vars"]["mongodb_security_cluster_name"] == "shop-orders2"

    page = text(client, f"/clusters/{by_form['_id']}")
    assert 'id="member-table"' in page and page.count("<td>member</td>") == 3
    assert "replicaSet=rs0&amp;tls=true" in page and "a-long-admin-pw" not in page
    listing = text(client, "/clusters")
    assert "orders2" in listing and "replicaset" in listing and "7.0.14" in listing
    assert "2 deploying" in text(client, "/")
    job_page = text(client, made.headers["Location"])  # the job links back to its cluster
    assert f'href="/clusters/{by_form["_id"]}"' in job_page
    audit = text(client, "/audit?action=job.start")  # the audit log links to the jobs it names
    assert f'href="/jobs/{job["_id"]}"' in audit and f'href="/jobs/{api_job["_id"]}"' in audit


def test_a_wrong_field_is_shown_beside_it_and_nothing_is_created(
    client: FlaskClient, store: Store
) -> None:
    auth, project, hosts, _ = project_with_hosts(client)
    bad = client.post(f"/projects/{project['id']}/clusters", data=cluster_form(
        client, project["id"], host_ids=hosts[:2], mongodb_version="seven",
        mongodb_credential_id=""))  # fmt: skip
    page = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert "a MongoDB version such as 7.0.14" in page and "pick 1, 3, 5 or 7 hosts" in page
    assert "access control needs the administrator" in page
    assert re.search(r'id="f-mongodb_version"[^>]*aria-invalid="true"', page)
    assert page.count("checked>") >= 2  # the hosts picked stay picked
    api = client.post(f"/api/v1/projects/{project['id']}/clusters", headers=auth,
                      json={"name": "x", "host_ids": hosts, "auth": False, "port": 80})  # fmt: skip
    assert api.status_code == 422 and "port" in api.get_json()["errors"]["json"]
    assert store.clusters.count_documents({}) == 0 and store.jobs.count_documents({}) == 0


def test_a_sharded_cluster_has_config_servers_shards_and_routers(
    client: FlaskClient, store: Store, settings: Settings
) -> None:
    auth, project, hosts, admin = project_with_hosts(client)
    packages = settings.data_dir / "packages"
    packages.mkdir(parents=True)
    (packages / "mongodb-linux-x86_64-debian12-7.0.14.tgz").write_bytes(b"stand-in")
    body = client.post(f"/api/v1/projects/{project['id']}/clusters", headers=auth, json={
        "name": "events", "topology": "sharded", "host_ids": hosts, "shards": 2, "routers": 2,
        "mongodb_credential_id": admin["id"], "tls": False})  # fmt: skip
    assert body.status_code == 201, body.get_json()
    job = store.jobs.find_one({"_id": body.get_json()["job"]["id"]})
    variables = job["extra_vars"]
    assert job["playbook"] == "deploy_sharded.yml"
    assert [s["name"] for s in variables["wap_replica_sets"]] == ["cfg", "shard1", "shard2"]
    assert [i["port"] for i in variables["wap_mongod_instances"]] == [27019, 27018, 27020]
    assert variables["wap_mongos_hosts"] == ["db1", "db2"]
    assert variables["mongodb_sharding_shards"][1] == {
        "host": "shard2/10.7.0.1:27020,10.7.0.2:27020,10.7.0.3:27020"}  # fmt: skip
    assert variables["wap_mongos_instances"][0]["config_db"].startswith("cfg/10.7.0.1:27019,")
    # the package the platform offers is the one file path a job gets from the platform itself
    assert variables["mongodb_install_tarball"] == str(
        packages / "mongodb-linux-x86_64-debian12-7.0.14.tgz"
    )
    shown = client.get(f"/api/v1/clusters/{body.get_json()['id']}", headers=auth).get_json()
    assert shown["connection_string"] == "mongodb://10.7.0.1:27017,10.7.0.2:27017/"
    assert len(shown["members"]) == 9  # cfg, shard1, shard2 on each of three hosts


def test_an_operator_cannot_smuggle_variables_or_hosts_through_the_cluster_api(
    client: FlaskClient, store: Store
) -> None:
    auth, project, hosts, _ = project_with_hosts(client)
    other = client.post("/api/v1/projects", json={"name": "other"}, headers=auth).get_json()
    theirs = client.post(
        f"/api/v1/projects/{other['id']}/hosts", json={"name": "x1", "address": "10.8.0.1"},
        headers=auth,
    ).get_json()  # fmt: skip
    answers = [
        client.post(f"/api/v1/projects/{project['id']}/clusters", headers=auth, json=body)
        for body in (
            {"name": "c1", "host_ids": [theirs["id"]], "auth": False},
            {"name": "c2", "host_ids": hosts, "auth": False, "replica_set": "{{ lookup('env') }}"},
            {"name": "c3", "host_ids": hosts, "auth": False,
             "extra_vars": {"mongodb_install_tarball": "/etc/shadow"}},
            {"name": "c4", "host_ids": hosts, "auth": False, "playbook": "steps.yml"},
        )
    ]  # fmt: skip
    assert [a.status_code for a in answers[:2]] == [422, 422]
    # unknown fields are dropped: the cluster is what its fields say, nothing else
    for answer in answers[2:]:
        assert answer.status_code == 201
        job = store.jobs.find_one({"_id": answer.get_json()["job"]["id"]})
        assert job["playbook"] == "deploy_replicaset.yml"
        assert "mongodb_install_tarball" not in job["extra_vars"]
    assert deployments.PLAYBOOKS == {"replicaset": "deploy_replicaset.yml",
                                     "sharded": "deploy_sharded.yml"}  # fmt: skip


def test_members_come_from_the_last_finished_deploy_and_a_deploy_again_converges(
    client: FlaskClient, store: Store
) -> None:
    auth, project, hosts, admin = project_with_hosts(client)
    request = {"name": "orders", "host_ids": hosts, "mongodb_credential_id": admin["id"]}
    path = f"/api/v1/projects/{project['id']}/clusters"
    body = client.post(path, headers=auth, json=request).get_json()
    cluster_id, job_id = body["id"], body["job"]["id"]
    again = client.post(f"/api/v1/clusters/{cluster_id}/deploy", headers=auth)
    assert again.status_code == 409 and "being deployed" in again.get_json()["message"]
    # The job ends and reports its members (as the deploy playbooks' set_stats do).
    reported = [{"host": f"10.7.0.{n}:27017", "state": s, "health": 1, "replica_set": "rs0"}
                for n, s in ((1, "PRIMARY"), (2, "SECONDARY"), (3, "RECOVERING"))]  # fmt: skip
    store.jobs.update_one({"_id": job_id}, {"$set": {"status": "successful", "finished_at": 1.0}})
    store.job_events.insert_one({"job_id": job_id, "counter": 1, "event": "playbook_on_stats",
                                 "artifact_data": {"wap_members": reported}})  # fmt: skip
    shown = client.get(f"/api/v1/clusters/{cluster_id}", headers=auth).get_json()
    assert shown["state"] == "running"
    assert [(m["host"], m["state"]) for m in shown["members"]] == [
        ("db1", "PRIMARY"), ("db2", "SECONDARY"), ("db3", "RECOVERING")]  # fmt: skip
    page = text(client, f"/clusters/{cluster_id}")
    assert "RECOVERING" in page and f"job {job_id[:8]}" in page and 'id="deploy-form"' in page
    second = client.post(f"/api/v1/clusters/{cluster_id}/deploy", headers=auth)
    assert second.status_code == 202, second.get_json()
    assert second.get_json()["extra_vars"] == store.jobs.find_one({"_id": job_id})["extra_vars"]
    # a running redeploy: deploying again, the last finished report still shown
    shown = client.get(f"/api/v1/clusters/{cluster_id}", headers=auth).get_json()
    assert shown["state"] == "deploying" and shown["members"][0]["state"] == "PRIMARY"
