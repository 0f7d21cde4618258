"""Restore drills, without a lab (the app, moto's S3 on 127.0.0.1): a policy's drill schedule and
scratch cluster (refused with a message per field when wrong), a due drill restoring the latest
snapshot into the scratch cluster through its agent, once even when two ticks meet, verified as
every restore is; its outcome, equal or failed, in the catalogue, on the backups page and on the
audit log."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.webui.test_backups import Backups, moto  # noqa: F401 (a fixture)
from tests.webui.test_web import login
from webui.services import backups, projects
from webui.services.audit import Actor


def restore_command(platform: Backups) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {platform.token}"}
    commands = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()
    (command,) = [c for c in commands["commands"] if c["name"] == "restore"]
    return command


def agent_restores(platform: Backups, digest: str) -> dict[str, Any]:
    """The agent's restore of the snapshot written by Backups.agent_backs_up (shop.orders, 42
    documents, hash 0a): what it read back from the scratch cluster."""
    command = restore_command(platform)
    held = {"ns": "shop.orders", "source": "shop.orders", "count": 42, "hash": digest,
            "indexes": [], "copied": {"count": 42, "hash": "0a"}}  # fmt: skip
    answer = platform.client.post(
        f"/api/v1/agent/commands/{command['id']}/result",
        json={"state": "succeeded", "result": {"collections": [held], "oplog": None}},
        headers={"Authorization": f"Bearer {platform.token}"},
    )
    assert answer.status_code == 200, answer.get_json()
    return command


def test_a_drill_restores_the_latest_snapshot_into_the_scratch_cluster(
    app: Flask,
    moto: str,  # noqa: F811 (the fixture)
) -> None:
    platform = Backups(app, moto)
    admin = Actor(None, "admin", "admin", "tests")
    scratch = projects.create_cluster(platform.store, admin, platform.project["id"], "scratch",
                                      [platform.host["id"]], "steps.yml")  # fmt: skip
    cluster = platform.cluster["_id"]
    wrong = platform.policy(drill_schedule="0 4 * * *").get_json()["errors"]["json"]
    assert wrong == {"drill_cluster_id": ["the scratch cluster each drill restores into"]}
    itself = platform.policy(drill_schedule="0 4 * * *", drill_cluster_id=cluster)
    assert "another cluster than the one backed up" in str(itself.get_json())
    saved = platform.policy(drill_schedule="0 4 * * *", drill_cluster_id=scratch["_id"])
    assert saved.status_code == 200, saved.get_json()
    policy = saved.get_json()
    assert policy["drill_schedule"] == "0 4 * * *" and policy["drill_next_at"]

    # Due before any snapshot is done: refused, on the audit log.
    due = policy["drill_next_at"] + 1
    assert backups.tick(platform.store, platform.settings, at=due)["drills"] == [""]
    refused = platform.audit("backup.drill")[0]
    assert refused["outcome"] == "refused" and "no done snapshot" in refused["detail"]["reason"]

    platform.agent_alive()
    platform.api("POST", f"/clusters/{cluster}/backups")
    platform.agent_backs_up()
    backups.tick(platform.store, platform.settings)
    (snapshot,) = [s for s in platform.catalogue()["snapshots"] if s["status"] == "done"]

    next_due = backups.get_policy(platform.store, admin, cluster)["drill_next_at"] + 1
    drills = backups.tick(platform.store, platform.settings, at=next_due)["drills"]
    assert len(drills) == 1 and drills[0]
    assert backups.tick(platform.store, platform.settings, at=next_due)["drills"] == []  # once
    restore = platform.api("GET", f"/restores/{drills[0]}").get_json()
    assert (restore["drill"], restore["cluster_name"], restore["snapshot_id"]) == (
        True, "scratch", snapshot["id"]
    )  # fmt: skip
    assert restore["drop"] is True  # the scratch cluster's collections are replaced
    agent_restores(platform, "0a")
    backups.tick(platform.store, platform.settings)
    drill = platform.catalogue()["drill"]
    assert (drill["id"], drill["status"], drill["equal"]) == (drills[0], "done", True)
    actions = [(e["action"], e["outcome"]) for e in platform.audit("backup.")]
    assert ("backup.drill", "ok") in actions and ("backup.restore.done", "ok") in actions

    client = platform.client
    assert login(client, "admin") == 302
    page = client.get(f"/clusters/{cluster}/backups").get_data(as_text=True)
    assert 'data-drill-status="done"' in page and "verified equal" in page
    assert 'name="drill_schedule" form="policy" value="0 4 * * *"' in page

    # A drill whose restore differs from the manifest fails, and shows so.
    later = backups.get_policy(platform.store, admin, cluster)["drill_next_at"] + 1
    (second,) = backups.tick(platform.store, platform.settings, at=later)["drills"]
    agent_restores(platform, "0b")
    backups.tick(platform.store, platform.settings)
    drill = platform.catalogue()["drill"]
    assert (drill["id"], drill["status"], drill["equal"]) == (second, "failed", False)
    assert "differs from the snapshot's manifest" in drill["reason"]
    page = client.get(f"/clusters/{cluster}/backups").get_data(as_text=True)
    assert 'data-drill-status="failed"' in page
