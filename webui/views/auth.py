"""First-start setup, login and logout."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.services import accounts
from webui.services.errors import Conflict, Invalid, Unauthorized

bp = Blueprint("auth", __name__)


@bp.get("/healthz")
def health() -> dict[str, str]:
    return {"status": "ok"}


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Response | str | tuple[str, int]:
    store = security.get_store()
    if accounts.is_set_up(store):
        return redirect(url_for("auth.login"))
    if not security.may_set_up():
        message = (
            "WAP is not set up yet. Open the setup link that `wap web` (or `wap up`) printed: "
            "it holds a one-time token. Or open /setup from the WAP machine itself."
        )
        return render_template("error.html", message=message), 403
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if password != request.form.get("password2", ""):
            errors["password2"] = ["the two passwords differ"]
        else:
            try:
                user = accounts.setup_first_admin(
                    store, username, password, security.client_address()
                )
            except Invalid as exc:
                errors = exc.fields
            except Conflict:
                return redirect(url_for("auth.login"))
            else:
                current_app.extensions["wap.setup_done"] = True
                (security.get_settings().data_dir / "setup_token").unlink(missing_ok=True)
                security.login(user)
                flash(f"Welcome, {username}: WAP is set up.", "ok")
                return redirect(url_for("overview.index"))
    return render_template("auth/setup.html", errors=errors), (422 if errors else 200)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int, dict[str, str]]:
    error, status, headers = "", 200, {}
    if request.method == "POST":
        try:
            user = accounts.authenticate(
                security.get_store(),
                request.form.get("username", "").strip(),
                request.form.get("password", ""),
                security.client_address(),
                security.login_throttle(),
            )
        except accounts.TooManyFailures as exc:
            error, status, headers = exc.message, 429, {"Retry-After": str(exc.retry_after)}
        except Unauthorized as exc:
            error, status = exc.message, 401
        else:
            security.login(user)
            target = request.args.get("next", "")
            return redirect(
                target if target.startswith("/") and not target.startswith("//") else "/"
            )
    if g.get("user") and not error:
        return redirect(url_for("overview.index"))
    return render_template("auth/login.html", error=error), status, headers


@bp.post("/logout")
def logout() -> Response:
    security.logout()
    return redirect(url_for("auth.login"))
