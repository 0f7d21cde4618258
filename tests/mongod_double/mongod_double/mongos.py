"""mongos: the router of a sharded cluster.

The router is a :class:`~mongod_double.server.Server` (same listeners, wire protocol, TLS,
connection threads, cursors, counters and logging) with no dbPath and its own command set
(``commands/mongos_*.py``, dispatched by :mod:`mongod_double.sharding.registry`). It keeps no
data: the catalog is read from the config server replica set named by ``sharding.configDB``, and
documents live on the shards. The balancer runs in the routers (see ``sharding/balancer.py``).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time

from pymongo.errors import PyMongoError

from mongod_double import authz
from mongod_double.authz import ROLES_NS, USERS_NS
from mongod_double.commands import CommandSpec, Invocation
from mongod_double.errors import StartupError
from mongod_double.logs import log
from mongod_double.options import ServerOptions, fail
from mongod_double.server import Server
from mongod_double.sharding.balancer import Balancer
from mongod_double.sharding.cluster import CODEC, Cluster, parse_connection_string
from mongod_double.sharding.registry import ROUTER_REGISTRY, load_router_commands
from mongod_double.version import Version

CONFIG_SERVER_PORT = 27019
CLOSE_TIMEOUT_SECONDS = 1.0
# mongos records itself in config.mongos at start-up and then every 30 seconds (its "ping").
PING_SECONDS = 30.0
USER_SYNC_SECONDS = 0.5
LOGIN_COMMANDS = ("saslStart", "saslContinue", "authenticate")


def validate_router_options(options: ServerOptions) -> None:
    """mongos's own start-up rules: a config server replica set is required."""
    config_db = options.get("sharding.configDB")
    if not config_db:
        fail("BadValue: error: no args for --configdb", "mongos")
    set_name, hosts = parse_connection_string(config_db)
    if not set_name or not hosts:
        fail("BadValue: configdb supports only replica set connection string", "mongos", False)
    seeds = [h if ":" in h else f"{h}:{CONFIG_SERVER_PORT}" for h in hosts]
    options.parsed["sharding"]["configDB"] = f"{set_name}/{','.join(seeds)}"


class Router(Server):
    def __init__(self, options: ServerOptions, version: Version) -> None:
        super().__init__(options, version)
        self.cluster: Cluster | None = None
        self._users_synced = 0.0
        self.balancer: Balancer | None = None
        load_router_commands()

    def start(self) -> None:
        error = self.parameters.set_at_startup(self.options.get("setParameter", {}))
        if error:
            raise StartupError(2, 20574, "Error during global initialization", {"error": error})
        self._start_security()
        config_db = self.options.get("sharding.configDB")
        if len(parse_connection_string(config_db)[1]) < 3:
            log.warning(
                "SHARDING",
                24132,
                "Running a sharded cluster with fewer than 3 config servers should only be done "
                "for testing purposes and is not recommended for production.",
                ctx="main",
            )
        self.cluster = Cluster(config_db, self.options)
        self._bind()
        self.balancer = Balancer(self)
        self.balancer.start()
        self._pinged = threading.Event()
        threading.Thread(target=self._ping_loop, name="Uptime-reporter", daemon=True).start()

    def _ping_loop(self) -> None:
        """config.mongos: {_id: "<host name>:<port>", ping, up (seconds), waiting, mongoVersion,
        advisoryHostFQDNs}, as mongos's uptime reporter writes it (sh.status lists them)."""
        while not self._pinged.is_set():
            with contextlib.suppress(Exception):  # the config servers may be away: next time
                self.cluster.config.mongos.update_one(
                    {"_id": self.host},
                    {"$set": {"ping": datetime.datetime.now(datetime.UTC),
                              "up": int(time.time() - self.started), "waiting": True,
                              "mongoVersion": self.version.text, "advisoryHostFQDNs": []}},
                    upsert=True,
                )  # fmt: skip
            self._pinged.wait(PING_SECONDS)

    def _start_security(self) -> None:
        from mongod_double.security import Security

        self.security = Security.from_options(self.options, self.version)

    registry = ROUTER_REGISTRY
    engine = "the mongos double"

    def execute(self, spec: CommandSpec, inv: Invocation) -> dict:
        reply = spec.handler(inv)
        reply.setdefault("ok", 1.0)
        return reply

    def reply_fields(self) -> dict:
        return {}

    def after_command(self, spec: CommandSpec, inv: Invocation, reply: dict) -> None:
        """mongos keeps no profiler and no top (no data of its own); it counts operations, a
        write's statements one by one as mongod does."""
        self.count_operation(spec)
        statements = {"insert": "documents", "update": "updates", "remove": "deletes"}
        field = statements.get(spec.profile_op)
        if field:
            counter = "delete" if spec.profile_op == "remove" else spec.profile_op
            self.metrics.add(self.metrics.opcounters, counter, len(inv.body.get(field) or []))

    def check_access(self, inv: Invocation) -> None:
        """With access control on (a key file), the checks mongod makes, against the users and
        roles of the config servers (mirrored into this router's in-memory storage). Without it
        (transitionToAuth, or no key file) a client may still log in, as the cluster's user."""
        login = inv.name in LOGIN_COMMANDS or "speculativeAuthenticate" in inv.body
        if not self.security.auth_enabled:
            if login:
                with contextlib.suppress(PyMongoError):  # config servers unreachable: no users
                    self.sync_users(force=True)
            return
        self.sync_users(force=login)
        authz.check(inv)

    def sync_users(self, force: bool = False) -> None:
        """Mirror admin.system.users/roles from the config servers (at most every
        USER_SYNC_SECONDS unless forced), so that logins and privileges use the cluster's
        users, as mongos's user cache does."""
        now = time.monotonic()
        if not force and now - self._users_synced < USER_SYNC_SECONDS:
            return
        admin = self.cluster.config_client.get_database("admin", codec_options=CODEC)
        wanted = {
            USERS_NS: list(admin["system.users"].find({})),
            ROLES_NS: list(admin["system.roles"].find({})),
        }
        storage = self.storage
        changed = False
        with storage.lock:
            for ns, docs in wanted.items():
                storage.ensure_collection(ns)
                if storage.documents(ns) == docs:
                    continue
                changed = True
                for doc in storage.documents(ns):
                    storage.delete(ns, doc["_id"])
                for doc in docs:
                    storage.insert(ns, doc)
        if changed:
            self.security.users_changed()
        self._users_synced = now

    def users_changed(self) -> None:
        """A user command ran through this router: re-read users on the next command."""
        self._users_synced = 0.0

    def shutdown(self) -> None:
        if getattr(self, "_pinged", None) is not None:
            self._pinged.set()
        if self.balancer is not None:
            self.balancer.stop()
        super().shutdown()
        if self.cluster is not None:
            # Closing ends server sessions on unreachable config servers/shards: do not wait.
            closer = threading.Thread(target=self.cluster.close, name="close", daemon=True)
            closer.start()
            closer.join(CLOSE_TIMEOUT_SECONDS)
