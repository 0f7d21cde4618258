"""`wap up`, `wap web`, `wap worker`: the platform's commands (registered in wap.cli), and
`production_app()`, the app for a production WSGI server (see webui/README.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from wap.cli import UserError

if TYPE_CHECKING:
    from flask import Flask

    from webui.config import Settings
    from webui.tls import TlsFiles


def _settings() -> Settings:
    from webui.config import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise UserError(str(exc)) from None


def _check_front_end() -> None:
    from pathlib import Path

    vendored = Path(__file__).parent / "static" / "vendor" / "socket.io.min.js"
    if not vendored.is_file():
        raise UserError(
            f"{vendored} is missing (the job pages need it): run scripts/install, which takes "
            "socket.io-client from npm"
        )


def _tls(settings: Settings) -> TlsFiles | None:
    """The certificate and key to serve with (made first under WAP_TLS=auto), checked."""
    from webui.tls import TlsError, prepare

    try:
        return prepare(settings)
    except TlsError as exc:
        raise UserError(str(exc)) from None


def _up(args: argparse.Namespace) -> int:
    from webui.embedded import EmbeddedError, run_platform

    _check_front_end()
    settings = _settings()
    tls = _tls(settings)
    if tls is not None:
        print(tls.describe(settings.url), flush=True)
    try:
        return run_platform(settings, workers=args.workers)
    except EmbeddedError as exc:
        raise UserError(str(exc)) from None


def _web(args: argparse.Namespace) -> int:
    from webui.config import SettingsError, require_services
    from webui.store import StoreUnavailable

    _check_front_end()
    settings = _settings()
    tls = _tls(settings)
    try:
        require_services(settings)
        from webui import create_app
        from webui.extensions import socketio
        from webui.jobs.reaper import start_reaper

        app = create_app({"WAP_SETTINGS": settings})
    except (SettingsError, StoreUnavailable) as exc:
        raise UserError(str(exc)) from None
    start_reaper(settings)
    logging.basicConfig(level=logging.WARNING)
    print(f"WAP web server on {settings.url}/", flush=True)
    if tls is not None:
        from webui.tls import TlsServer, server_context

        print(tls.describe(settings.url), flush=True)
        _print_setup_link(app, settings, settings.url)
        TlsServer(settings.host, settings.port, app, server_context(tls)).serve_forever()
        return 0
    _print_setup_link(app, settings, settings.url)
    socketio.run(
        app,
        host=settings.host,
        port=settings.port,
        allow_unsafe_werkzeug=True,
        log_output=False,
        use_reloader=False,
    )
    return 0


def production_app() -> Flask:
    """The app as `wap web` builds it, for a WSGI server: `gunicorn 'webui.cli:production_app()'`.
    It prints the setup link until WAP is set up. It starts no reaper thread (a server that forks
    after loading the app would copy it): the workers' reapers mark lost jobs."""
    from webui import create_app
    from webui.config import SettingsError, require_services
    from webui.store import StoreUnavailable

    try:
        _check_front_end()
        settings = _settings()
        _tls(settings)  # gunicorn serves them (--certfile, --keyfile): refuse ones that cannot be
        require_services(settings)
        app = create_app({"WAP_SETTINGS": settings})
    except (UserError, SettingsError, StoreUnavailable) as exc:
        print(f"wap: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None  # gunicorn's "worker failed to boot": it stops, not retries
    _print_setup_link(app, settings)
    return app


def _print_setup_link(app: Flask, settings: Settings, base: str | None = None) -> None:
    """Until WAP is set up, print the link that creates the first admin (at `base`, or as a path
    on the address the server is reached at when that is not known here)."""
    from webui.security import setup_token
    from webui.services.accounts import is_set_up

    if not is_set_up(app.extensions["wap.store"]):
        token = setup_token(settings)
        where = f"{base}/setup?token={token}" if base else f"/setup?token={token}"
        suffix = "" if base else " on the address this server is reached at"
        print(f"First start: create the administrator at {where}{suffix}", flush=True)


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


def main(argv: list[str] | None = None) -> int:
    """`python -m webui.cli up|web|worker`: the same commands without the rest of `wap`
    (how `wap up` starts its children)."""
    from wap.cli import main as wap_main

    return wap_main(argv, modules=["webui.cli"])


if __name__ == "__main__":
    raise SystemExit(main())
