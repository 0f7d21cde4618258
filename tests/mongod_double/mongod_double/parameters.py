"""Server parameters for getParameter / setParameter / --setParameter.

Only parameters whose effect the double really has are registered; every other name is unknown
and fails as it does on mongod for unregistered names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson.int64 import Int64

from mongod_double.errors import BAD_VALUE, ILLEGAL_OPERATION, INVALID_OPTIONS, CommandError


@dataclass
class Parameter:
    value: Any
    convert: Callable[[Any], Any]
    runtime: bool = True  # settable with setParameter (else only at startup)
    startup: bool = True  # settable with --setParameter


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not a number")
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError("not a boolean")
        return value.lower() in ("true", "1")
    return bool(value)


def _mechanisms(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    for item in items:
        if item not in ("SCRAM-SHA-1", "SCRAM-SHA-256", "MONGODB-X509", "PLAIN", "GSSAPI"):
            raise ValueError(f"Received authentication mechanism {item} which is unknown")
    return items


class Parameters:
    def __init__(self) -> None:
        self.table: dict[str, Parameter] = {
            "logLevel": Parameter(0, _int),
            "quiet": Parameter(False, _bool),
            "cursorTimeoutMillis": Parameter(Int64(600000), lambda v: Int64(_int(v))),
            "authenticationMechanisms": Parameter(
                ["MONGODB-X509", "SCRAM-SHA-1", "SCRAM-SHA-256"], _mechanisms, runtime=False
            ),
            "enableLocalhostAuthBypass": Parameter(True, _bool, runtime=False),
        }

    def get(self, name: str) -> Any:
        return self.table[name].value

    def names(self) -> list[str]:
        return list(self.table)

    def set_at_startup(self, values: dict[str, Any]) -> str | None:
        """Apply --setParameter values; returns an error message or None."""
        for name, value in values.items():
            param = self.table.get(name)
            if param is None or not param.startup:
                return f"Unknown --setParameter '{name}'"
            try:
                param.value = param.convert(value)
            except (TypeError, ValueError) as exc:
                return f'Bad value for parameter "{name}": {exc}'
        return None

    def set_at_runtime(self, values: dict[str, Any]) -> dict[str, Any]:
        """setParameter: validate all first, then set; returns ``{name: was}``-style reply."""
        if not values:
            raise CommandError(
                INVALID_OPTIONS, "no option found to set, use help:true to see options "
            )
        converted = {}
        for name, value in values.items():
            param = self.table.get(name)
            if param is None:
                raise CommandError(
                    INVALID_OPTIONS,
                    f"attempted to set unrecognized parameter [{name}], use help:true to see "
                    "options ",
                )
            if not param.runtime:
                raise CommandError(ILLEGAL_OPERATION, f"not allowed to change [{name}] at runtime")
            try:
                converted[name] = param.convert(value)
            except (TypeError, ValueError) as exc:
                raise CommandError(BAD_VALUE, f"Invalid value for {name}: {exc}") from exc
        reply: dict[str, Any] = {}
        for index, (name, value) in enumerate(converted.items()):
            if index == 0:
                reply["was"] = self.table[name].value
            self.table[name].value = value
        return reply
