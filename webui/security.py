"""Who is asking: session cookies and API tokens, the first-start gate, CSRF on forms, the
client's address behind proxies, and the login throttle.

CSRF is a per-session token checked on every unsafe request that is authenticated by the cookie
(form field `csrf_token` or header `X-CSRF-Token`); requests with an API token carry no ambient
credential and need none. Flask-WTF's CSRFProtect can only exempt whole views or blueprints, not
"authenticated by a bearer token", so this small check is written here instead.

Behind `WAP_PROXIES` reverse proxies, the client's address and scheme are taken from the
X-Forwarded-* headers those proxies set (Werkzeug's ProxyFix), and from nowhere else: the setup
gate, the login throttle and the audit log all rely on that address.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import os
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, current_app, g, jsonify, redirect, request, session, url_for
from redis import Redis
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from webui.config import Settings
from webui.services import accounts, audit, inputs
from webui.services.audit import Actor
from webui.store import Store

F = TypeVar("F", bound=Callable[..., Any])
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
OPEN_ENDPOINTS = ("static", "auth.setup", "auth.health", "tls.ca", "api-docs.openapi_json")
# Endpoints with a credential of their own, checked by the endpoint (an agent's token): no user
# is looked up, no CSRF token applies (nothing ambient authenticates them), and they bound and
# parse their body themselves.
OWN_CREDENTIAL_ENDPOINTS = (
    "agent-ingest.ingest_samples",
    *(f"agent-pull.{name}" for name in ("poll_commands", "command_progress", "command_result")),
)


def get_store() -> Store:
    return current_app.extensions["wap.store"]


def get_settings() -> Settings:
    return current_app.extensions["wap.settings"]


def client_address() -> str:
    return request.remote_addr or "unknown"


def login_throttle() -> accounts.LoginThrottle:
    """Counts kept under this installation's queue name, as its jobs are (one Redis may serve
    several installations)."""
    settings = get_settings()
    return accounts.LoginThrottle(
        current_app.extensions["wap.redis"],
        settings.login_max_failures,
        settings.login_lockout,
        prefix=f"wap:{settings.queue_name}:login-failures",
    )


def actor_for(user: dict[str, Any], source: str) -> Actor:
    return Actor(user_id=user["_id"], username=user["username"], role=user["role"], source=source)


def current_actor() -> Actor:
    actor = g.get("actor")
    if actor is None:
        abort(401)
    return actor


def setup_token(settings: Settings) -> str:
    """The one-time token a first admin needs to set WAP up from another machine (kept in the
    data dir; `wap web` and `wap up` print the setup link with it)."""
    path = settings.data_dir / "setup_token"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def may_set_up() -> bool:
    """From this machine, yes; from elsewhere only with the setup token."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(client_address()).is_loopback:
            return True
    sent = request.values.get("token", "")
    return bool(sent) and hmac.compare_digest(sent, setup_token(get_settings()))


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def login(user: dict[str, Any]) -> None:
    """A brand-new session (id and CSRF token) at every login."""
    session.clear()
    session["sid"] = accounts.start_session(get_store(), user, client_address())
    session["csrf"] = secrets.token_urlsafe(32)


def logout() -> None:
    if session.get("sid"):
        accounts.end_session(get_store(), session["sid"])
        if g.get("actor") is not None:
            audit.record(get_store(), g.actor, "logout", g.actor.username)
    session.clear()


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _api_error(status: int, message: str) -> Response:
    response = jsonify(
        {"code": status, "status": HTTP_STATUS_CODES.get(status, ""), "message": message}
    )
    response.status_code = status
    return response


def _identify() -> None:
    store = get_store()
    g.user, g.actor, g.via_token = None, None, False
    header = request.headers.get("Authorization", "")
    if _is_api() and header.lower().startswith("bearer "):
        user = accounts.token_user(store, header[7:].strip())
        g.via_token = True
    else:
        user = accounts.session_user(store, session.get("sid"))
    if user:
        g.user = user
        g.actor = actor_for(user, client_address())


def _setup_done() -> bool:
    if not current_app.extensions.get("wap.setup_done"):
        current_app.extensions["wap.setup_done"] = accounts.is_set_up(get_store())
    return current_app.extensions["wap.setup_done"]


def _before_request() -> Response | None:
    if request.endpoint in ("static",):
        return None
    if not _setup_done() and request.endpoint not in OPEN_ENDPOINTS:
        if _is_api():
            return _api_error(
                503, "WAP is not set up yet: open /setup in a browser to create the first admin"
            )
        return redirect(url_for("auth.setup"))
    if request.endpoint in OWN_CREDENTIAL_ENDPOINTS:
        g.user, g.actor, g.via_token = None, None, True
        return None
    if request.method in UNSAFE and request.is_json:
        too_deep = inputs.json_depth_error(request.get_data(cache=True))
        if too_deep:
            return _api_error(400, f"{too_deep}: send flatter data")
    _identify()
    if request.method in UNSAFE and not g.via_token:
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent, expected):
            if _is_api():
                return _api_error(
                    403, "missing or stale X-CSRF-Token header (use an API token for scripts)"
                )
            return _csrf_failed()
    return None


def _csrf_failed() -> Response:
    from flask import flash

    flash("The form had expired. Please try again.", "error")
    return redirect(
        request.path
        if request.method != "POST"
        else (request.referrer or url_for("projects.index"))
    )


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            if _is_api():
                return _api_error(
                    401, "authentication needed: send 'Authorization: Bearer <token>'"
                )
            return redirect(url_for("auth.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def admin_required(view: F) -> F:
    @functools.wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user["role"] != "admin":
            if _is_api():
                return _api_error(403, "admins only")
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    settings: Settings = app.extensions["wap.settings"]
    if settings.proxies:
        n = settings.proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    app.extensions["wap.redis"] = Redis.from_url(settings.redis_url or "", socket_timeout=5)
    app.before_request(_before_request)
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.after_request
    def _audit_denied(response: Response) -> Response:
        """A change refused for lack of a role is audited too (a login's failures already are)."""
        actor = g.get("actor")
        if request.method in UNSAFE and response.status_code == 403 and actor is not None:
            audit.record(get_store(), actor, "denied", f"{request.method} {request.path}", "failed")
        return response

    @app.after_request
    def _headers(response: Response) -> Response:
        if request.endpoint != "static":
            # Pages and answers hold CSRF tokens, new API tokens, setup links: never kept by a
            # browser or proxy cache.
            response.headers["Cache-Control"] = "no-store"
        if settings.secure_cookies:  # served over TLS (ours, or a proxy's): browsers keep to it
            response.headers["Strict-Transport-Security"] = f"max-age={settings.hsts_max_age}"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'",
        )
        return response
