"""Projects: list, create, one project's page (hosts, credentials, clusters, jobs, members)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import credentials, jobs, projects

bp = Blueprint("projects", __name__)


@bp.get("/projects")
@login_required
def index() -> str:
    actor = security.current_actor()
    return render_template(
        "projects/index.html", projects=projects.list_projects(security.get_store(), actor)
    )


@bp.post("/projects")
@login_required
def create() -> Response:
    project = projects.create_project(
        security.get_store(), security.current_actor(), request.form.get("name", "").strip()
    )
    return redirect(url_for("projects.show", project_id=project["_id"]))


@bp.get("/projects/<project_id>")
@login_required
def show(project_id: str) -> str:
    return render_project(project_id)[0]


def render_project(
    project_id: str,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """The project's page; `errors` and `values`: the credential form as sent, each error beside
    its field."""
    store, actor = security.get_store(), security.current_actor()
    project = projects.require(store, actor, project_id, "read-only")
    hosts = projects.list_hosts(store, project_id)
    playbooks, job_hosts = jobs.choices(security.get_settings(), actor, hosts)
    return render_template(
        "projects/show.html",
        project=project,
        role=projects.role_in(store, actor, project_id),
        is_admin=actor.is_admin,
        hosts=hosts,
        job_hosts=job_hosts,
        credentials=credentials.list_public(store, project_id),
        clusters=projects.list_clusters(store, project_id),
        jobs=jobs.list_jobs(store, actor, project_id, limit=20),
        members=projects.members(store, project_id),
        playbooks=playbooks,
        errors=errors or {},
        values=values or {},
    ), status


@bp.post("/projects/<project_id>/members")
@login_required
def set_member(project_id: str) -> Response:
    username = request.form.get("username", "").strip()
    projects.set_member(
        security.get_store(),
        security.current_actor(),
        project_id,
        username,
        request.form.get("role", ""),
    )
    flash(f"{username}: {request.form.get('role')}", "ok")
    return redirect(url_for("projects.show", project_id=project_id))
