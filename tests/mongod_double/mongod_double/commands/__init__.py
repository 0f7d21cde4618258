"""The command registry and dispatcher.

Each command module registers its handlers with ``@command("name", ...)``; a handler takes an
:class:`Invocation` and returns the reply document (``ok: 1`` is added). A name nobody registered
answers CommandNotFound (59), as mongod does. Later phases add modules (``replset.py``,
``auth.py``, ``sharding.py``) and import them in :func:`load_all`.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pymongo.errors import AutoReconnect, ConnectionFailure, OperationFailure, PyMongoError

from mongod_double.errors import (
    BAD_VALUE,
    COMMAND_NOT_FOUND,
    NOT_IMPLEMENTED,
    CloseConnection,
    CommandError,
)
from mongod_double.logs import log
from mongod_double.transactions import execute as run_in_transaction
from mongod_double.transactions import is_transactional
from mongod_double.wire import OP_QUERY, Request

if TYPE_CHECKING:
    from mongod_double.context import ConnectionContext
    from mongod_double.server import Server

COMMAND_MODULES = (
    "handshake", "crud", "ddl", "stats", "diagnostics", "replset", "auth", "applyops",
    "transactions",
)  # fmt: skip
# Legacy OP_QUERY is only accepted for the connection handshake since MongoDB 6.0.
OP_QUERY_COMMANDS = {"hello", "isMaster", "ismaster"}
UNSUPPORTED_OP_QUERY = 352
HOST_UNREACHABLE = 6

# NotWritablePrimary, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary, InterruptedAtShutdown,
# InterruptedDueToReplStateChange, PrimarySteppedDown, ShutdownInProgress.
STATE_CHANGE_CODES = frozenset({10107, 13435, 13436, 11600, 11602, 189, 91})


@dataclass
class Invocation:
    server: Server
    ctx: ConnectionContext
    name: str
    body: dict
    db: str
    request: Request
    started: float = field(default_factory=time.monotonic)
    opid: int = 0
    killed: bool = False
    # Filled by handlers for the profiler and serverStatus.
    profile: dict = field(default_factory=dict)

    @property
    def arg(self):
        """The command's first value (``{find: "c"}`` -> ``"c"``)."""
        return self.body[self.name]

    def ns(self, coll: str | None = None) -> str:
        return f"{self.db}.{coll if coll is not None else self.arg}"

    @property
    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


Handler = Callable[[Invocation], dict]


@dataclass
class CommandSpec:
    name: str
    handler: Handler
    admin_only: bool = False
    write: bool = False
    read: bool = False
    profile_op: str = "command"


REGISTRY: dict[str, CommandSpec] = {}


def command(
    name: str,
    *aliases: str,
    admin_only: bool = False,
    write: bool = False,
    read: bool = False,
    profile_op: str = "command",
) -> Callable[[Handler], Handler]:
    """Register a handler for ``name`` (and its aliases)."""

    def register(handler: Handler) -> Handler:
        for each in (name, *aliases):
            if each in REGISTRY:
                raise RuntimeError(f"command {each!r} registered twice")
            REGISTRY[each] = CommandSpec(each, handler, admin_only, write, read, profile_op)
        return handler

    return register


def load_all() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(f"mongod_double.commands.{module}")


def command_not_found(name: str) -> CommandError:
    return CommandError(COMMAND_NOT_FOUND, f"no such command: '{name}'")


def dispatch(server: Server, ctx: ConnectionContext, request: Request) -> dict:
    """Run one request and return its reply document: mongod and mongos alike, each with its
    own command set (``server.registry``) and the hooks of :class:`~mongod_double.server.Server`
    (``check_access``, ``execute``, ``after_command``, ``reply_fields``)."""
    body = dict(request.body)
    for identifier, docs in request.sequences.items():
        body[identifier] = docs
    if not body:
        return CommandError(BAD_VALUE, "empty command object").to_reply()
    name = next(iter(body))
    if request.op_code == OP_QUERY:
        db = request.full_collection_name.split(".", 1)[0]
        if name not in OP_QUERY_COMMANDS:
            return CommandError(
                UNSUPPORTED_OP_QUERY,
                f"Unsupported OP_QUERY command: {name}. The client driver may require an upgrade. "
                "For more details see https://dochub.mongodb.org/core/legacy-opcode-removal",
            ).to_reply()
    else:
        db = body.pop("$db", None)
        if not isinstance(db, str):
            return CommandError(40571, "OP_MSG requests require a $db argument").to_reply()
    spec = server.registry.get(name)
    inv = Invocation(server, ctx, name, body, db, request)
    if spec is None:
        server.metrics.add(server.metrics.opcounters, "command")
        server.metrics.failed_commands[name] += 1
        return command_not_found(name).to_reply()
    server.metrics.commands[name] += 1
    server.ops.begin(inv)
    try:
        reply = _run(spec, inv)
    finally:
        server.ops.end(inv)
    server.after_command(spec, inv, reply)
    return reply


def _run(spec: CommandSpec, inv: Invocation) -> dict:
    server = inv.server
    try:
        server.check_access(inv)
        if spec.admin_only and inv.db != "admin":
            raise CommandError(13, f"{spec.name} may only be run against the admin database.")
        if server.registry is REGISTRY and is_transactional(inv.body):
            reply = run_in_transaction(server, spec, inv)
        else:
            reply = server.execute(spec, inv)
    except CloseConnection:
        raise
    except CommandError as exc:
        server.metrics.failed_commands[spec.name] += 1
        server.metrics.add(server.metrics.asserts, "user")
        reply = exc.to_reply()
        if exc.code in STATE_CHANGE_CODES:
            # Since 4.4 these carry the topologyVersion, so that drivers can tell a current
            # state change from a stale one (SDAM spec, "topologyVersion" in error replies).
            reply.setdefault("topologyVersion", dict(server.replication.topology_version))
    except PyMongoError as exc:  # the query engine refused (mongomock raises pymongo's
        # OperationFailure), or another member, shard or config server failed
        server.metrics.failed_commands[spec.name] += 1
        reply = remote_error(exc).to_reply()
    except NotImplementedError as exc:
        server.metrics.failed_commands[spec.name] += 1
        reply = CommandError(NOT_IMPLEMENTED, f"not implemented by {server.engine}: {exc}")
        reply = reply.to_reply()
    except Exception as exc:  # a bug in the double: report it, keep the connection
        server.metrics.failed_commands[spec.name] += 1
        server.metrics.add(server.metrics.asserts, "regular")
        log.error(
            "COMMAND",
            21962,
            "Assertion while executing command",
            {
                "command": spec.name,
                "db": inv.db,
                "error": repr(exc),
                "trace": traceback.format_exc(limit=5),
            },
            ctx=inv.ctx.thread_name,
        )
        reply = CommandError(1, f"internal error in {server.engine}: {exc!r}").to_reply()
    reply.update(server.reply_fields())
    return reply


def remote_error(exc: PyMongoError) -> CommandError:
    """A failure reported in pymongo's terms, as this server reports it: another server's (a
    shard, a config server, a member) with its own code and message, HostUnreachable when it
    could not be reached, or the query engine's (BadValue when it gives no code)."""
    if isinstance(exc, OperationFailure):
        details = exc.details or {}
        code = exc.code if isinstance(exc.code, int) and exc.code > 0 else details.get("code")
        extra = {k: v for k, v in details.items() if k in ("keyPattern", "keyValue")}
        return CommandError(code or BAD_VALUE, details.get("errmsg", str(exc)), **extra)
    if isinstance(exc, (ConnectionFailure, AutoReconnect)):
        return CommandError(HOST_UNREACHABLE, f"Could not reach a shard or config server: {exc}")
    return CommandError(1, str(exc))
