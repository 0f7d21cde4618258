"""A cluster spec: what the user asks for, validated field by field.

`ClusterSpec.from_dict` is the only way in from user input (a YAML file, an API body). Every
error names the field, says what was given and what is allowed, so that the console and the CLI
can show it as is.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
IMAGE_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

SUPPORTED_SERIES = ("6.0", "7.0", "8.0")
REPLICA_SET_SIZES = (3, 5)
MAX_SHARDS = 16
MAX_MONGOS = 8

# EBS limits per volume type: size (GiB), IOPS range and the most IOPS per GiB.
VOLUME_TYPES: dict[str, dict[str, Any]] = {
    "gp3": {"size": (1, 16384), "iops": (3000, 16000), "iops_per_gib": 500},
    "gp2": {"size": (1, 16384), "iops": None, "iops_per_gib": None},
    "io1": {"size": (4, 16384), "iops": (100, 64000), "iops_per_gib": 50},
    "io2": {"size": (4, 16384), "iops": (100, 64000), "iops_per_gib": 500},
}
GP3_THROUGHPUT = (125, 1000)  # MiB/s

DEFAULT_VOLUME = {"type": "gp3", "size_gb": 100, "iops": 3000}

TOP_LEVEL_FIELDS = {
    "project": "a name for the project",
    "cluster": "a name for the cluster",
    "provider": "the cloud (aws)",
    "region": "a region such as eu-west-1",
    "zones": "1 to 3, or a list of 1 to 3 zone names of the region",
    "topology": "replicaset or sharded",
    "members": "members of the replica set (3 or 5)",
    "shards": f"number of shards, 1 to {MAX_SHARDS} (sharded)",
    "mongos": f"number of mongos routers, 1 to {MAX_MONGOS} (sharded)",
    "mongodb_version": "a MongoDB version such as 7.0.14",
    "instance_type": "an instance type such as m6i.large",
    "image": "an AMI id such as ami-0123456789abcdef0 (default: newest Debian 12)",
    "ssh_user": "the login user of the image (default admin, Debian's)",
    "volume": "the data volume: type, size_gb, iops, throughput",
    "vpc_cidr": "the VPC's IPv4 range, such as 10.0.0.0/16",
    "subnet_cidrs": "one IPv4 range per zone inside vpc_cidr (default: the first /24s)",
    "public": "true to give the instances public addresses (an internet gateway)",
    "platform_cidr": "the IPv4 range the platform connects from (SSH and MongoDB)",
    "app_cidrs": "IPv4 ranges the applications connect from (MongoDB only)",
}
VOLUME_FIELDS = ("type", "size_gb", "iops", "throughput")


class SpecError(ValueError):
    """A spec that cannot be planned. `field` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class VolumeSpec:
    type: str = "gp3"
    size_gb: int = 100
    iops: int | None = 3000
    throughput: int | None = None


@dataclass(frozen=True)
class ClusterSpec:
    project: str
    cluster: str
    region: str
    platform_cidr: str
    provider: str = "aws"
    zones: tuple[str, ...] = ()
    topology: str = "replicaset"
    members: int = 3
    shards: int = 0
    mongos: int = 0
    mongodb_version: str = "7.0.14"
    instance_type: str = "m6i.large"
    image: str | None = None
    ssh_user: str = "admin"
    volume: VolumeSpec = field(default_factory=VolumeSpec)
    vpc_cidr: str = "10.0.0.0/16"
    subnet_cidrs: tuple[str, ...] = ()
    public: bool = False
    app_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> ClusterSpec:
        """Validate user input and fill in defaults; raise SpecError on the first bad field."""
        if not isinstance(data, dict):
            raise SpecError("spec", f"expected a mapping of fields, got {_kind(data)}")
        unknown = sorted(set(data) - set(TOP_LEVEL_FIELDS))
        if unknown:
            raise SpecError(
                unknown[0], f"unknown field; allowed fields are {', '.join(TOP_LEVEL_FIELDS)}"
            )
        project = _name(data, "project")
        cluster = _name(data, "cluster")
        provider = data.get("provider", "aws")
        if provider != "aws":
            raise SpecError("provider", f"{provider!r} is not supported; allowed: aws")
        region = _required(data, "region")
        if not isinstance(region, str) or not REGION_RE.match(region):
            raise SpecError("region", f"{region!r} is not a region name such as eu-west-1")
        zones = _zones(data.get("zones", 3), region)

        topology = data.get("topology", "replicaset")
        if topology not in ("replicaset", "sharded"):
            raise SpecError(
                "topology", f"{topology!r} is not allowed; allowed: replicaset, sharded"
            )
        if topology == "replicaset":
            for name in ("shards", "mongos"):
                if name in data:
                    raise SpecError(name, "only a sharded topology has shards and mongos")
            members = _int(data, "members", 3)
            if members not in REPLICA_SET_SIZES:
                raise SpecError("members", f"{members} is not allowed; allowed: 3 or 5")
            shards = mongos = 0
        else:
            if "members" in data:
                raise SpecError(
                    "members",
                    "a sharded cluster has a config replica set of 3 and shards of 3 members; "
                    "set shards and mongos instead",
                )
            members = 3
            shards = _int(data, "shards", 2)
            if not 1 <= shards <= MAX_SHARDS:
                raise SpecError("shards", f"{shards} is out of range; allowed: 1 to {MAX_SHARDS}")
            mongos = _int(data, "mongos", 2)
            if not 1 <= mongos <= MAX_MONGOS:
                raise SpecError("mongos", f"{mongos} is out of range; allowed: 1 to {MAX_MONGOS}")

        version = str(data.get("mongodb_version", "7.0.14"))
        match = VERSION_RE.match(version)
        if not match or f"{match[1]}.{match[2]}" not in SUPPORTED_SERIES:
            raise SpecError(
                "mongodb_version",
                f"{version!r} is not allowed; use a release of the {', '.join(SUPPORTED_SERIES)} "
                "series such as 7.0.14",
            )
        instance_type = data.get("instance_type", "m6i.large")
        if not isinstance(instance_type, str) or not INSTANCE_TYPE_RE.match(instance_type):
            raise SpecError(
                "instance_type", f"{instance_type!r} is not an instance type such as m6i.large"
            )
        image = data.get("image")
        if image is not None and (not isinstance(image, str) or not IMAGE_RE.match(image)):
            raise SpecError("image", f"{image!r} is not an AMI id such as ami-0123456789abcdef0")
        ssh_user = data.get("ssh_user", "admin")
        if not isinstance(ssh_user, str) or not SSH_USER_RE.match(ssh_user):
            raise SpecError("ssh_user", f"{ssh_user!r} is not a Linux user name")

        volume = _volume(data.get("volume", {}))
        vpc = _network(data, "vpc_cidr", "10.0.0.0/16")
        if not 16 <= vpc.prefixlen <= 26:
            raise SpecError(
                "vpc_cidr", f"{vpc} has a /{vpc.prefixlen} prefix; allowed: /16 to /26 (AWS)"
            )
        subnets = _subnets(data, vpc, len(zones))
        public = data.get("public", False)
        if not isinstance(public, bool):
            raise SpecError("public", f"expected true or false, got {public!r}")
        platform = _network(data, "platform_cidr", None)
        if platform.prefixlen == 0:
            raise SpecError(
                "platform_cidr",
                "0.0.0.0/0 would open SSH to everyone; give the platform's own range",
            )
        apps = data.get("app_cidrs", [])
        if not isinstance(apps, list):
            raise SpecError("app_cidrs", f"expected a list of IPv4 ranges, got {_kind(apps)}")
        app_cidrs = tuple(str(_cidr(f"app_cidrs[{i}]", value)) for i, value in enumerate(apps))
        return cls(
            project=project,
            cluster=cluster,
            provider=provider,
            region=region,
            zones=zones,
            topology=topology,
            members=members,
            shards=shards,
            mongos=mongos,
            mongodb_version=version,
            instance_type=instance_type,
            image=image,
            ssh_user=ssh_user,
            volume=volume,
            vpc_cidr=str(vpc),
            subnet_cidrs=subnets,
            public=public,
            platform_cidr=str(platform),
            app_cidrs=app_cidrs,
        )


def _kind(value: Any) -> str:
    return type(value).__name__ if value is not None else "nothing"


def _required(data: dict, name: str) -> Any:
    if data.get(name) in (None, ""):
        raise SpecError(name, f"is required ({TOP_LEVEL_FIELDS[name]})")
    return data[name]


def _name(data: dict, name: str) -> str:
    value = _required(data, name)
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise SpecError(
            name,
            f"{value!r} is not allowed; use 1 to 20 lowercase letters, digits and '-', "
            "starting with a letter (it becomes part of resource names)",
        )
    return value


def _int(data: dict, name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"expected a whole number, got {value!r}")
    return value


def _zones(value: Any, region: str) -> tuple[str, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 3:
            raise SpecError("zones", f"{value} is out of range; allowed: 1 to 3 zones")
        return tuple(f"{region}{letter}" for letter in "abc"[:value])
    if isinstance(value, list) and 1 <= len(value) <= 3:
        for i, zone in enumerate(value):
            if not isinstance(zone, str) or not re.fullmatch(re.escape(region) + r"[a-z]", zone):
                raise SpecError(
                    f"zones[{i}]", f"{zone!r} is not a zone of {region} such as {region}a"
                )
        if len(set(value)) != len(value):
            raise SpecError("zones", f"{value} names a zone twice; list distinct zones")
        return tuple(value)
    raise SpecError("zones", f"{value!r} is not allowed; give 1 to 3, or a list of 1 to 3 zones")


def _cidr(name: str, value: Any) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except (ValueError, TypeError) as exc:
        raise SpecError(
            name, f"{value!r} is not an IPv4 range such as 10.0.0.0/16 ({exc})"
        ) from None


def _network(data: dict, name: str, default: str | None) -> ipaddress.IPv4Network:
    value = data.get(name, default) if default is not None else _required(data, name)
    return _cidr(name, value)


def _subnets(data: dict, vpc: ipaddress.IPv4Network, zones: int) -> tuple[str, ...]:
    given = data.get("subnet_cidrs")
    if given is None:
        prefix = max(24, vpc.prefixlen + 2)
        return tuple(
            str(net) for _, net in zip(range(zones), vpc.subnets(new_prefix=prefix), strict=False)
        )
    if not isinstance(given, list) or len(given) != zones:
        raise SpecError("subnet_cidrs", f"expected a list of {zones} IPv4 ranges, one per zone")
    nets = [_cidr(f"subnet_cidrs[{i}]", value) for i, value in enumerate(given)]
    for i, net in enumerate(nets):
        if not net.subnet_of(vpc):
            raise SpecError(f"subnet_cidrs[{i}]", f"{net} is not inside vpc_cidr {vpc}")
        if not 16 <= net.prefixlen <= 28:
            raise SpecError(f"subnet_cidrs[{i}]", f"{net}: allowed prefixes are /16 to /28 (AWS)")
        for j in range(i):
            if net.overlaps(nets[j]):
                raise SpecError(f"subnet_cidrs[{i}]", f"{net} overlaps subnet_cidrs[{j}]")
    return tuple(str(net) for net in nets)


def _volume(value: Any) -> VolumeSpec:
    if not isinstance(value, dict):
        raise SpecError("volume", f"expected a mapping ({', '.join(VOLUME_FIELDS)})")
    unknown = sorted(set(value) - set(VOLUME_FIELDS))
    if unknown:
        raise SpecError(
            f"volume.{unknown[0]}", f"unknown field; allowed: {', '.join(VOLUME_FIELDS)}"
        )
    kind = value.get("type", "gp3")
    if kind not in VOLUME_TYPES:
        raise SpecError(
            "volume.type", f"{kind!r} is not allowed; allowed: {', '.join(VOLUME_TYPES)}"
        )
    limits = VOLUME_TYPES[kind]
    size = _int(value, "size_gb", 100) if "size_gb" in value else 100
    low, high = limits["size"]
    if not low <= size <= high:
        raise SpecError("volume.size_gb", f"{size} is out of range for {kind}: {low} to {high} GiB")
    if limits["iops"] is None:
        if value.get("iops") is not None:
            raise SpecError("volume.iops", f"{kind} volumes have no provisioned IOPS; remove it")
        iops = None
    else:
        default = 3000 if kind == "gp3" else None
        iops = value.get("iops", default)
        if iops is None:
            raise SpecError("volume.iops", f"is required for {kind} volumes")
        if isinstance(iops, bool) or not isinstance(iops, int):
            raise SpecError("volume.iops", f"expected a whole number, got {iops!r}")
        low, high = limits["iops"]
        high = min(high, max(low, size * limits["iops_per_gib"]))
        if not low <= iops <= high:
            raise SpecError(
                "volume.iops",
                f"{iops} is out of range for a {size} GiB {kind} volume: {low} to {high} "
                f"(at most {limits['iops_per_gib']} per GiB)",
            )
    throughput = value.get("throughput")
    if throughput is not None:
        if kind != "gp3":
            raise SpecError("volume.throughput", "only gp3 volumes have a throughput setting")
        if isinstance(throughput, bool) or not isinstance(throughput, int):
            raise SpecError("volume.throughput", f"expected MiB/s as a number, got {throughput!r}")
        if not GP3_THROUGHPUT[0] <= throughput <= GP3_THROUGHPUT[1]:
            raise SpecError(
                "volume.throughput",
                f"{throughput} is out of range: {GP3_THROUGHPUT[0]} to {GP3_THROUGHPUT[1]} MiB/s",
            )
    return VolumeSpec(type=kind, size_gb=size, iops=iops, throughput=throughput)
