"""The CA bundle that clients of this server (agents, scripts) pin: public, so open to anyone."""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_file

from webui import security

bp = Blueprint("tls", __name__)


@bp.get("/ca.pem")
def ca() -> Response:
    settings = security.get_settings()
    if settings.tls_ca is None or not settings.tls_ca.is_file():
        abort(404)
    return send_file(settings.tls_ca, mimetype="application/x-pem-file", max_age=0)
