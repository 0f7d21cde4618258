"""Server parameters for getParameter / setParameter / --setParameter.

Only parameters whose effect the double really has are registered; every other name is unknown
and fails as it does on mongod for unregistered names. Besides the settable ones, ``fixed``
parameters state a fact of the double (its SCRAM iteration counts, its journal flush interval, no
test commands, no FTDC, queries always scan); getParameter reports them, and setting one is
refused with NotImplemented (238) at run time or with an error at start-up, never ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson.int64 import Int64

from mongod_double.errors import (
    BAD_VALUE,
    ILLEGAL_OPERATION,
    INVALID_OPTIONS,
    NOT_IMPLEMENTED,
    CommandError,
)


@dataclass
class Parameter:
    value: Any
    convert: Callable[[Any], Any]
    runtime: bool = True  # settable with setParameter (else only at startup)
    startup: bool = True  # settable with --setParameter
    fixed: bool = False  # mongod lets users set it; the double's value cannot change


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not a number")
    return int(value)


def _positive(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError("must be greater than or equal to 1")
    return number


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


def _fixed(value: Any) -> Parameter:
    return Parameter(value, lambda v: v, runtime=False, startup=True, fixed=True)


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
            "ttlMonitorEnabled": Parameter(True, _bool),
            "ttlMonitorSleepSecs": Parameter(60, _positive),
            # Operations per applyOps entry of a transaction (more: partialTxn entries).
            "maxNumberOfTransactionOperationsInSingleOplogEntry": Parameter(
                2147483647, _positive, runtime=False
            ),
            # Facts of the double (scram.py, storage.py, the query engine), not settable.
            "scramIterationCount": _fixed(10000),
            "scramSHA256IterationCount": _fixed(15000),
            "journalCommitInterval": _fixed(500),
            "enableTestCommands": _fixed(False),
            "diagnosticDataCollectionEnabled": _fixed(False),
            "notablescan": _fixed(False),
            "allowDiskUseByDefault": _fixed(True),
            "redactClientLogData": _fixed(False),
        }

    def get(self, name: str) -> Any:
        return self.table[name].value

    def details(self, name: str) -> dict:
        """getParameter's showDetails form of one parameter."""
        param = self.table[name]
        return {
            "value": param.value,
            "settableAtRuntime": param.runtime and not param.fixed,
            "settableAtStartup": param.startup and not param.fixed,
        }

    def names(self) -> list[str]:
        return list(self.table)

    def set_at_startup(self, values: dict[str, Any]) -> str | None:
        """Apply --setParameter values; returns an error message or None."""
        for name, value in values.items():
            param = self.table.get(name)
            if param is None or not param.startup:
                return f"Unknown --setParameter '{name}'"
            if param.fixed:
                return f"the mongod double cannot change the parameter '{name}' ({param.value!r})"
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
            if param.fixed:
                raise CommandError(
                    NOT_IMPLEMENTED,
                    f"the mongod double cannot change the parameter {name} ({param.value!r})",
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
