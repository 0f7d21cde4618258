#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_replicaset
short_description: Initiate a MongoDB replica set and converge its members
version_added: 0.1.0
description:
  - Initiates the replica set when it has no configuration yet, with all the desired members.
  - Otherwise converges the members of the running set to O(members) in one run, through as many
    reconfigs as MongoDB's rules need (one voting member added, removed or with its vote changed
    per reconfig; C(arbiterOnly) and C(buildIndexes) only changed by removing and adding the
    member again), waiting for each configuration to be committed and for new members to reach
    SECONDARY or ARBITER before the next one.
  - The set keeps a primary throughout. The current primary is never removed or made unelectable
    while it is primary; it is stepped down first, once every other change is done.
  - Every planned configuration is checked against MongoDB's rules before it is submitted.
author: WAP developers (@whaleal)
options:
  name:
    description: The replica set name (C(replication.replSetName) of its members).
    type: str
    required: true
  members:
    description:
      - The desired members. Members of the running set not listed are removed.
      - Fields left out take MongoDB's defaults, so a member spec describes the whole member.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: V(host:port) as the members reach each other.
        type: str
        required: true
      priority:
        description:
          - Election priority, 0 to 1000.
          - Defaults to 0 for arbiters and members that are hidden, delayed, without indexes or
            without a vote, and to 1 otherwise.
        type: float
      votes:
        description: 1 for a voting member, 0 for a non-voting one.
        type: int
        choices: [0, 1]
        default: 1
      hidden:
        description: Hidden from clients (and so never primary).
        type: bool
        default: false
      arbiter_only:
        description:
          - An arbiter. Turning an existing member into an arbiter or back removes it and adds it
            again; MongoDB then expects the member's data directory to be empty.
        type: bool
        default: false
        aliases: [arbiterOnly]
      tags:
        description: Replica set tags, for read preferences and write concerns.
        type: dict
      secondary_delay_secs:
        description: Seconds this member lags behind the primary (a delayed member).
        type: int
        default: 0
        aliases: [secondaryDelaySecs]
      build_indexes:
        description: Whether the member builds indexes. Changing it removes and adds the member.
        type: bool
        default: true
        aliases: [buildIndexes]
  settings:
    description:
      - Replica set settings (for example C(electionTimeoutMillis), C(chainingAllowed)) to set.
        Settings not listed are left as they are.
    type: dict
  allow_multiple_arbiters:
    description:
      - Allow more than one arbiter. MongoDB 5.3+ refuses them unless its
        C(allowMultipleArbiters) parameter is set on every member.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for each thing the module waits on (a primary after initiation or
        step-down, a configuration to be committed, a new member to become healthy).
    type: int
    default: 300
  step_down_seconds:
    description: Seconds the stepped-down primary stays ineligible, as replSetStepDown takes them.
    type: int
    default: 60
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Returns the planned steps and changes nothing.
  diff_mode:
    support: full
    description: The members before and after, with their managed fields.
notes:
  - Connect to any member; the module finds the primary itself. Without a configuration the set
    is initiated from the member the module connects to, which must be one of O(members).
  - To initiate a set started with access control before any user exists, connect over
    V(localhost) with O(localhost_exception=true).
  - The primary after a step-down is predicted in check mode as the electable member with the
    highest priority; when acting, the module plans again from the real configuration after
    every step.
"""

EXAMPLES = r"""
- name: Initiate or converge a three-member set
  whaleal.wap.mongodb_replicaset:
    name: rs0
    members:
      - host: db1.example.com:27017
        priority: 2
      - host: db2.example.com:27017
      - host: db3.example.com:27017
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"

- name: Grow to five members, two of them in another data centre, in one run
  whaleal.wap.mongodb_replicaset:
    name: rs0
    members:
      - {host: "db1.example.com:27017", priority: 3, tags: {dc: east}}
      - {host: "db2.example.com:27017", priority: 2, tags: {dc: east}}
      - {host: "db3.example.com:27017", tags: {dc: east}}
      - {host: "db4.example.com:27017", priority: 0.5, tags: {dc: west}}
      - {host: "db5.example.com:27017", hidden: true, secondary_delay_secs: 3600}
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"

- name: First run on a set started with a keyFile, before the admin user exists
  whaleal.wap.mongodb_replicaset:
    name: rs0
    members: "{{ rs_members }}"
    login_host: localhost
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
    localhost_exception: true
"""

RETURN = r"""
steps:
  description:
    - The steps taken (or, in check mode, planned), in order.
    - C(action) is V(initiate), V(reconfig) or V(stepdown); C(changes) says what each step does.
  returned: always
  type: list
  elements: dict
  sample:
    - action: reconfig
      changes:
        - add db4.example.com:27017 as _id 3 (voting)
        - "update db1.example.com:27017: priority 1 -> 3"
    - action: reconfig
      changes: ["add db5.example.com:27017 as _id 4 (voting)"]
primary:
  description: The primary at the end (V(host:port)); in check mode the current one.
  returned: when the set has a primary
  type: str
  sample: db1.example.com:27017
members:
  description: The members at the end (in check mode, as planned), with their managed fields.
  returned: always
  type: list
  elements: dict
  sample:
    - {host: "db1.example.com:27017", _id: 0, priority: 3, votes: 1, hidden: false,
       arbiterOnly: false, buildIndexes: true, secondaryDelaySecs: 0, tags: {}}
version:
  description: The configuration version at the end.
  returned: when the configuration could be read (not in check mode before initiation, nor
    after an initiation done unauthenticated under the localhost exception)
  type: int
  sample: 7
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    UNAUTHORIZED,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    connect,
    error_code,
    is_retryable,
    mongodb_argument_spec,
    to_plain,
    unauthorized_message,
    wait_for,
)
from ansible_collections.whaleal.wap.plugins.module_utils.replicaset import (
    MANAGED_FIELDS,
    PlanError,
    config_diff,
    desired_members,
    initiate_config,
    plan,
)

ALREADY_INITIALIZED = 23
HEALTHY_STATES = ("PRIMARY", "SECONDARY", "ARBITER")

MEMBER_OPTIONS = dict(
    host=dict(type="str", required=True),
    priority=dict(type="float"),
    votes=dict(type="int", default=1, choices=[0, 1]),
    hidden=dict(type="bool", default=False),
    arbiter_only=dict(type="bool", default=False, aliases=["arbiterOnly"]),
    tags=dict(type="dict"),
    secondary_delay_secs=dict(type="int", default=0, aliases=["secondaryDelaySecs"]),
    build_indexes=dict(type="bool", default=True, aliases=["buildIndexes"]),
)


def member_specs(members: list[dict]) -> list[dict]:
    """Module member options (snake_case) to MongoDB member fields (camelCase)."""
    specs = []
    for m in members:
        spec = dict(
            host=m["host"],
            votes=m["votes"],
            hidden=m["hidden"],
            arbiterOnly=m["arbiter_only"],
            tags=m.get("tags") or {},
            secondaryDelaySecs=m["secondary_delay_secs"],
            buildIndexes=m["build_indexes"],
        )
        if m.get("priority") is not None:
            spec["priority"] = m["priority"]
        specs.append(spec)
    return specs


def settings_changes(current: dict, wanted: dict | None) -> dict:
    """The settings in ``wanted`` whose value differs from ``current``."""
    return {k: v for k, v in (wanted or {}).items() if current.get(k) != v}


def public(members: list[dict]) -> list[dict]:
    fields = ("host", "_id", *MANAGED_FIELDS)
    return [{k: to_plain(m.get(k)) for k in fields if k in m} for m in members]


class ReplicaSet:
    """The I/O half: reads and writes the set through the primary, following elections."""

    def __init__(self, module, conn):
        self.module = module
        self.conn = conn
        self.timeout = module.params["wait_timeout"]
        self.primary_host = None
        self.primary = None

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, **kwargs)

    def local_set_name(self):
        """The set name the member we connect to belongs to, or None when it is uninitiated.

        ``hello`` needs no privilege, so this works under the localhost exception too (where
        MongoDB 7.0+ refuses replSetGetConfig).
        """
        hello = self.conn.client.admin.command("hello")
        if hello.get("setName"):
            return hello["setName"]
        if not hello.get("isreplicaset"):
            self.fail("The mongod at the login host does not run with replication.replSetName")
        return None

    def find_primary(self, exclude=None):
        """Wait for a primary (other than ``exclude``) and connect to it."""

        def probe():
            for client in filter(None, (self.primary, self.conn.client)):
                try:
                    hello = client.admin.command("hello")
                except ConnectionFailure:
                    continue
                primary = hello.get("primary")
                if primary and primary != exclude:
                    return primary
            return None

        primary = wait_for(probe, self.timeout)
        if not primary:
            self.fail(f"No primary was elected within {self.timeout} s (wait_timeout)")
        if primary != self.primary_host:
            me = self.conn.client.admin.command("hello").get("me")
            old = self.primary
            self.primary = self.conn.client if primary == me else self.conn.member_client(primary)
            if old is not None and old is not self.conn.client:
                old.close()
            self.primary_host = primary
        return primary

    def config(self):
        reply = self.primary.admin.command("replSetGetConfig", 1, commitmentStatus=True)
        return reply["config"], reply.get("commitmentStatus", False)

    def wait_committed(self):
        if not wait_for(lambda: self.config()[1], self.timeout):
            self.fail(
                f"The replica set configuration was not committed within {self.timeout} s: "
                "a majority of voting members must be up and caught up"
            )

    def wait_healthy(self, hosts):
        def healthy():
            status = self.primary.admin.command("replSetGetStatus")
            states = {m["name"]: m.get("stateStr") for m in status["members"]}
            return all(states.get(h) in HEALTHY_STATES for h in hosts)

        if hosts and not wait_for(healthy, self.timeout):
            self.fail(
                f"New members {', '.join(hosts)} did not reach SECONDARY or ARBITER within "
                f"{self.timeout} s: check that they run, reach the others and share the keyFile"
            )

    def reconfig(self, config, members=None, settings=None):
        new = {k: v for k, v in config.items() if k != "term"}
        new["version"] = int(config["version"]) + 1
        if members is not None:
            new["members"] = members
        if settings:
            new["settings"] = dict(config.get("settings") or {}, **settings)
        self.primary.admin.command("replSetReconfig", new, maxTimeMS=self.timeout * 1000)

    def step_down(self):
        old = self.primary_host
        seconds = self.module.params["step_down_seconds"]
        # Servers before 4.2 close every connection on step-down.
        with contextlib.suppress(ConnectionFailure):
            self.primary.admin.command(
                "replSetStepDown", seconds, secondaryCatchUpPeriodSecs=min(10, seconds)
            )
        self.find_primary(exclude=old)

    def initiate(self, config):
        try:
            self.conn.client.admin.command("replSetInitiate", config)
        except OperationFailure as exc:
            if error_code(exc) == UNAUTHORIZED:
                self.fail(unauthorized_message(self.conn, "replSetInitiate"))
            if error_code(exc) == ALREADY_INITIALIZED:
                self.fail(
                    "The member at the login host has a replica set configuration but no set "
                    "name in hello (removed from its set, or still starting): check its log"
                )
            raise
        self.find_primary()
        try:
            self.wait_healthy([m["host"] for m in config["members"]])
        except OperationFailure as exc:
            # Unauthenticated under the localhost exception, only the primary is known (hello).
            if error_code(exc) != UNAUTHORIZED:
                raise
            return False
        return True


def converge(module, rs: ReplicaSet, specs: list[dict]) -> dict:
    params = module.params
    result = dict(changed=False, steps=[])
    set_name = rs.local_set_name()
    if set_name is None:
        config = initiate_config(params["name"], desired_members(specs), params["settings"])
        result.update(
            changed=True,
            steps=[{"action": "initiate", "changes": [f"initiate {params['name']}"]}],
            members=public(config["members"]),
        )
        if module._diff:
            result["diff"] = config_diff([], specs)
        if not module.check_mode and rs.initiate(config) and rs.conn.authenticated:
            final = rs.config()[0]
            result.update(version=final["version"], members=public(final["members"]))
        result["primary"] = rs.primary_host
        return result
    if set_name != params["name"]:
        rs.fail(f"The member belongs to replica set {set_name}, not {params['name']}")

    rs.find_primary()
    result["primary"] = rs.primary_host
    if rs.conn.localhost_exception:
        # Initiated, but no user exists yet (a run stopped before creating the administrator):
        # MongoDB does not show the configuration under the localhost exception.
        module.warn(
            "The replica set is initiated but has no user yet, so its configuration cannot be "
            "read: create the administrator, then run again to converge the members"
        )
        return result
    config = rs.config()[0]
    before = config["members"]
    planned = plan(before, specs, rs.primary_host, params["allow_multiple_arbiters"])
    settings = settings_changes(config.get("settings") or {}, params["settings"])
    if settings:
        planned.append({"action": "reconfig", "changes": [f"settings: {settings}"]})
    result["primary"] = rs.primary_host
    if not planned:
        result.update(members=public(before), version=config["version"])
        return result
    result["changed"] = True
    if module._diff:
        result["diff"] = config_diff(before, specs)
    if module.check_mode:
        result["steps"] = [{"action": s["action"], "changes": s["changes"]} for s in planned]
        last = [s for s in planned if "members" in s]
        result["members"] = public(last[-1]["members"] if last else before)
        result["version"] = config["version"]
        return result

    # Act one step at a time, planning again from the real configuration after each.
    for _attempt in range(len(planned) * 3 + 10):
        rs.wait_committed()
        config = rs.config()[0]
        steps = plan(config["members"], specs, rs.primary_host, params["allow_multiple_arbiters"])
        if not steps:
            break
        step = steps[0]
        try:
            if step["action"] == "stepdown":
                rs.step_down()
            else:
                known = {m["host"] for m in config["members"]}
                rs.reconfig(config, members=step["members"])
                rs.wait_committed()
                rs.wait_healthy([m["host"] for m in step["members"] if m["host"] not in known])
        except (OperationFailure, ConnectionFailure) as exc:
            if not is_retryable(exc):
                raise
            rs.find_primary()
            continue
        result["steps"].append({"action": step["action"], "changes": step["changes"]})
    else:
        rs.fail("The replica set did not converge; the steps taken are in 'steps'", **result)
    if settings:
        rs.wait_committed()
        config = rs.config()[0]
        rs.reconfig(config, settings=settings)
        rs.wait_committed()
        result["steps"].append({"action": "reconfig", "changes": [f"settings: {settings}"]})
    final = rs.config()[0]
    result.update(primary=rs.primary_host, version=final["version"])
    result["members"] = public(final["members"])
    return result


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            name=dict(type="str", required=True),
            members=dict(type="list", elements="dict", required=True, options=MEMBER_OPTIONS),
            settings=dict(type="dict"),
            allow_multiple_arbiters=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=300),
            step_down_seconds=dict(type="int", default=60),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    specs = member_specs(module.params["members"])
    try:
        desired_members(specs)
    except PlanError as exc:
        module.fail_json(msg=str(exc))
    conn = connect(module)
    try:
        result = converge(module, ReplicaSet(module, conn), specs)
    except PlanError as exc:
        module.fail_json(msg=str(exc))
    except PyMongoError as exc:
        module.fail_json(msg=f"MongoDB refused a replica set command: {exc}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
