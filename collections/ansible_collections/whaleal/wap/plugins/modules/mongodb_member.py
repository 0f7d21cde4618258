#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_member
short_description: Plan an operation on one replica set member, refused when it breaks the majority
version_added: 0.2.0
description:
  - Reads the set's configuration and status and plans O(operation) on O(member), the steps in
    order. Fails with the reason, before anything changes, when the operation would leave fewer
    healthy voting members than a majority (no primary could be elected), when stepping the
    primary down has no healthy electable member to hand over to, or when it does not apply.
  - O(operation=freeze) runs C(replSetFreeze) on the member itself (a secondary), so that it does
    not stand for election for O(freeze_seconds) (0 unfreezes).
  - The other operations are planned only; the playbook C(member_operation.yml) carries them
    out (stop, start and restart through the member's service, the step-down with
    M(whaleal.wap.mongodb_stepdown), member changes with M(whaleal.wap.mongodb_replicaset) given
    RV(members), a resync by emptying the stopped member's data directory so that it copies the
    set again at its start).
author: WAP developers (@whaleal)
options:
  member:
    description: The member, V(host:port) as in the set's configuration (for V(add), the new one).
    type: str
    required: true
  operation:
    description: What to do with the member.
    type: str
    required: true
    choices: [start, stop, restart, step_down, freeze, resync, add, remove, change]
  priority:
    description: The member's priority (V(add), V(change)).
    type: float
  votes:
    description: The member's votes, 0 or 1 (V(add), V(change)).
    type: int
    choices: [0, 1]
  hidden:
    description: Whether the member is hidden (V(add), V(change)); a hidden member gets priority 0.
    type: bool
  delay:
    description:
      - The member's C(secondaryDelaySecs) (V(add), V(change)); a delayed member gets priority 0
        and, unless O(hidden) says otherwise, is hidden.
    type: int
  arbiter:
    description: Add the member as an arbiter (V(add) only; it votes and holds no data).
    type: bool
    default: false
  freeze_seconds:
    description: Seconds the member may not stand for election (V(freeze)); 0 unfreezes it.
    type: int
    default: 120
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Plans only; a freeze reports that it would happen.
  diff_mode:
    support: none
    description: No diff.
"""

EXAMPLES = r"""
- name: Plan a restart of one secondary (refused if the set would lose its majority)
  whaleal.wap.mongodb_member:
    member: db2.example.com:27017
    operation: restart
    replica_set: rs0
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
  register: planned

- name: Keep a secondary from being elected for ten minutes
  whaleal.wap.mongodb_member:
    member: db3.example.com:27017
    operation: freeze
    freeze_seconds: 600
"""

RETURN = r"""
steps:
  description: What the operation does, in order.
  returned: always
  type: list
  elements: str
  sample: ["step db1:27017 down (it is the primary)", "stop db1:27017"]
members:
  description: The desired members after a change (V(add), V(remove), V(change)), else null.
  returned: always
  type: list
  elements: dict
state:
  description: The member's state now.
  returned: always
  type: str
primary:
  description: The set's primary now.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.member_ops import (
    OPERATIONS,
    Refused,
    plan_operation,
)
from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    PyMongoError,
    connect,
    mongodb_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            member=dict(type="str", required=True),
            operation=dict(type="str", required=True, choices=list(OPERATIONS)),
            priority=dict(type="float"),
            votes=dict(type="int", choices=[0, 1]),
            hidden=dict(type="bool"),
            delay=dict(type="int"),
            arbiter=dict(type="bool", default=False),
            freeze_seconds=dict(type="int", default=120),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    params = module.params
    conn = connect(module)
    try:
        config = conn.admin_command("replSetGetConfig")["config"]
        status = conn.admin_command("replSetGetStatus")
        states = {m["name"]: m.get("stateStr", "UNKNOWN") for m in status.get("members", [])}
        plan = plan_operation(config, states, params["member"], params["operation"],
                              params["priority"], params["votes"], params["hidden"],
                              params["delay"], params["arbiter"])  # fmt: skip
        changed = params["operation"] == "freeze"
        if changed and not module.check_mode:
            member = conn.member_client(params["member"])
            try:
                member.admin.command("replSetFreeze", params["freeze_seconds"])
            finally:
                member.close()
    except Refused as exc:
        module.fail_json(msg=f"Refused, nothing changed: {exc}")
    except PyMongoError as exc:
        module.fail_json(msg=f"Could not read or change the replica set: {exc}")
    finally:
        conn.close()
    module.exit_json(changed=changed, steps=plan["steps"], members=plan["members"],
                     state=plan["state"], primary=plan["primary"] or "")  # fmt: skip


if __name__ == "__main__":
    main()
