"""A cluster on AWS from the console, in Chromium, against the stand-in cloud: moto's server on
127.0.0.1 (fake keys, metadata lookups off, a dead proxy), lab hosts standing in for the instances
it runs. Pick the project's credentials, fill the spec, see the plan, confirm; the job provisions
and deploys with its live log; the replica set is healthy at the instances' addresses; deleting
the cluster is a teardown job that leaves nothing tagged for it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pymongo
import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.aws.cloud import (
    FAKE_KEY,
    FAKE_SECRET,
    IMAGE,
    REGION,
    StandIn,
    ec2_client,
    moto_server,
    offline_env,
    tag_dict,
    tagged,
)
from tests.deploy.deployment import build_double_tarball, wait_healthy
from tests.labhosts import REPO, LabHosts, free_subnet
from tests.webui.helpers import PASSWORD, Proc, env_for
from webui.config import Settings

pytestmark = [pytest.mark.lab, pytest.mark.browser]
ADMIN_PASSWORD = "aws-console-admin-pw"
TAGS = {"wap:project": "acme", "wap:cluster": "orders"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The repository's own playbooks, and time for provisioning on a loaded machine."""
    return settings.with_(playbooks_dir=REPO / "playbooks", job_timeout=1200)


@pytest.fixture
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def offline_worker(settings: Settings, start_worker: Callable[..., Proc]) -> Proc:
    """A worker whose jobs cannot reach real AWS: no AWS settings of this machine, metadata
    lookups off, a dead proxy for anything without an explicit endpoint. The AWS keys (fake) come
    from the project's credential, as in production."""
    env = {name: value for name, value in env_for(settings).items() if not name.startswith("AWS_")}
    offline = offline_env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PATH"):
        offline.pop(name)
    env.update(offline)
    return start_worker(env)


def fill_form(page: Page, form: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = page.locator(f"{form} [name={name}]")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(label=value)
        else:
            field.fill(value)
    page.click(f"{form} button")


@pytest.mark.timeout(1500)
def test_a_cluster_on_aws_planned_provisioned_and_deleted_from_the_console(
    page: Page, web: str, offline_worker: Proc, moto: str,
    make_lab: Callable[..., LabHosts], tmp_path: Path,
) -> None:  # fmt: skip
    ec2 = ec2_client(moto)
    standin = StandIn(make_lab(1).lab, ec2, TAGS)  # a lab host for each running instance
    standin.start()
    try:
        run_console_flow(page, web, moto, standin, ec2, tmp_path)
    finally:
        standin.stop()
    assert standin.errors == []


def run_console_flow(
    page: Page, web: str, moto: str, standin: StandIn, ec2, tmp_path: Path
) -> None:
    page.goto(web + "/setup")
    fill_form(page, "#setup-form", {"username": "admin", "password": PASSWORD,
                                    "password2": PASSWORD})  # fmt: skip
    page.click("#next-step a")  # the overview's first step: create a project
    fill_form(page, "#project-form", {"name": "acme"})
    for values in (
        {"name": "aws-test", "kind": "AWS keys", "access_key_id": FAKE_KEY,
         "secret_access_key": FAKE_SECRET, "endpoint_url": moto},
        {"name": "platform-key", "kind": "SSH private key", "username": "root",
         "private_key": standin.lab.key_file.read_text()},
        {"name": "dba", "kind": "MongoDB user", "username": "admin", "password": ADMIN_PASSWORD},
    ):  # fmt: skip
        fill_form(page, "#credential-form", values)
        expect(page.locator(".flash.ok")).to_contain_text(f"Credential {values['name']} stored")

    page.click("#new-aws-cluster")
    secrets = tmp_path / "secrets"
    deploy_vars = {
        "wap_provision_volume_setup": False,  # lab hosts have no EBS device
        "mongodb_install_tarball": str(build_double_tarball(tmp_path / "double")),
        "mongodb_security_secrets_dir": str(secrets),
        "mongodb_security_cluster_name": "acme-orders",
        "mongodb_security_cluster_auth": "keyfile",
        "mongodb_security_tls": True,
        "mongodb_config_auth": True,
        "mongodb_config_key_file": "/etc/mongodb/keyfile",
        "mongodb_config_tls_mode": "requireTLS",
        "mongodb_replicaset_tls": True,
    }
    vpc = free_subnet(base="10.64.0.0/10", prefix=16, skip=1)
    fill_form(page, "#aws-cluster-form", {
        "name": "orders", "cloud_credential_id": "aws-test",
        "ssh_credential_id": "platform-key (root)", "mongodb_credential_id": "dba (admin)",
        "region": REGION, "zones": "3", "members": "3", "image": IMAGE, "ssh_user": "root",
        "vpc_cidr": vpc, "platform_cidr": "10.250.0.0/24", "app_cidrs": "10.251.0.0/16",
        "deploy_vars": yaml.safe_dump(deploy_vars),
    })  # fmt: skip

    # The plan, before anything exists.
    expect(page).to_have_url(re.compile(r"/clusters/[0-9a-f]{32}$"))
    expect(page.locator("#cluster-state")).to_have_text("planned")
    resources = page.locator("#plan-resources")
    for zone in "abc":
        expect(resources).to_contain_text(f"in {REGION}{zone}")
    expect(resources.locator("tr", has_text="instance")).to_have_count(3)
    expect(resources.locator("tr", has_text="volume")).to_have_count(3)
    assert all(not items for items in tagged(ec2, TAGS).values())

    # Confirm: the job provisions and deploys, live; a reload mid-way shows every line once.
    page.click("#provision-form button")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    page.wait_for_function("document.querySelectorAll('#log .line').length > 5", timeout=120_000)
    page.reload()
    expect(page.locator("#job-status")).to_have_text(
        re.compile("successful|failed|lost|canceled"), timeout=1_200_000
    )
    log = page.text_content("#log") or ""
    assert page.text_content("#job-status") == "successful", log[-5000:]
    counters = page.eval_on_selector_all(
        "#log .line", "els => els.map(e => Number(e.dataset.counter))"
    )
    assert counters == sorted(set(counters)) and counters[0] == 1
    instances = {tag_dict(i)["Name"]: i for i in tagged(ec2, TAGS)["instance"]}
    recap = page.locator("#recap-table")
    for name in instances:
        expect(recap).to_contain_text(name)
    for secret in (FAKE_SECRET, ADMIN_PASSWORD):
        assert secret not in page.content()

    # A healthy replica set at the instances' addresses.
    addresses = sorted(i["PrivateIpAddress"] for i in instances.values())
    assert len(addresses) == 3
    with pymongo.MongoClient(
        [f"{a}:27017" for a in addresses], tls=True, tlsCAFile=str(secrets / "ca.pem"),
        username="admin", password=ADMIN_PASSWORD, serverSelectionTimeoutMS=30_000,
    ) as client:  # fmt: skip
        status = wait_healthy(client, 3)
    states = sorted(m["stateStr"] for m in status["members"])
    assert states == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert sorted(m["name"].split(":")[0] for m in status["members"]) == addresses

    # Delete: type the name, a teardown job, then nothing tagged for the cluster.
    page.goto(web + "/clusters")
    page.click("text=orders")
    expect(page.locator("#cluster-state")).to_have_text("running")
    table = page.locator("#instance-table")
    for name, instance in instances.items():
        expect(table.locator("tr", has_text=name)).to_contain_text(instance["PrivateIpAddress"])
        expect(table.locator("tr", has_text=name)).to_contain_text(instance["InstanceId"])
    uri = page.text_content("#connection-string") or ""
    assert uri.startswith("mongodb://") and uri.endswith("/?replicaSet=rs0"), uri
    assert sorted(uri[10:].split("/")[0].split(",")) == sorted(f"{a}:27017" for a in addresses)
    page.fill("#delete-form input[name=confirm]", "orders")
    page.click("#delete-form button")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    expect(page.locator("#job-status")).to_have_text(
        re.compile("successful|failed|lost|canceled"), timeout=600_000
    )
    log = page.text_content("#log") or ""
    assert page.text_content("#job-status") == "successful", log[-4000:]
    left = {kind: items for kind, items in tagged(ec2, TAGS).items() if items}
    assert left == {}
    page.goto(web + "/clusters")
    expect(page.locator("main")).not_to_contain_text("orders")
