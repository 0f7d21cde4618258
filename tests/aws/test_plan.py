"""The deployment plan: a pure function of the spec; the spread rule; validation messages."""

import ipaddress
from collections import Counter

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from wap.cli import main as wap_main
from wap.plan import ClusterSpec, SpecError, make_plan, plan_from_dict

BASE = {
    "project": "acme",
    "cluster": "orders",
    "region": "eu-west-1",
    "platform_cidr": "10.250.0.0/24",
}


def spec(**fields):
    return {**BASE, **fields}


topologies = st.one_of(
    st.fixed_dictionaries({"topology": st.just("replicaset"), "members": st.sampled_from([3, 5])}),
    st.fixed_dictionaries({
        "topology": st.just("sharded"),
        "shards": st.integers(1, 16),
        "mongos": st.integers(1, 8),
    }),
)  # fmt: skip
specs = st.builds(
    lambda topology, zones, public, apps: spec(
        **topology, zones=zones, public=public, app_cidrs=apps, vpc_cidr="10.40.0.0/16"
    ),
    topologies,
    st.integers(1, 3),
    st.booleans(),
    st.lists(st.sampled_from(["10.1.0.0/16", "192.168.0.0/24", "172.16.5.0/24"]), unique=True),
)


@settings(max_examples=150, deadline=None)
@given(specs)
def test_no_zone_holds_a_majority_of_any_replica_set_with_three_zones(data) -> None:
    plan = make_plan(ClusterSpec.from_dict(data))
    zone_of = {i.name: i.zone for i in plan.instances}
    for rs in plan.replica_sets:
        per_zone = Counter(zone_of[m] for m in rs.members)
        majority = len(rs.members) // 2 + 1
        if len(plan.zones) == 3:
            assert max(per_zone.values()) < majority, (rs.name, per_zone)
            assert len(per_zone) == 3  # every zone is used
        else:
            # fewer zones: as even as it gets
            assert max(per_zone.values()) - min(per_zone.values()) <= 1
            assert len(per_zone) == len(plan.zones)


@settings(max_examples=150, deadline=None)
@given(specs)
def test_every_resource_is_named_tagged_and_consistent(data) -> None:
    plan = make_plan(ClusterSpec.from_dict(data))
    resources = [plan.network, *plan.subnets, *plan.firewalls, plan.key_pair, *plan.instances,
                 *plan.volumes]  # fmt: skip
    if plan.gateway:
        resources.append(plan.gateway)
    for resource in resources:
        assert resource.tags["Name"] == resource.name
        assert resource.tags["wap:project"] == "acme"
        assert resource.tags["wap:cluster"] == "orders"
        assert resource.tags["wap:role"]
    names = [r.name for r in resources]
    assert len(names) == len(set(names))
    assert (plan.gateway is not None) == data["public"]

    vpc = ipaddress.ip_network(plan.network.cidr)
    subnets = {s.name: s for s in plan.subnets}
    assert [s.zone for s in plan.subnets] == list(plan.zones)
    for subnet in plan.subnets:
        assert ipaddress.ip_network(subnet.cidr).subnet_of(vpc)
    volumes = {v.name: v for v in plan.volumes}
    data_bearing = [i for i in plan.instances if i.role != "mongos"]
    assert len(plan.volumes) == len(data_bearing)  # one data volume per member
    for instance in plan.instances:
        assert subnets[instance.subnet].zone == instance.zone
        if instance.role == "mongos":
            assert instance.volume is None
        else:
            volume = volumes[instance.volume]
            assert (volume.instance, volume.zone) == (instance.name, instance.zone)
            assert (volume.type, volume.size_gb, volume.iops) == ("gp3", 100, 3000)
    members = [m for rs in plan.replica_sets for m in rs.members]
    assert sorted(members) == sorted(i.name for i in data_bearing)
    assert make_plan(ClusterSpec.from_dict(data)) == plan  # pure: same spec, same plan


def test_firewall_opens_mongodb_between_members_and_to_the_platform_ssh_to_the_platform_only():
    plan = plan_from_dict(spec(topology="sharded", shards=2, mongos=2, app_cidrs=["10.9.0.0/16"]))
    (firewall,) = plan.firewalls
    rules = {(r.port, r.cidr or r.firewall) for r in firewall.rules}
    assert rules == {
        (27017, firewall.name), (27018, firewall.name), (27019, firewall.name),
        (27017, "10.250.0.0/24"), (27018, "10.250.0.0/24"), (27019, "10.250.0.0/24"),
        (27017, "10.9.0.0/16"),  # applications reach the routers only
        (22, "10.250.0.0/24"),
    }  # fmt: skip
    sets = {rs.name: rs for rs in plan.replica_sets}
    assert sorted(sets) == ["cfg", "shard0", "shard1"]
    assert (sets["cfg"].port, sets["shard0"].port) == (27019, 27018)
    assert [i.role for i in plan.instances].count("mongos") == 2


def test_replica_set_of_five_over_three_zones_goes_two_two_one():
    plan = plan_from_dict(spec(members=5))
    assert Counter(i.zone for i in plan.instances) == Counter(
        {"eu-west-1a": 2, "eu-west-1b": 2, "eu-west-1c": 1}
    )


def test_defaults_and_network_reuse():
    plan = plan_from_dict(spec())
    assert plan.zones == ("eu-west-1a", "eu-west-1b", "eu-west-1c")
    assert [s.cidr for s in plan.subnets] == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
    assert plan.network.action == "reuse_or_create"
    assert plan.network.match_tags == {"wap:project": "acme", "wap:role": "network"}
    assert plan.image.id is None and plan.image.name == "debian-12-amd64-*"
    assert plan.counts() == {"network": 1, "subnets": 3, "gateways": 0, "firewalls": 1,
                             "key_pairs": 1, "instances": 3, "volumes": 3}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"project": None}, "project", "is required"),
        ({"cluster": "Orders"}, "cluster", "lowercase letters"),
        ({"region": "europe"}, "region", "such as eu-west-1"),
        ({"zones": 4}, "zones", "allowed: 1 to 3"),
        ({"zones": ["us-east-1a"]}, "zones[0]", "not a zone of eu-west-1"),
        ({"zones": ["eu-west-1a", "eu-west-1a"]}, "zones", "distinct"),
        ({"members": 4}, "members", "allowed: 3 or 5"),
        ({"members": "3"}, "members", "whole number"),
        ({"topology": "standalone"}, "topology", "allowed: replicaset, sharded"),
        ({"topology": "sharded", "members": 5}, "members", "set shards and mongos instead"),
        ({"topology": "sharded", "shards": 0}, "shards", "allowed: 1 to 16"),
        ({"topology": "sharded", "mongos": 9}, "mongos", "allowed: 1 to 8"),
        ({"shards": 2}, "shards", "only a sharded topology"),
        ({"mongodb_version": "5.0.1"}, "mongodb_version", "6.0, 7.0, 8.0"),
        ({"instance_type": "large"}, "instance_type", "such as m6i.large"),
        ({"image": "debian"}, "image", "AMI id"),
        ({"volume": {"type": "gp4"}}, "volume.type", "allowed: gp3, gp2, io1, io2"),
        ({"volume": {"size": 10}}, "volume.size", "allowed: type, size_gb, iops, throughput"),
        ({"volume": {"size_gb": 20000}}, "volume.size_gb", "1 to 16384 GiB"),
        ({"volume": {"iops": 20000}}, "volume.iops", "3000 to 16000"),
        ({"volume": {"type": "gp2", "iops": 3000}}, "volume.iops", "no provisioned IOPS"),
        ({"volume": {"type": "io2", "size_gb": 10}}, "volume.iops", "is required"),
        ({"volume": {"type": "io1", "size_gb": 10, "iops": 1000}}, "volume.iops", "100 to 500"),
        ({"volume": {"type": "io1", "iops": 1000, "throughput": 200}}, "volume.throughput",
         "only gp3"),
        ({"vpc_cidr": "10.0.0.0/8"}, "vpc_cidr", "/16 to /26"),
        ({"vpc_cidr": "10.0.0.300/16"}, "vpc_cidr", "IPv4 range"),
        ({"subnet_cidrs": ["10.0.0.0/24"]}, "subnet_cidrs", "list of 3"),
        ({"subnet_cidrs": ["10.0.0.0/24", "10.0.1.0/24", "10.9.0.0/24"]}, "subnet_cidrs[2]",
         "not inside vpc_cidr"),
        ({"subnet_cidrs": ["10.0.0.0/24", "10.0.0.0/25", "10.0.2.0/24"]}, "subnet_cidrs[1]",
         "overlaps subnet_cidrs[0]"),
        ({"platform_cidr": "0.0.0.0/0"}, "platform_cidr", "SSH to everyone"),
        ({"app_cidrs": ["10.1.0.0/16", "nowhere"]}, "app_cidrs[1]", "IPv4 range"),
        ({"public": "yes"}, "public", "true or false"),
        ({"provider": "gcp"}, "provider", "allowed: aws"),
        ({"memebers": 3}, "memebers", "unknown field"),
    ],
)  # fmt: skip
def test_a_bad_spec_names_the_field_and_what_is_allowed(fields, field, words) -> None:
    with pytest.raises(SpecError) as caught:
        ClusterSpec.from_dict(spec(**fields))
    assert caught.value.field == field
    assert words in caught.value.message


def test_cli_prints_the_plan_as_yaml_for_the_playbooks(tmp_path, capsys) -> None:
    spec_file = tmp_path / "cluster.yml"
    spec_file.write_text(yaml.safe_dump(spec(members=5)))
    assert wap_main(["plan", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# WAP plan for acme/orders in eu-west-1: 1 network, 3 subnets")
    plan = yaml.safe_load(out)["wap_plan"]
    assert plan == plan_from_dict(spec(members=5)).to_dict()
    assert len(plan["instances"]) == 5


def test_cli_reports_a_bad_spec_in_one_line(tmp_path, capsys) -> None:
    spec_file = tmp_path / "cluster.yml"
    spec_file.write_text(yaml.safe_dump(spec(members=4)))
    assert wap_main(["plan", str(spec_file)]) == 2
    err = capsys.readouterr().err
    assert err == f"wap plan: {spec_file}: members: 4 is not allowed; allowed: 3 or 5\n"
    assert wap_main(["plan", str(tmp_path / "missing.yml")]) == 2
    assert "cannot read" in capsys.readouterr().err
