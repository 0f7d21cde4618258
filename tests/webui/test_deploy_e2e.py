"""The whole console flow on lab hosts, in Chromium: register three lab hosts, an SSH key and the
MongoDB administrator as credentials, create a cluster that runs playbooks/deploy_replicaset.yml
as a job, watch it live to its recap, and find a healthy, secured replica set."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.deploy.deployment import build_double_tarball, wait_healthy
from tests.labhosts import REPO, LabHosts
from tests.webui.helpers import PASSWORD, Proc
from webui.config import Settings

pytestmark = [pytest.mark.lab, pytest.mark.browser]
ADMIN_PASSWORD = "console-admin-pw"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The repository's own playbooks, not the test ones, and time for a loaded machine."""
    return settings.with_(playbooks_dir=REPO / "playbooks", job_timeout=600)


@pytest.fixture
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("WAP_TEST_MONGODB_TARBALL")
    return Path(given) if given else build_double_tarball(tmp_path_factory.mktemp("double"))


def test_a_replica_set_deployed_from_the_console(
    page: Page, web: str, start_worker: Callable[[], Proc], lab3: LabHosts, tarball: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    start_worker()
    page.goto(web + "/setup")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("#setup-form button")
    page.fill("#project-form input[name=name]", "lab")
    page.click("#project-form button")
    for name, address in sorted(lab3.hosts.items()):
        page.fill("#host-form input[name=name]", name)
        page.fill("#host-form input[name=address]", address)
        page.click("#host-form button")
    page.fill("#credential-form input[name=name]", "lab-key")
    page.select_option("#credential-form select[name=kind]", "ssh_key")
    page.fill("#credential-form input[name=username]", "root")
    page.fill("#credential-form textarea[name=private_key]", lab3.lab.key_file.read_text())
    page.click("#credential-form button")
    page.fill("#credential-form input[name=name]", "mongo-admin")
    page.select_option("#credential-form select[name=kind]", "mongodb")
    page.fill("#credential-form input[name=username]", "admin")
    page.fill("#credential-form input[name=password]", ADMIN_PASSWORD)
    page.click("#credential-form button")

    # The lab's variables as a person types them in the form: data (the members' addresses), not
    # templates, which the platform refuses.
    text = (REPO / "inventory" / "lab" / "replicaset.yml").read_text()
    for name, address in lab3.hosts.items():
        text = text.replace(f"{{{{ hostvars['{name}']['ansible_host'] }}}}", address)
    variables = yaml.safe_load(text)
    for name in list(variables):  # the administrator comes from the credential instead
        if re.match(
            r"mongodb_(security_admin|replicaset_login|users_login)_(user|password)$", name
        ):
            del variables[name]
    secrets = tmp_path / "secrets"
    variables.update(
        mongodb_install_tarball=str(tarball), mongodb_security_secrets_dir=str(secrets)
    )
    page.fill("#cluster-form input[name=name]", "rs0")
    page.select_option("#cluster-form select[name=playbook]", "deploy_replicaset.yml")
    for box in page.locator("#cluster-form input[name=host_ids]").all():
        box.check()
    for box in page.locator("#cluster-form input[name=credential_ids]").all():
        box.check()
    page.fill("#cluster-form textarea[name=extra_vars]", yaml.safe_dump(variables))
    page.click("#cluster-form button")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    page.wait_for_function("document.querySelectorAll('#log .line').length > 3", timeout=60_000)
    page.reload()  # mid-deployment
    expect(page.locator("#job-status")).to_have_text(
        re.compile("successful|failed|lost"), timeout=400_000
    )
    log = page.text_content("#log") or ""
    assert page.text_content("#job-status") == "successful", log[-4000:]
    expect(page.locator("#recap-table")).to_contain_text("lab3")
    assert ADMIN_PASSWORD not in page.content()

    import pymongo

    client = pymongo.MongoClient(
        lab3.hosts["lab1"], 27017, tls=True, tlsCAFile=str(secrets / "ca.pem"),
        username="admin", password=ADMIN_PASSWORD, serverSelectionTimeoutMS=20000,
    )  # fmt: skip
    status = wait_healthy(client, 3)
    assert sorted(m["stateStr"] for m in status["members"]) == ["PRIMARY", "SECONDARY", "SECONDARY"]
