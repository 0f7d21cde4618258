"""Users (admins) and each user's API tokens."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import admin_required, login_required
from webui.services import accounts

bp = Blueprint("users", __name__)


@bp.get("/users")
@admin_required
def index() -> str:
    return render_template("users/index.html", users=accounts.list_users(security.get_store()))


@bp.post("/users")
@admin_required
def create() -> Response:
    form = request.form
    accounts.create_user(
        security.get_store(),
        security.current_actor(),
        form.get("username", "").strip(),
        form.get("password", ""),
        form.get("role", "user"),
    )
    flash(f"User {form.get('username')} created.", "ok")
    return redirect(url_for("users.index"))


@bp.post("/users/<user_id>/disable")
@admin_required
def disable(user_id: str) -> Response:
    user = accounts.set_disabled(
        security.get_store(), security.current_actor(), user_id, request.form.get("enable") != "1"
    )
    state = "disabled: their sessions and API tokens have ended" if user["disabled"] else "enabled"
    flash(f"User {user['username']} is {state}.", "ok")
    return redirect(url_for("users.index"))


@bp.post("/users/<user_id>/role")
@admin_required
def role(user_id: str) -> Response:
    actor = security.current_actor()
    user = accounts.set_role(security.get_store(), actor, user_id, request.form.get("role", ""))
    flash(
        f"User {user['username']} is now {'an admin' if user['role'] == 'admin' else 'a user'}.",
        "ok",
    )
    if user["_id"] == actor.user_id and user["role"] != "admin":
        return redirect(url_for("projects.index"))  # no longer allowed on the users page
    return redirect(url_for("users.index"))


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def tokens() -> str:
    store = security.get_store()
    new_token = None
    if request.method == "POST":
        new_token, _ = accounts.create_token(
            store, security.current_actor(), request.form.get("name", "").strip()
        )
    return render_template(
        "users/tokens.html", tokens=accounts.list_tokens(store, g.user["_id"]), new_token=new_token
    )


@bp.post("/account/tokens/<token_id>/revoke")
@login_required
def revoke(token_id: str) -> Response:
    accounts.revoke_token(security.get_store(), security.current_actor(), token_id)
    return redirect(url_for("users.tokens"))
