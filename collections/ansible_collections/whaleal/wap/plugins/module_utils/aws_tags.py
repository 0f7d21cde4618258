# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

"""Finding EC2 resources by tag: which describe call lists each type, with which filters, and
how to read the ids out of its answer. Pure: the module makes the calls."""

from __future__ import annotations

# Instances stay visible for a while after they terminate: only these states count as present.
LIVE_INSTANCE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]

# resource type -> (describe method, key of the list in the answer, id field)
RESOURCE_TYPES = {
    "instance": ("describe_instances", "Reservations", "InstanceId"),
    "volume": ("describe_volumes", "Volumes", "VolumeId"),
    "network-interface": ("describe_network_interfaces", "NetworkInterfaces", "NetworkInterfaceId"),
    "security-group": ("describe_security_groups", "SecurityGroups", "GroupId"),
    "subnet": ("describe_subnets", "Subnets", "SubnetId"),
    "route-table": ("describe_route_tables", "RouteTables", "RouteTableId"),
    "internet-gateway": ("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
    "vpc": ("describe_vpcs", "Vpcs", "VpcId"),
    "key-pair": ("describe_key_pairs", "KeyPairs", "KeyName"),
}


def tag_filters(tags, resource_type):
    """DescribeX filters matching every tag exactly (and, for instances, only live ones)."""
    filters = [
        {"Name": "tag:" + key, "Values": [str(value)]} for key, value in sorted(tags.items())
    ]
    if resource_type == "instance":
        filters.append({"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)})
    return filters


def ids_in_answer(resource_type, answer):
    """The resource ids of one describe answer, sorted."""
    _method, list_key, id_key = RESOURCE_TYPES[resource_type]
    items = answer.get(list_key, [])
    if resource_type == "instance":
        items = [instance for reservation in items for instance in reservation.get("Instances", [])]
    return sorted(item[id_key] for item in items)
