"""WAP web console, REST API and Socket.IO server."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from webui import extensions
from webui.config import Settings, load_settings, require_services
from webui.store import Store


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` may hold a `WAP_SETTINGS` Settings and any Flask config keys;
    without one, settings come from the `WAP_*` environment variables."""
    config = dict(config or {})
    settings: Settings = config.pop("WAP_SETTINGS", None) or load_settings()
    require_services(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="wap_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        API_TITLE="WAP",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "security": [{"bearer": []}, {"session": []}],
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "session": {"type": "apiKey", "in": "cookie", "name": "wap_session"},
                }
            },
        },
    )
    app.config.update(config)
    app.extensions["wap.settings"] = settings
    store = Store(settings.mongodb_uri or "")
    store.migrate()
    app.extensions["wap.store"] = store
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from webui import security, sockets
    from webui.api import register_api
    from webui.views import register_views
    from webui.views import tls as tls_views

    security.init_app(app)
    extensions.api.init_app(app)
    register_api(extensions.api)
    register_views(app)
    app.register_blueprint(tls_views.bp)  # /ca.pem
    extensions.socketio.init_app(
        app,
        message_queue=settings.redis_url,
        async_mode="threading",
        manage_session=False,
        logger=False,
        engineio_logger=False,
    )
    sockets.register(extensions.socketio)
    return app
