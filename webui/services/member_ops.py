"""Operations on one member of a cluster's replica set, from the console and the API: start,
stop, restart, step down, freeze; add, remove, or change a member's priority, votes or hidden.

Each is planned first: `plan` starts member_operation.yml with `wap_member_plan_only` (the
playbook reads the live set, reports the steps in order with `set_stats`, and stops; a refusal,
such as a stop that would leave the set without a majority, fails the job with the reason).
`planned` reads that back for the page that shows it; `run` starts the same playbook for real,
with the same variables, once the operator confirms (and only after a plan that was not refused).
Both are jobs on the cluster's hosts, under the cluster's lock, with its MongoDB credential.
"""

from __future__ import annotations

import re
from typing import Any

from webui.config import Settings
from webui.jobs import store as records
from webui.services import audit, cloud, jobs, takeover
from webui.services.audit import Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store

PLAYBOOK = "member_operation.yml"
PLAN_ACTION, RUN_ACTION = "member-plan", "member"
OPERATIONS = {
    "restart": "Restart", "stop": "Stop", "start": "Start", "step_down": "Step down",
    "freeze": "Freeze (no election for a while)", "change": "Change priority, votes, hidden",
    "add": "Add a member", "remove": "Remove from the set (its mongod keeps running)",
}  # fmt: skip
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
        errors["priority"] = ["a change needs priority, votes or hidden"]
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
