"""Backups in Chromium, end to end: a real `wap web`, two one-member sets of the mongod double on
127.0.0.1 each watched by its own `wap-agent run` (allowed to back up and restore, with the host's
AWS credentials in its environment) and moto's S3. From the console: a policy is saved, "back up
now" takes a snapshot through the agent, the wizard restores it into the other cluster, the
restore's page follows it without a reload and shows the verification report, equal; the
snapshot's page shows it too. The platform's periodic part (backups.tick) is run by the test, as
a worker's reaper would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.agent.test_shipping import Agent, agents  # noqa: F401 (a fixture)
from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION
from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture)
from tests.webui.helpers import Api, wait_for
from tests.webui.test_backups import BUCKET, moto  # noqa: F401 (a fixture)
from tests.webui.test_console_browser import log_in
from tests.webui.test_deploy_e2e import screenshot
from tests.webui.test_restores import aws_env, replica_set  # noqa: F401 (a fixture)
from wap_agent.backup.hashing import collection_hash
from webui.config import Settings
from webui.services import backups, projects
from webui.services.audit import Actor
from webui.store import Store

pytestmark = pytest.mark.browser


def test_back_up_and_restore_from_the_console(
    page: Page, admin_api: Api, web: str, settings: Settings, moto: str,  # noqa: F811
    launcher: Any, agents: Callable[..., Agent], aws_env: None, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    source, source_uri = replica_set(launcher, "rs7")
    target, target_uri = replica_set(launcher, "rs8")
    source.shop.orders.insert_many([{"n": i, "sku": f"s{i % 7}"} for i in range(300)])
    source.shop.orders.create_index([("sku", 1), ("n", -1)])
    project = admin_api.call("POST", "/projects", json={"name": "shop"}).json()
    fields = {"access_key_id": FAKE_KEY, "secret_access_key": FAKE_SECRET, "endpoint_url": moto}
    admin_api.call("POST", f"/projects/{project['id']}/credentials",
                   json={"name": "s3", "kind": "aws", "fields": fields})  # fmt: skip
    host_ids = []
    for name, uri in (("db1", source_uri), ("db2", target_uri)):
        host = admin_api.call("POST", f"/projects/{project['id']}/hosts",
                              json={"name": name, "address": "127.0.0.1"}).json()  # fmt: skip
        token = admin_api.call("POST", f"/projects/{project['id']}/hosts/{host['id']}/agent-token")
        allowed = "ping, collect, backup, restore"
        agents(web, token.json()["token"], agent__interval=1, agent__log_level="INFO",
               mongodb__uris=uri, commands__allow=allowed).start()  # fmt: skip
        host_ids.append(host["id"])
    store = Store(settings.mongodb_uri or "")
    admin = Actor(None, "admin", "admin", "test")
    try:
        orders = projects.create_cluster(store, admin, project["id"], "orders", host_ids[:1],
                                         "deploy_replicaset.yml")  # fmt: skip
        projects.create_cluster(store, admin, project["id"], "orders-copy", host_ids[1:],
                                "deploy_replicaset.yml")  # fmt: skip

        def ticked(what: Callable[[], Any]) -> Any:
            backups.tick(store, settings)
            return what()

        log_in(page, web)
        page.click("nav >> text=Backups")
        page.click("text=orders >> nth=0")
        page.select_option("#p-credential", label="s3")
        page.fill("#p-bucket", BUCKET)
        page.fill("#p-prefix", "console")
        page.fill("#p-region", REGION)
        page.click("#policy button")
        expect(page.locator("#backup-now button")).to_be_visible()
        page.click("#backup-now button")
        rows = page.locator("#snapshot-table tbody tr")
        wait_for(lambda: ticked(lambda: backups.list_snapshots(store, admin, orders["_id"])[0]
                                ["status"]) == "done", timeout=60, what="the snapshot")  # fmt: skip
        page.reload()
        expect(rows.first).to_contain_text("never restored")
        screenshot(page, tmp_path / "backups.png")

        rows.first.get_by_role("link", name="restore", exact=True).click()
        expect(page.locator("#restore-form")).to_be_visible()
        expect(page.locator("#r-confirm")).to_be_hidden()  # only the fields of the choice made
        page.select_option("#r-cluster_id", label="orders-copy")
        screenshot(page, tmp_path / "wizard.png")
        page.click("#restore-form button")
        expect(page.locator("h1")).to_contain_text("Restore into orders-copy")
        # the page follows the restore by itself (restore.js): the test only ticks
        wait_for(lambda: ticked(lambda: page.locator("#restore-status").text_content()) == "done",
                 timeout=90, what="the restore to end on its page")  # fmt: skip
        report = page.locator('.verification[data-equal="yes"]')
        expect(report).to_be_visible()
        expect(report.locator('tr[data-ns="shop.orders"]')).to_contain_text("equal")
        screenshot(page, tmp_path / "restore.png")
        assert collection_hash(target.shop.orders) == collection_hash(source.shop.orders)

        page.click("h1 small a")  # the snapshot's page: the report there too
        expect(page.locator('.verification[data-equal="yes"]')).to_be_visible()
        expect(page.locator("#restore-table tbody tr").first).to_contain_text("equal")
        assert FAKE_SECRET not in page.content()
    finally:
        store.close()
