"""playbooks/backup_cluster.yml and restore_cluster.yml (role whaleal.wap.mongodb_backup) from a
terminal, on this machine as the hosts' stand-in (a local connection), with the venv's wap-agent
as the agent's install, one-member sets of the mongod double and moto's S3: the backup lands in
the platform's layout with its manifest; the restore into another set, only one database and
renamed, is verified equal; a restore into a set already holding the data fails saying so; the
AWS secret never shows in the output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION
from tests.labhosts import REPO, VENV_BIN, ansible_env
from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
from tests.webui.test_backups import BUCKET, moto  # noqa: F401 (a fixture, found by pytest)
from tests.webui.test_restores import replica_set
from wap_agent.backup import manifest as mf
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.hashing import collection_hash


def on_this_machine(
    playbook: str, inventory: Path, timeout: float = 300, **variables: Any
) -> subprocess.CompletedProcess:
    """``playbook`` with this machine as the backup host (the "mongodb" group's one host, a local
    connection), the venv's wap-agent as the engine, moto's keys in the environment."""
    inventory.write_text(f"[mongodb]\nbackup-host ansible_connection=local"
                         f" ansible_python_interpreter={sys.executable}\n")  # fmt: skip
    extra = {"ansible_become": False, "mongodb_backup_engine": str(VENV_BIN / "wap-agent"),
             "mongodb_backup_region": REGION, **variables}  # fmt: skip
    env = {**ansible_env(), "AWS_ACCESS_KEY_ID": FAKE_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET}
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), f"playbooks/{playbook}",
         "-e", json.dumps(extra)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
    )  # fmt: skip


def play(
    playbook: str, tmp: Path, port: int, name: str, **variables: Any
) -> subprocess.CompletedProcess:
    return on_this_machine(playbook, tmp / f"{name}.ini", mongodb_replicaset_name=name,
                           mongodb_replicaset_port=port, **variables)  # fmt: skip


def test_backup_and_restore_playbooks(moto: str, launcher: Any, tmp_path: Path) -> None:  # noqa: F811
    source, _ = replica_set(launcher, "rs5")
    target, _ = replica_set(launcher, "rs6")
    source.shop.orders.insert_many([{"n": i, "sku": f"s{i % 13}"} for i in range(500)])
    source.shop.orders.create_index([("sku", 1), ("n", -1)])
    source.crm.people.insert_many([{"p": i} for i in range(40)])
    source.admin.command("createUser", "clerk", pwd="not-a-secret-here",
                         roles=[{"role": "read", "db": "shop"}])  # fmt: skip
    port = lambda client: client.address[1]  # noqa: E731
    store = {"mongodb_backup_bucket": BUCKET, "mongodb_backup_endpoint_url": moto,
             "mongodb_backup_users_and_roles": True}  # fmt: skip
    layout = {"mongodb_backup_prefix": "terminal", "mongodb_backup_project_id": "p7",
              "mongodb_backup_cluster_id": "c7", "mongodb_backup_cluster_name": "shop"}  # fmt: skip
    backed_up = play("backup_cluster.yml", tmp_path, port(source), "rs5", **store, **layout)
    assert backed_up.returncode == 0, backed_up.stdout[-3000:]
    assert "541 documents" in backed_up.stdout  # and the user
    client = s3mod.client(moto, REGION, FAKE_KEY, FAKE_SECRET)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="terminal/p7/c7/snapshots/")
    (key,) = [o["Key"] for o in listed["Contents"] if o["Key"].endswith("/manifest.json")]
    assert mf.read(client, BUCKET, key).documents == 541

    restore = {**store, "mongodb_backup_manifest_key": key, "mongodb_backup_include": ["shop.*"],
               "mongodb_backup_renames": [{"from": "shop.$c$", "to": "copy.$c$"}]}  # fmt: skip
    restored = play("restore_cluster.yml", tmp_path, port(target), "rs6", **restore)
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert "restored 500 documents, verified equal to the snapshot" in restored.stdout
    assert collection_hash(target.copy.orders) == collection_hash(source.shop.orders)
    assert "crm" not in target.list_database_names()
    (user,) = target.admin.command("usersInfo", {"user": "clerk", "db": "admin"})["users"]
    assert user["roles"] == [{"role": "read", "db": "shop"}]

    again = play("restore_cluster.yml", tmp_path, port(target), "rs6", **restore)
    assert again.returncode == 2
    assert "restore failed: wap-agent restore: the target is not empty: copy.orders" in again.stdout
    for run in (backed_up, restored, again):
        assert FAKE_SECRET not in run.stdout + run.stderr
