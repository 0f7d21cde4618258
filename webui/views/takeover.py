"""Taking over an existing deployment (webui.services.takeover, which the API calls too): a form
with one address and a credential, a discovery job, the page of what it found, then the
registration once the operator names the cluster."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import credentials, projects, takeover
from webui.services.errors import Invalid

bp = Blueprint("takeover", __name__)


def _form(project_id: str, values: dict[str, Any], errors: dict, status: int = 200):
    store, actor = security.get_store(), security.current_actor()
    project = projects.require(store, actor, project_id, "operator")
    creds = credentials.list_public(store, project_id)
    return render_template(
        "takeover/new.html", project=project, values=values, errors=errors,
        by_kind={k: [c for c in creds if c["kind"] == k] for k in ("mongodb", "ssh_key")},
    ), status  # fmt: skip


@bp.get("/projects/<project_id>/takeover")
@login_required
def new(project_id: str):
    return _form(project_id, {}, {})


@bp.post("/projects/<project_id>/takeover")
@login_required
def discover(project_id: str):
    """Start the discovery; on a wrong field, the form again with what was typed."""
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    form = request.form
    data = {name: form.get(name, "").strip()
            for name in ("address", "mongodb_credential_id", "ssh_credential_id")}  # fmt: skip
    data["tls"] = bool(form.get("tls"))
    try:
        job = takeover.discover(store, settings, actor, project_id, data)
    except Invalid as exc:
        flash(exc.message, "error")
        return _form(project_id, data, exc.fields, 422)
    return redirect(url_for("takeover.show", project_id=project_id, job_id=job["_id"]))


@bp.get("/projects/<project_id>/takeover/<job_id>")
@login_required
def show(project_id: str, job_id: str) -> str:
    store, actor = security.get_store(), security.current_actor()
    project = projects.require(store, actor, project_id, "read-only")
    answer = takeover.found(store, actor, project_id, job_id)
    role = projects.role_in(store, actor, project_id)
    return render_template(
        "takeover/show.html", project=project, answer=answer, job=answer["job"],
        deployment=answer["deployment"], can_operate=role in ("operator", "owner"),
        name=request.args.get("name", ""),
    )  # fmt: skip


@bp.post("/projects/<project_id>/takeover/<job_id>")
@login_required
def register(project_id: str, job_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    name = request.form.get("name", "").strip()
    try:
        cluster = takeover.register(store, settings, actor, project_id, job_id, name)
    except Invalid as exc:
        flash(f"{exc.message}: " + "; ".join(m for ms in exc.fields.values() for m in ms), "error")
        return redirect(url_for("takeover.show", project_id=project_id, job_id=job_id, name=name))
    flash(f"Cluster {cluster['name']} taken over: its hosts and members are registered.", "ok")
    agents = cluster["agents"]
    if agents["job"]:
        flash(f"Agents are being deployed on its hosts: job {agents['job']['_id'][:8]}.", "ok")
    else:
        flash(f"No agent deployed: {agents['reason']}.", "warning")
    return redirect(url_for("clusters.show", cluster_id=cluster["_id"]))
