"""A deployment plan: every resource a cluster spec needs, with its name and tags.

`make_plan(spec)` is a pure function: no clock, no randomness, no I/O, so the plan shown before
anything is created (the dry run) is the plan that is applied. Its vocabulary is provider-neutral
(network, subnets, firewalls, instances, volumes, key pair); provider values such as the
instance size or the volume type are carried as given. The AWS roles of the collection are one
implementation of it (VPC, subnets, security groups, EC2 instances, EBS volumes, EC2 key pair).

Spread rule: members of each replica set go round-robin over the zones, each set starting one zone
further than the previous one (so that the sets' first members, and the load, are spread too).
With three zones no zone holds a majority of a set's voting members: 3 members go 1-1-1 and
5 go 2-2-1. With fewer zones a majority in one zone cannot be avoided.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from wap.plan.spec import ClusterSpec

PLAN_VERSION = 1
TAG_PROJECT = "wap:project"
TAG_CLUSTER = "wap:cluster"
TAG_ROLE = "wap:role"
TAG_REPLICA_SET = "wap:replica-set"

MONGOS_PORT = 27017
REPLICA_SET_PORT = 27017
SHARD_PORT = 27018
CONFIG_PORT = 27019
SSH_PORT = 22
DATA_PATH = "/var/lib/mongodb"  # whaleal.wap.mongodb_install's data directory
DATA_DEVICE = "/dev/sdf"
# The newest Debian 12 image of the Debian project's AWS account, when the spec names no AMI.
DEFAULT_IMAGE_OWNER = "136693071363"
DEFAULT_IMAGE_NAME = "debian-12-amd64-*"


@dataclass(frozen=True)
class Network:
    name: str
    cidr: str
    action: str  # "reuse_or_create": found by match_tags, created with tags when missing
    match_tags: dict[str, str]
    public: bool
    tags: dict[str, str]


@dataclass(frozen=True)
class Subnet:
    name: str
    zone: str
    cidr: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Gateway:
    """An internet gateway and the cluster's route table through it (public clusters only)."""

    name: str
    route_table: str
    tags: dict[str, str]
    route_table_tags: dict[str, str]


@dataclass(frozen=True)
class FirewallRule:
    protocol: str
    port: int
    description: str
    cidr: str | None = None  # from an address range ...
    firewall: str | None = None  # ... or from the members of a firewall (by name)


@dataclass(frozen=True)
class Firewall:
    name: str
    description: str
    rules: tuple[FirewallRule, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class KeyPair:
    name: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Image:
    id: str | None
    owner: str | None
    name: str | None
    ssh_user: str


@dataclass(frozen=True)
class Volume:
    name: str
    instance: str
    zone: str
    type: str
    size_gb: int
    iops: int | None
    throughput: int | None
    device: str
    mount_path: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Instance:
    name: str
    role: str  # mongod (replica set member), config, shard, mongos
    replica_set: str | None
    port: int
    zone: str
    subnet: str
    size: str
    firewalls: tuple[str, ...]
    volume: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class ReplicaSet:
    name: str
    role: str  # replicaset, config, shard
    port: int
    members: tuple[str, ...]  # instance names; all voting


@dataclass(frozen=True)
class Plan:
    version: int
    provider: str
    project: str
    cluster: str
    region: str
    zones: tuple[str, ...]
    topology: str
    mongodb_version: str
    network: Network
    subnets: tuple[Subnet, ...]
    gateway: Gateway | None
    firewalls: tuple[Firewall, ...]
    key_pair: KeyPair
    image: Image
    instances: tuple[Instance, ...]
    volumes: tuple[Volume, ...]
    replica_sets: tuple[ReplicaSet, ...]
    mongos: tuple[str, ...]
    tags: dict[str, str]  # the tags that mark every resource of the cluster

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, strings, numbers) for YAML, JSON and Ansible."""
        return _plain(dataclasses.asdict(self))

    def counts(self) -> dict[str, int]:
        """How many resources of each kind the plan holds (the network counts once)."""
        return {
            "network": 1,
            "subnets": len(self.subnets),
            "gateways": 1 if self.gateway else 0,
            "firewalls": len(self.firewalls),
            "key_pairs": 1,
            "instances": len(self.instances),
            "volumes": len(self.volumes),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def make_plan(spec: ClusterSpec) -> Plan:
    """Every resource of the cluster, named and tagged. Pure: the same spec, the same plan."""
    prefix = f"wap-{spec.project}-{spec.cluster}"
    base = {TAG_PROJECT: spec.project, TAG_CLUSTER: spec.cluster}

    def tags(name: str, role: str, **extra: str) -> dict[str, str]:
        return {"Name": name, **base, TAG_ROLE: role, **extra}

    network_name = f"wap-{spec.project}"
    network = Network(
        name=network_name,
        cidr=spec.vpc_cidr,
        action="reuse_or_create",
        match_tags={TAG_PROJECT: spec.project, TAG_ROLE: "network"},
        public=spec.public,
        tags=tags(network_name, "network"),
    )
    subnets = tuple(
        Subnet(
            name=f"{prefix}-{zone}", zone=zone, cidr=cidr, tags=tags(f"{prefix}-{zone}", "subnet")
        )
        for zone, cidr in zip(spec.zones, spec.subnet_cidrs, strict=True)
    )
    subnet_of_zone = {s.zone: s.name for s in subnets}
    gateway = None
    if spec.public:
        gateway = Gateway(
            name=f"{network_name}-igw",
            route_table=f"{prefix}-public",
            tags=tags(f"{network_name}-igw", "gateway"),
            route_table_tags=tags(f"{prefix}-public", "route-table"),
        )

    sets = _replica_sets(spec, prefix)
    mongos = tuple(f"{prefix}-mongos-{i}" for i in range(spec.mongos))
    firewall = _firewall(spec, prefix, sets, tags)

    instances: list[Instance] = []
    volumes: list[Volume] = []
    for set_index, rs in enumerate(sets):
        for member_index, name in enumerate(rs.members):
            zone = spec.zones[(member_index + set_index) % len(spec.zones)]
            role = "mongod" if rs.role == "replicaset" else rs.role
            volume_name = f"{name}-data"
            instances.append(
                Instance(
                    name=name,
                    role=role,
                    replica_set=rs.name,
                    port=rs.port,
                    zone=zone,
                    subnet=subnet_of_zone[zone],
                    size=spec.instance_type,
                    firewalls=(firewall.name,),
                    volume=volume_name,
                    tags=tags(name, role, **{TAG_REPLICA_SET: rs.name}),
                )
            )
            volumes.append(
                Volume(
                    name=volume_name,
                    instance=name,
                    zone=zone,
                    type=spec.volume.type,
                    size_gb=spec.volume.size_gb,
                    iops=spec.volume.iops,
                    throughput=spec.volume.throughput,
                    device=DATA_DEVICE,
                    mount_path=DATA_PATH,
                    tags=tags(volume_name, "data-volume"),
                )
            )
    for i, name in enumerate(mongos):
        zone = spec.zones[i % len(spec.zones)]
        instances.append(
            Instance(
                name=name,
                role="mongos",
                replica_set=None,
                port=MONGOS_PORT,
                zone=zone,
                subnet=subnet_of_zone[zone],
                size=spec.instance_type,
                firewalls=(firewall.name,),
                volume=None,
                tags=tags(name, "mongos"),
            )
        )
    if spec.image:
        image = Image(id=spec.image, owner=None, name=None, ssh_user=spec.ssh_user)
    else:
        image = Image(
            id=None, owner=DEFAULT_IMAGE_OWNER, name=DEFAULT_IMAGE_NAME, ssh_user=spec.ssh_user
        )
    return Plan(
        version=PLAN_VERSION,
        provider=spec.provider,
        project=spec.project,
        cluster=spec.cluster,
        region=spec.region,
        zones=spec.zones,
        topology=spec.topology,
        mongodb_version=spec.mongodb_version,
        network=network,
        subnets=subnets,
        gateway=gateway,
        firewalls=(firewall,),
        key_pair=KeyPair(name=prefix, tags=tags(prefix, "key-pair")),
        image=image,
        instances=tuple(instances),
        volumes=tuple(volumes),
        replica_sets=sets,
        mongos=mongos,
        tags=dict(base),
    )


def _replica_sets(spec: ClusterSpec, prefix: str) -> tuple[ReplicaSet, ...]:
    def members(set_name: str, count: int) -> tuple[str, ...]:
        return tuple(f"{prefix}-{set_name}-{i}" for i in range(count))

    if spec.topology == "replicaset":
        return (ReplicaSet("rs0", "replicaset", REPLICA_SET_PORT, members("rs0", spec.members)),)
    sets = [ReplicaSet("cfg", "config", CONFIG_PORT, members("cfg", 3))]
    sets += [
        ReplicaSet(f"shard{i}", "shard", SHARD_PORT, members(f"shard{i}", 3))
        for i in range(spec.shards)
    ]
    return tuple(sets)


def _firewall(spec: ClusterSpec, prefix: str, sets: tuple[ReplicaSet, ...], tags) -> Firewall:
    """MongoDB ports between members and from the platform (and, for the client port, from the
    applications); SSH from the platform only."""
    name = f"{prefix}-mongodb"
    ports = sorted({rs.port for rs in sets} | ({MONGOS_PORT} if spec.mongos else set()))
    client_port = MONGOS_PORT if spec.topology == "sharded" else REPLICA_SET_PORT
    rules = [FirewallRule("tcp", port, "MongoDB between members", firewall=name) for port in ports]
    rules += [
        FirewallRule("tcp", port, "MongoDB from the platform", cidr=spec.platform_cidr)
        for port in ports
    ]
    rules += [
        FirewallRule("tcp", client_port, "MongoDB clients from applications", cidr=cidr)
        for cidr in spec.app_cidrs
    ]
    rules.append(FirewallRule("tcp", SSH_PORT, "SSH from the platform", cidr=spec.platform_cidr))
    return Firewall(
        name=name,
        description=f"WAP {spec.project}/{spec.cluster}: MongoDB and SSH",
        rules=tuple(rules),
        tags=tags(name, "firewall"),
    )
