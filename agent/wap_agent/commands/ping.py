"""``ping``: the agent answers, with its version and how long it has run."""

from __future__ import annotations

import socket
import time
from typing import Any

from wap_agent import __version__
from wap_agent.commands import Context, no_arguments


class Ping:
    name = "ping"

    def __init__(self, started: float) -> None:
        self.started = started  # time.monotonic() when the agent started

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        return no_arguments(args)

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        return {
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "hostname": socket.gethostname(),
        }
