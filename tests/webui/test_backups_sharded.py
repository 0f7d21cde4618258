"""A sharded cluster's backups on the platform, without a lab (the app, moto's S3 on 127.0.0.1):
"back up now" asks the agent to go through the cluster's mongos, the catalogue shows the
snapshot with its sets, and the restore wizard offers a sharded cluster with as many shards
(refusing the cluster itself, another topology or shard count, a selection), restores through the
target's mongos and keeps the report per shard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from tests.webui.test_backups import (  # noqa: F401 (moto: a fixture)
    BUCKET,
    Backups,
    moto,
    with_backup_playbook,
)
from tests.webui.test_web import login
from wap_agent.backup import manifest as mf
from wap_agent.backup.s3 import S3Upload
from webui.services import backups, deployments, projects
from webui.services.audit import Actor

SHARDS = ("shard1", "shard2")


def sharded(platform: Backups, name: str, shards: int = 2) -> dict[str, Any]:
    """A sharded cluster of the project on db1 (its router there), as a deploy records it."""
    admin = Actor(None, "admin", "admin", "tests")
    cluster = projects.create_cluster(platform.store, admin, platform.project["id"], name,
                                      [platform.host["id"]], "steps.yml")  # fmt: skip
    shape = {"topology": "sharded", "shards": shards, "routers": 1, "replica_set": None,
             "port": deployments.MONGOS_PORT}  # fmt: skip
    platform.store.clusters.update_one({"_id": cluster["_id"]}, {"$set": shape})
    return {**cluster, **shape}


def write_sharded_snapshot(platform: Backups, args: dict[str, Any]) -> None:
    """What the agent's engine leaves in the store for a two-shard cluster: one archive per set
    and the manifest naming them (the engine itself is tested in tests/agent)."""
    layout = mf.Layout(args["prefix"], args["project_id"], args["cluster_id"])
    sets, files, collections = [], [], []
    for name, role in [*((s, "shard") for s in SHARDS), ("config", "config")]:
        key = layout.archive(args["snapshot_id"], name, "gzip")
        with S3Upload(platform.s3, BUCKET, key) as out:
            out.write(name.encode() * 100)
        files.append(mf.StoredFile(key, out.result["size"], out.result["sha256"], name))
        window = {"start": {"t": 1, "i": 1}, "end": {"t": 9, "i": 2}, "entries": 3}
        sets.append({"name": name, "replica_set": name, "role": role, "key": key,
                     "member": f"{name}:27018", "oplog": window, "documents": 21})  # fmt: skip
        db = "config" if role == "config" else "shop"
        name_in_db = "chunks" if role == "config" else "orders"
        digest = f"{mf.HASH}:0{len(sets)}"
        collections.append(mf.Collection(db, name_in_db, 21, 2100, digest, replica_set=name))
    made = mf.Manifest(
        snapshot_id=args["snapshot_id"], project_id=args["project_id"],
        cluster_id=args["cluster_id"], cluster_name=args["cluster_name"], topology="sharded",
        mongodb_version="7.0.14", fcv="7.0", started_at=1.0, finished_at=5.0,
        oplog_start={"t": 1, "i": 1}, oplog_end={"t": 9, "i": 2}, collections=collections,
        files=files, compression="gzip", replica_sets=[s["name"] for s in sets], sets=sets,
    )  # fmt: skip
    with S3Upload(platform.s3, BUCKET, layout.manifest(args["snapshot_id"])) as out:
        out.write(made.to_json())


def agent_command(platform: Backups, name: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {platform.token}"}
    commands = platform.client.get("/api/v1/agent/commands", headers=headers).get_json()
    (command,) = [c for c in commands["commands"] if c["name"] == name]
    return command


def report(platform: Backups, command: dict[str, Any], result: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {platform.token}"}
    answer = platform.client.post(f"/api/v1/agent/commands/{command['id']}/result",
                                  json={"state": "succeeded", "result": result},
                                  headers=headers)  # fmt: skip
    assert answer.status_code == 200, answer.get_json()


def test_a_sharded_cluster_backs_up_through_its_router_and_restores_into_one_alike(
    app: Flask,
    moto: str,  # noqa: F811 (the fixture)
) -> None:
    platform = Backups(app, moto)
    platform.cluster = sharded(platform, "shop")
    assert platform.policy().status_code == 200
    platform.agent_alive()
    started = platform.api("POST", f"/clusters/{platform.cluster['_id']}/backups")
    assert started.status_code == 202, started.get_json()
    command = agent_command(platform, "backup")
    assert command["args"]["router"] == "10.0.0.1:27017"  # its mongos, on db1
    write_sharded_snapshot(platform, command["args"])
    report(platform, command, {"snapshot_id": command["args"]["snapshot_id"]})
    backups.tick(platform.store, platform.settings)
    (done,) = platform.catalogue()["snapshots"]
    assert (done["status"], done["topology"]) == ("done", "sharded")
    assert [(s["name"], s["role"]) for s in done["sets"]] == [
        ("shard1", "shard"), ("shard2", "shard"), ("config", "config")
    ]  # fmt: skip

    client = platform.client
    assert login(client, "admin") == 302
    listing = client.get(f"/clusters/{platform.cluster['_id']}/backups").get_data(as_text=True)
    assert "in 3 sets: shard1, shard2, config" in listing
    page = client.get(f"/snapshots/{done['id']}").get_data(as_text=True)
    assert 'id="snapshot-sets"' in page and 'data-set="shard2"' in page
    assert "a new sharded cluster with 2 shards" in page
    assert 'name="new_shards" value="2"' in page and 'value="same"' not in page

    links = platform.api("POST", f"/snapshots/{done['id']}/download").get_json()
    assert [link["name"] for link in links["links"]] == [
        "shard1.archive.gz", "shard2.archive.gz", "config.archive.gz", "manifest.json"
    ]  # fmt: skip
    assert links["command"].startswith('wap-agent restore --uri "$MONGOS_URI" --from s3://')

    path = f"/snapshots/{done['id']}/restores"
    itself = platform.api("POST", path, json={"target": "same", "confirm": "shop"})
    assert itself.status_code == 422
    assert "restores into a new cluster" in itself.get_json()["errors"]["json"]["target"][0]
    three = sharded(platform, "shop-three", shards=3)
    wrong = platform.api("POST", path, json={"target": "cluster", "cluster_id": three["_id"],
                                             "include": ["shop.*"], "drop": True})  # fmt: skip
    errors = wrong.get_json()["errors"]["json"]
    assert errors["cluster_id"] == ["a sharded cluster with 2 shards, holding no database yet"]
    assert set(errors) == {"cluster_id", "include", "drop"}
    new_set = platform.api("POST", path, json={"target": "new", "deployment": {
        "name": "copy", "topology": "replicaset"}})  # fmt: skip
    assert (
        "a sharded cluster with 2 shards" in new_set.get_json()["errors"]["json"]["deployment"][0]
    )

    alike = sharded(platform, "shop-copy")
    started = platform.api("POST", path, json={"target": "cluster", "cluster_id": alike["_id"]})
    assert started.status_code == 202, started.get_json()
    command = agent_command(platform, "restore")
    assert command["args"]["router"] == "10.0.0.1:27017"
    rows = [{"ns": "shop.orders", "source": "shop.orders", "count": 21, "hash": f"0{n}",
             "indexes": [], "copied": {"count": 21, "hash": f"0{n}"}} for n in (1, 2)]  # fmt: skip
    report(platform, command, {
        "snapshot_id": done["id"], "topology": "sharded", "documents": 42,
        "shards": [{"shard": s, "target": s, "oplog": {"applied": 0}, "collections": [row]}
                   for s, row in zip(SHARDS, rows, strict=True)]})  # fmt: skip
    restore_id = started.get_json()["id"]
    assert restore_id in backups.tick(platform.store, platform.settings)["restored"]
    restored = platform.api("GET", f"/restores/{restore_id}").get_json()
    assert restored["status"] == "done", restored
    verification = restored["verification"]
    assert verification["equal"] and [r["shard"] for r in verification["collections"]] == [
        "shard1", "shard2"
    ]  # fmt: skip
    page = client.get(f"/restores/{restore_id}").get_data(as_text=True)
    assert 'data-shard="shard2"' in page


def test_without_an_agent_a_sharded_backup_job_runs_on_a_router_host(
    app: Flask,
    moto: str,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """backup_cluster.yml for a sharded cluster: on its first router's host, against the mongos
    port there, no replica set named (the engine finds the shards from the router)."""
    platform = Backups(app, moto)
    platform.cluster = sharded(platform, "shop")
    settings = with_backup_playbook(platform, tmp_path)
    platform.policy()
    admin = Actor(None, "admin", "admin", "tests")
    entry = backups.start_backup(platform.store, settings, admin, platform.cluster["_id"])
    assert entry["via"] == "job"
    variables = platform.store.jobs.find_one({"_id": entry["job_id"]})["extra_vars"]
    assert (variables["wap_backup_host"], variables["mongodb_backup_port"]) == ("db1", 27017)
    assert variables["mongodb_backup_replica_set"] == ""
