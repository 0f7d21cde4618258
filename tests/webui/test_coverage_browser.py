"""Continuous backup's coverage in Chromium: a real `wap web` and moto's S3, the cluster's store
holding what a follower and the backups write (agent/docs/backup-storage.md): two base snapshots,
rs0's oplog with a gap between them and an entry a restore cannot reproduce. The cluster's
backups page draws the windows, the gap and the mark, each reachable with the keyboard and said
in words; "restorable until" moves by itself when a new chunk lands; a follower whose checkpoint
is old is shown silent; the cluster page draws the same. A moment typed or picked is explained or
refused, and one explained leads to its base snapshot's restore wizard with the moment filled in.
With a second set, a lane shows the whole cluster's windows, the moments every set reaches.
Before a policy the page says how to turn continuous backup on; with one and nothing stored, its
button says why it cannot yet."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION
from tests.webui.helpers import Api
from tests.webui.test_backups import BUCKET, moto  # noqa: F401 (a fixture)
from tests.webui.test_console_browser import log_in
from tests.webui.test_coverage import T0, at, entries
from tests.webui.test_deploy_e2e import screenshot
from wap_agent.backup import manifest as mf
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.slices import OplogStore
from webui.config import Settings
from webui.services import projects
from webui.services.audit import Actor
from webui.store import Store

pytestmark = pytest.mark.browser


def base(s3: object, layout: mf.Layout, end: int, replica_set: str = "rs0") -> str:
    def produce(out: object) -> dict:
        out.write(b"archive")  # type: ignore[attr-defined]
        return {"server_version": "8.0.4", "fcv": "8.0", "compression": "gzip",
                "collections": [], "oplog": {"start": {"t": end - 5, "i": 1},
                                             "end": {"t": end, "i": 1}}}  # fmt: skip

    made = mf.store_snapshot(s3, BUCKET, layout, produce, cluster_name="orders",
                             replica_set=replica_set, started=float(end - 5))  # fmt: skip
    return made.snapshot_id


def test_the_coverage_timeline_shows_windows_and_the_gap_and_follows_new_slices(
    page: Page, admin_api: Api, web: str, settings: Settings, moto: str, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    project = admin_api.call("POST", "/projects", json={"name": "shop"}).json()
    fields = {"access_key_id": FAKE_KEY, "secret_access_key": FAKE_SECRET, "endpoint_url": moto}
    aws = {"name": "s3", "kind": "aws", "fields": fields}
    credential = admin_api.call("POST", f"/projects/{project['id']}/credentials", json=aws).json()
    host = admin_api.call("POST", f"/projects/{project['id']}/hosts",
                          json={"name": "db1", "address": "127.0.0.1"}).json()  # fmt: skip
    store = Store(settings.mongodb_uri or "")
    try:
        admin = Actor(None, "admin", "admin", "test")
        cluster = projects.create_cluster(store, admin, project["id"], "orders", [host["id"]],
                                          "deploy_replicaset.yml")["_id"]  # fmt: skip
    finally:
        store.close()

    log_in(page, web)
    page.goto(f"{web}/clusters/{cluster}/backups")
    empty = page.locator("#coverage-empty")
    expect(empty).to_contain_text("no backup policy")
    expect(empty).to_contain_text("To turn it on")
    expect(empty.get_by_role("link", name="backup policy")).to_be_visible()

    policy = {"schedule": "0 2 * * *", "keep_last": 5, "bucket": BUCKET, "prefix": "cov",
              "region": REGION, "credential_id": credential["id"]}  # fmt: skip
    saved = admin_api.call("PUT", f"/clusters/{cluster}/backup-policy", json=policy)
    assert saved.status_code == 200, saved.text
    page.reload()
    expect(empty).to_contain_text("Nothing is backed up in its store yet.")
    page.click("#coverage-start")  # refused with the reason: no agent on its hosts yet
    expect(page.locator("#coverage-start-answer")).to_contain_text(
        "Not turned on: no agent on the cluster's hosts was heard of"
    )

    s3 = s3mod.client(moto, REGION, FAKE_KEY, FAKE_SECRET)
    layout = mf.Layout("cov", project["id"], cluster)
    first = base(s3, layout, T0 + 10)
    second = base(s3, layout, T0 + 400)
    oplog = OplogStore(s3, BUCKET, layout, "rs0")
    oplog.put_chunk(entries(T0, T0 + 10, T0 + 60), at(T0 - 1))
    oplog.put_chunk(entries(T0 + 100), at(T0 + 60))
    oplog.record_gap(at(T0 + 100), at(T0 + 300), reason="the follower fell behind")
    oplog.put_chunk(entries(T0 + 300, T0 + 400, T0 + 450), None)
    oplog.record_unrestorable(at(T0 + 60), at(T0 + 10), reason="a write to admin.system.version")
    oplog.save_checkpoint(at(T0 + 450))

    page.reload()
    chart = page.locator("#backup-coverage #coverage-chart")
    expect(chart.locator(".cov-window")).to_have_count(2)
    expect(chart.locator(".cov-gap")).to_have_count(1)
    expect(chart.locator(".cov-mark")).to_have_count(1)
    until = page.locator("#restorable-until-time")
    expect(until).to_have_text(f"2026-05-28 20:37:30 UTC (oplog Timestamp({T0 + 450}, 1))")
    followers = page.locator("#coverage-followers")
    expect(followers.locator('[data-follower="reporting"]')).to_contain_text("rs0: following")

    # the keyboard: a window takes the focus, the arrow keys move to the gap and the mark
    chart.locator(".cov-window").first.focus()
    detail = page.locator("#coverage-detail")
    expect(detail).to_contain_text(f"base snapshot {first}")
    expect(detail).to_contain_text("unrestorable: a write to admin.system.version")
    page.keyboard.press("ArrowRight")
    expect(detail).to_contain_text(f"base snapshot {second}")
    page.keyboard.press("ArrowRight")
    expect(detail).to_contain_text(f"Gap in rs0: entries after 2026-05-28 20:31:40 UTC (oplog "
                                   f"Timestamp({T0 + 100}, 1)) and before")  # fmt: skip
    expect(detail).to_contain_text("the follower fell behind")
    page.keyboard.press("ArrowRight")
    expect(detail).to_contain_text("Unrestorable at")

    # a moment picked: Enter on a window takes its end; a moment in the gap is refused
    chart.locator(".cov-window").nth(1).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#coverage-at")).to_have_value(f"Timestamp({T0 + 450}, 1)")
    page.keyboard.press("Enter")
    said = page.locator("#coverage-target-answer")
    expect(said).to_contain_text(f"rs0 from base snapshot {second}")
    expect(said).to_contain_text(f"up to and including 2026-05-28 20:37:30 UTC (oplog "
                                 f"Timestamp({T0 + 450}, 1))")  # fmt: skip
    page.fill("#coverage-at", "2026-05-28 20:33:20")
    page.click("#coverage-target button")
    expect(said).to_contain_text("Not restorable: no restorable window of rs0 holds the target")
    screenshot(page, tmp_path / "coverage.png")

    # a new chunk lands: "restorable until" moves without a reload
    oplog.put_chunk(entries(T0 + 500), at(T0 + 450))
    expect(until).to_have_attribute("data-t", str(T0 + 500), timeout=20_000)

    # the follower stops reporting: its checkpoint stays old
    old = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 600))
    s3.put_object(Bucket=BUCKET, Key=f"{oplog.root}/checkpoint.json",
                  Body=json.dumps({"last": at(T0 + 500).to_dict(), "saved_at": old}))  # fmt: skip
    expect(followers.locator('[data-follower="silent"]')).to_contain_text(
        "rs0: follower silent: no report since", timeout=20_000
    )

    page.goto(f"{web}/clusters/{cluster}")
    expect(page.locator("#backup-coverage .cov-window")).to_have_count(2)
    expect(page.locator("#restorable-until-time")).to_have_attribute("data-t", str(T0 + 500))
    screenshot(page, tmp_path / "cluster.png")
    assert FAKE_SECRET not in page.content()

    # a moment explained leads to its base snapshot's restore wizard, the moment filled in
    catalogued(settings, layout, second, credential["id"], moto)
    page.fill("#coverage-at", f"Timestamp({T0 + 450}, 1)")
    page.click("#coverage-target button")
    page.click("#coverage-restore-link")
    expect(page).to_have_url(f"{web}/snapshots/{second}?at=Timestamp({T0 + 450}%2C%201)"
                             "#restore-form")  # fmt: skip
    expect(page.locator("#r-at")).to_have_value(f"Timestamp({T0 + 450}, 1)")
    expect(page.locator("#restore-form")).to_contain_text("To a moment (point in time)")

    # a second set (as a sharded cluster has): a lane of the moments every set reaches
    base(s3, layout, T0 + 10, replica_set="rs1")
    OplogStore(s3, BUCKET, layout, "rs1").put_chunk(entries(T0, T0 + 10, T0 + 450), at(T0 - 1))
    page.goto(f"{web}/clusters/{cluster}/backups")
    whole = page.locator("#coverage-chart .cov-whole .cov-cluster")
    expect(whole).to_have_count(2)
    expect(until).to_have_attribute("data-t", str(T0 + 450))  # rs1's end: the earlier
    whole.nth(1).focus()
    expect(page.locator("#coverage-detail")).to_contain_text(
        f"Restorable window of the whole cluster (every set restored to one moment): from "
        f"2026-05-28 20:36:40 UTC (oplog Timestamp({T0 + 400}, 1)) until 2026-05-28 20:37:30 UTC"
        f" (oplog Timestamp({T0 + 450}, 1))"
    )  # fmt: skip


def catalogued(
    settings: Settings, layout: mf.Layout, snapshot: str, credential: str, endpoint: str
) -> None:
    """The snapshot in the platform's catalogue, done, as its settled backup leaves it."""
    store = Store(settings.mongodb_uri or "")
    try:
        store.db.snapshots.insert_one({
            "_id": snapshot, "project_id": layout.project_id, "cluster_id": layout.cluster_id,
            "cluster_name": "orders", "trigger": "manual", "status": "done",
            "started_at": float(T0 + 395), "finished_at": float(T0 + 400), "size": 7,
            "documents": 0, "reason": "", "created_by": "admin", "compression": "gzip",
            "store": {"bucket": BUCKET, "prefix": "cov", "region": REGION,
                      "credential_id": credential, "credential_name": "s3",
                      "endpoint_url": endpoint},
            "prefix": layout.snapshot(snapshot), "manifest_key": layout.manifest(snapshot),
            "oplog": {"start": {"t": T0 + 395, "i": 1},
                      "end": {"t": T0 + 400, "i": 1}}})  # fmt: skip
    finally:
        store.close()
