"""Jobs: list, start, the live page, cancel."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, stream_with_context, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import jobs, projects

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
@login_required
def index() -> str:
    store, actor = security.get_store(), security.current_actor()
    names = {p["_id"]: p["name"] for p in projects.list_projects(store, actor)}
    return render_template("jobs/index.html", jobs=jobs.list_jobs(store, actor), names=names)


@bp.post("/projects/<project_id>/jobs")
@login_required
def start(project_id: str) -> Response:
    data = {
        "playbook": request.form.get("playbook", ""),
        "host_ids": request.form.getlist("host_ids"),
        "credential_ids": request.form.getlist("credential_ids"),
        "cluster_id": request.form.get("cluster_id") or None,
        "extra_vars": jobs.parse_extra_vars(request.form.get("extra_vars", "")),
    }
    job = jobs.create_job(
        security.get_store(), security.get_settings(), security.current_actor(), project_id, data
    )
    return redirect(url_for("jobs.show", job_id=job["_id"]))


@bp.get("/jobs/<job_id>")
@login_required
def show(job_id: str) -> str:
    store, actor = security.get_store(), security.current_actor()
    job = jobs.get_job(store, actor, job_id)
    role = projects.role_in(store, actor, job["project_id"])
    project = projects.require(store, actor, job["project_id"], "read-only")
    return render_template(
        "jobs/show.html",
        job=job,
        project=project,
        cluster=jobs.cluster_of(store, job),
        can_cancel=role in ("operator", "owner"),
        timeline=jobs.timeline(store, job),
    )


@bp.get("/jobs/<job_id>/log")
@login_required
def log(job_id: str) -> Response:
    """The whole log as plain text: the page keeps only the latest lines in view."""
    store = security.get_store()
    job = jobs.get_job(store, security.current_actor(), job_id)
    return Response(
        stream_with_context(jobs.log_text(store, job)),
        mimetype="text/plain",
        headers={"Content-Disposition": f'inline; filename="job-{job_id[:8]}.log"'},
    )


@bp.post("/jobs/<job_id>/cancel")
@login_required
def cancel(job_id: str) -> Response:
    jobs.request_cancel(
        security.get_store(), security.get_settings(), security.current_actor(), job_id
    )
    flash("Cancel requested.", "ok")
    return redirect(url_for("jobs.show", job_id=job_id))
