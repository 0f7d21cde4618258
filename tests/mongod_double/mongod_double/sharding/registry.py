"""The router's command registry and dispatcher.

mongos has its own command set: the modules ``commands/mongos_*.py`` register their handlers
here with ``@router_command(...)`` (the same :class:`Invocation` as mongod's commands, with
``inv.server`` the :class:`~mongod_double.mongos.Router`). A name nobody registered answers
CommandNotFound (59), as on mongod. Errors a shard or the config servers return are relayed with
their own code and message.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

import mongomock
from pymongo.errors import AutoReconnect, ConnectionFailure, OperationFailure, PyMongoError

from mongod_double.commands import (
    OP_QUERY_COMMANDS,
    UNSUPPORTED_OP_QUERY,
    CommandSpec,
    Handler,
    Invocation,
    command_not_found,
)
from mongod_double.errors import BAD_VALUE, NOT_IMPLEMENTED, CloseConnection, CommandError
from mongod_double.logs import log
from mongod_double.wire import OP_QUERY, Request

if TYPE_CHECKING:
    from mongod_double.context import ConnectionContext
    from mongod_double.mongos import Router

ROUTER_MODULES = ("mongos_handshake", "mongos_admin", "mongos_crud", "mongos_ddl")
ROUTER_REGISTRY: dict[str, CommandSpec] = {}
HOST_UNREACHABLE = 6


def router_command(
    name: str, *aliases: str, admin_only: bool = False, profile_op: str = "command"
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for each in (name, *aliases):
            if each in ROUTER_REGISTRY:
                raise RuntimeError(f"router command {each!r} registered twice")
            ROUTER_REGISTRY[each] = CommandSpec(each, handler, admin_only, profile_op=profile_op)
        return handler

    return register


def load_router_commands() -> None:
    for module in ROUTER_MODULES:
        importlib.import_module(f"mongod_double.commands.{module}")


def remote_error(exc: PyMongoError) -> CommandError:
    """A shard's or config server's failure, as the router reports it."""
    if isinstance(exc, OperationFailure):
        details = exc.details or {}
        code = exc.code or details.get("code") or 1
        extra = {k: v for k, v in details.items() if k in ("keyPattern", "keyValue")}
        return CommandError(code, details.get("errmsg", str(exc)), **extra)
    if isinstance(exc, (ConnectionFailure, AutoReconnect)):
        return CommandError(HOST_UNREACHABLE, f"Could not reach a shard or config server: {exc}")
    return CommandError(1, str(exc))


def dispatch(server: Router, ctx: ConnectionContext, request: Request) -> dict:
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
                UNSUPPORTED_OP_QUERY, f"Unsupported OP_QUERY command: {name}"
            ).to_reply()
    else:
        db = body.pop("$db", None)
        if not isinstance(db, str):
            return CommandError(40571, "OP_MSG requests require a $db argument").to_reply()
    spec = ROUTER_REGISTRY.get(name)
    inv = Invocation(server, ctx, name, body, db, request)
    if spec is None:
        server.metrics.add(server.metrics.opcounters, "command")
        server.metrics.failed_commands[name] += 1
        return command_not_found(name).to_reply()
    server.metrics.commands[name] += 1
    server.ops.begin(inv)
    try:
        return _run(spec, inv)
    finally:
        server.ops.end(inv)


def _run(spec: CommandSpec, inv: Invocation) -> dict:
    server = inv.server
    try:
        server.check_access(inv)
        if spec.admin_only and inv.db != "admin":
            raise CommandError(13, f"{spec.name} may only be run against the admin database.")
        reply = spec.handler(inv)
        reply.setdefault("ok", 1.0)
        return reply
    except CloseConnection:
        raise
    except CommandError as exc:
        reply = exc.to_reply()
    except PyMongoError as exc:
        reply = remote_error(exc).to_reply()
    except NotImplementedError as exc:
        reply = CommandError(NOT_IMPLEMENTED, f"not implemented by the mongos double: {exc}")
        reply = reply.to_reply()
    except mongomock.OperationFailure as exc:
        code = exc.code if isinstance(exc.code, int) and exc.code > 0 else BAD_VALUE
        reply = CommandError(code, str(exc)).to_reply()
    except Exception as exc:  # a bug in the double: report it, keep the connection
        log.error(
            "COMMAND",
            21962,
            "Assertion while executing command",
            {"command": spec.name, "error": repr(exc), "trace": traceback.format_exc(limit=5)},
            ctx=inv.ctx.thread_name,
        )
        reply = CommandError(1, f"internal error in the mongos double: {exc!r}").to_reply()
    server.metrics.failed_commands[spec.name] += 1
    return reply
