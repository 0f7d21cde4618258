"""deploy_sharded.yml on lab hosts with the double's tarball: the secured lab example (a config
server replica set, two shard replica sets with a member on every host, mongos on lab1 and lab2)
deployed from bare hosts, then re-run; the agents deployed on it, each reading its host's config
server, shard members and router with its own MongoDB user; a shard drained and removed; then
the cluster upgraded by upgrade_cluster.yml to the double's next major under a write load.
"""

from __future__ import annotations

import json
import shlex

import pymongo
import pytest

from tests.deploy.deployment import (
    APP,
    Deployment,
    build_agent_wheelhouse,
    build_double_tarball,
    wait_healthy,
)
from tests.deploy.writes import WriteCounter
from tests.waiting import wait_until

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


UPGRADE_TO = "8.0.4"
ROUTERS = ("lab1", "lab2")


@pytest.fixture(scope="module")
def upgrade_vars(cluster: Deployment, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """upgrade_cluster.yml's variables: the double's 8.0 tarball (the cluster runs 7.0.14)."""
    tarball = build_double_tarball(tmp_path_factory.mktemp("double80"), UPGRADE_TO)
    return {"mongodb_upgrade_version": UPGRADE_TO, "mongodb_upgrade_tarballs": [str(tarball)]}


def cluster_sets(cluster: Deployment) -> dict[str, int]:
    """The config servers' set and the shards the cluster has now (the test above may have
    removed one), with their ports."""
    with cluster.client(directConnection=True) as mongos:
        shards = [s["_id"] for s in mongos.admin.command("listShards")["shards"]]
    return {"cfg": SETS["cfg"], **{name: SETS[name] for name in shards}}


def each_member(cluster: Deployment, read) -> dict[str, object]:
    """``read(admin database)`` on each member of the cluster's sets, by set and host."""
    found = {}
    for name, port in cluster_sets(cluster).items():
        for host in ("lab1", "lab2", "lab3"):
            with cluster.client(host, port, directConnection=True) as member:
                found[f"{name} {host}"] = read(member.admin)
    return found


def running(cluster: Deployment) -> dict[str, tuple[str, str]]:
    """Each member's (version, FCV) and each router's (version, "") by set and host."""

    def version_and_fcv(admin) -> tuple[str, str]:
        fcv = admin.command("getParameter", 1, featureCompatibilityVersion=1)
        return admin.command("buildInfo")["version"], fcv["featureCompatibilityVersion"]["version"]

    found = each_member(cluster, version_and_fcv)
    for host in ROUTERS:
        with cluster.client(host, directConnection=True) as mongos:
            found[f"mongos {host}"] = (mongos.admin.command("buildInfo")["version"], "")
    return found


def balancer_mode(cluster: Deployment) -> str:
    with cluster.client(directConnection=True) as mongos:
        return mongos.admin.command("balancerStatus")["mode"]


def order(cluster: Deployment) -> str:
    """The order a plan goes through the cluster: config servers, each shard, the routers."""

    def members(port: int) -> str:
        return ", ".join(cluster.address(h, port) for h in ("lab1", "lab2", "lab3"))

    sets = cluster_sets(cluster)
    groups = [f"config servers cfg ({members(SETS['cfg'])})"]
    groups += [f"shard {name} ({members(port)})" for name, port in sets.items() if name != "cfg"]
    groups.append(f"routers ({', '.join(cluster.address(h) for h in ROUTERS)})")
    return "; then ".join(groups)


def routers_client(cluster: Deployment, user=APP, **kwargs) -> pymongo.MongoClient:
    """A client of both routers, as an application spreads over them (a restarting router's
    retryable writes go to the other)."""
    return pymongo.MongoClient(
        [cluster.address(h) for h in ROUTERS], tls=True, tlsCAFile=str(cluster.secrets / "ca.pem"),
        username=user[0], password=user[1], authSource="app", serverSelectionTimeoutMS=20000,
        socketTimeoutMS=90_000, **kwargs)  # fmt: skip


def test_sharded_upgrade_check_mode_shows_the_whole_plan_and_changes_nothing(
    cluster: Deployment, upgrade_vars: dict
) -> None:
    mode = balancer_mode(cluster)
    check = cluster.run("upgrade_cluster.yml", SHARDED, check=True, **upgrade_vars)
    assert check.returncode == 0, check.failures()
    plan = check.results("Show the plan (check mode stops here)")["lab1"]["msg"]
    assert plan == [
        f"upgrade of the sharded cluster (balancer {mode}, stopped first and restored at the end)"
        f" to {UPGRADE_TO}:",
        f"binaries {UPGRADE_TO}: {order(cluster)}, one at a time",
        "FCV 8.0 (confirm: true), through a mongos",
    ]
    assert set(running(cluster).values()) == {("7.0.14", "7.0"), ("7.0.14", "")}
    assert cluster.lab.ssh("lab3", "ls /opt/mongodb").stdout.split() == ["7.0.14"]


def test_sharded_upgrade_keeps_every_acknowledged_write_and_the_balancer_state(
    cluster: Deployment, upgrade_vars: dict
) -> None:
    """upgrade_cluster.yml on the cluster under w:majority writes through both routers: every
    process ends on 8.0.4 at FCV 8.0, every acknowledged write is there, the balancer was
    stopped during the upgrade and is back in its former mode; a second run changes nothing."""
    before = balancer_mode(cluster)
    with routers_client(cluster) as app, WriteCounter(app) as counter:
        upgrade = cluster.run("upgrade_cluster.yml", SHARDED, **upgrade_vars)
    assert upgrade.returncode == 0, upgrade.failures()
    wanted = {k: (UPGRADE_TO, "" if k.startswith("mongos") else "8.0") for k in running(cluster)}
    wait_until(lambda: running(cluster) == wanted, timeout=60, what="8.0.4 at FCV 8.0 everywhere",
               seen=lambda: running(cluster))  # fmt: skip
    assert len(counter.acknowledged) > 20
    with routers_client(cluster) as app:
        assert counter.missing(app) == []
    # Every member and router restarted once, routers last; the balancer stopped, then back.
    restarts = upgrade.every(f"Restart the member on the new release, {UPGRADE_TO}")
    assert [r.get("changed") for _, r in restarts] == [True] * len(wanted)
    assert (
        upgrade.results("Stop the balancer and wait until no migration runs")["lab1"]["mode_before"]
        == before
    )
    assert balancer_mode(cluster) == before
    for name, port in cluster_sets(cluster).items():
        with cluster.client(port=port, replicaSet=name) as members:
            wait_healthy(members, 3)
    again = cluster.run("upgrade_cluster.yml", SHARDED, **upgrade_vars)
    assert again.returncode == 0, again.failures()
    assert set(again.changed().values()) == {0}


def ttl_sleep(cluster: Deployment) -> set[int]:
    """ttlMonitorSleepSecs as every member of the cluster's sets runs it."""
    found = each_member(cluster, lambda admin: admin.command(
        "getParameter", 1, ttlMonitorSleepSecs=1)["ttlMonitorSleepSecs"])  # fmt: skip
    return set(found.values())


def test_rolling_parameter_change_restarts_every_process_once_and_keeps_the_writes(
    cluster: Deployment,
) -> None:
    """rolling_restart.yml with a setParameter: check mode shows the order and changes nothing;
    the run writes it into every mongod's file and restarts each member and router once (the
    sets' primaries last, after a step-down), under w:majority writes through the routers, the
    balancer back in its former mode."""
    change = {"wap_rolling_set_parameters": {"ttlMonitorSleepSecs": 30}}
    mode = balancer_mode(cluster)
    check = cluster.run("rolling_restart.yml", SHARDED, check=True, **change)
    assert check.returncode == 0, check.failures()
    plan = check.results("Show the plan (check mode stops here)")["lab1"]["msg"]
    assert plan == [
        f"rolling restart of the sharded cluster (balancer {mode}, stopped first and restored "
        "at the end):",
        f"restart: {order(cluster)}, one at a time",
    ]
    assert ttl_sleep(cluster) == {60}
    with (
        routers_client(cluster) as app,
        WriteCounter(app, collection="restart_counter") as counter,
    ):
        run = cluster.run("rolling_restart.yml", SHARDED, **change)
    assert run.returncode == 0, run.failures()
    assert ttl_sleep(cluster) == {30}
    restarts = run.every("Restart the member on its binaries and configuration")
    processes = 3 * len(cluster_sets(cluster)) + len(ROUTERS)
    assert [r.get("changed") for _, r in restarts] == [True] * processes
    stepdowns = [r["changed"] for _, r in run.every("Step the member down if it is the primary")
                 if not r.get("skipped")]  # fmt: skip
    assert stepdowns.count(True) == len(cluster_sets(cluster))  # each set's primary, once
    assert len(counter.acknowledged) > 20
    with routers_client(cluster) as app:
        assert counter.missing(app) == []
    assert balancer_mode(cluster) == mode
