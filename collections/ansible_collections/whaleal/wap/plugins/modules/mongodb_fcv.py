#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_fcv
short_description: Read or set the feature compatibility version of a MongoDB deployment
version_added: 0.2.0
description:
  - Reads the feature compatibility version (FCV) with C(getParameter), including the
    transitional state an interrupted change leaves (RV(target_version)).
  - With O(version), sets it with C(setFeatureCompatibilityVersion) when it differs or a change
    to it was interrupted; the command waits for a majority of the set.
  - From MongoDB 7.0 the command needs O(confirm=true), acknowledging that binaries cannot go
    back to the older major without MongoDB's support once the FCV changed; without it the module
    fails before changing anything and says so.
  - Run it against the primary of a replica set (O(replica_set)) or a mongos. Through a mongos,
    the FCV is read on the config servers' and every shard's primary (a mongos has none of its
    own); sets that disagree, as an interrupted change leaves them, count as a change to finish,
    and the command goes through the mongos to every set.
author: WAP developers (@whaleal)
options:
  version:
    description:
      - The FCV wanted, V(major.minor) (for example V(8.0)). Unset, the module only reads.
    type: str
  confirm:
    description:
      - Send C(confirm=true), required by MongoDB 7.0 and later for any change of the FCV.
    type: bool
    default: false
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reports the change without making it.
  diff_mode:
    support: full
    description: The FCV before and after.
notes:
  - MongoDB recommends running the new binaries for a while at the old FCV (a burn-in) before
    raising it; the whaleal.wap.mongodb_upgrade role does that with its C(upgrade_fcv) choice.
"""

EXAMPLES = r"""
- name: Raise the FCV once every member runs 8.0
  whaleal.wap.mongodb_fcv:
    version: "8.0"
    confirm: true
    replica_set: rs0
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"

- name: Read it
  whaleal.wap.mongodb_fcv:
    replica_set: rs0
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
  register: fcv
"""

RETURN = r"""
fcv:
  description: The FCV after the module ran (in check mode, what it would be).
  returned: always
  type: str
  sample: "8.0"
fcv_before:
  description: The FCV the module found.
  returned: always
  type: str
  sample: "7.0"
target_version:
  description:
    - The FCV document's C(targetVersion) when the module found a change interrupted (the
      deployment is upgrading or downgrading its FCV); empty otherwise.
  returned: always
  type: str
  sample: ""
server_version:
  description: The server's binary version.
  returned: always
  type: str
  sample: 8.0.4
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    NOT_WRITABLE_PRIMARY,
    UNAUTHORIZED,
    OperationFailure,
    PyMongoError,
    connect,
    error_code,
    mongodb_argument_spec,
    unauthorized_message,
)
from ansible_collections.whaleal.wap.plugins.module_utils.sharded_cluster import (
    is_router,
    router_fcv,
)
from ansible_collections.whaleal.wap.plugins.module_utils.upgrade_plan import (
    CONFIRM_FROM,
    UpgradeRefused,
    parse_fcv,
    parse_release,
)


def fcv_change(document: dict, wanted: str | None) -> bool:
    """Whether setFeatureCompatibilityVersion must run (pure): another version, or the same one
    with a transition left unfinished."""
    if wanted is None:
        return False
    return document.get("version") != wanted or "targetVersion" in document


def read_fcv(conn, router: bool) -> dict:
    if router:
        return router_fcv(conn)
    reply = conn.client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
    return dict(reply["featureCompatibilityVersion"])


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            version=dict(type="str"),
            confirm=dict(type="bool", default=False),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    wanted = module.params["version"]
    try:
        if wanted is not None:
            parse_fcv(wanted)
    except UpgradeRefused as exc:
        module.fail_json(msg=str(exc))
    conn = connect(module)
    try:
        server_version = conn.client.admin.command("buildInfo")["version"]
        router = is_router(conn.client)
        document = read_fcv(conn, router)
        before = document.get("version", "")
        result = dict(
            changed=False,
            fcv=before,
            fcv_before=before,
            target_version=document.get("targetVersion", ""),
            server_version=server_version,
        )
        if not fcv_change(document, wanted):
            module.exit_json(**result)
        series = parse_release(server_version)[:2]
        if series >= CONFIRM_FROM and not module.params["confirm"]:
            module.fail_json(
                msg=f"Setting the FCV to {wanted} on MongoDB {server_version} needs confirm: "
                "true: once the FCV changed, the binaries cannot go back to the older major "
                "without MongoDB's support. Set confirm: true to go on",
                **result,
            )
        result.update(changed=True, fcv=wanted)
        if module._diff:
            result["diff"] = dict(before={"fcv": before}, after={"fcv": wanted})
        if module.check_mode:
            module.exit_json(**result)
        command = {"setFeatureCompatibilityVersion": wanted}
        if series >= CONFIRM_FROM:
            command["confirm"] = True
        conn.client.admin.command(command)
        result["target_version"] = read_fcv(conn, router).get("targetVersion", "")
    except UpgradeRefused as exc:
        module.fail_json(msg=str(exc))
    except PyMongoError as exc:
        # NotWritablePrimary comes as pymongo's NotPrimaryError, not an OperationFailure.
        if error_code(exc) == UNAUTHORIZED:
            module.fail_json(msg=unauthorized_message(conn, "setFeatureCompatibilityVersion"))
        if error_code(exc) == NOT_WRITABLE_PRIMARY:
            module.fail_json(
                msg="The FCV is set on the primary: give replica_set (or connect to a mongos)"
            )
        if isinstance(exc, OperationFailure):
            module.fail_json(msg=f"MongoDB refused the FCV change: {exc}")
        module.fail_json(msg=f"MongoDB did not answer the FCV commands: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
