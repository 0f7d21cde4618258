"""Server-rendered pages, one blueprint per resource; views validate, call a service, render."""

from __future__ import annotations

import datetime
from typing import Any

from flask import Flask, flash, redirect, render_template, request
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
        detail = "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in error.fields.items())
        flash(f"{error.message}" + (f" ({detail})" if detail else ""), "error")
        return redirect(request.referrer or request.path)
    return render_template("error.html", message=error.message), error.status


def register_views(app: Flask) -> None:
    from webui.views import audit, auth, clusters, credentials, hosts, jobs, projects, users

    for module in (auth, projects, hosts, credentials, clusters, jobs, users, audit):
        app.register_blueprint(module.bp)
    app.register_error_handler(ServiceError, service_error_page)
    app.jinja_env.filters["when"] = _when

    @app.errorhandler(403)
    def _forbidden(_: Exception) -> tuple[str, int]:
        return render_template("error.html", message="You do not have access to this page."), 403

    @app.errorhandler(404)
    def _not_found(_: Exception) -> tuple[str, int]:
        return render_template("error.html", message="There is no such page."), 404

    @app.errorhandler(500)
    def _server_error(_: Exception) -> tuple[str, int]:
        return render_template(
            "error.html", message="Something went wrong on the server; it is logged."
        ), 500
