#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_balancer
short_description: Read, stop or start the balancer of a sharded cluster
version_added: 0.2.0
description:
  - Reads the balancer's mode and whether a balancing round runs (C(balancerStatus)) through a
    mongos.
  - With O(state=stopped), stops it (C(balancerStop)) and waits until no round runs, so that no
    chunk migration is in progress when the module returns; with O(state=started), starts it
    (C(balancerStart)). Changes nothing when the balancer is already so.
author: WAP developers (@whaleal)
options:
  state:
    description:
      - V(stopped) or V(started); unset, the module only reads.
    type: str
    choices: [stopped, started]
  wait_timeout:
    description: Seconds to wait for a round in progress to end after the stop.
    type: int
    default: 300
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reports the change without making it.
  diff_mode:
    support: full
    description: The mode before and after.
notes:
  - Run it against a mongos. An upgrade stops the balancer first and restores its former mode
    whatever happens (the whaleal.wap.mongodb_upgrade role).
"""

EXAMPLES = r"""
- name: Stop the balancer and wait for the round in progress
  whaleal.wap.mongodb_balancer:
    state: stopped
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
  register: balancer

- name: Start it again if it ran before
  whaleal.wap.mongodb_balancer:
    state: started
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
  when: balancer.mode_before != 'off'
"""

RETURN = r"""
mode:
  description: The balancer's mode after the module ran (in check mode, what it would be).
  returned: always
  type: str
  sample: "off"
mode_before:
  description: The mode the module found (V(full), V(off), or V(autoSplitOnly) before 6.1).
  returned: always
  type: str
  sample: full
in_round:
  description: Whether a balancing round runs now.
  returned: always
  type: bool
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    UNAUTHORIZED,
    PyMongoError,
    connect,
    error_code,
    mongodb_argument_spec,
    unauthorized_message,
)

COMMANDS = {"stopped": "balancerStop", "started": "balancerStart"}


def wanted_mode(mode: str, state: str | None) -> str:
    """The mode ``state`` asks for from ``mode`` (pure): stopped is off; started keeps a mode
    that already balances."""
    if state == "stopped":
        return "off"
    if state == "started":
        return mode if mode not in ("off", "") else "full"
    return mode


def status(conn) -> dict:
    reply = conn.client.admin.command("balancerStatus")
    return {"mode": reply.get("mode", ""), "in_round": bool(reply.get("inBalancerRound"))}


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            state=dict(type="str", choices=["stopped", "started"]),
            wait_timeout=dict(type="int", default=300),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    state = module.params["state"]
    timeout = module.params["wait_timeout"]
    conn = connect(module)
    try:
        before = status(conn)
        mode = wanted_mode(before["mode"], state)
        result = dict(changed=mode != before["mode"], mode=mode, mode_before=before["mode"])
        result["in_round"] = before["in_round"]
        if module._diff:
            result["diff"] = dict(before={"mode": before["mode"]}, after={"mode": mode})
        if result["changed"] and not module.check_mode:
            conn.client.admin.command(COMMANDS[state], maxTimeMS=timeout * 1000)
        if state == "stopped" and not module.check_mode:
            deadline = time.monotonic() + timeout
            now = status(conn)
            while now["in_round"] and time.monotonic() < deadline:
                time.sleep(1)
                now = status(conn)
            result["in_round"] = now["in_round"]
            if now["in_round"]:
                module.fail_json(
                    msg=f"The balancer is off but its round still ran after {timeout} s: "
                    "a migration is in progress; wait for it and run again",
                    **result,
                )
    except PyMongoError as exc:
        if error_code(exc) == UNAUTHORIZED:
            module.fail_json(msg=unauthorized_message(conn, "The balancer command"))
        module.fail_json(
            msg=f"The balancer could not be read or changed: {exc}. Connect to a mongos"
        )
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
