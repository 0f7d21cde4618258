"""Hosts: every host of the user's projects on one page (with its agent's version, last report and
state), registered there or on a project's page; a host's page with its charts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.api import PREFIX
from webui.security import login_required
from webui.services import overview, projects, topology
from webui.services.errors import Invalid

bp = Blueprint("hosts", __name__)


def _host_data(form: Any) -> dict[str, Any]:
    port = form.get("port", "22").strip() or "22"
    if not (port.isascii() and port.isdigit()):
        raise Invalid("the host cannot be registered as given", {"port": ["a port number"]})
    return {
        "name": form.get("name", "").strip(),
        "address": form.get("address", "").strip(),
        "port": int(port),
        "user": form.get("user", "").strip() or "root",
        "connection": form.get("connection", "ssh"),
    }


def _page(values: dict[str, Any], errors: dict[str, list[str]], status: int = 200):
    store, actor = security.get_store(), security.current_actor()
    rows, operable = [], []
    for project in projects.list_projects(store, actor):
        clusters: dict[str, list[dict[str, Any]]] = {}
        for cluster in projects.list_clusters(store, project["_id"]):
            for host_id in cluster.get("host_ids", []):
                clusters.setdefault(host_id, []).append(cluster)
        rows += [
            (project, host, clusters.get(host["_id"], []), topology.agent_status(host))
            for host in projects.list_hosts(store, project["_id"])
        ]
        if projects.role_in(store, actor, project["_id"]) in ("operator", "owner"):
            operable.append(project)
    return render_template(
        "hosts/index.html", rows=rows, operable=operable, values=values, errors=errors,
        is_admin=actor.is_admin,
    ), status  # fmt: skip


@bp.get("/hosts")
@login_required
def index():
    return _page({"project_id": request.args.get("project", "")}, {})


@bp.get("/hosts/<host_id>")
@login_required
def show(host_id: str) -> str:
    """A host: its agent, its MongoDB processes, and charts of the host beside each process."""
    detail = overview.host(security.get_store(), security.current_actor(), host_id)
    api = f"{PREFIX}/projects/{detail['project']['_id']}/metrics"
    return render_template("hosts/show.html", metrics_api=api, **detail)


@bp.post("/hosts")
@login_required
def register():
    """Register a host in the project picked in the form; a wrong field shows beside it."""
    form = request.form
    store, actor = security.get_store(), security.current_actor()
    try:
        host = projects.add_host(store, actor, form.get("project_id", ""), _host_data(form))
    except Invalid as exc:
        flash(exc.message, "error")
        return _page(form.to_dict(), exc.fields, 422)
    flash(f"Host {host['name']} registered.", "ok")
    return redirect(url_for("hosts.index", project=host["project_id"]))


@bp.post("/projects/<project_id>/hosts")
@login_required
def add(project_id: str) -> Response:
    data = _host_data(request.form)
    host = projects.add_host(security.get_store(), security.current_actor(), project_id, data)
    flash(f"Host {host['name']} registered.", "ok")
    return redirect(url_for("projects.show", project_id=project_id))


@bp.post("/projects/<project_id>/hosts/<host_id>/delete")
@login_required
def remove(project_id: str, host_id: str) -> Response:
    projects.remove_host(security.get_store(), security.current_actor(), project_id, host_id)
    if request.form.get("next") == "hosts":
        return redirect(url_for("hosts.index"))
    return redirect(url_for("projects.show", project_id=project_id))
