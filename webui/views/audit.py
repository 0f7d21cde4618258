"""The audit log, for admins, filterable by actor, action and outcome."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from webui import security
from webui.security import admin_required
from webui.services import audit

bp = Blueprint("audit", __name__)


@bp.get("/audit")
@admin_required
def index() -> str:
    filters = {k: request.args.get(k, "").strip()[:100] for k in ("actor", "action", "outcome")}
    return render_template(
        "audit/index.html", rows=audit.search(security.get_store(), **filters), filters=filters
    )
