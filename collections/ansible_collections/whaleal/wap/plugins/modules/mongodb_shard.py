#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_shard
short_description: Add a shard to a MongoDB sharded cluster, or remove one and wait for it to drain
version_added: 0.1.0
description:
  - Adds a shard replica set through a mongos (C(addShard)) when no shard has its name.
  - Removes a shard (C(removeShard)), then waits until its chunks and databases have moved to the
    other shards, up to O(drain_timeout) seconds. Databases whose primary shard it is are moved
    to O(move_primary_to) when that is set (C(movePrimary), once its chunks have moved, as
    MongoDB's "Remove Shards from an Existing Sharded Cluster" says); otherwise the module fails
    and names them.
  - With O(wait_drain=false) one round is taken, C(removeShard) once (and C(movePrimary) when its
    chunks are gone), and its progress returned; a playbook repeats it to show the progress.
  - The cluster's last shard is refused before anything changes (MongoDB cannot remove it).
  - In check mode a removal returns RV(plan), what the removal will move, in order.
author: WAP developers (@whaleal)
options:
  name:
    description:
      - The shard name. Defaults to the replica set name in O(host).
      - Required with O(state=absent).
    type: str
  host:
    description:
      - The shard replica set as V(<replica set>/<host:port>,<host:port>...). Required to add.
    type: str
  state:
    description: Whether the shard belongs to the cluster.
    type: str
    choices: [present, absent]
    default: present
  wait_drain:
    description:
      - With O(state=absent), wait until the removal has completed. V(false) takes one round
        (see the description) and returns its progress.
    type: bool
    default: true
  drain_timeout:
    description: Seconds to wait for the removal to complete.
    type: int
    default: 3600
  poll_interval:
    description: Seconds between two progress checks while draining.
    type: int
    default: 5
  move_primary_to:
    description:
      - While removing, move the databases whose primary shard is the one removed to this shard.
    type: str
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reports whether the shard would be added or removed; starts nothing.
  diff_mode:
    support: full
    description: The shard names before and after.
notes:
  - Connect to a mongos (O(login_port) is usually the router's port).
"""

EXAMPLES = r"""
- name: Add the shard replica set rs1
  whaleal.wap.mongodb_shard:
    host: rs1/db4.example.com:27018,db5.example.com:27018,db6.example.com:27018
    login_port: 27017
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"

- name: Remove shard rs2, moving its databases to rs1, waiting up to two hours
  whaleal.wap.mongodb_shard:
    name: rs2
    state: absent
    move_primary_to: rs1
    drain_timeout: 7200
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
"""

RETURN = r"""
shard:
  description: The shard name.
  returned: always
  type: str
  sample: rs1
shards:
  description: The shard names of the cluster at the end (in check mode, as planned).
  returned: always
  type: list
  elements: str
  sample: [rs0, rs1]
drain:
  description: The last removal progress reported by MongoDB.
  returned: when a removal was started or checked
  type: dict
  sample: {state: completed, chunks: 0, dbs: 0, jumbo_chunks: 0, dbs_to_move: [], completed: true}
progress:
  description: The removal's progress in words (what is left to move), for the log.
  returned: when a removal was started, checked or planned
  type: str
  sample: "shard2 draining: 3 chunks and 1 database (app) left"
plan:
  description: A removal's steps in order, as check mode plans them from the cluster's catalog.
  returned: in check mode, when a shard would be removed
  type: list
  elements: str
  sample: ["removeShard shard2: the balancer moves its 12 chunks to the other shards"]
moved_databases:
  description: Databases whose primary shard was moved to O(move_primary_to).
  returned: when a removal moved some
  type: list
  elements: str
  sample: [sales]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    UNAUTHORIZED,
    OperationFailure,
    PyMongoError,
    connect,
    error_code,
    mongodb_argument_spec,
    unauthorized_message,
)
from ansible_collections.whaleal.wap.plugins.module_utils.sharding import (
    ShardError,
    drain_status,
    parse_shard_host,
    shard_plan,
)


def list_shards(conn) -> list[dict]:
    try:
        return conn.client.admin.command("listShards")["shards"]
    except OperationFailure as exc:
        if error_code(exc) == UNAUTHORIZED:
            conn.module.fail_json(msg=unauthorized_message(conn, "listShards"))
        raise


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def progress(name: str, status: dict) -> str:
    """A removal's progress in words (pure)."""
    if status["completed"]:
        return f"{name} removed: nothing left on it"
    dbs = status["dbs_to_move"]
    left = _count(status["chunks"], "chunk") + " and "
    left += _count(len(dbs) or status["dbs"], "database")
    return f"{name} draining: {left}" + (f" ({', '.join(dbs)})" if dbs else "") + " left"


def removal_plan(
    shards: list[dict], name: str, chunks: int, databases: list[str], move_to: str | None
) -> list[str]:
    """The steps of a shard's removal (pure); ShardError when MongoDB would refuse it."""
    others = [s["_id"] for s in shards if s["_id"] != name and not s.get("draining")]
    if not others:
        raise ShardError(
            f"Shard {name} is the cluster's last shard: MongoDB cannot remove it "
            "(add another shard first)"
        )
    if move_to is not None and move_to not in others:
        raise ShardError(
            f"move_primary_to {move_to!r} is not a shard that stays: one of {', '.join(others)}"
        )
    steps = [
        f"removeShard {name}: the balancer moves its {_count(chunks, 'chunk')} to "
        f"{', '.join(others)}"
    ]
    if databases:
        where = move_to or "(move_primary_to not set: the removal stops and names them)"
        steps.append(
            f"movePrimary {', '.join(databases)} to {where}, once its chunks have moved "
            "(databases whose primary shard it is; their unsharded collections are copied)"
        )
    steps.append(f"removeShard {name} again until it reports completed")
    return steps


def catalog(conn, name: str) -> tuple[int, list[str]]:
    """The chunks a shard owns and the databases whose primary it is (config, through mongos)."""
    config = conn.client["config"]
    chunks = config["chunks"].count_documents({"shard": name})
    dbs = sorted(d["_id"] for d in config["databases"].find({"primary": name}, {"_id": 1}))
    return chunks, dbs


def drain(module, conn, name: str) -> dict:
    """Call removeShard until it completes or the timeout passes (one round without
    wait_drain); move primaries if asked once the chunks are gone."""
    params = module.params
    deadline = time.monotonic() + params["drain_timeout"]
    moved = []
    while True:
        status = drain_status(conn.client.admin.command("removeShard", name))
        pending = [db for db in status["dbs_to_move"] if db not in moved]
        if status["completed"] or (not params["wait_drain"] and not (
                pending and status["chunks"] == 0 and params["move_primary_to"])):  # fmt: skip
            return dict(drain=status, moved_databases=moved, progress=progress(name, status))
        if pending and status["chunks"] == 0:
            if not params["move_primary_to"]:
                module.fail_json(
                    msg=f"Shard {name} is the primary shard of {', '.join(pending)}: set "
                    "move_primary_to to a shard to move them to, or move them yourself",
                    drain=status,
                )
            for db in pending:
                conn.client.admin.command("movePrimary", db, to=params["move_primary_to"])
                moved.append(db)
            continue
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=f"Shard {name} is still draining after {params['drain_timeout']} s "
                "(drain_timeout); run the task again to keep waiting",
                drain=status,
                moved_databases=moved,
            )
        time.sleep(params["poll_interval"])


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            name=dict(type="str"),
            host=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            wait_drain=dict(type="bool", default=True),
            drain_timeout=dict(type="int", default=3600),
            poll_interval=dict(type="int", default=5),
            move_primary_to=dict(type="str"),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        required_if=[("state", "absent", ["name"])],
        required_one_of=[("name", "host")],
        supports_check_mode=True,
    )
    params = module.params
    name = params["name"] or parse_shard_host(params["host"])[0]
    if not name:
        module.fail_json(msg="Give name, or host as <replica set>/<host:port>,...")
    conn = connect(module)
    try:
        shards = list_shards(conn)
        before = [s["_id"] for s in shards]
        step = shard_plan(shards, name, params["host"], params["state"])
        result = dict(changed=False, shard=name, shards=before)
        if step["action"] == "none":
            module.exit_json(**result)
        after = [*before, name] if step["action"] == "add" else [s for s in before if s != name]
        draining = bool(step["shard"] and step["shard"].get("draining"))
        if step["action"] == "remove":
            chunks, dbs = catalog(conn, name)
            plan = removal_plan(shards, name, chunks, dbs, params["move_primary_to"])
            if module.check_mode:
                status = {"chunks": chunks, "dbs": len(dbs), "dbs_to_move": dbs, "completed": False}
                result.update(plan=plan, progress=progress(name, status))
        result.update(changed=not draining, shards=after)
        if module._diff and not draining:
            result["diff"] = dict(before={"shards": before}, after={"shards": after})
        if module.check_mode:
            module.exit_json(**result)
        if step["action"] == "add":
            conn.client.admin.command("addShard", params["host"], name=name)
        else:
            result.update(drain(module, conn, name))
            if not result["drain"]["completed"]:
                result["shards"] = before
            result["changed"] = not draining or result["drain"]["completed"]
    except ShardError as exc:
        module.fail_json(msg=str(exc))
    except PyMongoError as exc:
        module.fail_json(msg=f"MongoDB refused a sharding command: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
