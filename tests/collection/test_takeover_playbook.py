"""playbooks/takeover_cluster.yml from a terminal on a sharded cluster of doubles on 127.0.0.1,
from one router's address: its config servers, both shards and both routers (each recorded in
config.mongos), the version and FCV; reads only."""

from __future__ import annotations

import json
import subprocess

from tests.labhosts import REPO, VENV_BIN, ansible_env
from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
from tests.mongod_double.shardedset import SHARDS, start_cluster
from tests.waiting import wait_until


def test_a_sharded_cluster_is_found_whole_from_one_router(launcher) -> None:  # noqa: F811
    cluster = start_cluster(launcher, 2)
    for name in SHARDS:
        cluster.router_client().admin.command("addShard", cluster.shard_host(name))
    config = cluster.config.client().config
    wait_until(lambda: config.mongos.count_documents({}) == 2, timeout=10,
               what="both routers in config.mongos")  # fmt: skip
    address = f"127.0.0.1:{cluster.routers[0].port}"
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "playbooks/takeover_cluster.yml",
         "-e", json.dumps({"wap_takeover_address": address})],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    output = json.loads(done.stdout[done.stdout.index("{") :])
    read = next(t for t in output["plays"][0]["tasks"]
                if t["task"]["name"] == f"Read the deployment, {address}")  # fmt: skip
    found = read["hosts"]["localhost"]["deployment"]
    assert (found["topology"], found["name"], found["fcv"]) == ("sharded", "cfg", "7.0")
    assert [(s["role"], s["name"], [m["host"] for m in s["members"]]) for s in found["sets"]] == [
        ("config servers", "cfg", [f"127.0.0.1:{cluster.config.port}"]),
        *(("shard", n, [f"127.0.0.1:{cluster.shards[n].port}"]) for n in SHARDS)]  # fmt: skip
    assert {m["state"] for s in found["sets"] for m in s["members"]} == {"PRIMARY"}
    ports = sorted(int(r["host"].rpartition(":")[2]) for r in found["routers"])
    assert ports == sorted(r.port for r in cluster.routers)
    assert address in [r["host"] for r in found["routers"]]
    assert {r["version"] for r in found["routers"]} == {"7.0.14"}
    security = found["security"]
    assert (security["auth"], security["cluster_auth"], security["tls"]) == (
        False, "none", "disabled")  # fmt: skip
