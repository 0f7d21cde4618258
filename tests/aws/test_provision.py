"""provision_cluster.yml and teardown_cluster.yml against moto's server, unable to reach AWS."""

import ipaddress
import json
import subprocess
from collections import Counter
from pathlib import Path

import pymongo
import pytest
import yaml

from tests.aws.cloud import (
    PROVISION,
    REPO,
    TEARDOWN,
    VENV_BIN,
    kill_tree,
    offline_env,
    playbook_args,
    recap,
    run_playbook,
    secured_deployment,
    tag_dict,
    tagged,
    write_plan,
)
from tests.deploy.deployment import ADMIN, wait_healthy
from tests.waiting import wait_until

INVENTORY = REPO / "inventory" / "aws" / "aws_ec2.yml"
NOT_CONNECTING = ("-e", "wap_provision_connect=false")
CONFIRM = ("-e", "wap_teardown_confirm=yes")


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return done.stdout


def assert_nothing_left(ec2, tags: dict[str, str]) -> None:
    left = {kind: items for kind, items in tagged(ec2, tags).items() if items}
    assert left == {}


def network_only(plan_file: Path, plan: dict) -> tuple[Path, dict]:
    """The plan without its instances and volumes: for tests of the network alone (each
    instance and volume costs a module run or two, and these tests do not look at them)."""
    plan = {**plan, "instances": [], "volumes": []}
    plan_file.write_text(yaml.safe_dump({"wap_plan": plan}))
    return plan_file, plan


def ids(items: list[dict], key: str) -> set[str]:
    return {item[key] for item in items}


@pytest.mark.lab
@pytest.mark.timeout(1500)
def test_three_members_over_three_zones_provisioned_deployed_then_nothing_left(
    tmp_path: Path, moto: str, ec2, make_spec, stand_in, mongodb_tarball: Path
) -> None:
    plan_file, plan = write_plan(tmp_path, "rs3", make_spec())
    standin = stand_in(plan["tags"])
    key = standin.lab.key_file  # the lab hosts trust it: it is the platform's key here
    secrets = tmp_path / "secrets"
    deploy = secured_deployment(key, mongodb_tarball, secrets, ADMIN)
    options = ("-e", json.dumps(deploy))

    first = ok(run_playbook(PROVISION, plan_file, moto, *options, timeout=1200))
    counts = recap(first)
    members = [i["name"] for i in plan["instances"]]
    # The new instances were reached over SSH, through the in-memory inventory, with the key
    # the EC2 key pair was imported from, and MongoDB was deployed on them.
    assert sorted(h for h in counts if h != "localhost") == sorted(members)
    assert all(counts[m]["changed"] > 0 and counts[m]["failed"] == 0 for m in members)
    assert counts["localhost"]["changed"] > 0

    found = tagged(ec2, plan["tags"])
    # -- network: the project's VPC, one subnet per zone, one security group, no gateway.
    (vpc,) = found["vpc"]
    assert vpc["CidrBlock"] == plan["network"]["cidr"]
    assert tag_dict(vpc) == plan["network"]["tags"]
    subnets = {s["AvailabilityZone"]: s for s in found["subnet"]}
    assert sorted(subnets) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    for planned in plan["subnets"]:
        subnet = subnets[planned["zone"]]
        assert subnet["CidrBlock"] == planned["cidr"] and subnet["VpcId"] == vpc["VpcId"]
        assert tag_dict(subnet) == planned["tags"]
    assert found["internet-gateway"] == [] and found["route-table"] == []

    (group,) = found["security-group"]
    assert tag_dict(group) == plan["firewalls"][0]["tags"]
    allowed = Counter()
    for perm in group["IpPermissions"]:
        assert perm["FromPort"] == perm["ToPort"]
        for source in perm.get("IpRanges", []):
            allowed[(perm["FromPort"], source["CidrIp"])] += 1
        for source in perm.get("UserIdGroupPairs", []):
            allowed[(perm["FromPort"], source["GroupId"])] += 1
    assert allowed == Counter({
        (27017, group["GroupId"]): 1,  # between members
        (27017, "10.250.0.0/24"): 1,  # the platform
        (27017, "10.251.0.0/16"): 1,  # the applications
        (27017, "10.252.0.0/16"): 1,
        (22, "10.250.0.0/24"): 1,  # SSH from the platform only
    })  # fmt: skip

    # -- key pair: the platform's public key, imported.
    (key_pair,) = found["key-pair"]
    assert key_pair["KeyName"] == plan["key_pair"]["name"]
    assert tag_dict(key_pair) == plan["key_pair"]["tags"]

    # -- instances: one per zone (no zone holds a majority), in their subnets, tagged.
    instances = {tag_dict(i)["Name"]: i for i in found["instance"]}
    assert sorted(instances) == sorted(members)
    for planned in plan["instances"]:
        instance = instances[planned["name"]]
        assert instance["State"]["Name"] == "running"
        assert instance["Placement"]["AvailabilityZone"] == planned["zone"]
        assert instance["SubnetId"] == subnets[planned["zone"]]["SubnetId"]
        assert instance["KeyName"] == plan["key_pair"]["name"]
        assert instance["InstanceType"] == planned["size"]
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]
        assert tag_dict(instance) == planned["tags"]
        address = ipaddress.ip_address(instance["PrivateIpAddress"])
        assert address in ipaddress.ip_network(subnets[planned["zone"]]["CidrBlock"])
    assert Counter(i["Placement"]["AvailabilityZone"] for i in instances.values()) == Counter(
        {"eu-west-1a": 1, "eu-west-1b": 1, "eu-west-1c": 1}
    )

    # -- volumes: one data volume per member, attached at the planned device; the only other
    # tagged volumes are the instances' root volumes (EC2 gives them the instance's tags).
    data = {
        tag_dict(v)["Name"]: v for v in found["volume"] if tag_dict(v)["wap:role"] == "data-volume"
    }
    assert sorted(data) == sorted(v["name"] for v in plan["volumes"])
    for planned in plan["volumes"]:
        volume = data[planned["name"]]
        (attachment,) = volume["Attachments"]
        assert attachment["InstanceId"] == instances[planned["instance"]]["InstanceId"]
        assert attachment["Device"] == planned["device"]
        assert volume["AvailabilityZone"] == planned["zone"]
        assert (volume["VolumeType"], volume["Size"], volume["Iops"]) == ("gp3", 100, 3000)
        assert volume["Encrypted"] is True
        assert tag_dict(volume) == planned["tags"]
    roots = [
        v for v in found["volume"] if v["VolumeId"] not in ids(list(data.values()), "VolumeId")
    ]
    assert sorted(v["Attachments"][0]["InstanceId"] for v in roots) == sorted(
        i["InstanceId"] for i in instances.values()
    )
    assert all(v["Attachments"][0]["Device"] != "/dev/sdf" for v in roots)

    # -- a healthy, secured replica set answers at the instances' private addresses.
    addresses = sorted(f"{i['PrivateIpAddress']}:27017" for i in instances.values())
    client = pymongo.MongoClient(
        addresses, replicaSet="rs0", tls=True, tlsCAFile=str(secrets / "ca.pem"),
        username=ADMIN[0], password=ADMIN[1], serverSelectionTimeoutMS=30000,
    )  # fmt: skip
    with client:
        status = wait_healthy(client, 3)
        assert sorted(m["stateStr"] for m in status["members"]) == [
            "PRIMARY", "SECONDARY", "SECONDARY",
        ]  # fmt: skip
        assert sorted(m["name"] for m in status["members"]) == addresses
        zones = {f"{i['PrivateIpAddress']}:27017": i["Placement"]["AvailabilityZone"]
                 for i in instances.values()}  # fmt: skip
        assert sorted(zones[m["name"]] for m in status["members"]) == [
            "eu-west-1a", "eu-west-1b", "eu-west-1c",
        ]  # fmt: skip

    # -- the example aws_ec2 inventory groups the cluster's instances by their tags.
    listed = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(INVENTORY), "--list"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env=offline_env({"AWS_ENDPOINT_URL": moto}),
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    groups = json.loads(listed.stdout)
    for group in ("wap_cluster_orders", "wap_role_mongod", "wap_rs_rs0", "mongodb"):
        assert sorted(groups[group]["hosts"]) == sorted(members), group
    hostvars = groups["_meta"]["hostvars"]
    # (ansible-inventory marks values from the cloud as unsafe: {"__ansible_unsafe": "10.x.y.z"})
    hosts = [hostvars[m]["ansible_host"] for m in members]
    assert {h["__ansible_unsafe"] if isinstance(h, dict) else h for h in hosts} == {
        i["PrivateIpAddress"] for i in instances.values()
    }

    # -- a second run creates nothing and reports no change.
    second = ok(run_playbook(PROVISION, plan_file, moto, *options, timeout=1200))
    assert {h: c["changed"] for h, c in recap(second).items()} == {
        h: 0 for h in ["localhost", *members]
    }
    again = tagged(ec2, plan["tags"])
    for kind, key_name in [("instance", "InstanceId"), ("volume", "VolumeId"),
                           ("subnet", "SubnetId"), ("security-group", "GroupId"),
                           ("vpc", "VpcId"), ("key-pair", "KeyPairId")]:  # fmt: skip
        assert ids(again[kind], key_name) == ids(found[kind], key_name), kind

    # -- teardown leaves nothing tagged for the cluster, and the stand-in hosts go with it.
    ok(run_playbook(TEARDOWN, plan_file, moto, *CONFIRM))
    assert_nothing_left(ec2, plan["tags"])
    assert {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} == {
        v["VpcId"]
        for v in ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    }
    standin.wait_gone()

    rerun = ok(run_playbook(TEARDOWN, plan_file, moto, *CONFIRM))
    assert recap(rerun)["localhost"]["changed"] == 0


def test_teardown_after_provisioning_killed_halfway(
    tmp_path: Path, moto: str, ec2, make_spec
) -> None:
    plan_file, plan = write_plan(tmp_path, "half", make_spec(members=5))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    proc = subprocess.Popen(
        playbook_args(PROVISION, plan_file, moto, "-e", f"wap_ssh_private_key_file={key}",
                      *NOT_CONNECTING),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=offline_env(), cwd=REPO,
        start_new_session=True,
    )  # fmt: skip
    try:

        def an_instance() -> bool:
            assert proc.poll() is None, "the provisioning ended before any instance existed"
            return bool(tagged(ec2, plan["tags"])["instance"])

        wait_until(
            an_instance,
            timeout=300,
            every=0.05,
            what="the provisioning to launch an instance",
            seen=lambda: {k: len(v) for k, v in tagged(ec2, plan["tags"]).items()},
        )
    finally:
        kill_tree(proc)  # SIGKILL, mid-run: no handler, no cleanup
    half = tagged(ec2, plan["tags"])
    data = [v for v in half["volume"] if tag_dict(v).get("wap:role") == "data-volume"]
    assert half["vpc"] and half["subnet"] and half["security-group"] and half["key-pair"]
    assert len(half["instance"]) >= 1 and len(data) < len(plan["volumes"])  # really halfway

    done = ok(run_playbook(TEARDOWN, plan_file, moto, *CONFIRM))
    assert "Nothing tagged" in done
    assert_nothing_left(ec2, plan["tags"])


def test_second_cluster_reuses_the_vpc_which_goes_with_the_last_cluster(
    tmp_path: Path, moto: str, ec2, make_spec, vpc_cidr: str
) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    net = ipaddress.ip_network(vpc_cidr)
    later = [str(list(net.subnets(new_prefix=24))[10])]
    first_file, first = network_only(
        *write_plan(tmp_path, "one", make_spec(cluster="orders", zones=1))
    )
    second_file, second = network_only(
        *write_plan(
            tmp_path, "two", make_spec(cluster="billing", zones=1, subnet_cidrs=later, public=True)
        )
    )
    options = ("-e", f"wap_ssh_private_key_file={key}", *NOT_CONNECTING)
    ok(run_playbook(PROVISION, first_file, moto, *options))
    ok(run_playbook(PROVISION, second_file, moto, *options))

    (vpc,) = tagged(ec2, {"wap:project": "acme", "wap:role": "network"})["vpc"]
    assert tag_dict(vpc)["wap:cluster"] == "orders"  # created for the first, reused by the second
    public = tagged(ec2, second["tags"])
    assert len(public["subnet"]) == 1 and all(s["VpcId"] == vpc["VpcId"] for s in public["subnet"])
    assert all(s["MapPublicIpOnLaunch"] for s in public["subnet"])
    (table,) = public["route-table"]
    assert {a["SubnetId"] for a in table["Associations"] if "SubnetId" in a} == ids(
        public["subnet"], "SubnetId"
    )
    assert any(r.get("GatewayId", "").startswith("igw-") for r in table["Routes"])

    # The first cluster goes: its VPC still holds the second's subnets, so it is handed over.
    ok(run_playbook(TEARDOWN, first_file, moto, *CONFIRM))
    assert_nothing_left(ec2, first["tags"])
    (kept,) = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"]
    assert tag_dict(kept)["wap:cluster"] == "billing"
    (igw,) = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}]
    )["InternetGateways"]
    assert tag_dict(igw)["wap:cluster"] == "billing"

    # The last cluster goes: the VPC and its gateway go with it.
    ok(run_playbook(TEARDOWN, second_file, moto, *CONFIRM))
    assert_nothing_left(ec2, second["tags"])
    assert not ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Vpcs"]
    assert not ec2.describe_internet_gateways()["InternetGateways"]


def test_reused_vpc_with_another_range_is_refused_with_the_fix(
    tmp_path: Path, moto: str, ec2, make_spec
) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "wap:project", "Value": "acme"},
                                           {"Key": "wap:role", "Value": "network"}])  # fmt: skip
    plan_file, plan = write_plan(tmp_path, "bad", make_spec())
    done = run_playbook(PROVISION, plan_file, moto, "-e", f"wap_ssh_private_key_file={key}",
                        *NOT_CONNECTING)  # fmt: skip
    assert done.returncode != 0
    assert "set vpc_cidr to 10.20.0.0/16" in done.stdout
    assert not any(tagged(ec2, plan["tags"])[k] for k in ("subnet", "instance", "volume"))


def test_teardown_needs_confirmation(tmp_path: Path, moto: str, make_spec) -> None:
    plan_file, _plan = write_plan(tmp_path, "confirm", make_spec())
    done = run_playbook(TEARDOWN, plan_file, moto)
    assert done.returncode != 0 and "wap_teardown_confirm=yes" in done.stdout
