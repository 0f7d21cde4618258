"""Clusters on a cloud: a spec becomes a plan (`wap.plan`, shown before anything exists), the plan
is provisioned and deployed by one job (playbooks/provision_cluster.yml), and deleting the cluster
is a job too (playbooks/teardown_cluster.yml).

The plan is stored with the cluster: it is what the console shows and what both jobs run. A
cluster's state is read from its last provision or teardown job, so a job that ends in any way
(even lost, marked by the reaper) leaves the state right without a hook; only a successful
teardown removes the cluster (`job_finished`).

The provider seam: PROVIDERS maps a provider to its playbooks and the credential kind it needs;
another cloud is another entry and its own roles, with the same plan vocabulary.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from pymongo.errors import DuplicateKeyError

from wap.plan import SpecError, plan_from_dict
from webui.config import Settings
from webui.services import audit, endpoints, jobs, projects
from webui.services.audit import SYSTEM, Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store, now

PROVIDERS: dict[str, dict[str, str]] = {
    "aws": {
        "provision": "provision_cluster.yml",
        "teardown": "teardown_cluster.yml",
        "credential": "aws",
    },
}
ACTIONS = ("provision", "teardown")
SLUG_RE = re.compile(r"[^a-z0-9-]+")
SPEC_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# What the console shows for (action, job status) of a cluster's last provision/teardown job.
STATES = {
    ("provision", "queued"): "provisioning",
    ("provision", "running"): "provisioning",
    ("provision", "successful"): "running",
    ("teardown", "queued"): "deleting",
    ("teardown", "running"): "deleting",
    ("teardown", "successful"): "deleted",
}


def project_slug(name: str) -> str:
    """The project's name as the plan names cloud resources: lower case, letters, digits, '-'."""
    slug = SLUG_RE.sub("-", name.lower()).strip("-")[:20].rstrip("-")
    if not slug or not slug[0].isalpha():
        slug = ("p-" + slug)[:20].rstrip("-")
    return slug


def _credential(
    store: Store, project_id: str, credential_id: Any, kind: str, field: str, required: bool
) -> dict[str, Any] | None:
    if not credential_id:
        if required:
            raise Invalid(f"pick the {kind} credential", {field: [f"a {kind} credential"]})
        return None
    found = store.credentials.find_one(
        {"_id": str(credential_id), "project_id": project_id, "kind": kind}
    )
    if not found:
        raise Invalid(
            f"no {kind} credential with that id in this project",
            {field: [f"a {kind} credential of this project"]},
        )
    return found


def plan_cluster(
    store: Store, settings: Settings, actor: Actor, project_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Validate a cluster request, plan it and store the cluster as `planned` (nothing is created
    in the cloud). `data`: name, spec (wap.plan fields but project and cluster), the ids of the
    cloud, SSH and (optional) MongoDB credentials, deploy_vars for the deployment roles."""
    project = projects.require(store, actor, project_id, "operator")
    name = str(data.get("name") or "")
    if not SPEC_NAME_RE.match(name):
        raise Invalid(
            f"cluster name {name!r} cannot name cloud resources",
            {"name": ["1 to 20 lower-case letters, digits or '-', starting with a letter"]},
        )
    spec = dict(data.get("spec") or {})
    for own in ("project", "cluster"):
        if own in spec:
            raise Invalid(
                f"spec.{own} comes from the platform",
                {f"spec.{own}": ["leave it out: the project and the cluster name are used"]},
            )
    spec.update(project=project_slug(project["name"]), cluster=name)
    provider = str(spec.get("provider") or "aws")
    if provider not in PROVIDERS:
        raise Invalid(
            f"provider {provider!r} is not supported",
            {"spec.provider": [f"one of: {', '.join(PROVIDERS)}"]},
        )
    try:
        plan = plan_from_dict(spec).to_dict()
    except SpecError as exc:
        raise Invalid(
            f"the spec cannot be planned: {exc}", {f"spec.{exc.field}": [exc.message]}
        ) from None
    cloud = _credential(
        store, project_id, data.get("cloud_credential_id"), PROVIDERS[provider]["credential"],
        "cloud_credential_id", True,
    )  # fmt: skip
    ssh = _credential(store, project_id, data.get("ssh_credential_id"), "ssh_key",
                      "ssh_credential_id", True)  # fmt: skip
    mongodb = _credential(store, project_id, data.get("mongodb_credential_id"), "mongodb",
                          "mongodb_credential_id", False)  # fmt: skip
    deploy_vars = data.get("deploy_vars") or {}
    errors, free_form = jobs.check_variables(
        settings, actor, PROVIDERS[provider]["provision"], deploy_vars, set(), "deploy_vars"
    )
    if errors:
        raise Invalid("the deployment variables cannot be used as given", errors)
    _allowed_endpoint(settings, cloud)
    cluster = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        "name": name,
        "provider": provider,
        "spec": spec,
        "plan": plan,
        "host_ids": [],
        "playbook": PROVIDERS[provider]["provision"],
        "credential_ids": [c["_id"] for c in (cloud, ssh, mongodb) if c],
        "deploy_vars": deploy_vars,
        "created_at": now(),
        "created_by": actor.username,
    }
    try:
        store.clusters.insert_one(cluster)
    except DuplicateKeyError:
        raise Conflict(f"a cluster named {name!r} exists", {"name": ["already taken"]}) from None
    audit.record(
        store, actor, "cluster.plan", f"{project['name']}/{name}",
        detail={"provider": provider, "resources": _counts(plan),
                **({"free_form_vars": sorted(free_form)} if free_form else {})},
    )  # fmt: skip
    return cluster


def _counts(plan: dict[str, Any]) -> dict[str, int]:
    return {
        "subnets": len(plan["subnets"]),
        "firewalls": len(plan["firewalls"]),
        "instances": len(plan["instances"]),
        "volumes": len(plan["volumes"]),
    }


def get_cluster(
    store: Store, actor: Actor, cluster_id: str, needed: str = "read-only"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and its project, when the actor holds `needed` in the project."""
    cluster = store.clusters.find_one({"_id": cluster_id})
    if not cluster:
        raise NotFound("no such cluster")
    project = projects.require(store, actor, cluster["project_id"], needed)
    return cluster, project


def last_action(store: Store, cluster_id: str) -> dict[str, Any] | None:
    found = list(
        store.jobs.find({"cluster_id": cluster_id, "cluster_action": {"$in": list(ACTIONS)}})
        .sort("created_at", -1)
        .limit(1)
    )
    return found[0] if found else None


def state(store: Store, cluster: dict[str, Any]) -> str:
    """planned, provisioning, running, deleting, or what went wrong (`provision failed`...)."""
    if not cluster.get("plan"):
        return "deployed on registered hosts"
    job = last_action(store, cluster["_id"])
    return "planned" if job is None else _state_after(job)


def _state_after(job: dict[str, Any]) -> str:
    """A cloud cluster's state once this provision or teardown job is its last."""
    action, status = job["cluster_action"], job["status"]
    return STATES.get((action, status), f"{action} {status}")


def instances(store: Store, cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The instances the last successful provision job reported (name, role, replica set, zone,
    addresses, instance id, port), for the cluster's page."""
    found = list(
        store.jobs.find(
            {"cluster_id": cluster["_id"], "cluster_action": "provision", "status": "successful"}
        )
        .sort("created_at", -1)
        .limit(1)
    )
    if not found:
        return []
    stats = store.job_events.find_one({"job_id": found[0]["_id"], "event": "playbook_on_stats"})
    reported = ((stats or {}).get("artifact_data") or {}).get("wap_instances")
    return [i for i in reported if isinstance(i, dict)] if isinstance(reported, list) else []


def connection_string(plan: dict[str, Any], hosts: list[dict[str, Any]]) -> str:
    """How an application inside the VPC connects: the routers of a sharded cluster, or the
    members of the replica set with its name (add credentials and TLS options)."""
    if plan.get("topology") == "sharded":
        routers = [f"{h['private_ip']}:{h['port']}" for h in hosts if h.get("role") == "mongos"]
        return f"mongodb://{','.join(routers)}/" if routers else ""
    members = [f"{h['private_ip']}:{h['port']}" for h in hosts if h.get("role") == "mongod"]
    sets = {h.get("replica_set") for h in hosts if h.get("role") == "mongod"}
    if not members or len(sets) != 1:
        return ""
    return f"mongodb://{','.join(members)}/?replicaSet={sets.pop()}"


def _allowed_endpoint(settings: Settings, credential: dict[str, Any]) -> str | None:
    """The credential's endpoint URL, when the policy (still) allows it; Invalid otherwise."""
    url = (credential.get("public") or {}).get("endpoint_url")
    why = endpoints.endpoint_error(settings, url) if url else None
    if why:
        raise Invalid(
            f"the endpoint of credential {credential['name']!r} is not allowed: {why}",
            {"cloud_credential_id": [why]},
        )
    return url


def _job_credentials(
    store: Store,
    settings: Settings,
    cluster: dict[str, Any],
    kinds: set[str],
    optional: tuple[str, ...] = (),
) -> tuple[list[str], dict[str, Any]]:
    """The ids of the cluster's credentials of these kinds (and of the optional ones it has), and
    the variables the playbooks need besides them: the plan, the SSH key's public half (the
    private key goes to ssh-agent), the cloud endpoint when the credential names one and the
    endpoint policy (webui.services.endpoints) still allows it."""
    found = list(
        store.credentials.find(
            {"_id": {"$in": cluster["credential_ids"]}, "project_id": cluster["project_id"]}
        )
    )
    missing = kinds - {c["kind"] for c in found}
    if missing:
        raise Conflict(
            f"the cluster's {', '.join(sorted(missing))} credential was deleted: plan the cluster"
            " again with a credential of the project",
            {"credential_ids": ["missing"]},
        )
    used = [c for c in found if c["kind"] in kinds or c["kind"] in optional]
    extra: dict[str, Any] = {"wap_plan": cluster["plan"]}
    for credential in used:
        public = credential.get("public") or {}
        if credential["kind"] == "ssh_key" and public.get("public_key"):
            extra["wap_ssh_public_key"] = public["public_key"]
        if credential["kind"] == "aws" and public.get("endpoint_url"):
            extra["wap_aws_endpoint_url"] = _allowed_endpoint(settings, credential)
    return [c["_id"] for c in used], extra


def provision(store: Store, settings: Settings, actor: Actor, cluster_id: str) -> dict[str, Any]:
    """Start the job that creates the planned resources and deploys MongoDB on them. Running it
    again converges (changes nothing when everything is there)."""
    cluster, _ = get_cluster(store, actor, cluster_id, "operator")
    if not cluster.get("plan"):
        raise Conflict("this cluster runs on registered hosts: start its deploy playbook instead")
    current = state(store, cluster)
    if current in ("provisioning", "deleting"):
        raise Conflict(f"the cluster is {current}: wait for its job to end")
    provider = PROVIDERS[cluster["provider"]]
    credential_ids, needed = _job_credentials(
        store, settings, cluster, {provider["credential"], "ssh_key"}, optional=("mongodb",)
    )
    return jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": provider["provision"], "host_ids": [], "credential_ids": credential_ids,
         "extra_vars": cluster.get("deploy_vars") or {}, "cluster_id": cluster_id},
        action="provision", platform_vars=needed,
    )  # fmt: skip


def delete(
    store: Store, settings: Settings, actor: Actor, cluster_id: str, confirm: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Delete a cluster: at once when nothing was ever provisioned for it, otherwise by a teardown
    job that deletes every resource tagged for it. `confirm` must be its name. Returns the cluster
    and the teardown job (None: deleted at once)."""
    cluster, project = get_cluster(store, actor, cluster_id, "operator")
    if confirm != cluster["name"]:
        raise Invalid(
            "type the cluster's name to confirm its deletion",
            {"confirm": [f"type {cluster['name']!r}"]},
        )
    last = last_action(store, cluster_id) if cluster.get("plan") else None
    if last is None:
        store.clusters.delete_one({"_id": cluster_id})
        audit.record(store, actor, "cluster.delete", f"{project['name']}/{cluster['name']}")
        return cluster, None
    if _state_after(last) == "deleting":
        raise Conflict("the cluster is being deleted already")
    provider = PROVIDERS[cluster["provider"]]
    credential_ids, needed = _job_credentials(store, settings, cluster, {provider["credential"]})
    job = jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": provider["teardown"], "host_ids": [], "credential_ids": credential_ids,
         "cluster_id": cluster_id},
        action="teardown", platform_vars={**needed, "wap_teardown_confirm": "yes"},
    )  # fmt: skip
    return cluster, job


def job_finished(store: Store, job: dict[str, Any]) -> None:
    """After a job ends: a successful teardown removes its cluster (its jobs stay)."""
    if job.get("cluster_action") != "teardown" or job.get("status") != "successful":
        return
    cluster = store.clusters.find_one_and_delete({"_id": job.get("cluster_id")})
    if cluster:
        project = store.projects.find_one({"_id": cluster["project_id"]}) or {}
        audit.record(
            store, SYSTEM, "cluster.delete", f"{project.get('name')}/{cluster['name']}",
            detail={"job_id": job["_id"], "requested_by": job.get("created_by")},
        )  # fmt: skip
