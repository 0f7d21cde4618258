"""The console as a new admin walks it, on lab hosts, in Chromium: set WAP up, create a project,
register three lab hosts and an SSH key, create a replica set on them from the cluster form (no
playbook, no YAML), watch its job, find the cluster page with three members and their states,
and the overview with one cluster and the job; screenshots on the way, checked not blank; then
the upgrade the cluster page offers, its plan shown, run, and the page showing the new release.
Then the same cluster through the API alone reaches the same state.

MongoDB comes from the mongod double's tarball, offered as a package of the platform
(`<data dir>/packages`), as an air-gapped site would offer MongoDB's own."""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.deploy.deployment import build_agent_wheelhouse, build_double_tarball
from tests.labhosts import REPO, LabHosts
from tests.waiting import wait_until
from tests.webui.helpers import PASSWORD, Api, Proc, env_for, free_port, wait_healthy_web
from webui.config import Settings
from webui.services import metrics
from webui.store import Store

pytestmark = [pytest.mark.lab, pytest.mark.browser]
ADMIN_PASSWORD = "console-admin-pw"
SETTLED = ["PRIMARY", "SECONDARY", "SECONDARY"]
# The variance of a screenshot's grey levels: 0 for a blank page, hundreds for a page of text.
NOT_BLANK = 50.0
VARIANCE = """async src => {
  const image = new Image();
  image.src = src;
  await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0, sum = 0, squares = 0;
  for (let i = 0; i < data.length; i += 4) {
    const grey = (data[i] + data[i + 1] + data[i + 2]) / 3;
    n += 1; sum += grey; squares += grey * grey;
  }
  const mean = sum / n;
  return squares / n - mean * mean;
}"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The repository's own playbooks, not the test ones, and time for a loaded machine."""
    return settings.with_(playbooks_dir=REPO / "playbooks", job_timeout=600)


@pytest.fixture
def package(settings: Settings) -> Path:
    """The mongod double's tarball among the platform's MongoDB packages."""
    folder = settings.data_dir / "packages"
    folder.mkdir(parents=True, exist_ok=True)
    return build_double_tarball(folder)


DEPLOY_FIRST = "6.0.20"  # the console's replica set starts two majors below its upgrade
UPGRADE_TO = "8.0.4"


@pytest.fixture
def worker(settings: Settings, start_worker: Callable[..., Proc], tmp_path: Path) -> Proc:
    """A worker whose home (where the deploy roles keep each cluster's CA and keyFile) is the
    test's own."""
    home = tmp_path / "home"
    home.mkdir()
    return start_worker({**env_for(settings), "HOME": str(home)})


def screenshot(page: Page, path: Path) -> None:
    """Save a screenshot and check that it is not blank (its grey levels vary)."""
    png = page.screenshot(path=str(path), full_page=True)
    variance = page.evaluate(VARIANCE, "data:image/png;base64," + base64.b64encode(png).decode())
    assert variance > NOT_BLANK, f"{path.name} looks blank (variance {variance:.1f})"


def test_a_new_admin_deploys_a_replica_set_from_the_console(
    page: Page, web: str, worker: Proc, lab3: LabHosts, package: Path, tmp_path: Path
) -> None:
    page.goto(web + "/")
    page.fill("#setup-form input[name=username]", "admin")
    page.fill("#setup-form input[name=password]", PASSWORD)
    page.fill("#setup-form input[name=password2]", PASSWORD)
    page.click("#setup-form button")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#next-step")).to_contain_text("create a project")
    screenshot(page, tmp_path / "1-overview-empty.png")

    page.click("#next-step a")
    page.fill("#project-form input[name=name]", "lab")
    page.click("#project-form button")
    expect(page.locator("h1")).to_contain_text("lab")

    page.click("nav >> text=Hosts")
    for name, address in sorted(lab3.hosts.items()):
        page.fill("#host-form input[name=name]", name)
        page.fill("#host-form input[name=address]", address)
        page.click("#host-form button")
        expect(page.locator(".flash.ok")).to_contain_text(f"Host {name} registered")
    expect(page.locator("#host-table tbody tr")).to_have_count(3)

    page.locator("#host-table a", has_text=re.compile("^lab$")).first.click()  # its project
    kind = page.locator("#credential-form select[name=kind]")
    kind.select_option("mongodb")
    expect(page.locator("#credential-form textarea[name=private_key]")).to_be_hidden()
    page.fill("#credential-form input[name=name]", "mongo-admin")
    page.fill("#credential-form input[name=username]", "admin")
    page.fill("#credential-form input[name=password]", ADMIN_PASSWORD)
    page.click("#credential-form button")
    expect(page.locator(".flash.ok")).to_contain_text("Credential mongo-admin stored")
    kind.select_option("ssh_key")
    expect(page.locator("#credential-form input[name=password]")).to_be_hidden()
    page.fill("#credential-form input[name=name]", "lab-key")
    page.fill("#credential-form input[name=username]", "root")
    page.fill("#credential-form textarea[name=private_key]", lab3.lab.key_file.read_text())
    page.click("#credential-form button")
    expect(page.locator(".flash.ok")).to_contain_text("Credential lab-key stored")
    screenshot(page, tmp_path / "2-project.png")

    build_double_tarball(package.parent, DEPLOY_FIRST)  # offered beside the default release
    page.click("#new-cluster")
    form = page.locator("#cluster-form")
    expect(form.locator("input[name=shards]")).to_be_hidden()  # the replica set's fields only
    form.locator("input[name=name]").fill("orders")
    for box in form.locator("input[name=host_ids]").all():
        box.check()
    expect(form.locator("input[name=mongodb_version]")).to_have_value("7.0.14")
    form.locator("input[name=mongodb_version]").fill(DEPLOY_FIRST)
    expect(form.locator("input[name=auth]")).to_be_checked()
    expect(form.locator("input[name=tls]")).to_be_checked()
    screenshot(page, tmp_path / "3-cluster-form.png")
    form.locator("button").click()

    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_function("document.querySelectorAll('#log .line').length > 3", timeout=60_000)
    screenshot(page, tmp_path / "4-job-running.png")
    expect(page.locator("#job-status")).to_have_text(
        re.compile("successful|failed|lost|canceled"), timeout=500_000
    )
    log = page.text_content("#log") or ""
    assert page.text_content("#job-status") == "successful", log[-4000:]
    assert ADMIN_PASSWORD not in page.content()

    page.click("nav >> text=Clusters")
    row = page.locator("#cluster-table tbody tr", has_text="orders")
    expect(row).to_contain_text("running")
    expect(row).to_contain_text("replicaset")
    expect(row).to_contain_text(DEPLOY_FIRST)
    row.locator("a", has_text="orders").click()
    members = page.locator("#member-table tbody tr")
    expect(members).to_have_count(3)
    states = sorted(members.locator("td:nth-child(5)").all_text_contents())
    assert states == SETTLED, states
    expect(page.locator("#member-table")).to_contain_text("lab1")
    expect(page.locator("#cluster-state")).to_have_text("running")
    uri = page.text_content("#connection-string") or ""
    assert uri.endswith("/?replicaSet=rs0&tls=true") and ADMIN_PASSWORD not in uri
    expect(page.locator("#member-report")).to_contain_text(job_id[:8])
    screenshot(page, tmp_path / "5-cluster.png")

    page.click("nav >> text=Overview")
    expect(page.locator("#tile-clusters .count")).to_have_text("1")
    expect(page.locator("#tile-clusters")).to_contain_text("1 running")
    expect(page.locator("#tile-hosts .count")).to_have_text("3")
    expect(page.locator(f"#overview-jobs a[href='/jobs/{job_id}']")).to_be_visible()
    expect(page.locator("#overview-jobs")).to_contain_text("deploy_replicaset.yml")
    screenshot(page, tmp_path / "6-overview.png")

    # Day two: the upgrade the cluster page offers shows its plan, two majors (7.0's binaries on
    # every member, the FCV raised to 7.0, then 8.0's and FCV 8.0), runs once the name is typed,
    # and the page then shows the new release.
    build_double_tarball(package.parent, UPGRADE_TO)  # the platform offers it from now on
    page.click("nav >> text=Clusters")
    page.locator("#cluster-table a", has_text="orders").click()
    page.fill("#f-upgrade-version", UPGRADE_TO)
    page.select_option("#f-upgrade-fcv", "now")
    page.locator("#upgrade-form button").click()
    expect(page.locator("#plan-status")).to_have_text(
        re.compile("successful|failed|lost|canceled"), timeout=180_000
    )  # the plan's page reloads itself while its job runs
    assert page.text_content("#plan-status") == "successful", page.text_content("main")
    steps = page.locator("#plan-steps li").all_text_contents()
    assert [s.split(" on ")[0] for s in steps] == [
        "binaries 7.0.14", "FCV 7.0 (confirm: true)", f"binaries {UPGRADE_TO}",
        "FCV 8.0 (confirm: true)"], steps  # fmt: skip
    for binaries in (steps[0], steps[2]):
        assert all(f"{address}:27017" in binaries for address in lab3.hosts.values()), steps
    screenshot(page, tmp_path / "7-upgrade-plan.png")
    page.fill("#f-confirm", "orders")
    page.locator("#plan-confirm button").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    expect(page.locator("#job-status")).to_have_text(
        re.compile("successful|failed|lost|canceled"), timeout=600_000
    )
    log = page.text_content("#log") or ""
    assert page.text_content("#job-status") == "successful", log[-4000:]
    page.click("nav >> text=Clusters")
    row = page.locator("#cluster-table tbody tr", has_text="orders")
    expect(row).to_contain_text(UPGRADE_TO)
    row.locator("a", has_text="orders").click()
    expect(page.locator("main")).to_contain_text(f"of MongoDB {UPGRADE_TO} on 3 registered hosts")
    states = sorted(page.locator("#member-table tbody tr td:nth-child(5)").all_text_contents())
    assert states == SETTLED, states
    for name in sorted(lab3.hosts):
        running = lab3.ssh(name, "/usr/local/bin/mongod --version").stdout
        assert f"db version v{UPGRADE_TO}" in running, (name, running)
    screenshot(page, tmp_path / "8-upgraded.png")


def api_project(
    web: str, lab: LabHosts, setup_token: str = ""
) -> tuple[Api, str, list[str], dict[str, str]]:
    """Through the API alone: set up (with the setup link's token from another address than
    loopback), a project with the lab's hosts, its SSH key and MongoDB administrator. (api, the
    project's path, host ids, credential id by kind)."""
    api = Api(web)
    if setup_token:
        setup = f"/setup?token={setup_token}"
        form = {"csrf_token": api.csrf(setup), "username": "admin", "password": PASSWORD,
                "password2": PASSWORD}  # fmt: skip
        assert api.http.post(web + setup, data=form).ok
    else:
        assert api.setup().ok
    api.use_token()
    project = api.call("POST", "/projects", json={"name": "lab"}).json()
    base = f"/projects/{project['id']}"
    hosts = [
        api.call("POST", f"{base}/hosts", json={"name": name, "address": address}).json()["id"]
        for name, address in sorted(lab.hosts.items())
    ]
    for body in (
        {"name": "lab-key", "kind": "ssh_key",
         "fields": {"username": "root", "private_key": lab.lab.key_file.read_text()}},
        {"name": "mongo-admin", "kind": "mongodb",
         "fields": {"username": "admin", "password": ADMIN_PASSWORD}},
    ):  # fmt: skip
        assert api.call("POST", f"{base}/credentials", json=body).status_code == 201
    credentials = {c["kind"]: c["id"] for c in api.call("GET", f"{base}/credentials").json()}
    return api, base, hosts, credentials


def deployed(api: Api, base: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create the cluster, wait for its deploy job to succeed: the cluster as the API shows it."""
    made = api.call("POST", f"{base}/clusters", json=body)
    assert made.status_code == 201, made.text
    cluster = made.json()
    assert cluster["state"] == "deploying" and cluster["job"]["status"] == "queued"

    def job() -> dict[str, Any]:
        return api.call("GET", f"/jobs/{cluster['job']['id']}").json()

    done = wait_until(
        lambda: job()["status"] not in ("queued", "running") and job(),
        timeout=580, every=2, what="the deploy job to end", seen=lambda: job()["status"],
    )  # fmt: skip
    assert done["status"] == "successful", done
    return api.call("GET", f"/clusters/{cluster['id']}").json()


def test_the_same_replica_set_through_the_api_alone_ends_with_agents(
    settings: Settings,
    processes: list[Proc],
    worker: Proc,
    lab3: LabHosts,
    package: Path,
    tmp_path: Path,
) -> None:
    """WAP listening on the lab's bridge, where the hosts reach it (WAP_PUBLIC_URL), with the
    agent's wheelhouse: the deploy job ends with an agent on every host, its token never in the
    job's log, and every member's samples on the platform."""
    gateway = lab3.lab.state().hosts["lab1"].gateway
    bind = f"{gateway}:{free_port()}"
    env = {
        **env_for(settings),
        "WAP_BIND": bind,
        "WAP_PUBLIC_URL": f"http://{bind}",
        "WAP_AGENT_WHEELHOUSE": str(build_agent_wheelhouse(tmp_path / "wheelhouse")),
    }
    web = Proc([sys.executable, "-m", "wap.cli", "web"], tmp_path / "web-lab.log", env)
    processes.append(web)
    base_url = f"http://{bind}"
    wait_healthy_web(web, base_url, timeout=30, what="wap web on the lab bridge")
    token = (settings.data_dir / "setup_token").read_text().strip()
    api, base, hosts, credentials = api_project(base_url, lab3, setup_token=token)
    shown = deployed(api, base, {
        "name": "orders", "host_ids": hosts, "mongodb_version": "7.0.14",
        "ssh_credential_id": credentials["ssh_key"],
        "mongodb_credential_id": credentials["mongodb"]})  # fmt: skip
    assert shown["state"] == "running"
    assert sorted(m["state"] for m in shown["members"]) == SETTLED, shown["members"]
    assert sorted(m["host"] for m in shown["members"]) == ["lab1", "lab2", "lab3"]
    assert shown["connection_string"].endswith("/?replicaSet=rs0&tls=true")

    store = Store(settings.mongodb_uri or "")
    job = store.jobs.find_one({"cluster_id": shown["id"]})
    log = api.http.get(f"{base_url}/jobs/{job['_id']}/log")
    assert log.ok, log.status_code
    job_log = log.text
    assert "Deploy the WAP agent" in job_log
    for name in sorted(lab3.hosts):
        out = lab3.ssh(name, "systemctl is-active wap-agent; cat /etc/wap-agent/token").stdout
        state, host_token = out.split()
        assert state == "active"
        assert host_token.startswith("wapa_") and host_token not in job_log
    assert "wapa_" not in job_log
    try:
        for host_id in hosts:
            wait_until(
                lambda h=host_id: any(
                    s["n"] == "mongodb_replset_my_state"
                    for b in metrics.host_batches(store, h, fields=("samples",))
                    for s in b["samples"]
                ),
                timeout=2 * 10 + 30, every=1, what=f"a member's samples from host {host_id}",
            )  # fmt: skip
    finally:
        store.close()


@pytest.mark.timeout(900)
def test_a_sharded_cluster_through_the_api(
    web: str, worker: Proc, lab3: LabHosts, package: Path
) -> None:
    api, base, hosts, credentials = api_project(web, lab3)
    shown = deployed(api, base, {
        "name": "events", "topology": "sharded", "host_ids": hosts, "shards": 2, "routers": 2,
        "ssh_credential_id": credentials["ssh_key"],
        "mongodb_credential_id": credentials["mongodb"]})  # fmt: skip
    assert shown["state"] == "running"
    by_set: dict[str, list[str]] = {}
    for member in shown["members"]:
        by_set.setdefault(member["replica_set"], []).append(member["state"])
    assert {name: sorted(states) for name, states in by_set.items()} == dict.fromkeys(
        ("cfg", "shard1", "shard2"), SETTLED
    ), shown["members"]
    routers = ",".join(f"{lab3.hosts[h]}:27017" for h in ("lab1", "lab2"))
    assert shown["connection_string"] == f"mongodb://{routers}/?tls=true"
