#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_role
short_description: Create, update or drop a MongoDB user-defined role
version_added: 0.1.0
description:
  - Creates the role or brings its privileges and inherited roles to the wanted ones. Privileges
    compare whatever order MongoDB returns them and their actions in.
author: WAP developers (@whaleal)
options:
  name:
    description: The role name.
    type: str
    required: true
  database:
    description: The database the role belongs to.
    type: str
    default: admin
    aliases: [db]
  privileges:
    description:
      - Privileges as MongoDB writes them, each a dict with C(resource) (a dict with C(db) and
        C(collection), or C(cluster) set to true) and C(actions) (a list of action names).
    type: list
    elements: dict
    default: []
  roles:
    description: Inherited roles, as names of roles of O(database) or dicts with C(role), C(db).
    type: list
    elements: raw
    default: []
  state:
    description: Whether the role exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reports whether the role would be created, updated or dropped.
  diff_mode:
    support: full
    description: Privileges and inherited roles before and after.
"""

EXAMPLES = r"""
- name: A role that reads orders and updates their status
  whaleal.wap.mongodb_role:
    name: orderDesk
    database: shop
    privileges:
      - resource: {db: shop, collection: orders}
        actions: [find, update]
    roles: [{role: read, db: reporting}]
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
"""

RETURN = r"""
role:
  description: The role name.
  returned: always
  type: str
  sample: orderDesk
database:
  description: The role's database.
  returned: always
  type: str
  sample: shop
privileges:
  description: The role's privileges at the end (in check mode, as planned), normalised.
  returned: when O(state=present)
  type: list
  elements: dict
  sample: [{resource: {collection: orders, db: shop}, actions: [find, update]}]
roles:
  description: The inherited roles at the end, normalised.
  returned: when O(state=present)
  type: list
  elements: dict
  sample: [{role: read, db: reporting}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    UNAUTHORIZED,
    OperationFailure,
    PyMongoError,
    connect,
    error_code,
    mongodb_argument_spec,
    run_with_retries,
    unauthorized_message,
)
from ansible_collections.whaleal.wap.plugins.module_utils.users import (
    normalize_privileges,
    normalize_roles,
    role_changes,
)


def find_role(conn, name: str, database: str) -> dict | None:
    try:
        reply = conn.client[database].command(
            "rolesInfo", {"role": name, "db": database}, showPrivileges=True
        )
    except OperationFailure as exc:
        if error_code(exc) == UNAUTHORIZED:
            conn.module.fail_json(msg=unauthorized_message(conn, "rolesInfo"))
        raise
    return reply["roles"][0] if reply["roles"] else None


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            name=dict(type="str", required=True),
            database=dict(type="str", default="admin", aliases=["db"]),
            privileges=dict(type="list", elements="dict", default=[]),
            roles=dict(type="list", elements="raw", default=[]),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    p = module.params
    name, database = p["name"], p["database"]
    conn = connect(module)
    result = dict(changed=False, role=name, database=database)
    try:
        current = find_role(conn, name, database)
        db = conn.client[database]
        if p["state"] == "absent":
            if current is not None:
                result["changed"] = True
                if module._diff:
                    result["diff"] = dict(before={"role": name}, after={})
                if not module.check_mode:
                    run_with_retries(lambda: db.command("dropRole", name), retries=30, delay=2)
            module.exit_json(**result)
        privileges = normalize_privileges(p["privileges"])
        roles = normalize_roles(p["roles"], database)
        changes = role_changes(current, privileges, roles)
        result.update(privileges=privileges, roles=roles, changed=bool(changes))
        if changes and module._diff:
            before = {}
            if current is not None:
                before = {
                    "privileges": normalize_privileges(current.get("privileges") or []),
                    "roles": normalize_roles(current.get("roles") or [], database),
                }
            result["diff"] = dict(before=before, after={"privileges": privileges, "roles": roles})
        if changes and not module.check_mode:
            command = "createRole" if changes.get("create") else "updateRole"
            fields = {k: v for k, v in changes.items() if k in ("privileges", "roles")}
            run_with_retries(lambda: db.command(command, name, **fields), retries=30, delay=2)
    except PyMongoError as exc:
        module.fail_json(msg=f"MongoDB refused a role command: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
