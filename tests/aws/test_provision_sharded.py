"""provision_cluster.yml with a sharded plan against moto's server: the smallest sharded cluster
(a config server replica set, one shard replica set, one mongos) provisioned, deployed on lab
hosts standing in for the instances, used through its router, then torn down."""

import json
import subprocess
from pathlib import Path

import pymongo
import pytest

from tests.aws.cloud import (
    PROVISION,
    TEARDOWN,
    recap,
    run_playbook,
    secured_deployment,
    tag_dict,
    tagged,
    write_plan,
)
from tests.deploy.deployment import ADMIN

CONFIRM = ("-e", "wap_teardown_confirm=yes")


def succeeded(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.lab
@pytest.mark.timeout(900)
def test_smallest_sharded_cluster_provisioned_deployed_then_nothing_left(
    tmp_path: Path, moto: str, ec2, make_spec, stand_in, mongodb_tarball: Path
) -> None:
    spec = make_spec(topology="sharded", shards=1, mongos=1, zones=1)
    del spec["members"]  # a sharded spec sizes its sets itself
    plan_file, plan = write_plan(tmp_path, "sharded", spec)
    standin = stand_in(plan["tags"])
    secrets = tmp_path / "secrets"
    deploy = {
        **secured_deployment(standin.lab.key_file, mongodb_tarball, secrets, ADMIN),
        "mongodb_sharding_collections": [{"namespace": "app.events", "key": {"_id": "hashed"}}],
    }

    counts = recap(succeeded(run_playbook(PROVISION, plan_file, moto, "-e", json.dumps(deploy))))
    names = sorted(i["name"] for i in plan["instances"])
    assert len(names) == 7  # 3 config servers, 3 shard members, 1 router: one instance each
    assert sorted(h for h in counts if h != "localhost") == names
    assert all(counts[n]["changed"] > 0 and counts[n]["failed"] == 0 for n in names)

    # Through the router, at its instance's private address, as an application would.
    instances = tagged(ec2, plan["tags"])["instance"]
    address = {tag_dict(i)["Name"]: i["PrivateIpAddress"] for i in instances}
    role = {i["name"]: i["role"] for i in plan["instances"]}
    shard_members = {f"{address[n]}:27018" for n in names if role[n] == "shard"}
    (router,) = [address[n] for n in names if role[n] == "mongos"]
    client = pymongo.MongoClient(
        router, 27017, tls=True, tlsCAFile=str(secrets / "ca.pem"),
        username=ADMIN[0], password=ADMIN[1], serverSelectionTimeoutMS=20000,
        socketTimeoutMS=90_000, wTimeoutMS=30_000,
    )  # fmt: skip
    with client:
        assert client.admin.command("hello")["msg"] == "isdbgrid"
        (shard,) = client.admin.command("listShards")["shards"]
        set_name, _, hosts = shard["host"].partition("/")
        assert (shard["_id"], set_name) == ("shard0", "shard0")
        assert set(hosts.split(",")) == shard_members
        assert client.config.collections.find_one({"_id": "app.events"})["key"] == {"_id": "hashed"}
        events = client.app.events
        events.insert_many([{"_id": i, "n": i * i} for i in range(100)])
        assert [d["n"] for d in events.find().sort("_id", 1)] == [i * i for i in range(100)]

    succeeded(run_playbook(TEARDOWN, plan_file, moto, *CONFIRM))
    assert {kind: items for kind, items in tagged(ec2, plan["tags"]).items() if items} == {}
    standin.wait_gone()
