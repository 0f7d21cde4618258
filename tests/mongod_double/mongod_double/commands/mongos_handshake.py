"""mongos's connection-level commands: hello (``msg: "isdbgrid"``), ping, buildInfo, whatsmyuri,
getCmdLineOpts, listCommands, endSessions, shutdown, isdbgrid, and authentication (saslStart,
saslContinue, authenticate, logout, connectionStatus: mongod's own handlers, run against the
cluster's users that the router mirrors from the config servers).

Source: https://www.mongodb.com/docs/manual/reference/command/hello/ (mongos instances answer
``msg: "isdbgrid"`` and no replica set fields) and
https://www.mongodb.com/docs/manual/reference/command/isdbgrid/
"""

from __future__ import annotations

import datetime

from bson.int64 import Int64
from bson.objectid import ObjectId

from mongod_double.commands import Invocation
from mongod_double.commands.auth import (
    authenticate,
    hello_fields,
    logout,
    sasl_continue,
    sasl_start_command,
)
from mongod_double.commands.diagnostics import get_cmd_line_opts, shutdown
from mongod_double.commands.handshake import (
    CLIENT_METADATA_CANNOT_BE_MUTATED,
    LOGICAL_SESSION_TIMEOUT_MINUTES,
    MAX_BSON_OBJECT_SIZE,
    MAX_MESSAGE_SIZE_BYTES,
    MAX_WRITE_BATCH_SIZE,
    build_info_command,
    connection_status,
    end_sessions,
    ping,
    whatsmyuri,
)
from mongod_double.errors import CommandError
from mongod_double.sharding.registry import ROUTER_REGISTRY, router_command

TOPOLOGY_VERSION = {"processId": ObjectId(), "counter": Int64(0)}

for _name, _handler, _admin in (
    ("ping", ping, False),
    ("buildInfo", build_info_command, False),
    ("buildinfo", build_info_command, False),
    ("whatsmyuri", whatsmyuri, False),
    ("endSessions", end_sessions, False),
    ("getCmdLineOpts", get_cmd_line_opts, True),
    ("shutdown", shutdown, True),
    ("saslStart", sasl_start_command, False),
    ("saslContinue", sasl_continue, False),
    ("authenticate", authenticate, False),
    ("logout", logout, False),
    ("connectionStatus", connection_status, False),
):
    router_command(_name, admin_only=_admin)(_handler)


@router_command("hello", "isMaster", "ismaster")
def hello(inv: Invocation) -> dict:
    client = inv.body.get("client")
    if client is not None:
        if inv.ctx.client_metadata is not None:
            raise CommandError(
                CLIENT_METADATA_CANNOT_BE_MUTATED,
                "The client metadata document may only be sent in the first hello",
            )
        inv.ctx.client_metadata = client
    reply: dict = {}
    if inv.body.get("helloOk") and inv.name != "hello":
        reply["helloOk"] = True
    reply["isWritablePrimary" if inv.name == "hello" else "ismaster"] = True
    reply.update(
        msg="isdbgrid",
        topologyVersion=dict(TOPOLOGY_VERSION),
        maxBsonObjectSize=MAX_BSON_OBJECT_SIZE,
        maxMessageSizeBytes=MAX_MESSAGE_SIZE_BYTES,
        maxWriteBatchSize=MAX_WRITE_BATCH_SIZE,
        localTime=datetime.datetime.now(datetime.UTC),
        logicalSessionTimeoutMinutes=LOGICAL_SESSION_TIMEOUT_MINUTES,
        connectionId=inv.ctx.connection_id,
        minWireVersion=0,
        maxWireVersion=inv.server.version.max_wire_version,
        readOnly=False,
    )
    reply.update(hello_fields(inv))
    return reply


@router_command("isdbgrid")
def isdbgrid(inv: Invocation) -> dict:
    return {"isdbgrid": 1, "hostname": inv.server.host}


@router_command("listCommands")
def list_commands(inv: Invocation) -> dict:
    commands = {}
    for name in sorted(ROUTER_REGISTRY):
        spec = ROUTER_REGISTRY[name]
        commands[name] = {
            "help": (spec.handler.__doc__ or "").strip().split("\n")[0],
            "requiresAuth": False,
            "secondaryOk": True,
            "adminOnly": spec.admin_only,
            "apiVersions": [],
            "deprecatedApiVersions": [],
        }
    return {"commands": commands}
