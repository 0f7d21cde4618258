"""Credentials of a project: created and deleted here, never shown back."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import credentials
from webui.services.errors import Invalid
from webui.views.projects import render_project

bp = Blueprint("credentials", __name__)


@bp.post("/projects/<project_id>/credentials")
@login_required
def create(project_id: str) -> Response | tuple[str, int]:
    kind = request.form.get("kind", "")
    public_names, secret_names = credentials.KINDS.get(kind, ((), ()))
    optional = credentials.OPTIONAL.get(kind, ())
    fields = {
        name: request.form.get(name, "") for name in (*public_names, *secret_names, *optional)
    }
    try:
        record = credentials.create(
            security.get_store(),
            security.get_settings(),
            security.current_actor(),
            project_id,
            kind,
            request.form.get("name", "").strip(),
            fields,
        )
    except Invalid as exc:  # the page again, each message beside its field, nothing secret kept
        flash(exc.message, "error")
        values = {"name": request.form.get("name", ""), "kind": kind}
        values.update({n: request.form.get(n, "") for n in public_names})
        values.update({n: request.form.get(n, "") for n in credentials.OPTIONAL.get(kind, ())
                       if n not in credentials.SECRET_OPTIONAL})  # fmt: skip
        return render_project(project_id, exc.fields, values, 422)
    flash(f"Credential {record['name']} stored (encrypted; it will not be shown again).", "ok")
    return redirect(url_for("projects.show", project_id=project_id))


@bp.post("/projects/<project_id>/credentials/<credential_id>/delete")
@login_required
def delete(project_id: str, credential_id: str) -> Response:
    credentials.delete(security.get_store(), security.current_actor(), project_id, credential_id)
    return redirect(url_for("projects.show", project_id=project_id))
