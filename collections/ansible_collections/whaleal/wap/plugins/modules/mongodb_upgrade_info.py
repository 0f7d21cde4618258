#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_upgrade_info
short_description: The members' versions, the pre-checks and the path of a rolling upgrade
version_added: 0.2.0
description:
  - Reads every member of a replica set (state, health, binary version from C(buildInfo), lag
    behind the primary), the feature compatibility version with any interrupted transition, and
    the primary's oplog window.
  - With O(target_version), plans the way there as MongoDB allows it (one major at a time, the
    FCV raised before the next major, a patch release in one step) and runs the pre-checks,
    every member healthy, lag under O(max_lag_seconds), FCV equal to the running major (or the
    set in the middle of a step), oplog window of at least O(min_oplog_window_hours) once the
    oplog is full. A refused target or a failed check fails the module with the reason.
  - With O(wait_member), waits until that member serves again (PRIMARY or SECONDARY), runs
    O(wait_version) and has caught up (lag under O(max_lag_seconds)).
  - Connected to a mongos, reads the whole sharded cluster, the config servers' replica set and
    every shard's (each as above), the routers' versions and the balancer's state, and plans
    one way for all of them (RV(plan) steps then group their members by set, config servers
    first, routers last); the pre-checks run on every set, and the balancer's state must be
    known.
  - With O(wait_router), waits until that mongos answers again at O(wait_version).
  - With O(restart), plans a rolling restart instead (one V(restart) step over every member,
    arbiters included, and every router), after the same pre-checks but the FCV's.
  - Arbiters move with the secondaries (new binaries, restarts), as MongoDB's upgrade procedure
    says; an arbiter holds no users, so its release is read without credentials (buildInfo
    needs none) and it serves again once it is ARBITER at the new release.
  - Changes nothing.
author: WAP developers (@whaleal)
options:
  target_version:
    description: The release to reach, V(X.Y.Z).
    type: str
  releases:
    description:
      - The release to run for each major passed through on the way, keyed by major (for 6.0 to 8.0,
        major V(7.0) mapped to V(7.0.14) for instance).
    type: dict
    default: {}
  upgrade_fcv:
    description:
      - V(now) raises the target major's FCV at the end; V(finalize) leaves it for a later run
        (the FCVs of the majors passed through are always raised).
    type: str
    choices: [now, finalize]
    default: now
  max_lag_seconds:
    description: The most a secondary may lag behind the primary, in seconds.
    type: int
    default: 10
  min_oplog_window_hours:
    description:
      - The oplog window the primary must keep once its oplog is full (the time a member may
        be down and still catch up). V(0) skips the check.
    type: float
    default: 1.0
  wait_member:
    description: A member (V(host:port)) to wait for instead of planning.
    type: str
  wait_version:
    description: The version O(wait_member) must run.
    type: str
  wait_timeout:
    description: Seconds to wait for O(wait_member) or O(wait_router).
    type: int
    default: 300
  restart:
    description: Plan a rolling restart of every member and router rather than an upgrade.
    type: bool
    default: false
  wait_router:
    description:
      - A mongos (V(host:port)) to wait for instead of planning; no other connection is made.
    type: str
  routers:
    description:
      - Through a mongos, the routers (V(host:port)) whose versions count; by default those
        recorded in C(config.mongos).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Changes nothing.
"""

EXAMPLES = r"""
- name: Plan 6.0 to 8.0 and check the set
  whaleal.wap.mongodb_upgrade_info:
    target_version: 8.0.4
    releases: {"7.0": "7.0.14"}
    replica_set: rs0
    login_user: admin
    login_password: "{{ mongodb_admin_password }}"
  register: upgrade

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ upgrade.plan.steps | map(attribute='description') | list }}"
"""

RETURN = r"""
members:
  description: Every member with its state, health, version and lag.
  returned: always
  type: list
  elements: dict
  sample: [{host: "db1:27017", state: PRIMARY, health: 1, version: 7.0.14, lag_seconds: 0}]
primary:
  description: The primary's host:port (empty when none).
  returned: always
  type: str
fcv:
  description: The feature compatibility version.
  returned: always
  type: str
  sample: "7.0"
fcv_target:
  description: The FCV document's targetVersion when a change was interrupted, else empty.
  returned: always
  type: str
oplog_window_hours:
  description: Hours between the primary's oldest and newest oplog entries.
  returned: always
  type: float
oplog_full:
  description: Whether the primary's oplog reached its size (only then is its window a limit).
  returned: always
  type: bool
checks:
  description: The pre-checks with their outcome.
  returned: when O(target_version) or O(restart) is given
  type: list
  elements: dict
  sample: [{check: members healthy, ok: true, detail: "3 of 3"}]
sets:
  description: Through a mongos, each replica set (config servers first) as the set's fields above.
  returned: when connected to a mongos
  type: list
  elements: dict
  sample: [{name: cfg, role: config, primary: "db1:27019", fcv: "7.0", members: []}]
routers:
  description: Through a mongos, each router with its version (empty when it did not answer).
  returned: when connected to a mongos
  type: list
  elements: dict
  sample: [{host: "db1:27017", version: 7.0.14}]
balancer:
  description: Through a mongos, the balancer's mode and whether a round runs.
  returned: when connected to a mongos
  type: dict
  sample: {mode: full, in_round: false}
plan:
  description:
    - The steps (V(binaries) or V(restart) on members, or V(fcv)) and notes. Through a mongos,
      a binaries or restart step's C(groups) list its members by set in the order they go.
  returned: when O(target_version) or O(restart) is given
  type: dict
  sample: {steps: [{action: binaries, version: 8.0.4, members: ["db1:27017"], confirm: false,
           description: "binaries 8.0.4 on db1:27017, one at a time"}], notes: []}
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    MongoClient,
    PyMongoError,
    client_options,
    connect,
    mongodb_argument_spec,
    require_pymongo,
)
from ansible_collections.whaleal.wap.plugins.module_utils.sharded_cluster import (
    cluster_fcv,
    cluster_sets,
    is_router,
    set_client,
)
from ansible_collections.whaleal.wap.plugins.module_utils.upgrade_plan import (
    Plan,
    Step,
    UpgradeRefused,
    plan_upgrade,
)

SERVING = ("PRIMARY", "SECONDARY")
ARBITER = "ARBITER"
# An oplog this close to its maximum size has started dropping its oldest entries.
OPLOG_FULL_RATIO = 0.9


def lag_seconds(status: dict) -> dict[str, float]:
    """Each member's lag behind the primary, in seconds, from replSetGetStatus (pure)."""
    members = status.get("members", [])
    primary = next((m for m in members if m.get("stateStr") == "PRIMARY"), None)
    if primary is None:
        return {}
    top = primary["optimeDate"]
    return {
        m["name"]: max(0.0, (top - m["optimeDate"]).total_seconds())
        for m in members
        if m.get("optimeDate") is not None and m.get("stateStr") in SERVING
    }


def pre_checks(members: list[dict], fcv: str, max_lag: float, window: dict, min_hours: float):
    """The pre-checks as [{check, ok, detail}] (pure)."""
    unhealthy = [
        f"{m['host']} {m['state']}"
        for m in members
        if m["health"] != 1 or m["state"] not in (*SERVING, "ARBITER")
    ]
    lagging = [
        f"{m['host']} {m['lag_seconds']:.0f} s"
        for m in members
        if m.get("lag_seconds") is not None and m["lag_seconds"] > max_lag
    ]
    series = sorted({".".join(m["version"].split(".")[:2]) for m in members if m["version"]})
    checks = [
        {
            "check": "members healthy",
            "ok": not unhealthy and len(series) > 0,
            "detail": ", ".join(unhealthy) or f"{len(members)} of {len(members)}",
        },
        {
            "check": f"lag under {max_lag} s",
            "ok": not lagging,
            "detail": ", ".join(lagging) or "every member",
        },
        {
            "check": "FCV equal to the running major",
            "ok": fcv in series[:1],
            "detail": f"FCV {fcv}, binaries {', '.join(series)}",
        },
    ]
    if min_hours > 0:
        hours = window["hours"]
        checks.append(
            {
                "check": f"oplog window at least {min_hours} h",
                "ok": not window["full"] or hours >= min_hours,
                "detail": f"{hours:.2f} h" + ("" if window["full"] else " (oplog not full yet)"),
            }
        )
    return checks


# Checks that stop a run before planning: nothing can be planned on what does not answer.
BLOCKING = ("members healthy", "routers answer", "balancer state known")


def cluster_checks(
    sets: list[dict], routers: list[dict], balancer: dict, max_lag: float, min_hours: float
) -> list[dict]:
    """The pre-checks of a sharded cluster (pure): each set's, named after it, the routers
    answering and the balancer's state known."""
    checks = []
    for each in sets:
        window = {"hours": each["oplog_window_hours"], "full": each["oplog_full"]}
        for check in pre_checks(each["members"], each["fcv"], max_lag, window, min_hours):
            checks.append(dict(check, check=f"{each['name']}: {check['check']}"))
    silent = [r["host"] for r in routers if not r["version"]]
    answering = f"{len(routers)} of {len(routers)}" if routers else "no router found"
    checks.append(
        {
            "check": "routers answer",
            "ok": bool(routers) and not silent,
            "detail": ", ".join(f"{h} did not answer" for h in silent) or answering,
        }
    )
    mode = balancer.get("mode", "")
    round_ = "runs" if balancer.get("in_round") else "is not running"
    checks.append(
        {
            "check": "balancer state known",
            "ok": mode in ("full", "off", "autoSplitOnly"),
            "detail": f"mode {mode or 'unknown'}, a round {round_}",
        }
    )
    return checks


def group_members(members: list[str], sets: list[dict], routers: list[dict]) -> list[dict]:
    """A binaries step's members by set, in upgrade order (pure): the config servers, each
    shard, then the routers."""
    groups = []
    for each in sets:
        hosts = {m["host"] for m in each["members"]}
        chosen = [m for m in members if m in hosts]
        if chosen:
            groups.append({"role": each["role"], "name": each["name"], "members": chosen})
    addresses = {r["host"] for r in routers}
    chosen = [m for m in members if m in addresses]
    if chosen:
        groups.append({"role": "routers", "name": "", "members": chosen})
    return groups


def describe_groups(action: str, groups: list[dict]) -> str:
    """``action`` ("binaries 8.0.4", "restart") on the groups, in order."""
    names = {"config": "config servers {name}", "shard": "shard {name}", "routers": "routers"}
    parts = [
        f"{names[g['role']].format(name=g['name'])} ({', '.join(g['members'])})" for g in groups
    ]
    return f"{action}: {'; then '.join(parts)}, one at a time"


class Reader:
    def __init__(self, module, conn, client=None):
        self.module = module
        self.conn = conn
        self.client = client or conn.client

    def version_of(self, host: str, arbiter: bool = False) -> str:
        """The member's release (buildInfo); an arbiter's read without credentials, since it
        holds no users and buildInfo needs none."""
        try:
            with self.conn.member_client(host, authenticate=False if arbiter else None) as client:
                return client.admin.command("buildInfo")["version"]
        except PyMongoError:
            return ""

    def read(self) -> dict:
        admin = self.client.admin
        status = admin.command("replSetGetStatus")
        lags = lag_seconds(status)
        members = []
        for m in status.get("members", []):
            state = m.get("stateStr", "UNKNOWN")
            members.append(
                {
                    "host": m["name"],
                    "state": state,
                    "health": int(m.get("health", 0)),
                    "version": (
                        self.version_of(m["name"], arbiter=state == ARBITER)
                        if m.get("health") == 1
                        else ""
                    ),
                    "lag_seconds": lags.get(m["name"]),
                }
            )
        document = admin.command("getParameter", 1, featureCompatibilityVersion=1)[
            "featureCompatibilityVersion"
        ]
        primary = next((m["host"] for m in members if m["state"] == "PRIMARY"), "")
        return {
            "members": members,
            "primary": primary,
            "fcv": document.get("version", ""),
            "fcv_target": document.get("targetVersion", ""),
            **self.oplog(),
        }

    def oplog(self) -> dict:
        local = self.client.local
        oldest = local.oplog.rs.find_one(sort=[("$natural", 1)])
        newest = local.oplog.rs.find_one(sort=[("$natural", -1)])
        hours = 0.0
        if oldest and newest:
            hours = (newest["ts"].time - oldest["ts"].time) / 3600.0
        stats = local.command("collStats", "oplog.rs")
        full = bool(stats.get("maxSize")) and stats.get("size", 0) >= OPLOG_FULL_RATIO * float(
            stats["maxSize"]
        )
        return {"oplog_window_hours": round(hours, 3), "oplog_full": full}

    def wait(self, host: str, version: str | None, timeout: int, max_lag: float) -> dict:
        deadline = time.monotonic() + timeout
        seen: dict = {}
        while True:
            try:
                seen = self.read()
                member = next((m for m in seen["members"] if m["host"] == host), None)
                if member is None:
                    self.module.fail_json(msg=f"{host} is not a member of the set", **seen)
                if serving_again(member, version, max_lag, seen["primary"]):
                    return seen
            except PyMongoError as exc:
                seen = dict(seen, last_error=str(exc))
            if time.monotonic() >= deadline:
                self.module.fail_json(
                    msg=f"{host} did not serve again at {version or 'its version'}, caught up "
                    f"within {self.module.params['max_lag_seconds']} s, in {timeout} s",
                    **seen,
                )
            time.sleep(1)


def moving(seen: dict) -> list[dict]:
    """What an upgrade or a rolling restart moves, as {host, version}: every member, arbiters
    included, then every router (pure)."""
    data = [{"host": m["host"], "version": m["version"]} for m in seen["members"]]
    return data + [{"host": r["host"], "version": r["version"]} for r in seen.get("routers", [])]


def serving_again(member: dict, version: str | None, max_lag: float, primary: str) -> bool:
    """Has a restarted member come back: PRIMARY or SECONDARY caught up within ``max_lag``, or
    ARBITER (nothing to catch up), at ``version`` when given, with a primary in the set (pure)."""
    return (
        (member["state"] in SERVING or member["state"] == ARBITER)
        and member["health"] == 1
        and (not version or member["version"] == version)
        and (member["lag_seconds"] or 0) <= max_lag
        and bool(primary)
    )


def restart_plan(data: list[dict]) -> Plan:
    """A rolling restart: every member given one at a time (pure)."""
    plan = Plan()
    if data:
        plan.steps.append(Step("restart", "", tuple(m["host"] for m in data)))
    return plan


def read_cluster(module, conn) -> dict:
    """The sharded cluster behind the mongos ``conn``: each set read as a replica set, the
    routers' versions, the balancer's state and the cluster's FCV."""
    reader = Reader(module, conn)
    sets = []
    for each in cluster_sets(conn.client):
        client = set_client(conn, each["name"], each["seeds"])
        try:
            seen = Reader(module, conn, client).read()
        finally:
            client.close()
        sets.append({"name": each["name"], "role": each["role"], **seen})
    addresses = module.params["routers"] or [
        d["_id"] for d in conn.client.config.mongos.find({}, {"_id": 1}).sort("_id", 1)
    ]
    routers = [{"host": a, "version": reader.version_of(a)} for a in addresses]
    try:
        status = conn.client.admin.command("balancerStatus")
        balancer = {"mode": status.get("mode", ""), "in_round": bool(status.get("inBalancerRound"))}
    except PyMongoError as exc:
        balancer = {"mode": "", "in_round": False, "error": str(exc)}
    fcv = cluster_fcv(
        {s["name"]: {"version": s["fcv"], "targetVersion": s["fcv_target"]} for s in sets}
    )
    return {
        "sets": sets,
        "routers": routers,
        "balancer": balancer,
        "members": [m for s in sets for m in s["members"]],
        "primary": "",
        "fcv": fcv.get("version", ""),
        "fcv_target": fcv.get("targetVersion", ""),
    }


def wait_router(module, address: str, version: str | None, timeout: int) -> dict:
    """Poll the mongos at ``address`` until it answers as a router at ``version``."""
    require_pymongo(module)
    host, _colon, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            options = client_options(module.params, host=host.strip("[]"), port=int(port))
            with MongoClient(**options) as client:
                hello = client.admin.command("hello")
                running = client.admin.command("buildInfo")["version"]
            if hello.get("msg") == "isdbgrid" and (not version or running == version):
                return {"host": address, "version": running}
            last = f"it runs {running}" if hello.get("msg") == "isdbgrid" else "it is no mongos"
        except PyMongoError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=f"The router {address} did not answer at {version or 'its version'} in "
                f"{timeout} s: {last}"
            )
        time.sleep(1)


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            target_version=dict(type="str"),
            releases=dict(type="dict", default={}),
            upgrade_fcv=dict(type="str", default="now", choices=["now", "finalize"]),
            max_lag_seconds=dict(type="int", default=10),
            min_oplog_window_hours=dict(type="float", default=1.0),
            wait_member=dict(type="str"),
            wait_version=dict(type="str"),
            wait_timeout=dict(type="int", default=300),
            wait_router=dict(type="str"),
            restart=dict(type="bool", default=False),
            routers=dict(type="list", elements="str", default=[]),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        mutually_exclusive=[("target_version", "wait_member", "wait_router")],
        supports_check_mode=True,
    )
    params = module.params
    if params["restart"] and (params["target_version"] or params["wait_member"]):
        module.fail_json(msg="restart plans a rolling restart: no target_version, no wait_member")
    if params["wait_router"]:
        seen = wait_router(
            module, params["wait_router"], params["wait_version"], params["wait_timeout"]
        )
        module.exit_json(changed=False, router=seen)
    conn = connect(module)
    reader = Reader(module, conn)
    sharded = False
    try:
        if params["wait_member"]:
            seen = reader.wait(
                params["wait_member"],
                params["wait_version"],
                params["wait_timeout"],
                params["max_lag_seconds"],
            )
            module.exit_json(changed=False, **seen)
        sharded = is_router(conn.client)
        seen = read_cluster(module, conn) if sharded else reader.read()
    except PyMongoError as exc:
        what = "sharded cluster" if sharded else "replica set"
        module.fail_json(msg=f"Could not read the {what}: {exc}")
    finally:
        conn.close()
    result = dict(changed=False, **seen)
    if not params["target_version"] and not params["restart"]:
        module.exit_json(**result)
    if sharded:
        result["checks"] = cluster_checks(
            seen["sets"],
            seen["routers"],
            seen["balancer"],
            params["max_lag_seconds"],
            params["min_oplog_window_hours"],
        )
    else:
        window = {"hours": seen["oplog_window_hours"], "full": seen["oplog_full"]}
        result["checks"] = pre_checks(
            seen["members"],
            seen["fcv"],
            params["max_lag_seconds"],
            window,
            params["min_oplog_window_hours"],
        )
    blocking = [c for c in result["checks"] if not c["ok"] and c["check"].endswith(BLOCKING)]
    if blocking:
        module.fail_json(
            msg="Pre-checks failed, nothing changed: "
            + "; ".join(f"{c['check']}: {c['detail']}" for c in blocking),
            **result,
        )
    data = moving(seen)
    try:
        plan = (
            restart_plan(data)
            if params["restart"]
            else plan_upgrade(
                {m["host"]: m["version"] for m in data},
                seen["fcv"],
                params["target_version"],
                releases={str(k): str(v) for k, v in params["releases"].items()},
                fcv_mode=params["upgrade_fcv"],
                fcv_target=seen["fcv_target"] or None,
            )
        )
    except UpgradeRefused as exc:
        module.fail_json(msg=f"Upgrade to {params['target_version']} refused: {exc}", **result)
    result["plan"] = plan.as_dict()
    if sharded:
        for step in result["plan"]["steps"]:
            if step["action"] in ("binaries", "restart"):
                step["groups"] = group_members(step["members"], seen["sets"], seen["routers"])
                action = step["action"] + (f" {step['version']}" if step["version"] else "")
                step["description"] = describe_groups(action, step["groups"])
            else:
                step["description"] += ", through a mongos"
    # A set in the middle of a step, or whose FCV the plan raises first, is resumed.
    mixed = len({m["version"] for m in data}) > 1
    resuming = bool(plan.steps) and (mixed or plan.steps[0].action == "fcv")
    waived = resuming or params["restart"]  # a restart changes no binaries: any FCV will do
    failed = [c for c in result["checks"] if not c["ok"] and not (waived and "FCV" in c["check"])]
    if failed and plan.steps:
        module.fail_json(
            msg="Pre-checks failed, nothing changed: "
            + "; ".join(f"{c['check']}: {c['detail']}" for c in failed),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
