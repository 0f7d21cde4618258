"""Monitoring in Chromium, fed by real agents: a replica set of three mongod doubles on 127.0.0.1,
each member watched by its own `wap-agent run` with the token the platform issued for its host,
registered as a cluster. The cluster page draws PRIMARY and two SECONDARY members and charts
with data; the primary steps down and the page shows the new primary without a reload."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import pymongo
import pytest
from playwright.sync_api import Page, expect

from tests.agent.test_shipping import Agent, agents  # noqa: F401 (a fixture)
from tests.mongod_double.conftest import Launcher, Node, launcher  # noqa: F401 (a fixture)
from tests.webui.helpers import Api, wait_for
from tests.webui.test_console_browser import log_in
from tests.webui.test_deploy_e2e import screenshot
from webui.config import Settings
from webui.services import projects
from webui.services.audit import Actor
from webui.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture
def replica_set(launcher: Launcher) -> list[Node]:  # noqa: F811
    """Three members on 127.0.0.1, the first one primary."""
    nodes = [launcher.start("--replSet", "rs0") for _ in range(3)]
    members = [{"_id": i, "host": f"127.0.0.1:{n.port}", "priority": 2 if i == 0 else 1}
               for i, n in enumerate(nodes)]  # fmt: skip
    admin = nodes[0].client().admin
    admin.command("replSetInitiate", {"_id": "rs0", "members": members})
    wait_for(lambda: admin.command("hello")["isWritablePrimary"], timeout=60, what="a primary")
    return nodes


def primary_of(nodes: list[Node]) -> str | None:
    for node in nodes:
        with contextlib.suppress(pymongo.errors.PyMongoError):
            if node.client().admin.command("hello").get("isWritablePrimary"):
                return f"127.0.0.1:{node.port}"
    return None


def test_the_cluster_page_follows_its_agents_live(
    page: Page, admin_api: Api, web: str, settings: Settings, replica_set: list[Node],
    agents: Callable[..., Agent], tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    project = admin_api.call("POST", "/projects", json={"name": "shop"}).json()
    host_ids = []
    for i, node in enumerate(replica_set, start=1):
        host = admin_api.call("POST", f"/projects/{project['id']}/hosts",
                              json={"name": f"db{i}", "address": "127.0.0.1"}).json()  # fmt: skip
        token = admin_api.call("POST", f"/projects/{project['id']}/hosts/{host['id']}/agent-token")
        agent = agents(web, token.json()["token"], agent__interval=1, agent__log_level="INFO",
                       mongodb__uris=f"mongodb://127.0.0.1:{node.port}")  # fmt: skip
        agent.start()
        host_ids.append(host["id"])
    store = Store(settings.mongodb_uri or "")
    try:
        cluster = projects.create_cluster(
            store, Actor(None, "admin", "admin", "test"), project["id"], "orders", host_ids,
            "deploy_replicaset.yml",
        )  # fmt: skip
    finally:
        store.close()
    addresses = [f"127.0.0.1:{n.port}" for n in replica_set]
    topology = f"/clusters/{cluster['_id']}/topology"

    def states() -> dict[str, str]:
        answer = admin_api.call("GET", topology).json()
        return {m["address"]: m["state"] for s in answer["sets"] for m in s["members"]}

    settled = dict(zip(addresses, ["PRIMARY", "SECONDARY", "SECONDARY"], strict=True))
    wait_for(lambda: states() == settled, timeout=60, what="the agents' report", seen=states)

    log_in(page, web)
    page.click("#tile-clusters")
    page.click("text=orders")
    node = lambda address: page.locator(f'#topology-diagram [data-address="{address}"]')  # noqa: E731
    expect(node(addresses[0]).locator(".node-state")).to_have_text("PRIMARY")
    for address in addresses[1:]:
        expect(node(address).locator(".node-state")).to_have_text("SECONDARY")
    expect(node(addresses[0]).locator(".node-host")).to_have_text("db1")
    for chart in ("cpu", "memory", "operations", "connections"):
        drawn = page.locator(f"#chart-{chart}")
        expect(drawn.locator("canvas")).to_be_visible(timeout=30_000)
        wait_for(lambda d=drawn: int(d.get_attribute("data-points") or 0) > 0, timeout=30,
                 what=f"points on the {chart} chart")  # fmt: skip
    screenshot(page, tmp_path / "cluster-before.png")
    cpu = page.locator("#chart-cpu")
    before = int(cpu.get_attribute("data-points") or 0)

    page.evaluate("window.wapNotReloaded = true")
    with contextlib.suppress(pymongo.errors.PyMongoError):  # the step-down closes connections
        replica_set[0].client().admin.command("replSetStepDown", 60, secondaryCatchUpPeriodSecs=10)
    new = wait_for(lambda: (p := primary_of(replica_set)) != addresses[0] and p, timeout=60,
                   what="a new primary")  # fmt: skip
    expect(node(new).locator(".node-state")).to_have_text("PRIMARY", timeout=60_000)
    expect(node(addresses[0]).locator(".node-state")).to_have_text("SECONDARY", timeout=60_000)
    new_host = f"db{addresses.index(new) + 1}"
    expect(page.locator(f'#chart-process option[value="{new}"]')).to_have_text(
        f"{new} on {new_host} (PRIMARY)")  # fmt: skip
    expect(node(new).locator(".node-host a")).to_have_text(new_host)  # drawn by the page's script
    wait_for(lambda: int(cpu.get_attribute("data-points") or 0) > before, timeout=30,
             what="the live tail to add points")  # fmt: skip
    assert page.evaluate("window.wapNotReloaded") is True
    screenshot(page, tmp_path / "cluster-after.png")
    month = page.locator("#charts button[data-range='30d']")
    month.click()
    # A month of 1-minute rollups read on a loaded machine: a condition, not a time limit.
    expect(page.locator("#chart-status")).to_contain_text("30d: ", timeout=60_000)
    expect(month).to_have_attribute("aria-pressed", "true")
    assert int(cpu.get_attribute("data-points") or 0) > 0

    node(new).locator(".node-host a").click()  # the host's page: its charts beside its mongod
    expect(page.locator("h1")).to_contain_text(new_host)
    expect(page.locator("#chart-process")).to_have_value(new)
    for chart in ("cpu", "operations"):
        drawn = page.locator(f"#chart-{chart}")
        wait_for(lambda d=drawn: int(d.get_attribute("data-points") or 0) > 0, timeout=30,
                 what=f"points on the host page's {chart} chart")  # fmt: skip
    screenshot(page, tmp_path / "host.png")

    page.click("nav >> text=Overview")  # Home: the three members by state, the busiest first
    by_state = page.locator("#nodes-by-state tr")
    expect(by_state).to_have_text([re.compile(r"PRIMARY\s*1"), re.compile(r"SECONDARY\s*2")])
    expect(page.locator("#hosts-by-state tr")).to_have_text([re.compile(r"ok\s*3")])
    expect(page.locator("#top-connections tr")).to_have_count(3)
    screenshot(page, tmp_path / "overview.png")
