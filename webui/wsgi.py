"""Serving the console: `production_app()`, the app for a production WSGI server
(`gunicorn 'webui.wsgi:production_app()'`, see webui/README.md), and what `wap web` shares with
it: the check that the front end is installed and the setup link printed until WAP is set up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from webui.config import Settings

VENDORED_CLIENT = Path(__file__).parent / "static" / "vendor" / "socket.io.min.js"


class FrontEndMissing(RuntimeError):
    """A file the pages need was not installed; the message says how to install it."""


def check_front_end() -> None:
    if not VENDORED_CLIENT.is_file():
        raise FrontEndMissing(
            f"{VENDORED_CLIENT} is missing (the job pages need it): run scripts/install, which "
            "takes socket.io-client from npm"
        )


def print_setup_link(app: Flask, settings: Settings, base: str | None = None) -> None:
    """Until WAP is set up, print the link that creates the first admin (at `base`, or as a path
    on the address the server is reached at when that is not known here)."""
    from webui.security import setup_token
    from webui.services.accounts import is_set_up

    if not is_set_up(app.extensions["wap.store"]):
        token = setup_token(settings)
        where = f"{base}/setup?token={token}" if base else f"/setup?token={token}"
        suffix = "" if base else " on the address this server is reached at"
        print(f"First start: create the administrator at {where}{suffix}", flush=True)


def production_app() -> Flask:
    """The app as `wap web` builds it, for a WSGI server. It prints the setup link until WAP is
    set up. It starts no reaper thread (a server that forks after loading the app would copy it):
    the workers' reapers mark lost jobs. What keeps it from starting is printed as one line and
    ends the process with 3, gunicorn's "worker failed to boot": it stops rather than retries."""
    from webui import create_app
    from webui.config import SettingsError, load_settings, require_services
    from webui.store import StoreUnavailable
    from webui.tls import TlsError, prepare

    try:
        check_front_end()
        settings = load_settings()
        prepare(settings)  # gunicorn serves them (--certfile, --keyfile): refuse ones it cannot
        require_services(settings)
        app = create_app({"WAP_SETTINGS": settings})
    except (FrontEndMissing, SettingsError, TlsError, StoreUnavailable) as exc:
        print(f"wap: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    print_setup_link(app, settings)
    return app
