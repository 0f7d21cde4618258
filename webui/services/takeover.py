"""Taking over a deployment WAP did not create: discover it from one address, show what was found,
then (once confirmed) register its hosts and the cluster in a project.

The discovery is a job: takeover_cluster.yml (whaleal.wap.mongodb_deployment_info) runs on the
platform's worker with the project's MongoDB credential and reports the deployment with
`set_stats` (`wap_takeover`). Nothing is registered then: `found` reads the report back for the
preview (the console's page, `GET /api/v1/projects/{id}/takeover/{job}`), and `register` stores
hosts and cluster from that report, once per discovery. A credential without clusterMonitor fails
the job with the roles it lacks, which `found` gives as the reason.

Registered with the discovery's SSH credential, the cluster's hosts get agents at once: a job
running deploy_agent.yml on them (the agent role finds each host's mongod and mongos from their
configuration files), as a deploy job ends, when the platform serves agents (WAP_PUBLIC_URL and
a wheelhouse). Without either, the answer says why no agent was deployed.

The console's form and `POST /api/v1/projects/{id}/takeover` both call `discover` and `register`.
"""

from __future__ import annotations

import re
import textwrap
import uuid
from typing import Any

import yaml
from pymongo.errors import DuplicateKeyError

from webui.config import Settings
from webui.jobs import store as records
from webui.services import audit, deployments, jobs, projects
from webui.services.audit import Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store, now

PLAYBOOK = "takeover_cluster.yml"
ACTION = "takeover"
AGENTS_PLAYBOOK = "deploy_agent.yml"
AGENTS_ACTION = "agents"
ADDRESS_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):([0-9]{1,5})$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")  # the colours of the log's lines
ROLES = {"replica set": "member", "config servers": "config server", "shard": "shard member"}


def check(store: Store, project_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The discovery request, each field checked; Invalid names each wrong one."""
    errors: dict[str, list[str]] = {}
    address = str(data.get("address") or "").strip()
    match = ADDRESS_RE.match(address)
    if not match or not 0 < int(match.group(3)) < 65536:
        errors["address"] = ["host:port of a replica set member or a mongos, e.g. db1:27017"]
    credential_ids = []
    for field, kind in (("mongodb_credential_id", "mongodb"), ("ssh_credential_id", "ssh_key")):
        wanted = data.get(field)
        if not wanted:
            continue
        if not store.credentials.find_one({"_id": str(wanted), "project_id": project_id,
                                           "kind": kind}):  # fmt: skip
            errors[field] = [f"a {kind} credential of this project"]
        credential_ids.append(str(wanted))
    if errors:
        raise Invalid("the deployment cannot be discovered as given", errors)
    return {"address": address, "tls": bool(data.get("tls")), "credential_ids": credential_ids}


def discover(
    store: Store, settings: Settings, actor: Actor, project_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Start the discovery job (registers nothing): the job."""
    project = projects.require(store, actor, project_id, "operator")
    request = check(store, project_id, data)
    job = jobs.create_job(
        store, settings, actor, project_id,
        {"playbook": PLAYBOOK, "host_ids": [], "credential_ids": request["credential_ids"],
         "extra_vars": {"wap_takeover_address": request["address"],
                        "wap_takeover_tls": request["tls"]}},
        action=ACTION,
    )  # fmt: skip
    audit.record(store, actor, "cluster.takeover.discover", f"{project['name']}/{job['_id']}",
                 detail={"address": request["address"]})  # fmt: skip
    return job


def _job(store: Store, actor: Actor, project_id: str, job_id: str) -> dict[str, Any]:
    projects.require(store, actor, project_id, "read-only")
    job = store.jobs.find_one({"_id": job_id, "project_id": project_id, "cluster_action": ACTION})
    if job is None:
        raise NotFound("no such discovery in this project")
    return job


def failure(store: Store, job_id: str) -> str:
    """Why a discovery failed: the failed task's message, as the job's log shows it."""
    message = ""
    for batch in records.all_events(store, job_id):
        for event in batch:
            if event.get("event") in ("runner_on_failed", "runner_on_unreachable"):
                message = event.get("stdout") or ""
    message = ANSI_RE.sub("", message).replace("\r", "")
    text = textwrap.dedent(message.partition("=>")[2].strip(" ").removeprefix("\n")).strip()
    try:
        parsed = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("msg"):
        return str(parsed["msg"])
    return text or message.strip() or "the discovery job failed: see its log"


def found(store: Store, actor: Actor, project_id: str, job_id: str) -> dict[str, Any]:
    """The discovery's state: its job, the deployment once found (with which of its hosts the
    project already has), why it failed, and the cluster registered from it, if any."""
    job = _job(store, actor, project_id, job_id)
    answer: dict[str, Any] = {"job": job, "status": job["status"], "deployment": None,
                              "reason": None, "cluster_id": None, "known_hosts": []}  # fmt: skip
    if job["status"] == "successful":
        report = (records.recap(store, job_id) or {}).get("artifact_data") or {}
        answer["deployment"] = report.get("wap_takeover")
        if answer["deployment"]:
            addresses = set(answer["deployment"].get("hosts") or [])
            answer["known_hosts"] = sorted(
                h["address"] for h in projects.list_hosts(store, project_id)
                if h["address"] in addresses
            )  # fmt: skip
        else:
            answer["reason"] = "the discovery job ended without reporting a deployment"
    elif job["status"] in jobs.FINISHED:
        answer["reason"] = failure(store, job_id)
    registered = store.clusters.find_one({"taken_over.job_id": job_id}, {"_id": 1})
    answer["cluster_id"] = registered["_id"] if registered else None
    return answer


def _host_name(store: Store, project_id: str, address: str) -> str:
    """A free host name for an address (the address itself when it is a valid name)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", address).strip("-._")[:56] or "host"
    name, n = base, 1
    while store.hosts.find_one({"project_id": project_id, "name": name}):
        n += 1
        name = f"{base}-{n}"
    return name


def members_and_routers(deployment: dict[str, Any], names: dict[str, str]) -> tuple[list, list]:
    """The cluster page's member rows and routers from a discovered deployment."""
    rows = []
    for each in deployment["sets"]:
        for m in each["members"]:
            address, _, port = m["host"].rpartition(":")
            address = address.strip("[]")
            role = "arbiter" if m.get("arbiter") else ROLES.get(each["role"], "member")
            rows.append({"host": names.get(address, address), "address": address,
                         "port": int(port), "replica_set": each["name"], "role": role,
                         "state": m.get("state") or "UNKNOWN",
                         "health": m.get("health")})  # fmt: skip
    routers = []
    for r in deployment.get("routers") or []:
        address, _, port = r["host"].rpartition(":")
        address = address.strip("[]")
        routers.append({"host": names.get(address, address), "address": address,
                        "port": int(port)})  # fmt: skip
    return rows, routers


def layout_vars(deployment: dict[str, Any], members: list[dict[str, Any]]) -> dict[str, Any]:
    """For a replica set whose members share one port: the variables a replica set WAP deployed
    keeps (its hosts, name, port, TLS), under which its day-two jobs (rolling restart, upgrade,
    member operations, backups by job) address it as WAP's roles lay a set out (unit
    mongod@<set name>); the upgrade checks each host has that unit before anything moves, so a
    set laid out otherwise is refused, nothing changed. None for a sharded cluster: its
    instances are not known from MongoDB alone (pure)."""
    ports = {m["port"] for m in members}
    if deployment["topology"] != "replicaset" or len(ports) != 1:
        return {}
    return {
        "wap_replicaset_hosts": list(dict.fromkeys(m["host"] for m in members)),
        "mongodb_replicaset_name": deployment["name"],
        "mongodb_replicaset_port": ports.pop(),
        "mongodb_replicaset_tls": deployment["security"]["tls"] != "disabled",
    }


def register(
    store: Store, settings: Settings, actor: Actor, project_id: str, job_id: str, name: str
) -> dict[str, Any]:
    """Register the discovered deployment's hosts (those the project lacks) and the cluster, then
    start its agents' job where it can (`agents`: that job, or why there is none)."""
    project = projects.require(store, actor, project_id, "operator")
    answer = found(store, actor, project_id, job_id)
    deployment = answer["deployment"]
    if answer["cluster_id"]:
        raise Conflict("this discovery was registered already: see its cluster")
    if deployment is None:
        raise Conflict(
            f"nothing to register: the discovery is {answer['status']}"
            + (f" ({answer['reason']})" if answer["reason"] else "")
        )
    if deployment["topology"] not in ("replicaset", "sharded"):
        raise Conflict(
            "a standalone mongod cannot be taken over: WAP manages replica sets and sharded"
            " clusters; convert it to a one-member replica set, then discover it again"
        )
    name = str(name or "").strip()
    if not projects.NAME_RE.match(name):
        raise Invalid("the cluster needs a name", {"name": ["1 to 63 letters, digits, '.', '-' "
                                                            "or '_'"]})  # fmt: skip
    if store.clusters.find_one({"project_id": project_id, "name": name}):
        raise Conflict(f"a cluster named {name!r} exists", {"name": ["already taken"]})
    job = answer["job"]
    hosts = {h["address"]: h for h in projects.list_hosts(store, project_id)}
    for address in deployment["hosts"]:
        if address not in hosts:
            hosts[address] = projects.add_host(store, actor, project_id, {
                "name": _host_name(store, project_id, address), "address": address,
                "port": 22, "user": "root", "connection": "ssh"})  # fmt: skip
    names = {a: h["name"] for a, h in hosts.items()}
    members, routers = members_and_routers(deployment, names)
    versions = sorted({m.get("version") for s in deployment["sets"] for m in s["members"]} - {""})
    first = members[0]
    sharded = deployment["topology"] == "sharded"
    security = deployment["security"]
    taken_over = {"at": now(), "by": actor.username, "job_id": job_id,
                  "address": job["extra_vars"]["wap_takeover_address"],
                  "fcv": deployment.get("fcv") or "", "versions": versions, "security": security,
                  "members": members, "routers": routers}  # fmt: skip
    cluster = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        "name": name,
        "host_ids": [hosts[a]["_id"] for a in deployment["hosts"]],
        "playbook": PLAYBOOK,
        "topology": deployment["topology"],
        "mongodb_version": versions[-1] if versions else "",
        "replica_set": None if sharded else deployment["name"],
        "port": routers[0]["port"] if sharded and routers else first["port"],
        "shards": sum(s["role"] == "shard" for s in deployment["sets"]) if sharded else None,
        "routers": len(routers) if sharded else None,
        "security": {"auth": bool(security["auth"]), "tls": security["tls"] != "disabled"},
        "credential_ids": job.get("credential_ids") or [],
        "deploy_vars": layout_vars(deployment, members),
        "taken_over": taken_over,
        "created_at": now(),
        "created_by": actor.username,
    }
    try:
        store.clusters.insert_one(cluster)
    except DuplicateKeyError:
        raise Conflict(f"a cluster named {name!r} exists", {"name": ["already taken"]}) from None
    agents_job, why_not = deploy_agents(store, settings, actor, cluster)
    audit.record(
        store, actor, "cluster.takeover", f"{project['name']}/{name}",
        detail={"address": cluster["taken_over"]["address"], "topology": cluster["topology"],
                "members": [f"{m['address']}:{m['port']}" for m in members],
                "hosts": [names[a] for a in deployment["hosts"]], "discovery": job_id,
                "agents_job": agents_job["_id"] if agents_job else None},
    )  # fmt: skip
    return {**cluster, "agents": {"job": agents_job, "reason": why_not}}


def deploy_agents(
    store: Store, settings: Settings, actor: Actor, cluster: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """A job putting the agents on a taken-over cluster's hosts (deploy_agent.yml with a token per
    host, as a deploy job's end), or None and why not."""
    platform_vars = deployments.agent_vars(settings)
    if not platform_vars:
        return None, (
            "the platform serves no agents: set WAP_PUBLIC_URL (the address the hosts reach it"
            " at) and WAP_AGENT_WHEELHOUSE (agent/build-wheelhouse), then redeploy the agents"
            " with deploy_agent.yml"
        )
    ssh = [
        c
        for c in cluster["credential_ids"]
        if (store.credentials.find_one({"_id": c}, {"kind": 1}) or {}).get("kind") == "ssh_key"
    ]
    if not ssh:
        return None, (
            "no SSH credential was given with the discovery: discover the deployment again with"
            " the hosts' SSH key to have agents deployed, or run deploy_agent.yml on its hosts"
        )  # fmt: skip
    job = jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": AGENTS_PLAYBOOK, "host_ids": cluster["host_ids"],
         "credential_ids": cluster["credential_ids"], "extra_vars": {},
         "cluster_id": cluster["_id"]},
        action=AGENTS_ACTION, platform_vars=platform_vars,
    )  # fmt: skip
    return job, ""
