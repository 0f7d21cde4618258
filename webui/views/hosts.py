"""Hosts registered in a project."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import projects
from webui.services.errors import Invalid

bp = Blueprint("hosts", __name__)


@bp.post("/projects/<project_id>/hosts")
@login_required
def add(project_id: str) -> Response:
    form = request.form
    port = form.get("port", "22").strip() or "22"
    if not port.isdigit():
        raise Invalid("the host cannot be registered as given", {"port": ["a port number"]})
    data = {
        "name": form.get("name", "").strip(),
        "address": form.get("address", "").strip(),
        "port": int(port),
        "user": form.get("user", "").strip() or "root",
        "connection": form.get("connection", "ssh"),
    }
    host = projects.add_host(security.get_store(), security.current_actor(), project_id, data)
    flash(f"Host {host['name']} registered.", "ok")
    return redirect(url_for("projects.show", project_id=project_id))


@bp.post("/projects/<project_id>/hosts/<host_id>/delete")
@login_required
def remove(project_id: str, host_id: str) -> Response:
    projects.remove_host(security.get_store(), security.current_actor(), project_id, host_id)
    return redirect(url_for("projects.show", project_id=project_id))
