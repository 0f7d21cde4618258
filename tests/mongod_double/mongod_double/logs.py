"""MongoDB's structured JSON log (4.4+), written to stdout or to ``systemLog.path``.

One line per event: ``{"t":{"$date":...},"s":"I","c":"NETWORK","id":23016,"ctx":...,"msg":...,
"attr":{...}}``, padded as mongod pads it. The last lines are kept for ``getLog``.
"""

from __future__ import annotations

import collections
import datetime
import os
import sys
import threading
from typing import IO

from bson import json_util

JSON_OPTIONS = json_util.JSONOptions(
    json_mode=json_util.JSONMode.RELAXED,
    datetime_representation=json_util.DatetimeRepresentation.ISO8601,
)
RING_SIZE = 1024


def timestamp(now: datetime.datetime | None = None) -> str:
    now = (now or datetime.datetime.now(datetime.UTC)).astimezone()
    text = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
    offset = now.strftime("%z")
    return f"{text}{offset[:3]}:{offset[3:]}"


def format_line(severity: str, component: str, log_id: int, ctx: str, msg: str, attr: dict) -> str:
    head = f'{{"t":{{"$date":"{timestamp()}"}},'
    head += (f'"s":"{severity}",').ljust(len('"s":"",') + 3)
    head += (f'"c":"{component}",').ljust(len('"c":"",') + 9)
    head += (f'"id":{log_id},').ljust(len('"id":,') + 8)
    body = {"ctx": ctx, "msg": msg}
    if attr:
        body["attr"] = attr
    text = json_util.dumps(body, json_options=JSON_OPTIONS, separators=(",", ":"))
    return head + text[1:]


class Logger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: IO[str] = sys.stdout
        self._path: str | None = None
        self.ring: collections.deque[str] = collections.deque(maxlen=RING_SIZE)
        self.total_lines = 0
        self.startup_warnings: list[str] = []

    def to_file(self, path: str, append: bool) -> None:
        """Log to ``path``; without ``append`` an existing file is renamed aside, as mongod does."""
        path = os.path.abspath(path)
        if not append and os.path.exists(path):
            os.rename(path, f"{path}.{self._rotation_suffix()}")
        with self._lock:
            self._stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
            self._path = path

    def to_stdout(self) -> None:
        with self._lock:
            self._stream = sys.stdout
            self._path = None

    @staticmethod
    def _rotation_suffix() -> str:
        return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%S")

    def rotate(self) -> bool:
        """``logRotate`` (rename): the current file moves aside and a new one starts."""
        with self._lock:
            if self._path is None:
                return False
            self._stream.close()
            os.rename(self._path, f"{self._path}.{self._rotation_suffix()}")
            self._stream = open(self._path, "a", encoding="utf-8")  # noqa: SIM115
            return True

    def log(
        self,
        severity: str,
        component: str,
        log_id: int,
        msg: str,
        attr: dict | None = None,
        ctx: str | None = None,
    ) -> None:
        line = format_line(
            severity, component, log_id, ctx or threading.current_thread().name, msg, attr or {}
        )
        with self._lock:
            self.ring.append(line)
            self.total_lines += 1
            if severity == "W" and ctx == "initandlisten":
                self.startup_warnings.append(line)
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass

    def info(self, component: str, log_id: int, msg: str, attr: dict | None = None, **kw) -> None:
        self.log("I", component, log_id, msg, attr, **kw)

    def warning(self, component: str, log_id: int, msg: str, attr: dict | None = None, **kw):
        self.log("W", component, log_id, msg, attr, **kw)

    def error(self, component: str, log_id: int, msg: str, attr: dict | None = None, **kw):
        self.log("E", component, log_id, msg, attr, **kw)

    def fatal(self, component: str, log_id: int, msg: str, attr: dict | None = None, **kw):
        self.log("F", component, log_id, msg, attr, **kw)


log = Logger()
