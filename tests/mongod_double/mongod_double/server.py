"""The server: listeners, one thread per connection, and the state commands share.

``Server`` owns the storage (and its data lock), the replication coordinator, cursors, counters,
parameters, the profiler and the registry of running operations. Commands reach all of it through
``Invocation.server``.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import itertools
import os
import socket
import ssl
import struct
import threading
import time
from typing import TYPE_CHECKING

from mongod_double import authz, wire
from mongod_double.commands import REGISTRY, CommandSpec, Invocation, dispatch, load_all
from mongod_double.context import ConnectionContext
from mongod_double.cursors import CursorManager
from mongod_double.errors import CloseConnection, CommandError, StartupError
from mongod_double.logs import log
from mongod_double.metrics import Metrics
from mongod_double.options import ServerOptions
from mongod_double.parameters import Parameters
from mongod_double.replication import ReplicationCoordinator
from mongod_double.role import Role, role_from_options
from mongod_double.security import Security, rdns_from_peercert, subject_text
from mongod_double.storage import Storage, new_uuid
from mongod_double.version import Version

if TYPE_CHECKING:
    from mongod_double.commands import CommandSpec, Invocation

EXIT_NET_ERROR = 48
PROFILE_SIZE = 1024 * 1024
HOUSEKEEPING_SECONDS = 0.5


class Operations:
    """Operations in progress, for currentOp and killOp."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.running: dict[int, Invocation] = {}

    def begin(self, inv: Invocation) -> None:
        with self._lock:
            inv.opid = next(self._ids)
            self.running[inv.opid] = inv

    def end(self, inv: Invocation) -> None:
        with self._lock:
            self.running.pop(inv.opid, None)

    def kill(self, opid: int) -> bool:
        with self._lock:
            inv = self.running.get(opid)
            if inv is None:
                return False
            inv.killed = True
        with inv.server.storage.changed:
            inv.server.storage.changed.notify_all()
        return True


class Profiler:
    def __init__(self, level: int, slowms: int, sample_rate: float) -> None:
        self.default_level = level
        self.levels: dict[str, int] = {}
        self.slowms = slowms
        self.sample_rate = sample_rate

    def level(self, db: str) -> int:
        return self.levels.get(db, self.default_level)


class Server:
    def __init__(self, options: ServerOptions, version: Version) -> None:
        self.options = options
        self.version = version
        self.role: Role = role_from_options(options)
        self.port = options.port
        self.storage = Storage(options.dbpath, version, options.oplog_size_mb * 1024 * 1024)
        self.replication = ReplicationCoordinator(
            self.role, options.repl_set_name, self.storage, self.port
        )
        self.cursors = CursorManager()
        self.metrics = Metrics()
        self.ops = Operations()
        self.parameters = Parameters()
        self.security = Security()  # the real one is built in start(): it reads the keyFile
        mode = options.get("operationProfiling.mode", "off")
        self.profiler = Profiler(
            {"off": 0, "slowOp": 1, "all": 2}[mode],
            options.get("operationProfiling.slowOpThresholdMs", 100),
            options.get("operationProfiling.slowOpSampleRate", 1.0),
        )
        self.started = time.time()
        self.started_monotonic = time.monotonic()
        self.shutdown_requested = threading.Event()
        self.shutdown_reason = ""
        self._listeners: list[socket.socket] = []
        self._connections: dict[int, tuple[ConnectionContext, socket.socket]] = {}
        self._conn_lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self.hostname = socket.gethostname()
        load_all()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"{self.hostname}:{self.port}"

    def start(self) -> None:
        """Open dbPath, recover, bind the listeners. Raises StartupError."""
        error = self.parameters.set_at_startup(self.options.get("setParameter", {}))
        if error:
            raise StartupError(2, 20574, "Error during global initialization", {"error": error})
        self.security = Security.from_options(self.options, self.version)
        self.storage.open()
        self.replication.startup()
        self._write_startup_log()
        self._bind()

    def _write_startup_log(self) -> None:
        ns = "local.startup_log"
        with self.storage.lock:
            if not self.storage.exists(ns):
                self.storage.apply(
                    {
                        "op": "c",
                        "ns": "local.$cmd",
                        "ui": new_uuid(),
                        "o": {"create": "startup_log", "capped": True, "size": 10 * 1024 * 1024},
                    }
                )
            now = datetime.datetime.now(datetime.UTC)
            self.storage.insert(
                ns,
                {
                    "_id": f"{self.hostname}-{int(time.time() * 1000)}",
                    "hostname": self.hostname,
                    "startTime": now,
                    "startTimeLocal": now.astimezone().strftime("%a %b %d %H:%M:%S.%f")[:-3],
                    "cmdLine": self.options.parsed,
                    "pid": os.getpid(),
                    "buildinfo": {
                        "version": self.version.text,
                        "gitVersion": self.version.git_version,
                    },
                },
            )

    def _bind(self) -> None:
        addresses = []
        for ip in self.options.bind_ips:
            addresses.append("127.0.0.1" if ip == "localhost" else ip)
        for address in dict.fromkeys(addresses):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, self.port))
            except OSError as exc:
                sock.close()
                text = "Address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise StartupError(
                    EXIT_NET_ERROR,
                    20568,
                    "Error setting up listener",
                    {"error": {"code": 9001, "codeName": "SocketException", "errmsg": text}},
                ) from exc
            sock.listen(128)
            self._listeners.append(sock)
            log.info("NETWORK", 23015, "Listening on", {"address": address}, ctx="listener")
        log.info(
            "NETWORK",
            23016,
            "Waiting for connections",
            {"port": self.port, "ssl": "off" if self.security.tls_context is None else "on"},
            ctx="listener",
        )

    def serve(self) -> None:
        """Accept connections until shutdown is requested, then shut down cleanly."""
        for sock in self._listeners:
            threading.Thread(
                target=self._accept_loop, args=(sock,), name="listener", daemon=True
            ).start()
        threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True).start()
        if self.role is not Role.MONGOS:
            threading.Thread(target=self._ttl_monitor, name="TTLMonitor", daemon=True).start()
        self.replication.start(self.options, self.shutdown_requested)
        while not self.shutdown_requested.wait(0.2):
            pass
        self.shutdown()

    def request_shutdown(self, reason: str) -> None:
        self.shutdown_reason = reason
        self.shutdown_requested.set()

    def shutdown(self) -> None:
        log.info(
            "CONTROL", 20562, "Shutdown: going to close listening sockets", ctx="SignalHandler"
        )
        for sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.close()
        with self._conn_lock:
            conns = list(self._connections.values())
        for _, sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self.storage.changed:
            self.storage.changed.notify_all()
        with self.replication.topology_changed:
            self.replication.topology_changed.notify_all()
        self.replication.stop()
        log.info("STORAGE", 22261, "Timestamp monitor shutting down", ctx="SignalHandler")
        self.storage.close()
        log.info("STORAGE", 4784917, "Shutting down the storage engine", ctx="SignalHandler")
        log.info("CONTROL", 20565, "Now exiting", ctx="SignalHandler")
        log.info("CONTROL", 23138, "Shutting down", {"exitCode": 0}, ctx="SignalHandler")

    def _housekeeping(self) -> None:
        # Checkpoints as WiredTiger takes them (storage.syncPeriodSecs, 60 s by default): a
        # restart after kill -9 replays at most that much journal, not all since the last clean
        # shutdown.
        period = float(self.options.get("storage.syncPeriodSecs", 60) or 60)
        last_checkpoint = time.monotonic()
        while not self.shutdown_requested.wait(HOUSEKEEPING_SECONDS):
            try:
                self.storage.sync()
                if time.monotonic() - last_checkpoint >= period:
                    last_checkpoint = time.monotonic()
                    if self.storage.journal_bytes:
                        self.storage.checkpoint()
                self.cursors.reap(int(self.parameters.get("cursorTimeoutMillis")))
            except OSError:
                pass

    def _ttl_monitor(self) -> None:
        """mongod's TTL monitor: every ttlMonitorSleepSecs (60 by default), while
        ttlMonitorEnabled, a pass that deletes expired documents, on a primary or a standalone
        only (a secondary receives the primary's deletes through replication)."""
        while not self.shutdown_requested.wait(float(self.parameters.get("ttlMonitorSleepSecs"))):
            if not self.parameters.get("ttlMonitorEnabled"):
                continue
            self.metrics.add(self.metrics.ttl, "passes")
            if not self.replication.is_writable_primary:
                continue
            self.metrics.add(self.metrics.ttl, "subPasses")
            try:
                deleted = self.storage.expire_ttl(datetime.datetime.now(datetime.UTC))
            except CommandError:  # stepped down during the pass: the new primary goes on
                continue
            self.metrics.add(self.metrics.ttl, "deletedDocuments", deleted)

    # -- connections -----------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self.shutdown_requested.is_set():
            try:
                sock, peer = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ctx = ConnectionContext(peer=peer[:2], local=sock.getsockname()[:2])
            with self._conn_lock:
                self._connections[ctx.connection_id] = (ctx, sock)
                count = len(self._connections)
            self.metrics.connections_created += 1
            log.info(
                "NETWORK",
                22943,
                "Connection accepted",
                {
                    "remote": ctx.peer_text,
                    "connectionId": ctx.connection_id,
                    "connectionCount": count,
                },
                ctx="listener",
            )
            thread = threading.Thread(
                target=self._serve_connection, args=(ctx, sock), name=ctx.thread_name, daemon=True
            )
            ctx.thread = thread
            thread.start()

    def connection_count(self) -> int:
        with self._conn_lock:
            return len(self._connections)

    def connections(self) -> list[ConnectionContext]:
        with self._conn_lock:
            return [ctx for ctx, _ in self._connections.values()]

    def _start_tls(self, ctx: ConnectionContext, sock: socket.socket) -> socket.socket | None:
        """TLS or plain on one port, told apart by the first byte (0x16: a TLS handshake), as
        mongod's allowTLS/preferTLS do; requireTLS closes plain connections, disabled never
        speaks TLS. Returns the socket to talk on, or None to close the connection."""
        security = self.security
        if security.tls_context is None:
            return sock
        first = sock.recv(1, socket.MSG_PEEK)
        if not first:
            return None
        if first != b"\x16":
            if security.tls_mode != "requireTLS":
                return sock
            self._log_receive_error(
                ctx, "SSLHandshakeFailed: The server is configured to only allow SSL connections"
            )
            return None
        tls_sock = security.tls_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        with self._conn_lock:
            self._connections[ctx.connection_id] = (ctx, tls_sock)
        try:
            tls_sock.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self._log_receive_error(ctx, f"SSLHandshakeFailed: {exc}")
            with contextlib.suppress(OSError):
                tls_sock.close()
            return None
        ctx.tls = True
        cert = tls_sock.getpeercert()
        if cert:
            ctx.tls_peer_rdns = rdns_from_peercert(cert)
            ctx.tls_peer_subject = subject_text(ctx.tls_peer_rdns)
        return tls_sock

    def handle(self, ctx: ConnectionContext, request: wire.Request) -> dict:
        """One request's reply."""
        return dispatch(self, ctx, request)

    # -- what the dispatcher asks of mongod (mongos answers with its own) --------------------

    registry = REGISTRY  # the command set
    engine = "the mongod double's query engine"  # named in NotImplemented and internal errors

    def check_access(self, inv: Invocation) -> None:
        if self.security.auth_enabled:
            authz.check(inv)

    def execute(self, spec: CommandSpec, inv: Invocation) -> dict:
        """Run a command past the checks its replica set state asks for: a write holds the
        write gate and waits for its write concern, a read needs a readable member."""
        repl = self.replication
        intent = repl.write_intent(inv.db) if spec.write else contextlib.nullcontext()
        with intent:
            if spec.read:
                repl.check_read(
                    inv.db, inv.body.get("$readPreference"), established=spec.name == "getMore"
                )
            reply = spec.handler(inv)
        reply.setdefault("ok", 1.0)
        write_concern = inv.body.get("writeConcern") or {}
        if spec.write and write_concern.get("j"):
            self.storage.sync()
        if spec.write and reply.get("ok"):
            error = repl.await_write_concern(inv.body.get("writeConcern"))
            if error is not None:
                reply["writeConcernError"] = error
        return reply

    def reply_fields(self) -> dict:
        """Fields every reply carries ($clusterTime and operationTime on a member)."""
        return self.replication.cluster_time_fields()

    def _log_receive_error(self, ctx: ConnectionContext, error: str) -> None:
        log.warning(
            "NETWORK",
            22988,
            "Error receiving request from client. Ending connection from remote",
            {"error": error, "remote": ctx.peer_text, "connectionId": ctx.connection_id},
            ctx=ctx.thread_name,
        )

    def _serve_connection(self, ctx: ConnectionContext, sock: socket.socket) -> None:
        try:
            tls_sock = self._start_tls(ctx, sock)
            if tls_sock is None:
                return
            sock = tls_sock
            while not self.shutdown_requested.is_set():
                header = _recv_exactly(sock, 16)
                if header is None:
                    break
                length, request_id, _, op_code = wire.HEADER.unpack(header)
                if length < 16 or length > wire.MAX_MESSAGE_SIZE:
                    break
                body = _recv_exactly(sock, length - 16)
                if body is None:
                    break
                self.metrics.bytes_in += length
                self.metrics.requests += 1
                try:
                    request = wire.parse(op_code, request_id, body)
                except (wire.ProtocolError, struct.error, ValueError, IndexError) as exc:
                    log.warning(
                        "NETWORK",
                        22988,
                        "Error receiving request from client",
                        {"error": str(exc), "remote": ctx.peer_text},
                        ctx=ctx.thread_name,
                    )
                    break
                try:
                    reply = self.handle(ctx, request)
                except CloseConnection:
                    break
                if request.more_to_come:
                    continue
                reply_id = next(self._request_ids)
                if request.op_code == wire.OP_QUERY:
                    data = wire.encode_op_reply(reply_id, request_id, reply)
                else:
                    data = wire.encode_op_msg(reply_id, request_id, reply)
                sock.sendall(data)
                self.metrics.bytes_out += len(data)
        except OSError:
            pass
        finally:
            with self._conn_lock:
                self._connections.pop(ctx.connection_id, None)
                count = len(self._connections)
            with contextlib.suppress(OSError):
                sock.close()
            log.info(
                "NETWORK",
                22944,
                "Connection ended",
                {
                    "remote": ctx.peer_text,
                    "connectionId": ctx.connection_id,
                    "connectionCount": count,
                },
                ctx=ctx.thread_name,
            )

    # -- after each command: counters, top, slow query log, profiler ------------------------

    def count_operation(self, spec: CommandSpec) -> None:
        """opcounters: insert, update and delete count each statement (in their handlers)."""
        kind = spec.profile_op
        counter = {"query": "query", "getmore": "getmore"}.get(kind, "command")
        if kind not in ("insert", "update", "remove"):
            self.metrics.add(self.metrics.opcounters, counter)

    def after_command(self, spec: CommandSpec, inv: Invocation, reply: dict) -> None:
        kind = spec.profile_op
        self.count_operation(spec)
        # opLatencies: a command's time under the read/write/command kind mongod's Top uses.
        latency_kind = "writes" if spec.write else "reads" if spec.read else "commands"
        self.metrics.record_latency(latency_kind, int((time.monotonic() - inv.started) * 1e6))
        millis = inv.elapsed_ms
        if inv.profile.get("ns"):
            top_kind = {
                "query": "queries",
                "getmore": "getmore",
                "insert": "insert",
                "update": "update",
                "remove": "remove",
            }.get(kind, "commands")
            self.metrics.record_top(
                inv.profile["ns"], top_kind, int((time.monotonic() - inv.started) * 1e6), spec.write
            )
        slow = millis >= self.profiler.slowms
        if slow and spec.name not in ("hello", "isMaster", "ismaster"):
            attr = {
                "type": "command",
                "ns": inv.profile.get("ns", f"{inv.db}.$cmd"),
                "appName": inv.ctx.app_name,
                "command": _loggable(inv.body),
                "durationMillis": millis,
            }
            log.info("COMMAND", 51803, "Slow query", attr, ctx=inv.ctx.thread_name)
        level = self.profiler.level(inv.db)
        if inv.db != "local" and (level == 2 or (level == 1 and slow)):
            self._profile(spec, inv, reply, millis)

    def _profile(self, spec: CommandSpec, inv: Invocation, reply: dict, millis: int) -> None:
        """Write the operation to <db>.system.profile with the profiler's document shape."""
        ns = f"{inv.db}.system.profile"
        if inv.name == "profile" or inv.profile.get("ns") == ns:
            return
        doc: dict = {
            "op": spec.profile_op,
            "ns": inv.profile.get("ns", f"{inv.db}.$cmd"),
            "command": {**inv.body, "$db": inv.db},
        }
        for key in (
            "cursorid",
            "keysExamined",
            "docsExamined",
            "nreturned",
            "ninserted",
            "nMatched",
            "nModified",
            "ndeleted",
            "nUpserted",
            "cursorExhausted",
        ):
            if key in inv.profile:
                doc[key] = inv.profile[key]
        if "docsExamined" in inv.profile:
            doc.setdefault("keysExamined", 0)
        doc.update(
            numYield=0,
            locks={},
            flowControl={},
            responseLength=len(wire.bson.encode(reply, codec_options=wire.CODEC)),
            protocol="op_msg",
            millis=millis,
        )
        if "docsExamined" in inv.profile:
            doc["planSummary"] = "COLLSCAN"
        if not reply.get("ok"):
            doc["ok"] = reply.get("ok")
            doc["errMsg"] = reply.get("errmsg")
            doc["errName"] = reply.get("codeName")
            doc["errCode"] = reply.get("code")
        doc.update(
            ts=datetime.datetime.now(datetime.UTC),
            client=inv.ctx.peer[0],
            appName=inv.ctx.app_name,
            allUsers=list(inv.ctx.authenticated_users),
            user="",
        )
        with self.storage.lock:
            if not self.storage.exists(ns):
                self.storage.apply(
                    {
                        "op": "c",
                        "ns": f"{inv.db}.$cmd",
                        "ui": new_uuid(),
                        "o": {"create": "system.profile", "capped": True, "size": PROFILE_SIZE},
                    }
                )
            self.storage.apply({"op": "i", "ns": ns, "o": doc})


def _loggable(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("documents", "updates", "deletes")}


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
