"""mongos's connection-level commands: hello (``msg: "isdbgrid"``), ping, buildInfo, whatsmyuri,
getCmdLineOpts, listCommands, endSessions, shutdown, isdbgrid, serverStatus, and authentication
(saslStart, saslContinue, authenticate, logout, connectionStatus: mongod's own handlers, run
against the cluster's users that the router mirrors from the config servers).

Source: https://www.mongodb.com/docs/manual/reference/command/hello/ (mongos instances answer
``msg: "isdbgrid"`` and no replica set fields) and
https://www.mongodb.com/docs/manual/reference/command/isdbgrid/
"""

from __future__ import annotations

from bson.int64 import Int64

from mongod_double.commands import Invocation
from mongod_double.commands.auth import (
    authenticate,
    logout,
    sasl_continue,
    sasl_start_command,
)
from mongod_double.commands.diagnostics import get_cmd_line_opts, instance_status, shutdown
from mongod_double.commands.handshake import (
    build_info_command,
    connection_status,
    end_sessions,
    hello,
    list_commands,
    ping,
    whatsmyuri,
)
from mongod_double.sharding.registry import router_command

# mongod's hello: on a router it answers isWritablePrimary and msg "isdbgrid", no set fields.
router_command("hello", "isMaster", "ismaster")(hello)

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
    ("listCommands", list_commands, False),
):
    router_command(_name, admin_only=_admin)(_handler)


@router_command("isdbgrid")
def isdbgrid(inv: Invocation) -> dict:
    return {"isdbgrid": 1, "hostname": inv.server.host}


@router_command("serverStatus")
def server_status(inv: Invocation) -> dict:
    """mongos's serverStatus: the instance sections mongod has too, and the router's own
    transactions section (the double runs no transactions: every count is 0). No storage engine,
    replication, opcountersRepl or opLatencies: MongoDB's page lists those for mongod.

    Source: https://www.mongodb.com/docs/manual/reference/command/serverStatus/ ("transactions",
    mongos tab)."""
    server = inv.server
    reply = instance_status(server)
    commit_type = {
        "initiated": Int64(0),
        "successful": Int64(0),
        "successfulDurationMicros": Int64(0),
    }
    reply["transactions"] = {
        "currentOpen": Int64(0),
        "currentActive": Int64(0),
        "currentInactive": Int64(0),
        "totalStarted": Int64(0),
        "totalCommitted": Int64(0),
        "totalAborted": Int64(0),
        "abortCause": {},
        "totalContactedParticipants": Int64(0),
        "totalParticipantsAtCommit": Int64(0),
        "totalRequestsTargeted": Int64(0),
        "commitTypes": {
            name: dict(commit_type)
            for name in (
                "noShards",
                "singleShard",
                "singleWriteShard",
                "readOnly",
                "twoPhaseCommit",
                "recoverWithToken",
            )
        },
    }
    return reply
