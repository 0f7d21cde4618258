#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_stepdown
short_description: Step a replica set's primary down and wait for another one
version_added: 0.2.0
description:
  - When O(member) is the primary (or, without O(member), whichever member is), runs
    C(replSetStepDown), which waits up to O(catch_up_seconds) for an electable secondary to
    catch up, then waits until another member is primary.
  - Changes nothing when O(member) is not the primary.
author: WAP developers (@whaleal)
options:
  member:
    description: The member (V(host:port) as in the set's configuration) to step down.
    type: str
  step_down_seconds:
    description: Seconds the old primary may not stand for election.
    type: int
    default: 60
  catch_up_seconds:
    description: Seconds to wait for an electable secondary to catch up before stepping down.
    type: int
    default: 10
  wait_timeout:
    description: Seconds to wait for a new primary.
    type: int
    default: 60
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reports whether the member would step down.
  diff_mode:
    support: none
    description: No diff.
"""

EXAMPLES = r"""
- name: Hand the primary's role to another member before restarting it
  whaleal.wap.mongodb_stepdown:
    member: "db1.example.com:27017"
    replica_set: rs0
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
"""

RETURN = r"""
primary_before:
  description: The primary found.
  returned: always
  type: str
  sample: db1.example.com:27017
primary:
  description: The primary afterwards (in check mode, the one found).
  returned: always
  type: str
  sample: db2.example.com:27017
"""

import contextlib
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    connect,
    mongodb_argument_spec,
    wait_for,
)


def primary_of(client) -> str:
    status = client.admin.command("replSetGetStatus")
    return next((m["name"] for m in status["members"] if m.get("stateStr") == "PRIMARY"), "")


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            member=dict(type="str"),
            step_down_seconds=dict(type="int", default=60),
            catch_up_seconds=dict(type="int", default=10),
            wait_timeout=dict(type="int", default=60),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    params = module.params
    conn = connect(module)
    try:
        before = wait_for(lambda: primary_of(conn.client), params["wait_timeout"])
        if not before:
            module.fail_json(msg=f"No primary in {params['wait_timeout']} s: nothing to step down")
        result = dict(changed=False, primary_before=before, primary=before)
        if params["member"] and params["member"] != before:
            module.exit_json(**result)
        result["changed"] = True
        if module.check_mode:
            module.exit_json(**result)
        started = time.monotonic()
        # Servers before 4.2 close every connection on step-down.
        with conn.member_client(before) as primary, contextlib.suppress(ConnectionFailure):
            primary.admin.command(
                "replSetStepDown",
                params["step_down_seconds"],
                secondaryCatchUpPeriodSecs=params["catch_up_seconds"],
            )
        remaining = max(1, params["wait_timeout"] - int(time.monotonic() - started))

        def new_primary():
            found = primary_of(conn.client)
            return found if found != before else ""

        after = wait_for(new_primary, remaining)
        if not after:
            module.fail_json(msg=f"No other member became primary in {remaining} s", **result)
        result["primary"] = after
    except OperationFailure as exc:
        module.fail_json(msg=f"MongoDB refused the step-down: {exc}")
    except PyMongoError as exc:
        module.fail_json(msg=f"MongoDB did not answer: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
