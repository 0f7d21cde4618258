"""Connection-level commands: hello / isMaster, ping, buildInfo, whatsmyuri, connectionStatus,
listCommands, endSessions."""

from __future__ import annotations

import datetime
import time

from mongod_double import authz
from mongod_double.commands import Invocation, auth, command
from mongod_double.errors import CommandError
from mongod_double.role import Role

MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
LOGICAL_SESSION_TIMEOUT_MINUTES = 30
CLIENT_METADATA_CANNOT_BE_MUTATED = 186


def _await_topology_change(inv: Invocation) -> None:
    """Awaitable hello: wait up to maxAwaitTimeMS while the client's topologyVersion is current."""
    client_version = inv.body.get("topologyVersion")
    max_await = inv.body.get("maxAwaitTimeMS")
    if not isinstance(client_version, dict) or max_await is None:
        return
    repl = inv.server.replication
    deadline = time.monotonic() + max(0, int(max_await)) / 1000
    with repl.topology_changed:
        while (
            client_version.get("processId") == repl.topology_version["processId"]
            and client_version.get("counter") == repl.topology_version["counter"]
            and not inv.server.shutdown_requested.is_set()
            and not inv.killed
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            repl.topology_changed.wait(min(remaining, 0.5))


@command("hello", "isMaster", "ismaster")
def hello(inv: Invocation) -> dict:
    client = inv.body.get("client")
    if client is not None:
        if inv.ctx.client_metadata is not None:
            raise CommandError(
                CLIENT_METADATA_CANNOT_BE_MUTATED,
                "The client metadata document may only be sent in the first hello",
            )
        inv.ctx.client_metadata = client
        from mongod_double.logs import log

        log.info(
            "NETWORK",
            51800,
            "client metadata",
            {"remote": inv.ctx.peer_text, "client": inv.ctx.thread_name, "doc": client},
            ctx=inv.ctx.thread_name,
        )
    _await_topology_change(inv)
    server = inv.server
    fields = server.replication.hello_fields()
    writable = fields.pop("isWritablePrimary")
    reply: dict = {}
    if inv.body.get("helloOk") and inv.name != "hello":
        reply["helloOk"] = True
    topology = fields.pop("topologyVersion")
    if server.role is Role.REPLICA_SET_MEMBER or "setName" in fields or "isreplicaset" in fields:
        reply.update(topologyVersion=topology)
        for key in ("hosts", "setName", "setVersion"):
            if key in fields:
                reply[key] = fields.pop(key)
        reply["isWritablePrimary" if inv.name == "hello" else "ismaster"] = writable
        reply.update(fields)
    else:
        reply["isWritablePrimary" if inv.name == "hello" else "ismaster"] = writable
        reply["topologyVersion"] = topology
    if server.role is Role.MONGOS:
        reply["msg"] = "isdbgrid"
    reply.update(
        maxBsonObjectSize=MAX_BSON_OBJECT_SIZE,
        maxMessageSizeBytes=MAX_MESSAGE_SIZE_BYTES,
        maxWriteBatchSize=MAX_WRITE_BATCH_SIZE,
        localTime=datetime.datetime.now(datetime.UTC),
        logicalSessionTimeoutMinutes=LOGICAL_SESSION_TIMEOUT_MINUTES,
        connectionId=inv.ctx.connection_id,
        minWireVersion=0,
        maxWireVersion=server.version.max_wire_version,
        readOnly=False,
    )
    reply.update(auth.hello_fields(inv))
    return reply


@command("ping")
def ping(inv: Invocation) -> dict:
    return {}


def build_info(server) -> dict:
    version = server.version
    return {
        "version": version.text,
        "gitVersion": version.git_version,
        "modules": [],
        "allocator": "tcmalloc",
        "javascriptEngine": "mozjs",
        "sysInfo": "deprecated",
        "versionArray": version.version_array,
        "openssl": {"running": "disabled", "compiled": "disabled"},
        "buildEnvironment": {
            "distmod": "debian12",
            "distarch": "x86_64",
            "cc": "python3 (mongod double)",
            "ccflags": "",
            "cxx": "",
            "cxxflags": "",
            "linkflags": "",
            "target_arch": "x86_64",
            "target_os": "linux",
            "cppdefines": "",
        },
        "bits": 64,
        "debug": False,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "storageEngines": ["wiredTiger"],
    }


@command("buildInfo", "buildinfo")
def build_info_command(inv: Invocation) -> dict:
    return build_info(inv.server)


@command("whatsmyuri")
def whatsmyuri(inv: Invocation) -> dict:
    return {"you": inv.ctx.peer_text}


@command("connectionStatus")
def connection_status(inv: Invocation) -> dict:
    info: dict = {
        "authenticatedUsers": list(inv.ctx.authenticated_users),
        "authenticatedUserRoles": list(inv.ctx.authenticated_roles),
    }
    if inv.body.get("showPrivileges"):
        privileges = authz.session_privileges(inv) if inv.ctx.authenticated_users else []
        info["authenticatedUserPrivileges"] = auth.privilege_documents(privileges)
    return {"authInfo": info}


@command("listCommands")
def list_commands(inv: Invocation) -> dict:
    """The commands this server runs (mongod's or, on a router, mongos's)."""
    registry = inv.server.registry
    commands = {}
    for name in sorted(registry):
        spec = registry[name]
        commands[name] = {
            "help": (spec.handler.__doc__ or "").strip().split("\n")[0],
            "requiresAuth": False,
            "secondaryOk": not spec.write,
            "adminOnly": spec.admin_only,
            "apiVersions": [],
            "deprecatedApiVersions": [],
        }
    return {"commands": commands}


@command("endSessions")
def end_sessions(inv: Invocation) -> dict:
    """Sessions hold no server state in the double (no transactions), so ending one is immediate."""
    return {}
