"""Clusters: a named set of project hosts and the playbook that deploys them."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import jobs, projects

bp = Blueprint("clusters", __name__)


@bp.get("/clusters")
@login_required
def index() -> str:
    store, actor = security.get_store(), security.current_actor()
    rows = []
    for project in projects.list_projects(store, actor):
        rows += [(project, c) for c in projects.list_clusters(store, project["_id"])]
    return render_template("clusters/index.html", rows=rows)


@bp.post("/projects/<project_id>/clusters")
@login_required
def create(project_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    form = request.form
    deployment = {
        "playbook": form.get("playbook", ""),
        "host_ids": form.getlist("host_ids"),
        "credential_ids": form.getlist("credential_ids"),
        "extra_vars": jobs.parse_extra_vars(form.get("extra_vars", "")),
    }
    projects.require(store, actor, project_id, "operator")
    jobs.validate_request(store, settings, project_id, deployment)  # before anything is created
    cluster = projects.create_cluster(
        store, actor, project_id, form.get("name", "").strip(), deployment["host_ids"],
        deployment["playbook"],
    )  # fmt: skip
    job = jobs.create_job(
        store, settings, actor, project_id, {**deployment, "cluster_id": cluster["_id"]}
    )
    flash(f"Cluster {cluster['name']} created; its deployment is job {job['_id'][:8]}.", "ok")
    return redirect(url_for("jobs.show", job_id=job["_id"]))
