#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_info
short_description: Facts about a MongoDB deployment
version_added: 0.1.0
description:
  - Reports the server version, the feature compatibility version, the topology (standalone,
    replica set member, mongos), the replica set members with their state and health, the
    shards of a sharded cluster, and the users without their credentials.
  - A section the server does not answer (not authorised, command not supported) is left out of
    the result and explained in RV(unavailable); the module fails only when it cannot connect.
author: WAP developers (@whaleal)
options:
  gather:
    description: The sections to gather.
    type: list
    elements: str
    choices: [server, topology, members, shards, users]
    default: [server, topology, members, shards, users]
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Changes nothing.
notes:
  - Credentials, password hashes and keys are never returned.
"""

EXAMPLES = r"""
- name: Read the replica set state
  whaleal.wap.mongodb_info:
    gather: [server, topology, members]
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
  register: rs_info

- name: Every member is healthy and there is one primary
  ansible.builtin.assert:
    that:
      - rs_info.members | selectattr('health', 'equalto', 1) | list | length == 3
      - rs_info.members | selectattr('state', 'equalto', 'PRIMARY') | list | length == 1
"""

RETURN = r"""
version:
  description: The server version.
  returned: when C(server) is gathered
  type: str
  sample: 7.0.14
fcv:
  description: The feature compatibility version.
  returned: when C(server) is gathered and the server answers (mongod only)
  type: str
  sample: "7.0"
topology:
  description:
    - V(standalone), V(replicaset) (a member of one), V(mongos) or V(uninitiated) (a mongod
      started with a replica set name whose set has no configuration yet).
  returned: when C(topology) is gathered
  type: str
  sample: replicaset
replica_set:
  description: The replica set name.
  returned: when the server is a replica set member
  type: str
  sample: rs0
primary:
  description: The primary as the server knows it.
  returned: when the server is a replica set member and a primary is known
  type: str
  sample: db1.example.com:27017
is_primary:
  description: Whether the server connected to is the primary.
  returned: when C(topology) is gathered
  type: bool
member_state:
  description:
    - The server's own state as C(hello) tells it without authentication, V(PRIMARY),
      V(SECONDARY), V(ARBITER), V(STANDALONE), V(MONGOS), V(UNINITIATED) (replica set member
      waiting for replSetInitiate) or V(OTHER) (starting up, recovering, removed...).
  returned: when C(topology) is gathered
  type: str
  sample: SECONDARY
healthy:
  description: Whether the server serves in its role, that is RV(member_state) is not V(OTHER).
  returned: when C(topology) is gathered
  type: bool
members:
  description: Replica set members with their configuration and state.
  returned: when C(members) is gathered on a replica set member
  type: list
  elements: dict
  sample:
    - {host: "db1.example.com:27017", _id: 0, state: PRIMARY, health: 1, priority: 1, votes: 1,
       hidden: false, arbiterOnly: false, uptime: 321, optime_date: "2025-01-01T00:00:00"}
config_version:
  description: The replica set configuration version.
  returned: when C(members) is gathered on a replica set member
  type: int
shards:
  description: The shards of the cluster (C(listShards)).
  returned: when C(shards) is gathered on a mongos
  type: list
  elements: dict
  sample: [{_id: rs0, host: "rs0/db1:27018,db2:27018", state: 1, draining: false}]
users:
  description: Users of every database, with their roles and mechanisms, never credentials.
  returned: when C(users) is gathered and the login user may list them
  type: list
  elements: dict
  sample: [{user: admin, db: admin, roles: [{role: root, db: admin}], mechanisms: [SCRAM-SHA-256]}]
unavailable:
  description: The sections left out, each with the server's reason.
  returned: always
  type: dict
  sample: {users: "not authorized on admin to execute command usersInfo"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    NOT_YET_INITIALIZED,
    OperationFailure,
    PyMongoError,
    connect,
    error_code,
    mongodb_argument_spec,
    to_plain,
)

SECTIONS = ["server", "topology", "members", "shards", "users"]
MEMBER_CONFIG_FIELDS = ("priority", "votes", "hidden", "arbiterOnly", "tags", "secondaryDelaySecs")


def merge_members(config: dict, status: dict | None) -> list[dict]:
    """Config members joined with replSetGetStatus members by host (pure)."""
    states = {m["name"]: m for m in (status or {}).get("members", [])}
    out = []
    for member in config.get("members", []):
        entry = {"host": member["host"], "_id": member["_id"]}
        entry.update({k: member[k] for k in MEMBER_CONFIG_FIELDS if k in member})
        state = states.get(member["host"])
        if state:
            entry.update(
                state=state.get("stateStr"),
                health=state.get("health"),
                uptime=state.get("uptime"),
                optime_date=state.get("optimeDate"),
                sync_source=state.get("syncSourceHost") or None,
            )
        out.append(to_plain(entry))
    return out


def topology_of(hello: dict) -> str:
    if hello.get("msg") == "isdbgrid":
        return "mongos"
    if hello.get("setName"):
        return "replicaset"
    if hello.get("isreplicaset"):
        return "uninitiated"
    return "standalone"


def member_state(hello: dict) -> str:
    """The server's own state from hello alone (no authentication needed)."""
    if hello.get("msg") == "isdbgrid":
        return "MONGOS"
    if hello.get("isWritablePrimary"):
        return "PRIMARY" if hello.get("setName") else "STANDALONE"
    if hello.get("secondary"):
        return "SECONDARY"
    if hello.get("arbiterOnly"):
        return "ARBITER"
    if hello.get("isreplicaset") and not hello.get("setName"):
        return "UNINITIATED"
    return "OTHER"


def public_user(user: dict) -> dict:
    keep = ("user", "db", "roles", "mechanisms", "customData")
    return to_plain({k: user[k] for k in keep if k in user})


def gather(conn, sections: list[str]) -> dict:
    admin = conn.client.admin
    result = dict(changed=False, unavailable={})

    def attempt(section, call):
        try:
            call()
        except OperationFailure as exc:
            result["unavailable"][section] = str(exc.details.get("errmsg") if exc.details else exc)

    hello = admin.command("hello")
    topology = topology_of(hello)
    if "server" in sections:
        result["version"] = admin.command("buildInfo")["version"]
        if topology != "mongos":
            attempt(
                "fcv",
                lambda: result.update(
                    fcv=admin.command("getParameter", 1, featureCompatibilityVersion=1)[
                        "featureCompatibilityVersion"
                    ]["version"]
                ),
            )
    if "topology" in sections:
        state = member_state(hello)
        result.update(
            topology=topology,
            is_primary=bool(hello.get("isWritablePrimary")),
            member_state=state,
            healthy=state != "OTHER",
        )
        if hello.get("setName"):
            result["replica_set"] = hello["setName"]
        if hello.get("primary"):
            result["primary"] = hello["primary"]
    if "members" in sections and topology == "replicaset":

        def members():
            config = admin.command("replSetGetConfig")["config"]
            try:
                status = admin.command("replSetGetStatus")
            except OperationFailure as exc:
                if error_code(exc) != NOT_YET_INITIALIZED:
                    raise
                status = None
            result.update(members=merge_members(config, status), config_version=config["version"])

        attempt("members", members)
    if "shards" in sections and topology == "mongos":
        attempt(
            "shards",
            lambda: result.update(shards=to_plain(admin.command("listShards")["shards"])),
        )
    if "users" in sections:
        attempt(
            "users",
            lambda: result.update(
                users=[
                    public_user(u)
                    # {usersInfo: {forAllDBs: true}}: a forAllDBs field beside usersInfo: 1
                    # is not that form (MongoDB lists the admin database's users, or refuses it).
                    for u in admin.command("usersInfo", {"forAllDBs": True})["users"]
                ]
            ),
        )
    return result


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            gather=dict(type="list", elements="str", choices=SECTIONS, default=SECTIONS),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    conn = connect(module)
    try:
        result = gather(conn, module.params["gather"])
    except PyMongoError as exc:
        module.fail_json(msg=f"MongoDB refused a command: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
