"""Restore drills, without a lab (the app, moto's S3 on 127.0.0.1): a policy's drill schedule and
scratch cluster (refused with a message per field when wrong; the scratch cluster's name typed
when it is set or changed, in the API and the console alike, audited), a due drill restoring the
latest snapshot into the scratch cluster through its agent, once even when two ticks meet,
verified as every restore is; its outcome, equal or failed, in the catalogue, on the backups page
and on the audit log."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.aws.cloud import REGION
from tests.webui.test_backups import BUCKET, Backups, moto  # noqa: F401 (a fixture)
from tests.webui.test_web import csrf, login
from webui.services import backups, projects
from webui.services.audit import Actor

ADMIN = Actor(None, "admin", "admin", "tests")


def scratch_cluster(platform: Backups, name: str) -> dict[str, Any]:
    """Another cluster of the project, on its host, for drills to restore into."""
    return projects.create_cluster(platform.store, ADMIN, platform.project["id"], name,
                                   [platform.host["id"]], "steps.yml")  # fmt: skip


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
    platform, admin = Backups(app, moto), ADMIN
    scratch = scratch_cluster(platform, "scratch")
    cluster = platform.cluster["_id"]
    wrong = platform.policy(drill_schedule="0 4 * * *").get_json()["errors"]["json"]
    assert wrong == {"drill_cluster_id": ["the scratch cluster each drill restores into"]}
    itself = platform.policy(drill_schedule="0 4 * * *", drill_cluster_id=cluster)
    assert "another cluster than the one backed up" in str(itself.get_json())
    saved = platform.policy(drill_schedule="0 4 * * *", drill_cluster_id=scratch["_id"],
                            drill_confirm="scratch")  # fmt: skip
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


def test_a_scratch_cluster_is_set_only_with_its_name_typed(
    app: Flask,
    moto: str,  # noqa: F811 (the fixture)
) -> None:
    platform = Backups(app, moto)
    first, second = scratch_cluster(platform, "scratch"), scratch_cluster(platform, "drills")
    drill = {"drill_schedule": "0 4 * * *", "drill_cluster_id": first["_id"]}

    untyped = platform.policy(**drill)
    assert untyped.status_code == 422
    assert untyped.get_json()["errors"]["json"] == {"drill_confirm": [
        "type the scratch cluster's name, scratch: each drill replaces its collections of the"
        " snapshot's names"]}  # fmt: skip
    assert platform.policy(**drill, drill_confirm="scratch2").status_code == 422
    assert platform.catalogue()["policy"] is None  # nothing saved
    saved = platform.policy(**drill, drill_confirm="scratch").get_json()
    assert (saved["drill_cluster_id"], saved["drill_cluster_name"]) == (first["_id"], "scratch")
    # The same scratch cluster kept, other fields changed: not asked again, not a drill change.
    assert platform.policy(**drill, keep_last=5).status_code == 200
    trail = [(e["outcome"], e["detail"].get("scratch")) for e in platform.audit("backup.drill")]
    # newest first
    assert trail == [("ok", "scratch"), ("refused", "scratch"), ("refused", "scratch")]

    client = platform.client
    assert login(client, "admin") == 302
    path = f"/clusters/{platform.cluster['_id']}/backups"
    page = client.get(path).get_data(as_text=True)
    assert "into scratch: <strong>scratch</strong> (replaced at each drill)" in page
    # a policy saved before the name was kept shows it too
    platform.store.db.backup_policies.update_one({}, {"$unset": {"drill_cluster_name": ""}})
    page = client.get(path).get_data(as_text=True)
    assert "into scratch: <strong>scratch</strong> (replaced at each drill)" in page
    form = {"csrf_token": csrf(client, path), "schedule": "0 2 * * *", "keep_last": "5",
            "bucket": BUCKET, "prefix": "wap", "region": REGION,
            "credential_id": platform.credential["id"], "compression": "gzip", "enabled": "on",
            "drill_schedule": "0 5 * * *", "drill_cluster_id": second["_id"]}  # fmt: skip
    refused = client.post(f"{path}/policy", data=form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "type the scratch cluster&#39;s name, drills" in text
    assert 'value="0 5 * * *"' in text  # what was typed is kept
    typed = client.post(f"{path}/policy", data={**form, "drill_confirm": "drills"})
    assert typed.status_code == 302
    page = client.get(path).get_data(as_text=True)
    assert "into scratch: <strong>drills</strong> (replaced at each drill)" in page
    changed = platform.audit("backup.drill")[0]
    assert (changed["outcome"], changed["detail"]) == (
        "ok", {"scratch": "drills", "was": "scratch", "schedule": "0 5 * * *"}
    )  # fmt: skip
    # Removing the drills needs no name, and is a drill change too.
    assert platform.policy(keep_last=5).status_code == 200
    assert platform.audit("backup.drill")[0]["detail"] == {"scratch": "", "was": "drills",
                                                            "schedule": ""}  # fmt: skip
