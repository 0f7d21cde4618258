"""REST API under /api/v1 (flask-smorest: marshmallow schemas, 422 with a message per field, and
the OpenAPI document at /api/v1/openapi.json). Authentication: an API token (`Authorization:
Bearer ...`) or the console's session cookie with its X-CSRF-Token header."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify
from flask_smorest import Api, Blueprint
from werkzeug.wrappers import Response

from webui.api import schemas as s
from webui.security import current_actor, get_settings, get_store
from webui.services import accounts, audit, cloud, credentials, deployments, jobs, projects
from webui.services.errors import Forbidden, Invalid, ServiceError

PREFIX = "/api/v1"
ERRORS = {
    401: "not authenticated",
    403: "not allowed",
    404: "not found",
    409: "conflict",
    422: "invalid input",
}


def error_response(error: ServiceError) -> Response:
    body: dict[str, Any] = {
        "code": error.status,
        "status": ERRORS.get(error.status, "error"),
        "message": error.message,
    }
    if error.fields:
        body["errors"] = {"json": error.fields}
    response = jsonify(body)
    response.status_code = error.status
    return response


def _authenticated() -> Response | None:
    if g.get("user") is None:
        response = jsonify(
            {
                "code": 401,
                "status": "not authenticated",
                "message": "send 'Authorization: Bearer <token>'",
            }
        )
        response.status_code = 401
        return response
    return None


def _blueprint(name: str, description: str) -> Blueprint:
    bp = Blueprint(name, __name__, url_prefix=PREFIX, description=description)
    bp.before_request(_authenticated)
    return bp


me_bp = _blueprint("me", "The caller and their API tokens")
projects_bp = _blueprint("projects-api", "Projects, members, hosts, credentials, clusters")
jobs_bp = _blueprint("jobs-api", "Jobs and their events")
admin_bp = _blueprint("admin", "Users and the audit log (admins)")


def _admin() -> None:
    if not current_actor().is_admin:
        raise Forbidden("admins only")


@me_bp.route("/me")
@me_bp.response(200, s.UserOut)
def me() -> dict[str, Any]:
    return g.user


@me_bp.route("/tokens")
@me_bp.response(200, s.TokenOut(many=True))
def list_tokens() -> list[dict[str, Any]]:
    return accounts.list_tokens(get_store(), g.user["_id"])


@me_bp.route("/tokens", methods=["POST"])
@me_bp.arguments(s.TokenIn)
@me_bp.response(201, s.TokenCreated)
def create_token(data: dict[str, Any]) -> dict[str, Any]:
    token, record = accounts.create_token(get_store(), current_actor(), data["name"])
    return {**record, "token": token}


@me_bp.route("/tokens/<token_id>", methods=["DELETE"])
@me_bp.response(204)
def revoke_token(token_id: str) -> None:
    accounts.revoke_token(get_store(), current_actor(), token_id)


@projects_bp.route("/projects")
@projects_bp.response(200, s.ProjectOut(many=True))
def list_projects() -> list[dict[str, Any]]:
    return projects.list_projects(get_store(), current_actor())


@projects_bp.route("/projects", methods=["POST"])
@projects_bp.arguments(s.ProjectIn)
@projects_bp.response(201, s.ProjectOut)
def create_project(data: dict[str, Any]) -> dict[str, Any]:
    return projects.create_project(get_store(), current_actor(), data["name"])


@projects_bp.route("/projects/<project_id>")
@projects_bp.response(200, s.ProjectOut)
def get_project(project_id: str) -> dict[str, Any]:
    return projects.require(get_store(), current_actor(), project_id, "read-only")


@projects_bp.route("/projects/<project_id>/members")
@projects_bp.response(200, s.MemberOut(many=True))
def list_members(project_id: str) -> list[dict[str, Any]]:
    projects.require(get_store(), current_actor(), project_id, "read-only")
    return projects.members(get_store(), project_id)


@projects_bp.route("/projects/<project_id>/members", methods=["PUT"])
@projects_bp.arguments(s.MemberIn)
@projects_bp.response(200, s.MemberOut(many=True))
def set_member(data: dict[str, Any], project_id: str) -> list[dict[str, Any]]:
    projects.set_member(get_store(), current_actor(), project_id, data["username"], data["role"])
    return projects.members(get_store(), project_id)


@projects_bp.route("/projects/<project_id>/hosts")
@projects_bp.response(200, s.HostOut(many=True))
def list_hosts(project_id: str) -> list[dict[str, Any]]:
    projects.require(get_store(), current_actor(), project_id, "read-only")
    return projects.list_hosts(get_store(), project_id)


@projects_bp.route("/projects/<project_id>/hosts", methods=["POST"])
@projects_bp.arguments(s.HostIn)
@projects_bp.response(201, s.HostOut)
def add_host(data: dict[str, Any], project_id: str) -> dict[str, Any]:
    return projects.add_host(get_store(), current_actor(), project_id, data)


@projects_bp.route("/projects/<project_id>/hosts/<host_id>", methods=["DELETE"])
@projects_bp.response(204)
def remove_host(project_id: str, host_id: str) -> None:
    projects.remove_host(get_store(), current_actor(), project_id, host_id)


@projects_bp.route("/projects/<project_id>/credentials")
@projects_bp.response(200, s.CredentialOut(many=True))
def list_credentials(project_id: str) -> list[dict[str, Any]]:
    projects.require(get_store(), current_actor(), project_id, "read-only")
    return credentials.list_public(get_store(), project_id)


@projects_bp.route("/projects/<project_id>/credentials", methods=["POST"])
@projects_bp.arguments(s.CredentialIn)
@projects_bp.response(201, s.CredentialOut)
def create_credential(data: dict[str, Any], project_id: str) -> dict[str, Any]:
    return credentials.create(
        get_store(), get_settings(), current_actor(), project_id, data["kind"], data["name"],
        data["fields_"],
    )  # fmt: skip


@projects_bp.route("/projects/<project_id>/credentials/<credential_id>", methods=["DELETE"])
@projects_bp.response(204)
def delete_credential(project_id: str, credential_id: str) -> None:
    credentials.delete(get_store(), current_actor(), project_id, credential_id)


@projects_bp.route("/projects/<project_id>/clusters")
@projects_bp.response(200, s.ClusterOut(many=True))
def list_clusters(project_id: str) -> list[dict[str, Any]]:
    projects.require(get_store(), current_actor(), project_id, "read-only")
    return projects.list_clusters(get_store(), project_id)


@projects_bp.route("/projects/<project_id>/clusters", methods=["POST"])
@projects_bp.arguments(s.ClusterIn)
@projects_bp.response(201, s.ClusterCreated)
def create_cluster(data: dict[str, Any], project_id: str) -> dict[str, Any]:
    """Create a replica set or sharded cluster on registered hosts and start its deployment
    (the console's form does the same): the cluster and its queued deploy job."""
    store = get_store()
    cluster, job = deployments.create(store, get_settings(), current_actor(), project_id, data)
    return {**_detail(store, cluster), "job": jobs.public_job(job)}


def _detail(store: Any, cluster: dict[str, Any]) -> dict[str, Any]:
    detail = {**cluster, "state": deployments.cluster_state(store, cluster)}
    if not cluster.get("plan"):
        detail["members"] = deployments.members(store, cluster)[0]
        detail["connection_string"] = deployments.connection_string(store, cluster)
    return detail


@projects_bp.route("/projects/<project_id>/clusters/cloud", methods=["POST"])
@projects_bp.arguments(s.CloudClusterIn)
@projects_bp.response(201, s.ClusterDetailOut)
def plan_cloud_cluster(data: dict[str, Any], project_id: str) -> dict[str, Any]:
    """Plan a cluster on a cloud from a spec: the plan is stored and returned; nothing is created
    until `POST /clusters/{id}/provision`."""
    store = get_store()
    cluster = cloud.plan_cluster(store, get_settings(), current_actor(), project_id, data)
    return {**cluster, "state": cloud.state(store, cluster)}


@projects_bp.route("/clusters/<cluster_id>")
@projects_bp.response(200, s.ClusterDetailOut)
def get_cluster(cluster_id: str) -> dict[str, Any]:
    store = get_store()
    cluster, _ = cloud.get_cluster(store, current_actor(), cluster_id)
    return _detail(store, cluster)


@projects_bp.route("/clusters/<cluster_id>/deploy", methods=["POST"])
@projects_bp.response(202, s.JobOut)
def deploy_cluster(cluster_id: str) -> dict[str, Any]:
    """Deploy a cluster on registered hosts again: converges its hosts to what it describes."""
    store = get_store()
    job = deployments.redeploy(store, get_settings(), current_actor(), cluster_id)
    return jobs.public_job(job)


@projects_bp.route("/clusters/<cluster_id>/provision", methods=["POST"])
@projects_bp.response(202, s.JobOut)
def provision_cluster(cluster_id: str) -> dict[str, Any]:
    """Start the job that creates the planned resources and deploys MongoDB (again: converges)."""
    job = cloud.provision(get_store(), get_settings(), current_actor(), cluster_id)
    return jobs.public_job(job)


@projects_bp.route("/clusters/<cluster_id>/delete", methods=["POST"])
@projects_bp.arguments(s.ClusterDeleteIn)
@projects_bp.response(202, s.ClusterDeleteOut)
def delete_cluster(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """Delete a cluster: at once when nothing was provisioned, else by a teardown job that deletes
    every resource tagged for it (the cluster goes when that job succeeds)."""
    _, job = cloud.delete(get_store(), get_settings(), current_actor(), cluster_id, data["confirm"])
    return {"deleted": job is None, "job": jobs.public_job(job) if job else None}


@jobs_bp.route("/projects/<project_id>/jobs")
@jobs_bp.response(200, s.JobOut(many=True))
def list_project_jobs(project_id: str) -> list[dict[str, Any]]:
    return jobs.list_jobs(get_store(), current_actor(), project_id)


@jobs_bp.route("/projects/<project_id>/jobs", methods=["POST"])
@jobs_bp.arguments(s.JobIn)
@jobs_bp.response(201, s.JobOut)
def start_job(data: dict[str, Any], project_id: str) -> dict[str, Any]:
    return jobs.create_job(get_store(), get_settings(), current_actor(), project_id, data)


@jobs_bp.route("/jobs/<job_id>")
@jobs_bp.response(200, s.JobOut)
def get_job(job_id: str) -> dict[str, Any]:
    return jobs.public_job(jobs.get_job(get_store(), current_actor(), job_id))


@jobs_bp.route("/jobs/<job_id>/cancel", methods=["POST"])
@jobs_bp.response(202, s.JobOut)
def cancel_job(job_id: str) -> dict[str, Any]:
    return jobs.public_job(
        jobs.request_cancel(get_store(), get_settings(), current_actor(), job_id)
    )


@jobs_bp.route("/jobs/<job_id>/timeline")
@jobs_bp.response(200, s.TimelineOut)
def job_timeline(job_id: str) -> dict[str, Any]:
    """The job's plays and tasks per host: times (seconds since the epoch), durations, outcomes."""
    store = get_store()
    return jobs.timeline(store, jobs.get_job(store, current_actor(), job_id))


@jobs_bp.route("/jobs/<job_id>/events")
@jobs_bp.arguments(s.EventsQuery, location="query")
@jobs_bp.response(200, s.EventOut(many=True))
def job_events(query: dict[str, Any], job_id: str) -> list[dict[str, Any]]:
    jobs.get_job(get_store(), current_actor(), job_id)
    return jobs.events_after(get_store(), job_id, query["after"], query["limit"])


@admin_bp.route("/users")
@admin_bp.response(200, s.UserOut(many=True))
def list_users() -> list[dict[str, Any]]:
    _admin()
    return accounts.list_users(get_store())


@admin_bp.route("/users", methods=["POST"])
@admin_bp.arguments(s.UserIn)
@admin_bp.response(201, s.UserOut)
def create_user(data: dict[str, Any]) -> dict[str, Any]:
    return accounts.create_user(
        get_store(), current_actor(), data["username"], data["password"], data["role"]
    )


@admin_bp.route("/users/<user_id>", methods=["PATCH"])
@admin_bp.arguments(s.UserPatch)
@admin_bp.response(200, s.UserOut)
def change_user(data: dict[str, Any], user_id: str) -> dict[str, Any]:
    """Change a user's global role and/or disable (or enable) them. The last active admin can be
    neither demoted nor disabled (409)."""
    if not data:
        raise Invalid("nothing to change: send role and/or disabled")
    store, actor = get_store(), current_actor()
    user: dict[str, Any] = {}
    # `disabled` first: every refusal it can meet (yourself, the last admin, no such user) comes
    # before any change, and a role change after it has none left to meet.
    if "disabled" in data:
        user = accounts.set_disabled(store, actor, user_id, data["disabled"])
    if "role" in data:
        user = accounts.set_role(store, actor, user_id, data["role"])
    return user


@admin_bp.route("/audit")
@admin_bp.arguments(s.AuditQuery, location="query")
@admin_bp.response(200, s.AuditOut(many=True))
def list_audit(query: dict[str, Any]) -> list[dict[str, Any]]:
    _admin()
    return audit.search(get_store(), **query)


def register_api(api: Api) -> None:
    from webui.api import (
        agent_commands,
        agents,
        backups,
        coverage,
        member_ops,
        metrics,
        takeover,
        topology,
    )

    for bp in (me_bp, projects_bp, jobs_bp, admin_bp, *agents.BLUEPRINTS, *backups.BLUEPRINTS,
               *agent_commands.BLUEPRINTS, *metrics.BLUEPRINTS, *topology.BLUEPRINTS,
               *takeover.BLUEPRINTS, *coverage.BLUEPRINTS, *member_ops.BLUEPRINTS):  # fmt: skip
        api.register_blueprint(bp)
