"""`wap up`, `wap web`, `wap worker`: the platform's commands. They import webui only when they
run, and turn the platform's errors into UserError (one line, exit 2)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from wap.cli.errors import UserError

if TYPE_CHECKING:
    from webui.config import Settings
    from webui.tls import TlsFiles

# How `wap up` starts `wap worker` and `wap web`: with its own interpreter, so that the children run
# the same installation whatever PATH holds.
CHILDREN = [sys.executable, "-m", "wap.cli"]


def _settings() -> Settings:
    from webui.config import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise UserError(str(exc)) from None


def _serving() -> tuple[Settings, TlsFiles | None]:
    """The settings, and the certificate and key to serve with (made first under WAP_TLS=auto),
    once the front end and those files are checked."""
    from webui.tls import TlsError, prepare
    from webui.wsgi import FrontEndMissing, check_front_end

    try:
        check_front_end()
        settings = _settings()
        return settings, prepare(settings)
    except (FrontEndMissing, TlsError) as exc:
        raise UserError(str(exc)) from None


def _up(args: argparse.Namespace) -> int:
    from webui.embedded import EmbeddedError, run_platform

    settings, tls = _serving()
    if tls is not None:
        print(tls.describe(settings.url), flush=True)
    try:
        return run_platform(settings, CHILDREN, workers=args.workers)
    except EmbeddedError as exc:
        raise UserError(str(exc)) from None


def _web(args: argparse.Namespace) -> int:
    from webui.config import SettingsError, require_services
    from webui.store import StoreUnavailable

    settings, tls = _serving()
    try:
        require_services(settings)
        from webui import create_app
        from webui.extensions import socketio
        from webui.jobs.reaper import start_reaper
        from webui.wsgi import print_setup_link

        app = create_app({"WAP_SETTINGS": settings})
    except (SettingsError, StoreUnavailable) as exc:
        raise UserError(str(exc)) from None
    start_reaper(settings)
    logging.basicConfig(level=logging.WARNING)
    print(f"WAP web server on {settings.url}/", flush=True)
    if tls is not None:
        from webui.tls import TlsServer, server_context

        print(tls.describe(settings.url), flush=True)
        print_setup_link(app, settings, settings.url)
        TlsServer(settings.host, settings.port, app, server_context(tls)).serve_forever()
        return 0
    print_setup_link(app, settings, settings.url)
    socketio.run(
        app,
        host=settings.host,
        port=settings.port,
        allow_unsafe_werkzeug=True,
        log_output=False,
        use_reloader=False,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from webui.config import SettingsError, require_services
    from webui.jobs.worker import run_worker
    from webui.store import StoreUnavailable

    settings = _settings()
    if os.geteuid() == 0:
        from webui.service_user import ServiceUserError, switch_to

        if not settings.worker_user:
            print(
                "wap worker: running as root, so jobs run as root on this machine: set"
                " WAP_WORKER_USER (or start the worker as an unprivileged user)",
                file=sys.stderr,
                flush=True,
            )
        else:
            try:
                switch_to(settings.worker_user)
            except (ServiceUserError, OSError) as exc:
                raise UserError(str(exc)) from None
            settings = _settings()  # job dirs of this user's
    try:
        require_services(settings)
        logging.basicConfig(level=logging.WARNING)
        return 0 if run_worker(settings, burst=args.burst) else 1
    except (SettingsError, StoreUnavailable) as exc:
        raise UserError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="start the whole platform on this machine (store, Redis, workers, web server)",
        description="Start the platform. Without WAP_MONGODB_URI / WAP_REDIS_URL it runs the "
        "embedded store and Redis with their data in WAP_DATA_DIR. Ctrl-C stops everything.",
    )
    up.add_argument(
        "--workers", type=int, default=None, help="RQ worker processes (default WAP_WORKERS or 2)"
    )
    up.set_defaults(handler=_up)
    web = subparsers.add_parser("web", help="run the web server (console, API, Socket.IO) alone")
    web.set_defaults(handler=_web)
    worker = subparsers.add_parser("worker", help="run one RQ worker for jobs")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(handler=_worker)
