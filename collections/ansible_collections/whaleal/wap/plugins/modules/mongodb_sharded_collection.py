#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_sharded_collection
short_description: Shard a MongoDB collection on a given key
version_added: 0.1.0
description:
  - Enables sharding for the collection's database and shards the collection
    (C(shardCollection)) when it is not sharded yet.
  - A collection already sharded on the same key is left alone; one sharded on another key makes
    the module fail (changing a shard key is a resharding, which this module does not do).
author: WAP developers (@whaleal)
options:
  namespace:
    description: The collection as V(<database>.<collection>).
    type: str
    required: true
    aliases: [ns]
  key:
    description: The shard key, each field V(1) (ranged) or V(hashed).
    type: dict
    required: true
  unique:
    description: Enforce a unique constraint on the shard key.
    type: bool
    default: false
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reports whether the collection would be sharded.
  diff_mode:
    support: full
    description: The shard key before (none when unsharded) and after.
notes:
  - Connect to a mongos.
"""

EXAMPLES = r"""
- name: Shard shop.orders on a hashed customer id
  whaleal.wap.mongodb_sharded_collection:
    namespace: shop.orders
    key: {customerId: hashed}
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
"""

RETURN = r"""
namespace:
  description: The collection.
  returned: always
  type: str
  sample: shop.orders
key:
  description: The shard key at the end (in check mode, as planned).
  returned: always
  type: dict
  sample: {customerId: hashed}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    PyMongoError,
    connect,
    mongodb_argument_spec,
)
from ansible_collections.whaleal.wap.plugins.module_utils.sharding import (
    ShardError,
    collection_plan,
)


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            namespace=dict(type="str", required=True, aliases=["ns"]),
            key=dict(type="dict", required=True, no_log=False),
            unique=dict(type="bool", default=False),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    p = module.params
    database, dot, collection = p["namespace"].partition(".")
    if not (database and dot and collection):
        module.fail_json(msg=f"namespace {p['namespace']!r} is not <database>.<collection>")
    conn = connect(module)
    try:
        current = conn.client.config.collections.find_one({"_id": p["namespace"]})
        step = collection_plan(current, p["key"], p["unique"])
        result = dict(changed=step["action"] == "shard", namespace=p["namespace"], key=step["key"])
        if result["changed"] and module._diff:
            result["diff"] = dict(before={"key": None}, after={"key": step["key"]})
        if result["changed"] and not module.check_mode:
            conn.client.admin.command("enableSharding", database)
            conn.client.admin.command(
                "shardCollection", p["namespace"], key=step["key"], unique=p["unique"]
            )
    except ShardError as exc:
        module.fail_json(msg=str(exc))
    except PyMongoError as exc:
        module.fail_json(msg=f"MongoDB refused to shard {p['namespace']}: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
