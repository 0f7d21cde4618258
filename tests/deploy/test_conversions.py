"""convert_cluster.yml and shard_operation.yml on lab hosts with the double's tarball, one
deployment all along: a secured standalone on lab1 becomes replica set rs0 on lab1..lab3, then
the first shard of a sharded cluster (config servers on every host, routers on lab1 and lab2),
then a second shard is added and the first drained and removed. At each step every document
written before is there, and the acknowledged writes of a w:majority load running through the
sharded conversion (to the set) and through the removal (through the routers) are all kept.
"""

from __future__ import annotations

from pathlib import Path

import pymongo
import pytest

from tests.deploy.deployment import ADMIN, APP, Deployment, wait_healthy
from tests.deploy.writes import WriteCounter

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]

HOSTS = ["lab1", "lab2", "lab3"]
ROUTER_PORT = 27016  # the set keeps 27017 on the same hosts
# The lab's security as the deploy playbooks take it, without the role variables the
# playbooks set themselves (instances, set names, members, ports).
SECURED = {
    "mongodb_security_cluster_name": "lab-convert",
    "mongodb_security_cluster_auth": "keyfile",
    "mongodb_security_tls": True,
    "mongodb_security_admin_password": ADMIN[1],
    "mongodb_config_auth": True,
    "mongodb_config_key_file": "/etc/mongodb/keyfile",
    "mongodb_config_tls_mode": "requireTLS",
    "mongodb_replicaset_tls": True,
    "mongodb_replicaset_login_user": ADMIN[0],
    "mongodb_replicaset_login_password": ADMIN[1],
    "mongodb_users_tls": True,
    "mongodb_users_login_user": ADMIN[0],
    "mongodb_users_login_password": ADMIN[1],
    "mongodb_users_users": [
        {"name": APP[0], "database": "app", "password": APP[1], "roles": ["readWrite"]}
    ],
}
ROUTERS = {
    "wap_mongos_hosts": ["lab1", "lab2"],
    "mongodb_sharding_port": ROUTER_PORT,
    "mongodb_sharding_tls": True,
    "mongodb_sharding_login_user": ADMIN[0],
    "mongodb_sharding_login_password": ADMIN[1],
}
ITEMS = [{"_id": n, "name": f"item {n}"} for n in range(300)]


@pytest.fixture(scope="module")
def lab(deployment_factory) -> Deployment:
    deployment = deployment_factory(3)
    standalone = Path(__file__).parent / "playbooks" / "standalone.yml"
    deployment.first = deployment.run(str(standalone), wap_standalone_host="lab1", **SECURED)
    return deployment


def why(run) -> str:
    """The failures of a run, with the message of each failed item of a loop."""
    items = [f"{host} {entry['task']['name']} item: {item.get('msg')}"
             for play in run.output.get("plays", []) for entry in play["tasks"]
             for host, result in entry["hosts"].items()
             for item in result.get("results") or []
             if isinstance(item, dict) and item.get("failed")]  # fmt: skip
    return "\n".join([run.failures(), *items])


def routers_client(lab: Deployment, user=ADMIN) -> pymongo.MongoClient:
    seeds = ",".join(lab.address(h, ROUTER_PORT) for h in ROUTERS["wap_mongos_hosts"])
    return pymongo.MongoClient(
        f"mongodb://{seeds}/", tls=True, tlsCAFile=str(lab.secrets / "ca.pem"),
        username=user[0], password=user[1], authSource="admin" if user == ADMIN else "app",
        serverSelectionTimeoutMS=20000,
    )  # fmt: skip


def items(client: pymongo.MongoClient) -> list[dict]:
    return list(client.app.items.find().sort("_id", 1))


def test_a_standalone_becomes_a_replica_set_with_its_data(lab: Deployment) -> None:
    assert lab.first.returncode == 0, lab.first.failures()
    with lab.client(directConnection=True) as standalone:
        assert "setName" not in standalone.admin.command("hello")
        standalone.app.items.insert_many(ITEMS)
    planned = lab.run("convert_cluster.yml", wap_convert_to="replicaset", wap_convert_hosts=HOSTS,
                      wap_convert_plan_only=True, **SECURED)  # fmt: skip
    assert planned.returncode == 0, why(planned)
    plan = planned.results("Keep the plan")["lab1"]["ansible_facts"]["_wap_convert_plan"]
    assert plan["steps"][1] == f"initiate rs0 with {lab.address('lab1')} alone: its data stays"
    with lab.client(directConnection=True) as standalone:
        assert "setName" not in standalone.admin.command("hello")  # the plan changed nothing

    converted = lab.run("convert_cluster.yml", wap_convert_to="replicaset",
                        wap_convert_hosts=HOSTS, **SECURED)  # fmt: skip
    assert converted.returncode == 0, why(converted)
    with lab.client(replicaSet="rs0") as rs0:
        status = wait_healthy(rs0, 3)
        assert {m["name"] for m in status["members"]} == {lab.address(h) for h in HOSTS}
        assert items(rs0) == ITEMS
    for host in HOSTS:  # the new members synced the standalone's data
        with lab.client(host, directConnection=True, readPreference="secondaryPreferred") as one:
            assert one.app.items.count_documents({}) == len(ITEMS), host


def test_the_replica_set_becomes_a_sharded_clusters_first_shard(lab: Deployment) -> None:
    planned = lab.run("convert_cluster.yml", wap_convert_to="sharded", wap_convert_hosts=HOSTS,
                      wap_convert_router_port=ROUTER_PORT, wap_convert_plan_only=True,
                      **ROUTERS, **SECURED)  # fmt: skip
    assert planned.returncode == 0, why(planned)
    steps = planned.results("Keep the plan")["lab1"]["ansible_facts"]["_wap_convert_plan"]["steps"]
    assert steps[2].endswith("(the primary, stepped down first), each waited for until it "
                             "serves, caught up")  # fmt: skip
    with lab.client(replicaSet="rs0") as rs0, WriteCounter(rs0) as writes:
        converted = lab.run("convert_cluster.yml", wap_convert_to="sharded",
                            wap_convert_hosts=HOSTS, wap_convert_router_port=ROUTER_PORT,
                            **ROUTERS, **SECURED)  # fmt: skip
    assert converted.returncode == 0, why(converted)
    assert len(writes.acknowledged) > 20, writes.failed
    with routers_client(lab) as mongos:
        shards = mongos.admin.command("listShards")["shards"]
        assert [(s["_id"], s["host"].partition("/")[0]) for s in shards] == [("rs0", "rs0")]
        assert items(mongos) == ITEMS
        assert writes.missing(mongos) == []
    with routers_client(lab, user=APP) as app:  # the application's user, on the config servers
        assert app.app.items.count_documents({}) == len(ITEMS)
    with lab.client(port=27019, replicaSet="cfg") as cfg:
        wait_healthy(cfg, 3)


def test_a_shard_is_added_then_the_first_drained_and_removed(lab: Deployment) -> None:
    added = lab.run("shard_operation.yml", wap_shard_operation="add", wap_shard_name="shard2",
                    wap_shard_hosts=HOSTS, wap_shard_port=27020, **ROUTERS, **SECURED)  # fmt: skip
    assert added.returncode == 0, why(added)
    with routers_client(lab) as mongos:
        assert [s["_id"] for s in mongos.admin.command("listShards")["shards"]] == ["rs0", "shard2"]
        mongos.admin.command("shardCollection", "app.events", key={"_id": "hashed"})
        mongos.app.events.insert_many([{"_id": n} for n in range(200)])
    with lab.client(port=27020, replicaSet="shard2") as shard2:
        wait_healthy(shard2, 3)
        assert shard2.app.events.count_documents({}) > 0  # chunks were put on it

    # The load writes where nothing moves: MongoDB leaves writes to the unsharded collections of
    # a database in movePrimary undefined.
    with routers_client(lab) as mongos:
        mongos.admin.command("enableSharding", "load", primaryShard="shard2")
    with routers_client(lab) as mongos, WriteCounter(mongos, database="load") as writes:
        removed = lab.run("shard_operation.yml", wap_shard_operation="remove", wap_shard_name="rs0",
                          mongodb_sharding_poll_interval=1, **ROUTERS, **SECURED)  # fmt: skip
    assert removed.returncode == 0, why(removed)
    left = [r["msg"] for _, r in removed.every("Show what is left")]
    assert left[0].startswith("rs0 draining: ") and left[-1] == "rs0 removed: nothing left on it"
    with routers_client(lab) as mongos:
        assert [s["_id"] for s in mongos.admin.command("listShards")["shards"]] == ["shard2"]
        assert mongos.config.databases.find_one({"_id": "app"})["primary"] == "shard2"
        assert items(mongos) == ITEMS
        assert sorted(d["_id"] for d in mongos.app.events.find()) == list(range(200))
        assert writes.missing(mongos) == [] and len(writes.acknowledged) > 10
