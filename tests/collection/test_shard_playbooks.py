"""playbooks/shard_operation.yml from a terminal on a sharded cluster of doubles on 127.0.0.1
(the routers' play on localhost): a running shardsvr set added, then drained and removed round
by round with its databases moved, every document still there through the router; the plan
first (changing nothing), the last shard refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.deploy.deployment import PlaybookRun
from tests.labhosts import REPO, VENV_BIN, ansible_env
from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
from tests.mongod_double.shardedset import start_cluster


def _play(inventory: Path, router: int, **variables) -> tuple[PlaybookRun, dict]:
    """shard_operation.yml with the router on localhost: the run and its set_stats."""
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/shard_operation.yml",
         "-e", json.dumps({"wap_mongos_hosts": "localhost", "mongodb_sharding_port": router,
                           **variables})],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
             "ANSIBLE_SHOW_CUSTOM_STATS": "1"},
    )  # fmt: skip
    try:
        output = json.loads(done.stdout[done.stdout.index("{") :])
    except ValueError:
        output = {}
    run = PlaybookRun(done.returncode, output, done.stdout[-2000:] + done.stderr)
    return run, output.get("global_custom_stats", {})


def test_a_shard_is_added_then_drained_and_removed_with_its_data(launcher, tmp_path) -> None:  # noqa: F811
    cluster = start_cluster(launcher, 1)
    router = cluster.routers[0].port
    client = cluster.router_client()
    client.admin.command("addShard", cluster.shard_host("shard1"))
    inventory = tmp_path / "hosts.ini"
    python = VENV_BIN / "python"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={python}")
    shard2 = {"host": f"127.0.0.1:{cluster.shards['shard2'].port}"}

    planned, stats = _play(inventory, router, wap_shard_operation="add", wap_shard_name="shard2",
                           wap_shard_members=[shard2], wap_shard_plan_only=True)  # fmt: skip
    assert planned.returncode == 0, planned.failures()
    assert stats["wap_shard_plan"]["title"] == "Add shard shard2"
    assert stats["wap_shard_plan"]["steps"][0].startswith(f"addShard shard2/{shard2['host']}")
    assert [s["_id"] for s in client.admin.command("listShards")["shards"]] == ["shard1"]

    added, _ = _play(inventory, router, wap_shard_operation="add", wap_shard_name="shard2",
                     wap_shard_members=[shard2])  # fmt: skip
    assert added.returncode == 0, added.failures()
    assert [s["_id"] for s in client.admin.command("listShards")["shards"]] == ["shard1", "shard2"]

    # Data on both shards: a hashed collection's chunks, and a database whose primary is shard2.
    client.admin.command("shardCollection", "app.events", key={"_id": "hashed"})
    client.app.events.insert_many([{"_id": n, "n": n} for n in range(200)])
    client.admin.command("enableSharding", "shop", primaryShard="shard2")
    client.shop.orders.insert_many([{"_id": n, "item": f"i{n}"} for n in range(50)])
    owned = cluster.config.client().config.chunks.count_documents({"shard": "shard2"})
    assert owned > 0 and cluster.shard_client("shard2").app.events.count_documents({}) > 0

    planned, stats = _play(inventory, router, wap_shard_operation="remove",
                           wap_shard_name="shard2", wap_shard_plan_only=True)  # fmt: skip
    assert planned.returncode == 0, planned.failures()
    steps = stats["wap_shard_plan"]["steps"]
    assert steps[0] == f"removeShard shard2: the balancer moves its {owned} chunks to shard1"
    assert steps[1].startswith("movePrimary shop to shard1")
    assert "shard2 draining: " in stats["wap_shard_plan"]["notes"][0]
    shards = client.admin.command("listShards")["shards"]
    assert [(s["_id"], s.get("draining", False)) for s in shards] == [
        ("shard1", False), ("shard2", False)]  # fmt: skip

    removed, _ = _play(inventory, router, wap_shard_operation="remove", wap_shard_name="shard2",
                       mongodb_sharding_poll_interval=1)  # fmt: skip
    assert removed.returncode == 0, removed.failures()
    left = [r["msg"] for _, r in removed.every("Show what is left")]  # round by round
    assert left[0].startswith("shard2 draining: ")
    assert left[-1] == "shard2 removed: nothing left on it"
    assert [s["_id"] for s in client.admin.command("listShards")["shards"]] == ["shard1"]
    assert client.config.databases.find_one({"_id": "shop"})["primary"] == "shard1"
    assert sorted(d["_id"] for d in client.app.events.find()) == list(range(200))
    assert [d["item"] for d in client.shop.orders.find().sort("_id", 1)] == [
        f"i{n}" for n in range(50)]  # fmt: skip

    refused, _ = _play(inventory, router, wap_shard_operation="remove", wap_shard_name="shard1")
    assert refused.returncode != 0
    assert "shard1 is the cluster's last shard: MongoDB cannot remove it" in refused.failures()
    assert [s["_id"] for s in client.admin.command("listShards")["shards"]] == ["shard1"]
