"""Jobs: a playbook from the playbooks dir, an inventory of project hosts, credentials, variables.

Creating a job stores it as `queued` and enqueues `webui.jobs.tasks.run_job(job_id)` on RQ with an
explicit timeout and failure TTL; the worker takes the cluster lock (see webui.jobs.locks).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue

from webui.config import Settings
from webui.jobs import store as records
from webui.jobs import timeline as timelines
from webui.services import audit, endpoints, inputs, projects, variables
from webui.services.audit import Actor
from webui.services.errors import Conflict, Forbidden, Invalid, NotFound
from webui.store import Store, now

STATUSES = ("queued", "running", "successful", "failed", "canceled", "lost")
FINISHED = ("successful", "failed", "canceled", "lost")
PLAYBOOK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.ya?ml$")
CLUSTER_GROUP = "mongodb"  # the group a cluster's hosts form (the deploy playbooks' default)
EVENT_PAGE = 1000
FOLLOW_PAGE = 5000  # events per answer to a page catching up (a reload mid-job: fewer round trips)
RQ_FAILURE_TTL = 7 * 24 * 3600
RQ_RESULT_TTL = 24 * 3600


def job_room(job_id: str) -> str:
    return f"job:{job_id}"


def list_playbooks(settings: Settings) -> list[str]:
    if not settings.playbooks_dir.is_dir():
        return []
    return sorted(p.name for p in settings.playbooks_dir.iterdir() if PLAYBOOK_RE.match(p.name))


def choices(
    settings: Settings, actor: Actor, hosts: list[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The playbooks and hosts the actor may start a job with (the console offers only those):
    the cloud playbooks run from a cluster's page, and the platform machine is an admin's."""
    if actor.is_admin:
        return list_playbooks(settings), hosts
    platform = _platform_playbooks()
    return (
        [p for p in list_playbooks(settings) if p not in platform],
        [h for h in hosts if h.get("connection") != "local"],
    )


def queue(settings: Settings, connection: Redis | None = None) -> Queue:
    if connection is None:
        connection = Redis.from_url(settings.redis_url or "")
    return Queue(settings.queue_name, connection=connection)


def parse_extra_vars(text: str, field: str = "extra_vars") -> dict[str, Any]:
    """Variables typed in a form, as YAML (JSON is YAML too), without anchors or aliases and
    nested at most a few levels (webui.services.inputs)."""
    value = inputs.load_yaml(text, field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("the variables must be a mapping", {field: ["name: value lines"]})
    return value


def check_variables(
    settings: Settings,
    actor: Actor,
    playbook: str,
    values: Any,
    host_names: set[str],
    field: str = "extra_vars",
) -> tuple[dict[str, list[str]], list[str]]:
    """Errors in variables given for a playbook, and the free-form names among them (an admin's,
    outside what the playbook documents). See webui.services.variables for the rules."""
    if not isinstance(values, dict):
        return {field: ["an object of variable names and values"]}, []
    path = playbook_path(settings, playbook)
    if not path.is_file():
        return {field: [f"{playbook} is not among the playbooks ({settings.playbooks_dir})"]}, []
    documented = variables.playbook_variables(path)
    problems, free_form = [], []
    for name, value in values.items():
        name = str(name)
        why = variables.forbidden_name(name)
        if why:
            problems.append(f"{name}: {why}")
            continue
        templates = variables.template_paths(value, name)
        if templates:
            problems.append(
                f"{templates[0]}: values are data, not templates: no '{{{{', '{{%' or '{{#'"
            )
            continue
        if name in documented.host_patterns:
            why = variables.host_pattern_error(value, host_names)
            if why:
                problems.append(f"{name}: {why}")
                continue
        elif name not in documented.documented:
            if not actor.is_admin:
                problems.append(
                    f"{name}: not a variable {playbook} documents (only admins may set others)"
                )
                continue
            free_form.append(name)
        if endpoints.is_endpoint_variable(name):
            why = endpoints.endpoint_error(settings, str(value))
            if why:
                problems.append(f"{name}: {why}")
    return ({field: problems} if problems else {}), free_form


def _platform_playbooks() -> set[str]:
    from webui.services import cloud  # cloud starts jobs: imported here, not at the top

    return {
        p
        for provider in cloud.PROVIDERS.values()
        for p in (provider["provision"], provider["teardown"])
    }


def validate_request(
    store: Store,
    settings: Settings,
    actor: Actor,
    project_id: str,
    data: dict[str, Any],
    *,
    platform: bool = False,
) -> dict[str, Any]:
    """The job as it will be stored, or Invalid naming each refused field. `platform`: the
    platform itself starts the job (a cloud cluster's provision or teardown)."""
    errors: dict[str, list[str]] = {}
    playbook = data.get("playbook")
    if not isinstance(playbook, str) or playbook not in list_playbooks(settings):
        errors["playbook"] = [
            f"one of: {', '.join(list_playbooks(settings)) or '(no playbooks found)'}"
        ]
    elif playbook in _platform_playbooks() and not platform and not actor.is_admin:
        raise Forbidden(
            f"{playbook} runs on the platform itself: start it from the cluster's page"
            " (provision or delete)"
        )
    host_ids = data.get("host_ids") or []
    cluster_id = data.get("cluster_id") or None
    cluster = None
    planned = False  # a cloud cluster's jobs start on the platform (localhost) with its plan
    if cluster_id:
        cluster = store.clusters.find_one({"_id": cluster_id, "project_id": project_id})
        if not cluster:
            errors["cluster_id"] = ["no such cluster in this project"]
        else:
            host_ids = host_ids or cluster["host_ids"]
            planned = bool(cluster.get("plan"))
    hosts: list[dict[str, Any]] = []
    if (
        not isinstance(host_ids, list)
        or (not host_ids and not planned and not platform)  # a platform job may run on it only
        or not all(isinstance(h, str) for h in host_ids)
    ):
        errors.setdefault("host_ids", ["pick at least one host"])
    else:
        hosts = list(store.hosts.find({"project_id": project_id, "_id": {"$in": host_ids}}))
        if len(hosts) != len(set(host_ids)):
            errors["host_ids"] = ["unknown host for this project"]
    local = sorted(h["name"] for h in hosts if h.get("connection") == "local")
    if local and not actor.is_admin:
        raise Forbidden(
            f"{', '.join(local)} {'is' if len(local) == 1 else 'are'} the platform machine itself"
            " (connection local): only an admin may run jobs there"
        )
    credential_ids = data.get("credential_ids") or []
    if not isinstance(credential_ids, list) or not all(isinstance(c, str) for c in credential_ids):
        errors["credential_ids"] = ["a list of credential ids"]
    else:
        found = list(
            store.credentials.find({"project_id": project_id, "_id": {"$in": credential_ids}})
        )
        kinds = [c["kind"] for c in found]
        if len(found) != len(set(credential_ids)):
            errors["credential_ids"] = ["unknown credential for this project"]
        elif any(kinds.count(k) > 1 for k in kinds):
            errors["credential_ids"] = ["at most one credential of each kind"]
    extra_vars = data.get("extra_vars") or {}
    free_form: list[str] = []
    if "playbook" not in errors:
        names = {"all", "ungrouped", *(h["name"] for h in hosts)}
        if cluster is not None:
            names.add(CLUSTER_GROUP)
        problems, free_form = check_variables(settings, actor, playbook, extra_vars, names)
        errors.update(problems)
    if errors:
        raise Invalid("the job cannot be started as given", errors)
    return {
        "playbook": playbook,
        "host_ids": list(dict.fromkeys(host_ids)),
        "credential_ids": list(dict.fromkeys(credential_ids)),
        "extra_vars": extra_vars,
        "cluster_id": cluster_id,
        "free_form_vars": sorted(free_form),
        "local_hosts": local,
    }


def create_job(
    store: Store,
    settings: Settings,
    actor: Actor,
    project_id: str,
    data: dict[str, Any],
    *,
    rq: Queue | None = None,
    action: str | None = None,
    platform_vars: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store the job `queued` and enqueue it. `action` (provision, teardown) marks the jobs that
    make or unmake a cloud cluster: its state is read from them (webui.services.cloud), and with
    it come `platform_vars`, the variables the platform sets from what it stores (the plan, a
    credential's public key and endpoint), which no request may set."""
    project = projects.require(store, actor, project_id, "operator")
    request = validate_request(store, settings, actor, project_id, data, platform=bool(action))
    free_form, local = request.pop("free_form_vars"), request.pop("local_hosts")
    if platform_vars:
        request["extra_vars"] = {**request["extra_vars"], **platform_vars}
    job = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        **request,
        "cluster_action": action,
        "status": "queued",
        "reason": "",
        "created_by": actor.username,
        "created_at": now(),
        "started_at": None,
        "finished_at": None,
        "heartbeat_at": None,
        "worker": None,
        "cancel_requested": False,
        "last_counter": 0,
        "stats": None,
        "rc": None,
    }
    store.jobs.insert_one(job)
    rq = rq or queue(settings)
    rq.enqueue(
        "webui.jobs.tasks.run_job",
        job["_id"],
        job_id=job["_id"],
        job_timeout=settings.job_timeout + 60,
        failure_ttl=RQ_FAILURE_TTL,
        result_ttl=RQ_RESULT_TTL,
        description=f"{project['name']}: {request['playbook']}",
    )
    detail: dict[str, Any] = {"job_id": job["_id"]}
    if free_form:
        detail["free_form_vars"] = free_form  # an admin's decision, on the record
    if local:
        detail["local_hosts"] = local
    audit.record(
        store, actor, "job.start", f"{project['name']}/{request['playbook']}", detail=detail
    )
    return job


def get_job(store: Store, actor: Actor, job_id: str) -> dict[str, Any]:
    job = store.jobs.find_one({"_id": job_id})
    if not job:
        raise NotFound("no such job")
    projects.require(store, actor, job["project_id"], "read-only")
    return job


def cluster_of(store: Store, job: dict[str, Any]) -> dict[str, Any] | None:
    """The cluster the job changes, while it exists (its id and name)."""
    if not job.get("cluster_id"):
        return None
    return store.clusters.find_one({"_id": job["cluster_id"]}, {"name": 1})


def current(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """The job as it is now (its status may have moved since ``job`` was read)."""
    return store.jobs.find_one({"_id": job["_id"]}) or job


def list_jobs(
    store: Store, actor: Actor, project_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    if project_id:
        projects.require(store, actor, project_id, "read-only")
        ids = [project_id]
    else:
        ids = [p["_id"] for p in projects.list_projects(store, actor)]
    return list(store.jobs.find({"project_id": {"$in": ids}}).sort("created_at", -1).limit(limit))


def events_after(
    store: Store, job_id: str, after: int, limit: int = EVENT_PAGE
) -> list[dict[str, Any]]:
    """The job's events after counter `after`, each with its job's id (as the API gives them)."""
    return [{"job_id": job_id, **e} for e in records.events_after(store, job_id, after, limit)]


def timeline(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """The job's plays and tasks per host with times, durations and outcomes, laid out as bars
    (webui.jobs.timeline); the job must have been read through get_job (access checked)."""
    events = [
        e
        for page in records.all_events(store, job["_id"])
        for e in page
        if e.get("event") in timelines.KINDS
    ]
    until = job.get("finished_at") or (time.time() if job.get("status") == "running" else None)
    folded = timelines.fold(events)
    return timelines.laid_out(folded, until or folded["end"] or time.time())


ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log_text(store: Store, job: dict[str, Any]) -> Iterator[str]:
    """The job's whole log as plain text, page by page (a download: no line limit, no colours);
    the job must have been read through get_job (access checked)."""
    for page in records.all_events(store, job["_id"]):
        yield "".join(ANSI_RE.sub("", e["stdout"]) + "\n" for e in page if e.get("stdout"))


def request_cancel(store: Store, settings: Settings, actor: Actor, job_id: str) -> dict[str, Any]:
    job = get_job(store, actor, job_id)
    project = projects.require(store, actor, job["project_id"], "operator")
    if job["status"] in FINISHED:
        raise Conflict(f"the job has already ended ({job['status']})")
    reason = f"canceled by {actor.username}"
    dequeued = store.jobs.find_one_and_update(
        {"_id": job_id, "status": "queued"},
        {
            "$set": {
                "status": "canceled",
                "reason": reason,
                "finished_at": now(),
                "cancel_requested": True,
            }
        },
        return_document=True,
    )
    if dequeued is None:
        store.jobs.update_one(
            {"_id": job_id}, {"$set": {"cancel_requested": True, "cancel_by": actor.username}}
        )
    audit.record(
        store,
        actor,
        "job.cancel",
        f"{project['name']}/{job['playbook']}",
        detail={"job_id": job_id},
    )
    return store.jobs.find_one({"_id": job_id}) or job


def running_workers(store: Store) -> dict[str, str]:
    """The running jobs, each with the process that runs it (`host:pid` of RQ's work horse)."""
    running = store.jobs.find({"status": "running"}, {"worker": 1})
    return {job["_id"]: str(job.get("worker") or "") for job in running}


def cancel_running(store: Store, job_ids: list[str], by: str) -> None:
    """Ask these jobs to stop, as a user's cancel does (each one's heartbeat reads the flag and
    stops ansible-playbook); `by` says who asked."""
    store.jobs.update_many(
        {"_id": {"$in": job_ids}}, {"$set": {"cancel_requested": True, "cancel_by": by}}
    )


def count_running(store: Store, job_ids: list[str]) -> int:
    return store.jobs.count_documents({"_id": {"$in": job_ids}, "status": "running"})


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "_id", "project_id", "playbook", "host_ids", "credential_ids", "extra_vars", "cluster_id",
        "cluster_action", "status", "reason", "created_by", "created_at", "started_at",
        "finished_at", "last_counter", "stats", "rc", "cancel_requested",
    )  # fmt: skip
    return {k: job.get(k) for k in keys}


def playbook_path(settings: Settings, name: str) -> Path:
    if not PLAYBOOK_RE.match(name):
        raise Invalid("not a playbook name", {"playbook": ["a file name in the playbooks dir"]})
    return settings.playbooks_dir / name
