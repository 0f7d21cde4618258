"""Server-rendered pages, one blueprint per resource; views validate, call a service, render."""

from __future__ import annotations

import datetime
from typing import Any

from flask import Flask, flash, g, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from webui.services.errors import ServiceError


def _when(value: Any) -> str:
    if not value:
        return ""
    return datetime.datetime.fromtimestamp(float(value)).strftime("%Y-%m-%d %H:%M:%S")


def service_error_page(error: ServiceError) -> Response | tuple[str, int]:
    if request.path.startswith("/api/"):
        from webui.api import error_response

        return error_response(error)
    if request.method == "POST":
        if error.status == 403 and g.get("actor") is not None:
            from webui.security import get_store
            from webui.services import audit

            audit.record(get_store(), g.actor, "denied", f"POST {request.path}", "failed")
        detail = "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in error.fields.items())
        flash(f"{error.message}" + (f" ({detail})" if detail else ""), "error")
        return redirect(request.referrer or "/")
    return render_template("error.html", message=error.message), error.status


MESSAGES = {
    403: "You do not have access to this page.",
    404: "There is no such page.",
    405: "This page cannot be used that way.",
    500: "Something went wrong on the server; it is logged.",
}


def _http_error(error: HTTPException) -> Response | tuple[str, int]:
    """JSON under /api/ (flask-smorest's format), the error page elsewhere; never a traceback."""
    if request.path.startswith("/api/"):
        from webui.extensions import api

        return api.handle_http_exception(error)
    code = error.code or 500
    return render_template("error.html", message=MESSAGES.get(code, error.description)), code


def register_views(app: Flask) -> None:
    from webui.views import audit, auth, clusters, credentials, hosts, jobs, projects, users

    for module in (auth, projects, hosts, credentials, clusters, jobs, users, audit):
        app.register_blueprint(module.bp)
    app.register_error_handler(ServiceError, service_error_page)
    app.jinja_env.filters["when"] = _when

    app.register_error_handler(HTTPException, _http_error)  # replaces flask-smorest's

    from webui.views import backups, member_ops, overview, takeover

    app.register_blueprint(overview.bp)
    app.register_blueprint(backups.bp)
    app.register_blueprint(takeover.bp)
    app.register_blueprint(member_ops.bp)
