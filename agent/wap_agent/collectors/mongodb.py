"""One mongod or mongos, through its URI: serverStatus, replica set state, oplog, sizes.

The collector keeps one MongoClient for its life (the driver reconnects by itself). A server
that cannot be reached, a login that fails or a command that is refused never raises out of
``collect()``: the round then gives ``mongodb_up 0`` and the reason in ``errors``; a refused
optional command (replSetGetStatus, dbStats of a database the user may not read) is an error of
the round while ``mongodb_up`` stays 1.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from pymongo import MongoClient, uri_parser
from pymongo.errors import OperationFailure, PyMongoError

from wap_agent.collectors.mongodb_sizes import SizeSurvey
from wap_agent.collectors.mongodb_status import (
    oplog_samples,
    replset_samples,
    server_status_samples,
)
from wap_agent.sample import GAUGE, Sample

# replSetGetStatus on a member that has no set (yet): a state, not an error.
NO_REPLICA_SET = {76, 94}  # NoReplicationEnabled, NotYetInitialized


def instance_name(uri: str) -> str:
    """``host:port`` of a URI's first host: a label that never carries the credentials."""
    try:
        nodes = uri_parser.parse_uri(uri, validate=False, warn=True)["nodelist"]
    except Exception:
        return "unparsable-uri"
    host, port = nodes[0]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redact(message: str, uri: str) -> str:
    """An error message with the URI's password (if any) cut out."""
    try:
        password = uri_parser.parse_uri(uri, validate=False, warn=True).get("password")
    except Exception:
        password = None
    return message.replace(password, "***") if password else message


class MongoCollector:
    def __init__(
        self,
        uri: str,
        timeout_ms: int = 5000,
        sizes: SizeSurvey | None = None,
        client_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.uri = uri
        self.instance = instance_name(uri)
        self.name = f"mongodb {self.instance}"
        self.timeout_ms = timeout_ms
        self.sizes = sizes if sizes is not None else SizeSurvey()
        self.client_options = dict(client_options or {})
        self.clock = clock
        self.errors: list[str] = []
        self.commands = 0
        self._client: MongoClient | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"instance": self.instance}

    def client(self) -> MongoClient:
        if self._client is None:
            options: dict[str, Any] = {
                "appname": "wap-agent",
                "serverSelectionTimeoutMS": self.timeout_ms,
                "connectTimeoutMS": self.timeout_ms,
                "socketTimeoutMS": 6 * self.timeout_ms,
            }
            parsed = uri_parser.parse_uri(self.uri, validate=False, warn=True)
            if len(parsed["nodelist"]) == 1 and "directconnection" not in parsed["options"]:
                options["directConnection"] = True  # this process, whatever its role in a set
            options.update(self.client_options)
            self._client = MongoClient(self.uri, **options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def collect(self) -> list[Sample]:
        self.errors = []
        self.commands = 0
        started = time.monotonic()
        try:
            client = self.client()
            status = self._command(client, "admin", {"serverStatus": 1})
        except Exception as exc:  # unreachable, auth failure, refused, bad URI
            self.errors.append(self._describe("serverStatus", exc))
            return [self._up(0.0)]
        ts = self.clock()
        samples = [self._up(1.0)]
        samples += server_status_samples(status, self.labels, ts)
        if not _is_mongos(status):
            if "repl" in status:
                samples += self._replica_set(client)
            try:
                self.sizes.run(client, self.errors)
            except Exception as exc:
                self.errors.append(self._describe("sizes", exc))
            self.commands += self.sizes.commands
            samples += self.sizes.samples(self.labels)
        duration = time.monotonic() - started
        samples.append(
            Sample("mongodb_collect_duration_seconds", duration, GAUGE, self.labels, self.clock())
        )
        samples.append(
            Sample("mongodb_collect_commands", float(self.commands), GAUGE, self.labels, ts)
        )
        return samples

    def _up(self, value: float) -> Sample:
        return Sample("mongodb_up", value, GAUGE, self.labels, self.clock())

    def _command(self, client: MongoClient, db: str, command: dict) -> dict:
        self.commands += 1
        return client[db].command(command)

    def _describe(self, what: str, exc: BaseException) -> str:
        if isinstance(exc, OperationFailure):
            text = f"{what}: {exc.details.get('errmsg', exc) if exc.details else exc}"
            text += f" (code {exc.code}, {exc.details.get('codeName', '') if exc.details else ''})"
        else:
            # A server-selection timeout describes the whole topology after ", Timeout:": the
            # first part says what failed.
            detail = str(exc).split(", Timeout:")[0]
            text = f"{what}: {type(exc).__name__}: {detail}"
        return redact(text, self.uri)

    def _replica_set(self, client: MongoClient) -> list[Sample]:
        samples: list[Sample] = []
        try:
            status = self._command(client, "admin", {"replSetGetStatus": 1})
        except OperationFailure as exc:
            if exc.code not in NO_REPLICA_SET:
                self.errors.append(self._describe("replSetGetStatus", exc))
            return samples
        except PyMongoError as exc:
            self.errors.append(self._describe("replSetGetStatus", exc))
            return samples
        samples += replset_samples(status, self.labels, self.clock())
        oplog = client["local"]["oplog.rs"]
        try:
            self.commands += 3
            first = oplog.find_one({}, {"ts": 1}, sort=[("$natural", 1)])
            last = oplog.find_one({}, {"ts": 1}, sort=[("$natural", -1)])
            stats = next(iter(oplog.aggregate([{"$collStats": {"storageStats": {}}}])), None)
        except PyMongoError as exc:
            self.errors.append(self._describe("oplog", exc))
            return samples
        samples += oplog_samples(first, last, stats, self.labels, self.clock())
        return samples


def _is_mongos(status: dict) -> bool:
    process = str(status.get("process", ""))
    return process.rsplit("/", 1)[-1].split(".")[0] == "mongos"
