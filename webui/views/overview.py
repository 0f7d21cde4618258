"""The overview, the console's home page."""

from __future__ import annotations

from flask import Blueprint, render_template

from webui import security
from webui.security import login_required
from webui.services import overview

bp = Blueprint("overview", __name__)


@bp.get("/")
@login_required
def index() -> str:
    store, actor = security.get_store(), security.current_actor()
    return render_template("overview/index.html", **overview.summary(store, actor))
