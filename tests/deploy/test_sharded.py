"""deploy_sharded.yml on lab hosts with the double's tarball: the secured lab example (a config
server replica set, two shard replica sets with a member on every host, mongos on lab1 and lab2)
deployed from bare hosts, then re-run; the agents deployed on it, each reading its host's config
server, shard members and router with its own MongoDB user.
"""

from __future__ import annotations

import json
import shlex

import pytest

from tests.deploy.deployment import APP, Deployment, build_agent_wheelhouse, wait_healthy

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]

SHARDED = "sharded.yml"
SETS = {"cfg": 27019, "shard1": 27018, "shard2": 27020}


@pytest.fixture(scope="module")
def cluster(deployment_factory) -> Deployment:
    """The lab example (inventory/lab/sharded.yml) deployed on a 3-host lab."""
    deployment = deployment_factory(3)
    deployment.first = deployment.run("deploy_sharded.yml", SHARDED)
    return deployment


def test_sharded_cluster_deploys(cluster: Deployment) -> None:
    assert cluster.first.returncode == 0, cluster.first.failures()
    # Every replica set has its three members healthy, and its own administrator (the shards'
    # localhost exception is closed).
    for name, port in SETS.items():
        with cluster.client(port=port, replicaSet=name) as client:
            status = wait_healthy(client, 3)
            states = sorted(m["stateStr"] for m in status["members"])
            assert states == ["PRIMARY", "SECONDARY", "SECONDARY"], name
            assert {m["name"] for m in status["members"]} == {
                cluster.address(h, port) for h in ("lab1", "lab2", "lab3")
            }
    # Both routers see both shards.
    for router in ("lab1", "lab2"):
        with cluster.client(router, directConnection=True) as mongos:
            assert mongos.admin.command("hello")["msg"] == "isdbgrid"
            shards = {s["_id"]: s["host"] for s in mongos.admin.command("listShards")["shards"]}
            assert sorted(shards) == ["shard1", "shard2"]
            assert shards["shard1"].startswith("shard1/")


def test_sharded_collection_receives_documents_on_both_shards(cluster: Deployment) -> None:
    with cluster.client("lab2", user=APP, authSource="app", directConnection=True) as app:
        app.app.events.insert_many([{"n": i} for i in range(200)])
        assert app.app.events.count_documents({}) == 200
    with cluster.client(directConnection=True) as mongos:
        entry = mongos.config.collections.find_one({"_id": "app.events"})
        assert entry["key"] == {"_id": "hashed"}
    counts = {}
    for name in ("shard1", "shard2"):
        with cluster.client(port=SETS[name], replicaSet=name) as shard:
            counts[name] = shard.app.events.count_documents({})
    assert counts["shard1"] > 0 and counts["shard2"] > 0, counts
    assert sum(counts.values()) == 200, counts


def test_second_run_changes_nothing(cluster: Deployment) -> None:
    again = cluster.run("deploy_sharded.yml", SHARDED)
    assert again.returncode == 0, again.failures()
    assert again.changed() == {"lab1": 0, "lab2": 0, "lab3": 0}
    admin = again.every("Create the first administrator, or check that it authenticates")
    assert len(admin) == 9 and not any(r.get("changed") for _host, r in admin)  # 3 sets x 3


def test_agents_read_every_process_of_their_host(
    cluster: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    hosts = ("lab1", "lab2", "lab3")
    agent_vars = {
        "wap_agent_wheelhouse": str(build_agent_wheelhouse(tmp_path_factory.mktemp("wheels"))),
        # Nothing listens there: the agents queue their samples, which is not what is looked at.
        "wap_agent_platform_url": f"http://{cluster.lab.lab.state().hosts['lab1'].gateway}:9",
        "wap_agent_token": "wapa_lab-{{ inventory_hostname }}",
    }
    first = cluster.run("deploy_agent.yml", SHARDED, **agent_vars)
    assert first.returncode == 0, first.failures()
    again = cluster.run("deploy_agent.yml", SHARDED, **agent_vars)
    assert again.returncode == 0, again.failures()
    assert again.changed() == dict.fromkeys(hosts, 0)
    for host in hosts:
        ini = cluster.lab.ssh(host, "cat /etc/wap-agent/agent.ini").stdout
        uris = [line.strip() for line in ini.splitlines() if line.strip().startswith("mongodb://")]
        ports = sorted(int(u.split("@localhost:")[1].split("/")[0]) for u in uris)
        routers = [27017] if host in ("lab1", "lab2") else []  # mongos on lab1 and lab2
        assert ports == sorted(routers + list(SETS.values())), ini
        # The agent's user authenticates everywhere, as the agent's system user reads it.
        command = (
            "runuser -u wap-agent -- /opt/wap-agent/venv/bin/wap-agent collect --once --no-host"
        )
        command += "".join(f" --mongodb-uri {shlex.quote(u)}" for u in uris)
        round_ = json.loads(cluster.lab.ssh(host, command).stdout)
        assert round_["errors"] == {}, round_["errors"]
        up = {s["labels"]["instance"]: s["value"] for s in round_["samples"]
              if s["name"] == "mongodb_up"}  # fmt: skip
        assert up == {f"localhost:{port}": 1 for port in ports}
        # The size survey lists and sizes the shards' collections (clusterMonitor, no find).
        events = {s["labels"]["instance"]: s["value"] for s in round_["samples"]
                  if s["name"] == "mongodb_collection_documents"
                  and s["labels"].get("collection") == "events"}  # fmt: skip
        shards = (SETS["shard1"], SETS["shard2"])
        assert sorted(events) == [f"localhost:{port}" for port in shards], round_["samples"]
        assert all(count > 0 for count in events.values()), events
        token = cluster.lab.ssh(
            host, "stat -c '%U %a' /etc/wap-agent/token; cat /etc/wap-agent/token"
        )
        assert token.stdout.split() == ["wap-agent", "600", f"wapa_lab-{host}"]


def test_a_shard_is_removed_after_draining(cluster: Deployment) -> None:
    info = cluster.module("lab1", "mongodb_info", gather=["server", "topology", "shards"])
    assert info["topology"] == "mongos"
    assert sorted(s["_id"] for s in info["shards"]) == ["shard1", "shard2"]
    remove = {"name": "shard2", "state": "absent", "move_primary_to": "shard1", "poll_interval": 1}
    assert cluster.module("lab1", "mongodb_shard", check=True, **remove)["changed"] is True
    removed = cluster.module("lab1", "mongodb_shard", **remove)
    assert removed["changed"] is True and removed["shards"] == ["shard1"], removed
    assert removed["drain"]["state"] == "completed"
    with cluster.client(directConnection=True) as mongos:
        assert [s["_id"] for s in mongos.admin.command("listShards")["shards"]] == ["shard1"]
        assert mongos.app.events.count_documents({}) == 200  # moved to shard1, none lost
    with cluster.client(port=SETS["shard1"], replicaSet="shard1") as shard:
        assert shard.app.events.count_documents({}) == 200
    assert cluster.module("lab1", "mongodb_shard", **remove)["changed"] is False
