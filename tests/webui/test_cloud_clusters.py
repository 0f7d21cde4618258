"""Clusters on AWS through the API and the console's forms (Flask's test client, real Redis, no
worker): the plan is shown and stored before anything exists, the jobs carry the plan and the SSH
key's public half but no secret, deleting asks for the name, bad input keeps what was typed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.labhosts import REPO
from tests.webui.test_web import api_token, csrf, setup_admin
from wap.plan import SpecError, plan_from_dict
from wap.plan.spec import TOP_LEVEL_FIELDS
from webui.config import Settings
from webui.services import cloud
from webui.store import Store

AWS_SECRET = "wap-test-aws-secret-CANARY"
PASSPHRASE = "wap-test-passphrase-CANARY"
SPEC = {"region": "eu-west-1", "zones": 3, "members": 3, "platform_cidr": "10.250.0.0/24"}


@pytest.fixture(name="settings")
def repo_playbooks(settings: Settings) -> Settings:
    """The repository's own playbooks: provision_cluster.yml and teardown_cluster.yml."""
    return settings.with_(playbooks_dir=REPO / "playbooks")


@pytest.fixture
def ssh_key(tmp_path: Path) -> tuple[str, str]:
    """A passphrase-protected Ed25519 key and its public line."""
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "wap-test", "-f", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_text(), path.with_suffix(".pub").read_text()


@pytest.fixture
def api(client: FlaskClient) -> dict[str, str]:
    setup_admin(client)
    return api_token(client)


def post(client: FlaskClient, headers: dict[str, str], path: str, body: dict) -> Any:
    return client.post(f"/api/v1{path}", json=body, headers=headers)


def project_with_credentials(
    client: FlaskClient, headers: dict[str, str], ssh_key: tuple[str, str]
) -> dict[str, str]:
    project = post(client, headers, "/projects", {"name": "Acme_Prod.eu"}).get_json()
    ids = {"project": project["id"]}
    for name, kind, fields in (
        ("aws", "aws", {"access_key_id": "AKIAWAPTEST", "secret_access_key": AWS_SECRET,
                        "endpoint_url": "http://127.0.0.1:9"}),
        ("key", "ssh_key", {"username": "admin", "private_key": ssh_key[0],
                            "passphrase": PASSPHRASE}),
        ("dba", "mongodb", {"username": "admin", "password": "wap-test-mongo-CANARY"}),
    ):  # fmt: skip
        done = post(client, headers, f"/projects/{project['id']}/credentials",
                    {"name": name, "kind": kind, "fields": fields})  # fmt: skip
        assert done.status_code == 201, done.get_json()
        ids[kind] = done.get_json()["id"]
    return ids


def request_for(ids: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "name": "orders",
        "spec": {**SPEC, **spec},
        "cloud_credential_id": ids["aws"],
        "ssh_credential_id": ids["ssh_key"],
        "mongodb_credential_id": ids["mongodb"],
        "deploy_vars": {"mongodb_security_tls": True},
    }


def test_an_ssh_key_credential_keeps_its_public_half_and_needs_its_passphrase(
    client: FlaskClient, api: dict[str, str], ssh_key: tuple[str, str]
) -> None:
    project = post(client, api, "/projects", {"name": "keys"}).get_json()
    path = f"/projects/{project['id']}/credentials"
    body = {"name": "k", "kind": "ssh_key", "fields": {"username": "u", "private_key": ssh_key[0]}}
    refused = post(client, api, path, body)
    assert refused.status_code == 422
    assert "give its passphrase" in json.dumps(refused.get_json())
    body["fields"]["passphrase"] = "not-the-passphrase"
    assert post(client, api, path, body).status_code == 422
    body["fields"]["passphrase"] = PASSPHRASE
    stored = post(client, api, path, body)
    assert stored.status_code == 201
    assert stored.get_json()["public"]["public_key"].split()[:2] == ssh_key[1].split()[:2]
    listed = client.get(f"/api/v1{path}", headers=api).get_data(as_text=True)
    assert PASSPHRASE not in listed and "PRIVATE KEY" not in listed


def test_a_plan_is_stored_and_shown_before_anything_exists_then_provisioned_by_a_job(
    client: FlaskClient, api: dict[str, str], ssh_key: tuple[str, str], store: Store
) -> None:
    ids = project_with_credentials(client, api, ssh_key)
    bad = post(client, api, f"/projects/{ids['project']}/clusters/cloud",
               request_for(ids, members=4))  # fmt: skip
    assert bad.status_code == 422
    assert bad.get_json()["errors"]["json"] == {
        "spec.members": ["4 is not allowed; allowed: 3 or 5"]
    }
    assert store.clusters.count_documents({}) == 0

    created = post(client, api, f"/projects/{ids['project']}/clusters/cloud", request_for(ids))
    assert created.status_code == 201, created.get_json()
    cluster = created.get_json()
    assert cluster["state"] == "planned" and store.jobs.count_documents({}) == 0
    plan = cluster["plan"]
    # the project's name, made fit for resource names, tags every resource
    assert plan["tags"] == {"wap:project": "acme-prod-eu", "wap:cluster": "orders"}
    assert [i["zone"] for i in plan["instances"]] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    page = client.get(f"/clusters/{cluster['id']}").get_data(as_text=True)
    for instance in plan["instances"]:
        assert instance["name"] in page
    assert "Provision and deploy" in page

    started = client.post(f"/api/v1/clusters/{cluster['id']}/provision", headers=api)
    assert started.status_code == 202, started.get_json()
    job = started.get_json()
    assert job["playbook"] == "provision_cluster.yml" and job["cluster_action"] == "provision"
    assert sorted(job["credential_ids"]) == sorted([ids["aws"], ids["ssh_key"], ids["mongodb"]])
    extra = job["extra_vars"]
    assert extra["wap_plan"] == plan and extra["mongodb_security_tls"] is True
    assert extra["wap_aws_endpoint_url"] == "http://127.0.0.1:9"
    assert extra["wap_ssh_public_key"].split()[:2] == ssh_key[1].split()[:2]
    everything = json.dumps([store.jobs.find_one(), store.clusters.find_one()], default=str)
    for secret in (AWS_SECRET, PASSPHRASE, "wap-test-mongo-CANARY", "PRIVATE KEY"):
        assert secret not in everything
    assert client.get(f"/api/v1/clusters/{cluster['id']}", headers=api).get_json()["state"] == (
        "provisioning"
    )
    again = client.post(f"/api/v1/clusters/{cluster['id']}/provision", headers=api)
    assert again.status_code == 409 and "provisioning" in again.get_json()["message"]


def test_deleting_asks_for_the_name_and_tears_down_what_was_provisioned(
    client: FlaskClient, api: dict[str, str], ssh_key: tuple[str, str], store: Store
) -> None:
    ids = project_with_credentials(client, api, ssh_key)
    path = f"/projects/{ids['project']}/clusters/cloud"
    planned = post(client, api, path, request_for(ids)).get_json()
    wrong = post(client, api, f"/clusters/{planned['id']}/delete", {"confirm": "other"})
    assert wrong.status_code == 422 and "orders" in json.dumps(wrong.get_json())
    # nothing was ever provisioned: the plan goes at once, no job
    gone = post(client, api, f"/clusters/{planned['id']}/delete", {"confirm": "orders"})
    assert gone.get_json() == {"deleted": True, "job": None}
    assert store.clusters.count_documents({}) == 0 and store.jobs.count_documents({}) == 0

    cluster = post(client, api, path, request_for(ids)).get_json()
    provision = client.post(f"/api/v1/clusters/{cluster['id']}/provision", headers=api).get_json()
    store.jobs.update_one({"_id": provision["id"]}, {"$set": {"status": "failed"}})
    assert client.get(f"/api/v1/clusters/{cluster['id']}", headers=api).get_json()["state"] == (
        "provision failed"
    )
    answer = post(client, api, f"/clusters/{cluster['id']}/delete", {"confirm": "orders"})
    assert answer.status_code == 202
    teardown = answer.get_json()["job"]
    assert teardown["playbook"] == "teardown_cluster.yml"
    assert teardown["credential_ids"] == [ids["aws"]]  # the cloud keys only
    assert teardown["extra_vars"]["wap_teardown_confirm"] == "yes"
    assert teardown["extra_vars"]["wap_plan"] == cluster["plan"]
    assert client.get(f"/api/v1/clusters/{cluster['id']}", headers=api).get_json()["state"] == (
        "deleting"
    )
    # the worker records the end of the teardown job; a successful one removes the cluster
    job = store.jobs.find_one_and_update(
        {"_id": teardown["id"]}, {"$set": {"status": "successful"}}, return_document=True
    )
    cloud.job_finished(store, job)
    assert client.get(f"/api/v1/clusters/{cluster['id']}", headers=api).status_code == 404
    assert store.jobs.count_documents({"cluster_id": cluster["id"]}) == 2  # the jobs stay
    entry = store.audit.find_one({"action": "cluster.delete", "detail.job_id": teardown["id"]})
    assert entry and entry["detail"]["requested_by"] == "admin"


def test_the_console_form_keeps_what_was_typed_and_names_the_bad_field(
    client: FlaskClient, api: dict[str, str], ssh_key: tuple[str, str], store: Store
) -> None:
    ids = project_with_credentials(client, api, ssh_key)
    path = f"/projects/{ids['project']}/clusters/new-aws"
    form = {
        "csrf_token": csrf(client, path), "name": "billing", "cloud_credential_id": ids["aws"],
        "ssh_credential_id": ids["ssh_key"], "region": "eu-west-1", "zones": "2",
        "topology": "replicaset", "members": "3", "volume_type": "gp3",
        "volume_size_gb": "200", "volume_iops": "999999", "platform_cidr": "10.250.0.0/24",
        "app_cidrs": "10.1.0.0/16, 10.2.0.0/16", "deploy_vars": "mongodb_security_tls: true\n",
    }  # fmt: skip
    page = client.post(path, data=form)
    text = page.get_data(as_text=True)
    assert page.status_code == 422
    assert "999999" in text and "10.1.0.0/16, 10.2.0.0/16" in text  # nothing typed is lost
    assert "out of range" in text or "allowed" in text
    assert store.clusters.count_documents({}) == 0
    form["volume_iops"] = "²"  # a digit to str.isdigit, not a number to int()
    assert client.post(path, data=form).status_code == 422
    form["volume_iops"] = "6000"
    done = client.post(path, data=form)
    assert done.status_code == 302
    cluster = store.clusters.find_one({"name": "billing"})
    assert cluster["plan"]["volumes"][0]["iops"] == 6000
    assert cluster["plan"]["volumes"][0]["size_gb"] == 200
    assert len(cluster["plan"]["subnets"]) == 2
    assert cluster["deploy_vars"] == {"mongodb_security_tls": True}
    assert done.headers["Location"].endswith(f"/clusters/{cluster['_id']}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=20)
    | st.sampled_from(["10.0.0.0/16", "eu-west-1", "gp3", "7.0.14", "sharded", "ami-0123456789"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)  # fmt: skip
spec_fields = st.sampled_from([*TOP_LEVEL_FIELDS, "volume", "nonsense"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(spec_fields, json_values, max_size=8))
def test_any_json_spec_gets_a_plan_or_an_error_naming_a_field(fields: dict) -> None:
    """Whatever an API client sends as the spec, planning answers a plan or a SpecError (a 422
    naming the field), never another exception (a 500)."""
    data = {**fields, "project": "acme", "cluster": "orders"}
    try:
        plan_from_dict(data)
    except SpecError as exc:
        assert exc.field and exc.message


def test_a_cluster_on_registered_hosts_is_forgotten_and_its_hosts_stay(
    client: FlaskClient, api: dict[str, str], store: Store
) -> None:
    project = post(client, api, "/projects", {"name": "onprem"}).get_json()
    host = post(client, api, f"/projects/{project['id']}/hosts",
                {"name": "db1", "address": "10.9.0.1"}).get_json()  # fmt: skip
    cluster = post(client, api, f"/projects/{project['id']}/clusters",
                   {"name": "rs9", "host_ids": [host["id"]], "auth": False}).get_json()  # fmt: skip
    shown = client.get(f"/api/v1/clusters/{cluster['id']}", headers=api).get_json()
    assert shown["state"] == "deploying" and not shown.get("plan")
    refused = client.post(f"/api/v1/clusters/{cluster['id']}/provision", headers=api)
    assert refused.status_code == 409 and "registered hosts" in refused.get_json()["message"]
    gone = post(client, api, f"/clusters/{cluster['id']}/delete", {"confirm": "rs9"})
    assert gone.get_json() == {"deleted": True, "job": None}
    assert store.clusters.count_documents({}) == 0
    assert store.jobs.count_documents({}) == 1  # its deploy job stays on the record
    assert store.hosts.count_documents({"project_id": project["id"]}) == 1
