#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: aws_tagged_resources_info
short_description: List the EC2 resources of every type that carry a set of tags
version_added: 0.1.0
description:
  - Finds the instances (live ones only), volumes, network interfaces, security groups,
    subnets, route tables, internet gateways, VPCs and key pairs that carry all the given tags,
    with one tag-filtered describe call per type, and returns their ids grouped by type.
  - amazon.aws has one C(*_info) module per type, each with its own result shape (and some read
    optional fields of the describe answers that not every EC2 endpoint returns);
    M(amazon.aws.ec2_tag_info) needs a resource id. A teardown and its final report need "what
    of this cluster still exists, whatever its type" in one step; this module answers that.
  - C(DescribeTags) is not used on purpose - some EC2 stand-ins keep the tags of deleted
    resources there.
author: WAP developers (@whaleal)
options:
  tags:
    description: The tags a resource must all carry (key and exact value).
    type: dict
    required: true
  resource_types:
    description: Only these types. Default is every type.
    type: list
    elements: str
    choices: [instance, volume, network-interface, security-group, subnet, route-table,
      internet-gateway, vpc, key-pair]
    default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only.
"""

EXAMPLES = r"""
- name: Everything of the cluster acme/orders
  whaleal.wap.aws_tagged_resources_info:
    region: eu-west-1
    tags:
      "wap:project": acme
      "wap:cluster": orders
  register: cluster_resources

- name: Only its volumes
  whaleal.wap.aws_tagged_resources_info:
    tags:
      "wap:cluster": orders
    resource_types: [volume]
"""

RETURN = r"""
resources:
  description: Resource ids (key pairs by name) by resource type; types with none are left out.
  returned: always
  type: dict
  sample: {"instance": ["i-0123456789abcdef0"], "volume": ["vol-0123456789abcdef0"]}
count:
  description: How many resources were found, of all types.
  returned: always
  type: int
  sample: 2
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    BotoCoreError = ClientError = None  # AnsibleAWSModule reports a missing botocore first

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.whaleal.wap.plugins.module_utils.aws_tags import (
    RESOURCE_TYPES,
    ids_in_answer,
    tag_filters,
)


def describe(client, resource_type, tags):
    method = RESOURCE_TYPES[resource_type][0]
    filters = tag_filters(tags, resource_type)
    if client.can_paginate(method):
        answer = client.get_paginator(method).paginate(Filters=filters).build_full_result()
    else:
        answer = getattr(client, method)(Filters=filters)
    return ids_in_answer(resource_type, answer)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            tags=dict(type="dict", required=True),
            resource_types=dict(
                type="list", elements="str", default=[], choices=list(RESOURCE_TYPES)
            ),
        ),
        supports_check_mode=True,
    )
    tags = module.params["tags"]
    if not tags:
        module.fail_json(
            msg="tags must name at least one tag: without one every resource would match"
        )
    client = module.client("ec2")
    resources = {}
    for resource_type in module.params["resource_types"] or list(RESOURCE_TYPES):
        try:
            ids = describe(client, resource_type, tags)
        except (ClientError, BotoCoreError) as e:
            module.fail_json_aws(e, msg=f"Could not list the tagged {resource_type} resources")
        if ids:
            resources[resource_type] = ids
    module.exit_json(
        changed=False, resources=resources, count=sum(len(ids) for ids in resources.values())
    )


if __name__ == "__main__":
    main()
