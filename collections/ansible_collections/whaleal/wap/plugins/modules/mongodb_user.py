#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_user
short_description: Create, update or drop a MongoDB user, idempotently, passwords included
version_added: 0.1.0
description:
  - Creates the user or brings its roles and password to the wanted ones.
  - Whether the password changes is found by authenticating as the user with it, so a second
    run reports no change even with O(update_password=always).
  - Bootstraps the first user of a deployment started with access control, without the known
    traps of the localhost exception. With O(localhost_exception=true), when the login
    credentials do not authenticate, the module connects unauthenticated over localhost; on a
    replica set member that is not primary it waits until either the user exists (created on
    the primary and replicated, so that the credentials authenticate) or this member becomes
    primary and creates it. A wrong password for an existing user is reported as such, never
    as a "requires authentication" error.
author: WAP developers (@whaleal)
options:
  name:
    description: The user name.
    type: str
    required: true
    aliases: [user]
  database:
    description: The database that holds the user (its authentication database).
    type: str
    default: admin
    aliases: [db]
  password:
    description:
      - The password. Required to create a user, except in V($external).
    type: str
  update_password:
    description:
      - V(always) sets the password when it does not authenticate the existing user;
        V(on_create) only sets it when the user is created.
    type: str
    choices: [always, on_create]
    default: always
  roles:
    description:
      - The roles granted, as names of roles of O(database) or as dicts with C(role) and C(db).
      - The user ends up with exactly these roles.
    type: list
    elements: raw
    default: []
  state:
    description: Whether the user exists.
    type: str
    choices: [present, absent]
    default: present
  wait_timeout:
    description:
      - Seconds to wait for a primary, or for the user to appear by replication during a
        bootstrap with O(localhost_exception=true).
    type: int
    default: 120
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reports whether the user would be created, updated or dropped.
  diff_mode:
    support: full
    description: The roles before and after, and whether the password changes (never its value).
"""

EXAMPLES = r"""
- name: Create the first administrator of a set started with a keyFile (run on each member)
  whaleal.wap.mongodb_user:
    name: admin
    password: "{{ mongodb_admin_password }}"
    roles: [root]
    login_host: localhost
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
    localhost_exception: true

- name: An application user
  whaleal.wap.mongodb_user:
    name: shop
    database: shop
    password: "{{ shop_password }}"
    roles:
      - readWrite
      - {role: read, db: reporting}
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
  no_log: true
"""

RETURN = r"""
user:
  description: The user name.
  returned: always
  type: str
  sample: shop
database:
  description: The user's database.
  returned: always
  type: str
  sample: shop
roles:
  description: The user's roles at the end (in check mode, as planned).
  returned: when O(state=present)
  type: list
  elements: dict
  sample: [{role: readWrite, db: shop}]
password_changed:
  description: Whether the password was (or would be) set.
  returned: when O(state=present)
  type: bool
bootstrapped:
  description: Whether the user was created through the localhost exception.
  returned: when O(state=present)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    AUTHENTICATION_FAILED,
    MONGODB_REQUIRED_TOGETHER,
    UNAUTHORIZED,
    MongoClient,
    OperationFailure,
    PyMongoError,
    client_options,
    connect,
    error_code,
    is_retryable,
    mongodb_argument_spec,
    run_with_retries,
    unauthorized_message,
    wait_for,
)
from ansible_collections.whaleal.wap.plugins.module_utils.users import (
    normalize_roles,
    user_changes,
)

USER_ALREADY_EXISTS = 51003


def authenticates(module, user: str, password: str, database: str) -> bool:
    """Whether ``user``/``password`` authenticate on the module's server (SCRAM)."""
    params = dict(module.params, login_user=user, login_password=password, login_database=database)
    client = MongoClient(**client_options(params))
    try:
        client.admin.command("ping")
        return True
    except OperationFailure as exc:
        if error_code(exc) == AUTHENTICATION_FAILED:
            return False
        raise
    finally:
        client.close()


def find_user(conn, name: str, database: str) -> dict | None:
    try:
        users = conn.client[database].command("usersInfo", {"user": name, "db": database})["users"]
    except OperationFailure as exc:
        if error_code(exc) == UNAUTHORIZED:
            conn.module.fail_json(msg=unauthorized_message(conn, "usersInfo"))
        raise
    return users[0] if users else None


def bootstrap(module, conn) -> bool:
    """Under the localhost exception: create the user on the primary, or wait for it.

    Returns True when this run created the user, False when it appeared by replication.
    """
    p = module.params

    def ready():
        if authenticates(module, p["login_user"], p["login_password"], p["login_database"]):
            return "exists"
        hello = conn.client.admin.command("hello")
        if hello.get("isWritablePrimary") or not (
            hello.get("setName") or hello.get("isreplicaset")
        ):
            return "primary"
        return None

    state = wait_for(ready, p["wait_timeout"], interval=2)
    if state is None:
        module.fail_json(
            msg=f"Neither did {p['login_user']} authenticate nor did this member become primary "
            f"within {p['wait_timeout']} s. Run the task on every data-bearing member at once "
            "(the primary creates the user), or check that the replica set has a primary."
        )
    if state == "exists":
        return False
    if module.check_mode:
        return True
    roles = normalize_roles(p["roles"], p["database"])
    try:
        conn.client[p["database"]].command("createUser", p["name"], pwd=p["password"], roles=roles)
    except OperationFailure as exc:
        code = error_code(exc)
        if code in (USER_ALREADY_EXISTS, UNAUTHORIZED):
            # Another run created it first; our credentials must authenticate now.
            if authenticates(module, p["login_user"], p["login_password"], p["login_database"]):
                return False
            module.fail_json(msg=unauthorized_message(conn, "createUser"))
        raise
    return True


def present(module, conn) -> dict:
    p = module.params
    name, database = p["name"], p["database"]
    roles = normalize_roles(p["roles"], database)
    result = dict(changed=False, user=name, database=database, bootstrapped=False)
    if conn.localhost_exception:
        if p["login_user"] != name or p["login_database"] != database:
            module.fail_json(
                msg="With localhost_exception the module creates the login user itself: set "
                "name/database/password to login_user/login_database/login_password"
            )
        if bootstrap(module, conn):
            result.update(changed=True, bootstrapped=True, roles=roles, password_changed=True)
            if module._diff:
                result["diff"] = dict(before={}, after={"roles": roles, "password": "set"})
            return result
        # The user exists now: carry on authenticated, as on any later run.
        fresh = connect(module)
        conn.close()
        conn.client, conn.authenticated, conn.localhost_exception = fresh.client, True, False
    current = find_user(conn, name, database)
    if current is None and p["password"] is None and database != "$external":
        module.fail_json(msg=f"password is required to create user {name}")
    matches = None
    if p["password"] is not None and database != "$external":
        matches = current is not None and authenticates(module, name, p["password"], database)
    changes = user_changes(current, roles, matches, p["update_password"])
    have = normalize_roles(current.get("roles") or [], database) if current else []
    result.update(roles=roles, password_changed=bool(changes.get("password")))
    if not changes:
        result["roles"] = have
        return result
    result["changed"] = True
    if module._diff:
        before = {"roles": have} if current else {}
        after = {"roles": roles, "password": "changed" if changes.get("password") else "unchanged"}
        result["diff"] = dict(before=before, after=after)
    if module.check_mode:
        return result
    command = "createUser" if changes.get("create") else "updateUser"
    fields = {}
    if "roles" in changes:
        fields["roles"] = changes["roles"]
    if changes.get("password"):
        fields["pwd"] = p["password"]
    run_with_retries(
        lambda: conn.client[database].command(command, name, **fields),
        retries=p["wait_timeout"] // 2,
        delay=2,
    )
    return result


def absent(module, conn) -> dict:
    p = module.params
    result = dict(changed=False, user=p["name"], database=p["database"])
    if find_user(conn, p["name"], p["database"]) is None:
        return result
    result["changed"] = True
    if module._diff:
        result["diff"] = dict(before={"user": p["name"]}, after={})
    if not module.check_mode:
        run_with_retries(
            lambda: conn.client[p["database"]].command("dropUser", p["name"]),
            retries=p["wait_timeout"] // 2,
            delay=2,
        )
    return result


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            name=dict(type="str", required=True, aliases=["user"]),
            database=dict(type="str", default="admin", aliases=["db"]),
            password=dict(type="str", no_log=True),
            update_password=dict(
                type="str", default="always", choices=["always", "on_create"], no_log=False
            ),
            roles=dict(type="list", elements="raw", default=[]),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            wait_timeout=dict(type="int", default=120),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    conn = connect(module)
    try:
        if module.params["state"] == "present":
            result = present(module, conn)
        else:
            result = absent(module, conn)
    except PyMongoError as exc:
        hint = " (retried while the set had no primary)" if is_retryable(exc) else ""
        module.fail_json(msg=f"MongoDB refused a user command{hint}: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
