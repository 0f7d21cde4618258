"""Operations on one member of a cluster's replica set, from the console and the API: start,
stop, restart, step down, freeze; add, remove, or change a member's priority, votes or hidden.

Each is planned first: `plan` starts member_operation.yml with `wap_member_plan_only` (the
playbook reads the live set, reports the steps in order with `set_stats`, and stops; a refusal,
such as a stop that would leave the set without a majority, fails the job with the reason).
`planned` reads that back for the page that shows it; `run` starts the same playbook for real,
with the same variables, once the operator confirms (and only after a plan that was not refused).
Both are jobs on the cluster's hosts, under the cluster's lock, with its MongoDB credential.

A rolling restart of a whole cluster (a replica set or a sharded cluster WAP deployed), with a
change of mongod options if asked (setParameter entries, configuration keys as a mapping), and
an upgrade to another release go the same way (`kind` "rolling" or "upgrade"): `whole_plan`
starts rolling_restart.yml or upgrade_cluster.yml with its plan-only flag (the order read from
the live deployment and reported as `wap_upgrade_plan`, nothing written), `whole_planned` reads
it back, `whole_run` runs it once the cluster's name is typed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from webui.config import Settings
from webui.jobs import store as records
from webui.services import audit, cloud, deployments, jobs, takeover
from webui.services.audit import Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store

PLAYBOOK = "member_operation.yml"
PLAN_ACTION, RUN_ACTION = "member-plan", "member"
OPERATIONS = {
    "restart": "Restart", "stop": "Stop", "start": "Start", "step_down": "Step down",
    "freeze": "Freeze (no election for a while)",
    "resync": "Resync (its data emptied, copied from the set again)",
    "change": "Change priority, votes, hidden, delay", "add": "Add a member",
    "remove": "Remove from the set (its mongod keeps running)",
}  # fmt: skip
MAX_DELAY = 365 * 86400  # secondaryDelaySecs: a delayed member's lag, up to a year here
PARAMETER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,99}$")
# Configuration sections WAP writes from the cluster's own settings: a change goes elsewhere.
MANAGED_SECTIONS = ("net", "replication", "sharding", "security", "systemLog", "setParameter",
                    "processManagement")  # fmt: skip
MEMBER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$")


def _cluster(store: Store, actor: Actor, cluster_id: str, role: str) -> dict[str, Any]:
    cluster, _ = cloud.get_cluster(store, actor, cluster_id, role)
    if cluster.get("topology") != "replicaset" or not cluster.get("replica_set"):
        raise Conflict("member operations are for replica sets on registered hosts")
    return cluster


def _optional(data: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    priority = data.get("priority")
    if priority not in (None, ""):
        try:
            found["wap_member_priority"] = float(priority)
            if not 0 <= found["wap_member_priority"] <= 1000:
                raise ValueError
        except (TypeError, ValueError):
            errors["priority"] = ["a number from 0 to 1000"]
    votes = data.get("votes")
    if votes not in (None, ""):
        if str(votes) not in ("0", "1"):
            errors["votes"] = ["0 or 1"]
        else:
            found["wap_member_votes"] = int(votes)
    hidden = data.get("hidden")
    if hidden not in (None, ""):
        found["wap_member_hidden"] = hidden in (True, "1", "on", "true", "yes")
    delay = data.get("delay")
    if delay not in (None, ""):
        try:
            found["wap_member_delay"] = int(delay)
            if not 0 <= found["wap_member_delay"] <= MAX_DELAY:
                raise ValueError
        except (TypeError, ValueError):
            errors["delay"] = [f"whole seconds from 0 to {MAX_DELAY}"]
    if data.get("arbiter") in (True, "1", "on", "true", "yes"):
        found["wap_member_arbiter"] = True
    return found


def check(cluster: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The playbook's variables for a request, each field checked (Invalid names the wrong)."""
    errors: dict[str, list[str]] = {}
    operation = str(data.get("operation") or "")
    if operation not in OPERATIONS:
        errors["operation"] = [f"one of {', '.join(OPERATIONS)}"]
    member = str(data.get("member") or "").strip()
    if not MEMBER_RE.match(member):
        errors["member"] = ["host:port of the member as the set names it"]
    extra = _optional(data, errors)
    if operation == "change" and not extra:
        errors["priority"] = ["a change needs priority, votes, hidden or delay"]
    if extra.get("wap_member_arbiter") and operation != "add":
        errors["arbiter"] = ["an arbiter is added as one: remove the member, then add it"]
    if errors:
        raise Invalid("the member operation cannot be planned as given", errors)
    settings = cluster.get("deploy_vars") or {}
    tls = (cluster.get("security") or {}).get("tls", False)
    port = settings.get("mongodb_replicaset_port") or cluster.get("port") or 27017
    found = (cluster.get("taken_over") or {}).get("members", [])
    ports = sorted({m["port"] for m in found if f"{m['address']}:{m['port']}" != member})
    ports = ports if len({m["port"] for m in found}) > 1 else []  # several members per host
    return {
        "wap_member": member,
        "wap_member_operation": operation,
        **extra,
        "mongodb_replicaset_name": cluster["replica_set"],
        "mongodb_replicaset_port": int(port),
        **({"wap_member_login_ports": ports} if ports else {}),
        "mongodb_replicaset_tls": bool(tls),
    }


def _start(store, settings, actor, cluster, variables, action) -> dict[str, Any]:
    return jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": PLAYBOOK, "host_ids": cluster["host_ids"],
         "credential_ids": cluster.get("credential_ids") or [], "extra_vars": variables,
         "cluster_id": cluster["_id"]},
        action=action,
    )  # fmt: skip


def plan(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Start the plan job (changes nothing): the job."""
    cluster = _cluster(store, actor, cluster_id, "operator")
    variables = check(cluster, data)
    if variables["wap_member"] in (cluster.get("unmanaged") or []):
        raise Conflict(f"WAP no longer manages {variables['wap_member']}: manage it again first",
                       {"member": ["not managed"]})  # fmt: skip
    return _start(store, settings, actor, cluster, {**variables, "wap_member_plan_only": True},
                  PLAN_ACTION)  # fmt: skip


def planned(store: Store, actor: Actor, cluster_id: str, job_id: str) -> dict[str, Any]:
    """A plan: its job, the steps once it ended, or why it was refused; the job that ran it."""
    _cluster(store, actor, cluster_id, "read-only")
    job = store.jobs.find_one({"_id": job_id, "cluster_id": cluster_id,
                               "cluster_action": PLAN_ACTION})  # fmt: skip
    if job is None:
        raise NotFound("no such member operation plan on this cluster")
    answer: dict[str, Any] = {"job": job, "status": job["status"], "steps": None,
                              "reason": None, "run_job_id": job.get("run_job_id")}  # fmt: skip
    if job["status"] == "successful":
        report = (records.recap(store, job_id) or {}).get("artifact_data") or {}
        answer["steps"] = (report.get("wap_member_operation") or {}).get("steps")
    elif job["status"] in jobs.FINISHED:
        answer["reason"] = takeover.failure(store, job_id)
    return answer


def run(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, job_id: str, confirm: str
) -> dict[str, Any]:
    """Carry out a plan that was not refused (once): the job that does it."""
    cluster = _cluster(store, actor, cluster_id, "operator")
    answer = planned(store, actor, cluster_id, job_id)
    variables = {k: v for k, v in answer["job"]["extra_vars"].items()
                 if k != "wap_member_plan_only"}  # fmt: skip
    if answer["status"] != "successful" or answer["steps"] is None:
        raise Conflict(f"this plan is {answer['status']}: only a plan that was not refused runs"
                       + (f" ({answer['reason']})" if answer["reason"] else ""))  # fmt: skip
    if answer["run_job_id"]:
        raise Conflict("this plan has run already: plan again for another operation")
    if confirm.strip() != variables["wap_member"]:
        raise Invalid("type the member's address to confirm",
                      {"confirm": [f"type {variables['wap_member']}"]})  # fmt: skip
    job = _start(store, settings, actor, cluster, variables, RUN_ACTION)
    store.jobs.update_one({"_id": job_id}, {"$set": {"run_job_id": job["_id"]}})
    audit.record(store, actor, "cluster.member", f"{cluster['name']}/{variables['wap_member']}",
                 detail={"operation": variables["wap_member_operation"], "job": job["_id"],
                         "steps": answer["steps"]})  # fmt: skip
    return job


def set_managed(
    store: Store, actor: Actor, cluster_id: str, member: str, managed: bool
) -> dict[str, Any]:
    """Stop managing a member (its process keeps running, as it is; WAP plans no operation on it
    until it is managed again), or manage it again: the cluster."""
    cluster = _cluster(store, actor, cluster_id, "operator")
    if not MEMBER_RE.match(member):
        raise Invalid("which member?", {"member": ["host:port of the member as the set names it"]})
    unmanaged = [m for m in cluster.get("unmanaged") or [] if m != member]
    unmanaged += [] if managed else [member]
    store.clusters.update_one({"_id": cluster_id}, {"$set": {"unmanaged": unmanaged}})
    audit.record(store, actor, "cluster.member.manage" if managed else "cluster.member.unmanage",
                 f"{cluster['name']}/{member}")  # fmt: skip
    return store.clusters.find_one({"_id": cluster_id}) or cluster


def parse_parameters(text: str) -> dict[str, Any]:
    """``name=value`` lines (a value read as JSON when it is: 30, true, "x"; else as text)."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{line.strip()!r} is not name=value")
        try:
            found[name.strip()] = json.loads(value.strip())
        except ValueError:
            found[name.strip()] = value.strip()
    return found


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _config_errors(config: Any, path: str = "") -> list[str]:
    if not isinstance(config, dict):
        return [f"{path or 'the configuration'} must be a mapping"]
    errors = []
    for key, value in config.items():
        where = f"{path}.{key}" if path else str(key)
        if not path and key in MANAGED_SECTIONS:
            errors.append(f"{key} is written from the cluster's settings")
        elif not PARAMETER_RE.match(str(key)):
            errors.append(f"{where} is not an option name")
        elif isinstance(value, dict):
            errors += _config_errors(value, where)
        elif not _scalar(value) and not (isinstance(value, list) and all(map(_scalar, value))):
            errors.append(f"{where} must be a value, a list of values or a mapping")
    return errors


def _whole_cluster(store: Store, actor: Actor, cluster_id: str, role: str) -> dict[str, Any]:
    cluster, _ = cloud.get_cluster(store, actor, cluster_id, role)
    if cluster.get("topology") not in ("replicaset", "sharded") or not cluster.get("deploy_vars"):
        raise Conflict("rolling restarts and upgrades are for replica sets and sharded clusters "
                       "WAP deployed (it knows their instances)")  # fmt: skip
    return cluster


def rolling_check(cluster: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The change a rolling restart writes first, each part checked: its variables."""
    errors: dict[str, list[str]] = {}
    parameters = data.get("set_parameters") or {}
    if isinstance(parameters, str):
        try:
            parameters = parse_parameters(parameters)
        except ValueError as exc:
            errors["set_parameters"] = [str(exc)]
            parameters = {}
    if not isinstance(parameters, dict):
        errors["set_parameters"] = ["a mapping of parameter names to values"]
        parameters = {}
    wrong = [f"{k}: not a parameter name" for k in parameters if not PARAMETER_RE.match(str(k))]
    wrong += [f"{k}: a value (text, number or true/false)" for k, v in parameters.items()
              if not _scalar(v)]  # fmt: skip
    if wrong:
        errors["set_parameters"] = wrong
    config = data.get("config") or {}
    if isinstance(config, str):
        try:
            config = json.loads(config) if config.strip() else {}
        except ValueError as exc:
            errors["config"] = [f"not JSON: {exc}"]
            config = {}
    config_errors = _config_errors(config)
    if config_errors:
        errors["config"] = config_errors
    if errors:
        raise Invalid("the rolling restart cannot be planned as given", errors)
    return {"wap_rolling_set_parameters": parameters, "wap_rolling_config": config}


def upgrade_check(
    settings: Settings, cluster: dict[str, Any], data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An upgrade's variables, and the platform's own (the tarballs it offers for the target and
    for each major passed through: the newest of each)."""
    version = str(data.get("version") or "").strip()
    fcv = str(data.get("fcv") or "now")
    errors: dict[str, list[str]] = {}
    if not VERSION_RE.match(version):
        errors["version"] = ["a release such as 8.0.4"]
    if fcv not in ("now", "finalize"):
        errors["fcv"] = ["now or finalize"]
    if errors:
        raise Invalid("the upgrade cannot be planned as given", errors)
    offered = deployments.packages(settings)
    newest: dict[str, str] = {}
    for release in sorted(offered, key=lambda v: tuple(int(p) for p in v.split("."))):
        newest[release.rpartition(".")[0]] = release
    series = version.rpartition(".")[0]
    releases = {major: release for major, release in newest.items() if major != series}
    variables = {"mongodb_upgrade_version": version, "mongodb_upgrade_fcv": fcv,
                 "mongodb_upgrade_releases": releases}  # fmt: skip
    platform: dict[str, Any] = {}
    if version in offered:
        wanted = [version, *releases.values()]
        platform["mongodb_upgrade_tarballs"] = [str(offered[v]) for v in wanted]
    return variables, platform


# A rolling restart and an upgrade of the whole cluster: planned by their playbook with its
# plan-only flag (the role reports wap_upgrade_plan), then run once the cluster's name is typed.
WHOLE = {
    "rolling": {"playbook": "rolling_restart.yml", "plan_only": "wap_rolling_plan_only",
                "audit": "cluster.rolling_restart"},
    "upgrade": {"playbook": "upgrade_cluster.yml", "plan_only": "mongodb_upgrade_plan_only",
                "audit": "cluster.upgrade"},
}  # fmt: skip
PLATFORM_VARS = ("mongodb_upgrade_tarballs",)
VERSION_RE = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")


def deployment_vars(cluster: dict[str, Any]) -> dict[str, Any]:
    """What the upgrade role must know of a cluster WAP deployed, in the variables its playbooks
    document, from the variables it was deployed with (pure)."""
    deployed = cluster.get("deploy_vars") or {}
    tls = bool(deployed.get("mongodb_replicaset_tls", (cluster.get("security") or {}).get("tls")))
    if cluster.get("topology") == "replicaset":
        return {
            "wap_upgrade_hosts": deployed.get("wap_replicaset_hosts") or [],
            "mongodb_upgrade_replica_set": deployed.get("mongodb_replicaset_name") or "rs0",
            "mongodb_upgrade_port": int(deployed.get("mongodb_replicaset_port") or 27017),
            "mongodb_upgrade_tls": tls,
            "wap_mongod_instances": deployed.get("mongodb_config_instances") or [],
        }
    routers = deployed.get("wap_mongos_hosts") or []
    hosts = deployed.get("wap_sharded_hosts") or []
    instances = deployed.get("wap_mongod_instances") or []
    return {
        "wap_upgrade_hosts": hosts + [h for h in routers if h not in hosts],
        "mongodb_upgrade_router_hosts": routers,
        "mongodb_upgrade_router_port": int(deployed.get("mongodb_sharding_port") or 27017),
        "mongodb_upgrade_router_instance": (deployed.get("wap_mongos_instances") or
                                            [{"name": "mongos"}])[0]["name"],
        "mongodb_upgrade_instances": {i["replica_set"]: i["name"] for i in instances
                                      if i.get("replica_set")},
        "mongodb_upgrade_tls": tls,
        "wap_mongod_instances": instances,
    }  # fmt: skip


def _start_whole(store, settings, actor, cluster, kind, action, variables) -> dict[str, Any]:
    platform = {k: variables[k] for k in PLATFORM_VARS if k in variables}
    asked = {k: v for k, v in variables.items() if k not in platform}
    if kind == "upgrade":  # its playbook has no mongod file to write
        asked.pop("wap_mongod_instances", None)
    return jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": WHOLE[kind]["playbook"], "host_ids": cluster["host_ids"],
         "credential_ids": cluster.get("credential_ids") or [],
         "extra_vars": {**deployment_vars(cluster), **asked},
         "cluster_id": cluster["_id"]},
        action=action, platform_vars=platform or None,
    )  # fmt: skip


def whole_plan(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, kind: str,
    data: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Start the plan job of a rolling restart or an upgrade (reads the deployment, changes
    nothing): the job."""
    cluster = _whole_cluster(store, actor, cluster_id, "operator")
    if kind == "upgrade":
        variables, platform = upgrade_check(settings, cluster, data)
        variables.update(platform)
    else:
        variables = rolling_check(cluster, data)
    variables[WHOLE[kind]["plan_only"]] = True
    return _start_whole(store, settings, actor, cluster, kind, f"{kind}-plan", variables)


def _ended_plan(store: Store, job: dict[str, Any], stat: str, answer: dict[str, Any]) -> dict:
    """A plan job's report (its set_stats ``stat``) once it ended well, or {} with the reason it
    was refused in ``answer``."""
    if job["status"] == "successful":
        report = (records.recap(store, job["_id"]) or {}).get("artifact_data") or {}
        return report.get(stat) or {}
    if job["status"] in jobs.FINISHED:
        answer["reason"] = takeover.failure(store, job["_id"])
    return {}


def _check_runnable(answer: dict[str, Any], cluster: dict[str, Any], confirm: str, again: str):
    """Only a plan that was not refused runs, once, with the cluster's name typed."""
    if answer["status"] != "successful" or answer["steps"] is None:
        raise Conflict(f"this plan is {answer['status']}: only a plan that was not refused runs"
                       + (f" ({answer['reason']})" if answer["reason"] else ""))  # fmt: skip
    if answer["run_job_id"]:
        raise Conflict(f"this plan has run already: plan again{again}")
    if confirm.strip() != cluster["name"]:
        raise Invalid("type the cluster's name to confirm",
                      {"confirm": [f"type {cluster['name']}"]})  # fmt: skip


def whole_planned(
    store: Store, actor: Actor, cluster_id: str, kind: str, job_id: str
) -> dict[str, Any]:
    """A plan: its job and what was asked, the plan once it ended (title, steps, notes), or why
    it was refused; the job that ran it."""
    _whole_cluster(store, actor, cluster_id, "read-only")
    job = store.jobs.find_one({"_id": job_id, "cluster_id": cluster_id,
                               "cluster_action": f"{kind}-plan"})  # fmt: skip
    if job is None:
        raise NotFound(f"no such {kind} plan on this cluster")
    variables = job["extra_vars"]
    answer: dict[str, Any] = {
        "job": job, "status": job["status"], "title": None, "steps": None, "notes": [],
        "reason": None, "run_job_id": job.get("run_job_id"),
        "set_parameters": variables.get("wap_rolling_set_parameters") or {},
        "config": variables.get("wap_rolling_config") or {},
        "version": variables.get("mongodb_upgrade_version"),
        "fcv": variables.get("mongodb_upgrade_fcv"),
    }  # fmt: skip
    plan = _ended_plan(store, job, "wap_upgrade_plan", answer)
    if plan:
        answer.update(title=plan.get("title"), steps=plan.get("steps"),
                      notes=plan.get("notes") or [])  # fmt: skip
    return answer


def whole_run(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, kind: str, job_id: str,
    confirm: str,
) -> dict[str, Any]:  # fmt: skip
    """Carry out a plan that was not refused (once), the cluster's name typed: the job."""
    cluster = _whole_cluster(store, actor, cluster_id, "operator")
    answer = whole_planned(store, actor, cluster_id, kind, job_id)
    _check_runnable(answer, cluster, confirm, f" for another {kind}")
    variables = {k: v for k, v in answer["job"]["extra_vars"].items()
                 if k != WHOLE[kind]["plan_only"]}  # fmt: skip
    job = _start_whole(store, settings, actor, cluster, kind, kind, variables)
    store.jobs.update_one({"_id": job_id}, {"$set": {"run_job_id": job["_id"]}})
    asked = {k: answer[k] for k in ("set_parameters", "config", "version", "fcv") if answer[k]}
    audit.record(store, actor, WHOLE[kind]["audit"], cluster["name"],
                 detail={**asked, "job": job["_id"], "steps": answer["steps"]})  # fmt: skip
    return job


# -- Shards and conversions (issue 16) -------------------------------------------------------
# A sharded cluster WAP deployed gets a shard (a new replica set on its hosts) or has one drained
# and removed (shard_operation.yml); a replica set becomes the first shard of a sharded cluster
# (convert_cluster.yml). Planned first by the playbook with its plan-only flag (the live cluster
# read, the steps reported, or the refusal: the last shard, a set not healthy), then run once
# the cluster's name is typed; webui.services.deployments records the new topology when the run
# ends well. The jobs get only the variables the playbooks document for this (never the roles'
# instance or set variables of the cluster's deploy, which would outrank the playbooks' own).
SHAPES = {
    "shard-add": {"playbook": "shard_operation.yml", "plan_only": "wap_shard_plan_only",
                  "report": "wap_shard_plan", "audit": "cluster.shard_add",
                  "topology": "sharded", "label": "Add a shard"},
    "shard-remove": {"playbook": "shard_operation.yml", "plan_only": "wap_shard_plan_only",
                     "report": "wap_shard_plan", "audit": "cluster.shard_remove",
                     "topology": "sharded", "label": "Remove a shard"},
    "convert": {"playbook": "convert_cluster.yml", "plan_only": "wap_convert_plan_only",
                "report": "wap_convert_plan", "audit": "cluster.convert",
                "topology": "replicaset", "label": "Convert to a sharded cluster"},
}  # fmt: skip
ROUTER_PORTS = (27017, 27016)  # a converted set's routers: the first its members leave free


def _shape_cluster(store: Store, actor: Actor, cluster_id: str, kind: str,
                   role: str) -> dict[str, Any]:  # fmt: skip
    cluster, _ = cloud.get_cluster(store, actor, cluster_id, role)
    wanted = SHAPES[kind]["topology"]
    if (cluster.get("topology") != wanted or not cluster.get("deploy_vars")
            or cluster.get("taken_over")):  # fmt: skip
        what = "replica set" if wanted == "replicaset" else "sharded cluster"
        raise Conflict(f"{SHAPES[kind]['label'].lower()}: for a {what} WAP deployed "
                       "(it knows its instances and its security settings)")  # fmt: skip
    return cluster


def shard_names(cluster: dict[str, Any]) -> list[str]:
    """The shards a sharded cluster's record names, in order."""
    shards = (cluster.get("deploy_vars") or {}).get("mongodb_sharding_shards") or []
    return [s.get("name") or s["host"].partition("/")[0] for s in shards]


def shape_check(cluster: dict[str, Any], kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The playbook's variables for a shard addition or removal or a conversion (pure): each
    field checked, Invalid naming the wrong ones."""
    deployed = cluster.get("deploy_vars") or {}
    common = {k: deployed[k] for k in deployments.SECURITY_VARS if k in deployed}
    errors: dict[str, list[str]] = {}
    if kind == "convert":
        hosts = deployed.get("wap_replicaset_hosts") or []
        routers = data.get("routers") or min(2, len(hosts))
        if str(routers).strip() not in [str(n) for n in range(1, len(hosts) + 1)]:
            errors["routers"] = [f"a whole number from 1 to {len(hosts)} (one per host)"]
        if errors:
            raise Invalid("the conversion cannot be planned as given", errors)
        port = int(deployed.get("mongodb_replicaset_port") or cluster.get("port") or 27017)
        instance = (deployed.get("mongodb_config_instances") or [{}])[0].get("name")
        name = cluster["replica_set"]
        return {**common, "wap_convert_to": "sharded", "wap_convert_hosts": hosts,
                "wap_convert_replica_set": name, "wap_convert_instance": instance or name,
                "wap_convert_port": port, "wap_convert_config_hosts": hosts,
                "wap_convert_config_name": "cfg",
                "wap_convert_config_port": deployments.CONFIG_PORT
                if port != deployments.CONFIG_PORT else deployments.CONFIG_PORT + 100,
                "wap_mongos_hosts": hosts[: int(routers)],
                "wap_convert_router_port": next(p for p in ROUTER_PORTS if p != port)}  # fmt: skip
    names = shard_names(cluster)
    routers = {"wap_mongos_hosts": deployed.get("wap_mongos_hosts") or [],
               "mongodb_sharding_port": int(deployed.get("mongodb_sharding_port") or 27017),
               "mongodb_sharding_tls": bool(deployed.get("mongodb_sharding_tls"))}  # fmt: skip
    if kind == "shard-remove":
        shard = str(data.get("shard") or "")
        if shard not in names:
            errors["shard"] = [f"one of the cluster's shards: {', '.join(names)}"]
        elif len(names) < 2:
            errors["shard"] = [f"{shard} is the cluster's last shard: MongoDB cannot remove it"]
        target = str(data.get("move_primary_to") or "")
        if target and (target == shard or target not in names):
            errors["move_primary_to"] = ["a shard that stays, or empty (the first that stays)"]
        if errors:
            raise Invalid("the shard's removal cannot be planned as given", errors)
        return {**routers, "wap_shard_operation": "remove", "wap_shard_name": shard,
                **({"wap_shard_move_primary_to": target} if target else {})}  # fmt: skip
    sets = deployed.get("wap_replica_sets") or []
    taken = {s["name"] for s in sets} | set(names)
    name = str(data.get("name") or "").strip()
    if not name:
        name = next(f"shard{n}" for n in range(1, 100) if f"shard{n}" not in taken)
    if not deployments.SET_NAME_RE.match(name) or name in taken:
        errors["name"] = [
            f"a replica set name the cluster does not use ({', '.join(sorted(taken))})"
        ]
    if errors:
        raise Invalid("the shard cannot be planned as given", errors)
    used = {int(s["port"]) for s in sets} | {deployments.MONGOS_PORT, deployments.CONFIG_PORT,
                                             routers["mongodb_sharding_port"]}  # fmt: skip
    return {**common, **routers, "wap_shard_operation": "add", "wap_shard_name": name,
            "wap_shard_hosts": deployed.get("wap_sharded_hosts") or [],
            "wap_shard_port": next(p for p in range(27018, 28000) if p not in used)}  # fmt: skip


def _start_shape(store, settings, actor, cluster, kind, action, variables) -> dict[str, Any]:
    return jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": SHAPES[kind]["playbook"], "host_ids": cluster["host_ids"],
         "credential_ids": cluster.get("credential_ids") or [], "extra_vars": variables,
         "cluster_id": cluster["_id"]},
        action=action,
    )  # fmt: skip


def shape_plan(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, kind: str,
    data: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Start the plan job of a shard addition or removal or a conversion (reads the live
    cluster, changes nothing): the job."""
    cluster = _shape_cluster(store, actor, cluster_id, kind, "operator")
    variables = {**shape_check(cluster, kind, data), SHAPES[kind]["plan_only"]: True}
    return _start_shape(store, settings, actor, cluster, kind, f"{kind}-plan", variables)


def shape_planned(
    store: Store, actor: Actor, cluster_id: str, kind: str, job_id: str
) -> dict[str, Any]:
    """A plan: its job and what was asked, the steps once it ended or why it was refused, the
    job that ran it (and that job's status)."""
    cloud.get_cluster(store, actor, cluster_id, "read-only")
    job = store.jobs.find_one({"_id": job_id, "cluster_id": cluster_id,
                               "cluster_action": f"{kind}-plan"})  # fmt: skip
    if job is None:
        raise NotFound(f"no such {SHAPES[kind]['label'].lower()} plan on this cluster")
    variables = job["extra_vars"]
    answer: dict[str, Any] = {
        "job": job, "status": job["status"], "title": None, "steps": None, "notes": [],
        "reason": None, "run_job_id": job.get("run_job_id"), "run_status": None,
        "shard": variables.get("wap_shard_name"),
        "routers": [f"{h}:{variables.get('wap_convert_router_port')}"
                    for h in variables.get("wap_mongos_hosts") or []] if kind == "convert" else [],
    }  # fmt: skip
    if job["status"] == "successful":
        report = (records.recap(store, job_id) or {}).get("artifact_data") or {}
        plan = report.get(SHAPES[kind]["report"]) or {}
        answer.update(title=plan.get("title"), steps=plan.get("steps"),
                      notes=plan.get("notes") or [])  # fmt: skip
    elif job["status"] in jobs.FINISHED:
        answer["reason"] = takeover.failure(store, job_id)
    if answer["run_job_id"]:
        ran = store.jobs.find_one({"_id": answer["run_job_id"]}, {"status": 1}) or {}
        answer["run_status"] = ran.get("status")
    return answer


def shape_run(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, kind: str, job_id: str,
    confirm: str,
) -> dict[str, Any]:  # fmt: skip
    """Carry out a plan that was not refused (once), the cluster's name typed: the job. Its
    cluster's record changes when it ends well (webui.services.deployments)."""
    cluster = _shape_cluster(store, actor, cluster_id, kind, "operator")
    answer = shape_planned(store, actor, cluster_id, kind, job_id)
    if answer["status"] != "successful" or answer["steps"] is None:
        raise Conflict(f"this plan is {answer['status']}: only a plan that was not refused runs"
                       + (f" ({answer['reason']})" if answer["reason"] else ""))  # fmt: skip
    if answer["run_job_id"]:
        raise Conflict("this plan has run already: plan again")
    if confirm.strip() != cluster["name"]:
        raise Invalid("type the cluster's name to confirm",
                      {"confirm": [f"type {cluster['name']}"]})  # fmt: skip
    variables = {k: v for k, v in answer["job"]["extra_vars"].items()
                 if k != SHAPES[kind]["plan_only"]}  # fmt: skip
    job = _start_shape(store, settings, actor, cluster, kind, kind, variables)
    store.jobs.update_one({"_id": job_id}, {"$set": {"run_job_id": job["_id"]}})
    asked = {k: variables[k] for k in ("wap_shard_name", "wap_shard_hosts", "wap_shard_port",
                                       "wap_mongos_hosts", "wap_convert_router_port")
             if k in variables}  # fmt: skip
    audit.record(store, actor, SHAPES[kind]["audit"], cluster["name"],
                 detail={**asked, "job": job["_id"], "steps": answer["steps"]})  # fmt: skip
    return job


# Access control and TLS enabled on a running cluster WAP deployed (secure_cluster.yml): offered
# where the cluster's recorded settings say they are off, planned first (the passes read from
# what each process runs, nothing changed), run once the cluster's name is typed, and recorded in
# the cluster (its security and deploy variables) when the run ends well.
SECURE_PLAYBOOK = "secure_cluster.yml"
SECURE_PLAN_ACTION, SECURE_ACTION, SECURE_AUDIT = "secure-plan", "secure", "cluster.secure"
SECURE_OFFERS = {"auth": "Enable access control", "tls": "Enable TLS"}
# The deploy variables a replica set's or a sharded cluster's passes need (their instances and
# hosts), and the users the deploy created, which access control creates again.
SECURE_DEPLOY_VARS = {
    "replicaset": ("wap_replicaset_hosts", "mongodb_replicaset_name", "mongodb_replicaset_port",
                   "mongodb_config_instances"),
    "sharded": ("wap_sharded_hosts", "wap_mongos_hosts", "wap_mongod_instances",
                "wap_mongos_instances", "mongodb_sharding_port"),
}  # fmt: skip


def security_offers(cluster: dict[str, Any]) -> dict[str, str]:
    """What the cluster's page offers to enable (pure): access control and TLS where its
    recorded settings say they are off, on a replica set or sharded cluster WAP deployed."""
    if (cluster.get("topology") not in SECURE_DEPLOY_VARS or not cluster.get("deploy_vars")
            or cluster.get("taken_over")):  # fmt: skip
        return {}
    recorded = cluster.get("security") or {}
    return {what: label for what, label in SECURE_OFFERS.items() if not recorded.get(what)}


def secure_check(cluster: dict[str, Any], data: dict[str, Any], has_credential: bool) -> dict:
    """secure_cluster.yml's variables for what is asked (each field checked, pure)."""
    asked = data.get("what") or []
    asked = [asked] if isinstance(asked, str) else list(asked)
    offered = security_offers(cluster)
    errors: dict[str, list[str]] = {}
    wrong = [str(w) for w in asked if w not in offered]
    if not asked:
        errors["what"] = ["access control (auth), TLS (tls) or both"]
    elif wrong:
        errors["what"] = [f"{w}: not offered (already on, or not a cluster WAP deployed)"
                          for w in wrong]  # fmt: skip
    elif "auth" in asked and not has_credential:
        errors["what"] = ["access control creates the cluster's MongoDB credential as its "
                          "administrator: give the cluster one first"]  # fmt: skip
    if errors:
        raise Invalid("access control or TLS cannot be planned as asked", errors)
    deployed = cluster.get("deploy_vars") or {}
    tls = "tls" in asked or bool((cluster.get("security") or {}).get("tls"))
    return {
        **{k: deployed[k] for k in SECURE_DEPLOY_VARS[cluster["topology"]] if k in deployed},
        **({"mongodb_users_users": deployed["mongodb_users_users"]}
           if "auth" in asked and deployed.get("mongodb_users_users") else {}),
        "mongodb_security_cluster_name": deployed.get("mongodb_security_cluster_name")
        or cluster["name"],
        "mongodb_security_cluster_auth": "keyfile",
        "mongodb_security_tls": tls,
        "wap_secure_auth": "auth" in asked,
        "wap_secure_tls": "tls" in asked,
    }  # fmt: skip


def _secure_cluster(store: Store, actor: Actor, cluster_id: str, role: str) -> dict[str, Any]:
    cluster, _ = cloud.get_cluster(store, actor, cluster_id, role)
    if cluster.get("topology") not in SECURE_DEPLOY_VARS or not cluster.get("deploy_vars"):
        raise Conflict("access control and TLS are enabled this way on replica sets and sharded "
                       "clusters WAP deployed (it knows their instances)")  # fmt: skip
    return cluster


def _start_secure(store, settings, actor, cluster, variables, action) -> dict[str, Any]:
    return jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": SECURE_PLAYBOOK, "host_ids": cluster["host_ids"],
         "credential_ids": cluster.get("credential_ids") or [], "extra_vars": variables,
         "cluster_id": cluster["_id"]},
        action=action,
    )  # fmt: skip


def _has_mongodb_credential(store: Store, cluster: dict[str, Any]) -> bool:
    ids = cluster.get("credential_ids") or []
    return store.credentials.find_one({"_id": {"$in": ids}, "kind": "mongodb"}) is not None


def secure_plan(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Start the plan job (reads what every process runs, changes nothing): the job."""
    cluster = _secure_cluster(store, actor, cluster_id, "operator")
    variables = secure_check(cluster, data, _has_mongodb_credential(store, cluster))
    variables["wap_secure_plan_only"] = True
    return _start_secure(store, settings, actor, cluster, variables, SECURE_PLAN_ACTION)


def secure_planned(store: Store, actor: Actor, cluster_id: str, job_id: str) -> dict[str, Any]:
    """A plan: its job and what was asked, the passes once it ended (title, steps, each process
    as it runs now), or why it was refused; the job that ran it."""
    _secure_cluster(store, actor, cluster_id, "read-only")
    job = store.jobs.find_one({"_id": job_id, "cluster_id": cluster_id,
                               "cluster_action": SECURE_PLAN_ACTION})  # fmt: skip
    if job is None:
        raise NotFound("no such plan to enable access control or TLS on this cluster")
    variables = job["extra_vars"]
    answer: dict[str, Any] = {
        "job": job, "status": job["status"], "title": None, "steps": None, "processes": [],
        "reason": None, "run_job_id": job.get("run_job_id"),
        "what": [w for w in SECURE_OFFERS if variables.get(f"wap_secure_{w}")],
    }  # fmt: skip
    plan = _ended_plan(store, job, "wap_security_plan", answer)
    if plan:
        answer.update(title=plan.get("title"), steps=plan.get("steps"),
                      processes=plan.get("processes") or [])  # fmt: skip
    return answer


def secure_run(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, job_id: str, confirm: str
) -> dict[str, Any]:
    """Carry out a plan that was not refused and has passes (once), the cluster's name typed:
    the job. Audited as cluster.secure with what was asked and the passes."""
    cluster = _secure_cluster(store, actor, cluster_id, "operator")
    answer = secure_planned(store, actor, cluster_id, job_id)
    _check_runnable(answer, cluster, confirm, "")
    if not answer["steps"]:
        raise Conflict("this plan has nothing to do: every process runs what was asked")
    variables = {k: v for k, v in answer["job"]["extra_vars"].items()
                 if k != "wap_secure_plan_only"}  # fmt: skip
    job = _start_secure(store, settings, actor, cluster, variables, SECURE_ACTION)
    store.jobs.update_one({"_id": job_id}, {"$set": {"run_job_id": job["_id"]}})
    audit.record(
        store,
        actor,
        SECURE_AUDIT,
        cluster["name"],
        detail={"what": answer["what"], "job": job["_id"], "steps": answer["steps"]},
    )
    return job


def recorded_security(cluster: dict[str, Any], reached: dict[str, Any]) -> dict[str, Any]:
    """The cluster's fields once secure_cluster.yml reached ``reached`` (its wap_security_done:
    auth_level, tls_mode), pure: its security, and the deploy variables a later deploy, rolling
    restart or upgrade writes the files from."""
    security = dict(cluster.get("security") or {})
    deployed = dict(cluster.get("deploy_vars") or {})
    if reached.get("auth_level") == "enforced":
        security["auth"] = True
        deployed.update(mongodb_config_auth=True, mongodb_security_cluster_auth="keyfile",
                        mongodb_config_key_file=deployments.KEY_FILE)  # fmt: skip
    if reached.get("tls_mode") == "requireTLS":
        security["tls"] = True
        deployed.update(mongodb_config_tls_mode="requireTLS", mongodb_security_tls=True,
                        mongodb_replicaset_tls=True, mongodb_users_tls=True)  # fmt: skip
        if cluster.get("topology") == "sharded":
            deployed["mongodb_sharding_tls"] = True
    return {"security": security, "deploy_vars": deployed}


def security_job_finished(store: Store, job: dict[str, Any]) -> None:
    """After a job ends: a run of secure_cluster.yml that ended well is recorded in its cluster."""
    if job.get("cluster_action") != SECURE_ACTION or job.get("status") != "successful":
        return
    cluster = store.clusters.find_one({"_id": job.get("cluster_id")})
    report = (records.recap(store, job["_id"]) or {}).get("artifact_data") or {}
    reached = report.get("wap_security_done")
    if cluster is None or not isinstance(reached, dict):
        return
    store.clusters.update_one(
        {"_id": cluster["_id"]}, {"$set": recorded_security(cluster, reached)}
    )
