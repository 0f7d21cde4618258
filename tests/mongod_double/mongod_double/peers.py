"""Connections from this member to the other members of its replica set.

Heartbeats, vote requests, position reports and oplog fetching all go over the wire with the
vendored pymongo, one ``MongoClient(host, directConnection=True)`` per peer and purpose. With
``security.keyFile`` set, peers authenticate as MongoDB's internal ``__system`` user (SCRAM-
SHA-256 with the key file's contents, whitespace removed, as mongod reads key files); with
``net.tls.mode`` preferTLS/requireTLS they connect with TLS and this node's certificate (allowTLS
accepts TLS but connects without it). With ``security.transitionToAuth`` a member tries the key
file first and goes on without authentication to a peer that cannot check it (a member not
restarted with the key file yet), as mongod's "authenticate over outgoing connections and
proceed regardless of success"; a peer that later asks for authentication gets the key file again.
"""

from __future__ import annotations

import contextlib
import threading

import pymongo
from bson.codec_options import CodecOptions
from pymongo.errors import OperationFailure

from mongod_double.options import ServerOptions

CODEC = CodecOptions(document_class=dict, tz_aware=False)
CONNECT_TIMEOUT_MS = 2000
HEARTBEAT_TIMEOUT_MS = 10000
SERVER_SELECTION_TIMEOUT_MS = 2000
# AuthenticationFailed (the peer has no key file to check ours) and Unauthorized (the peer now
# enforces access control): a member in transitionToAuth switches to the other way to connect.
SWITCH_CODES = (18, 13)
AUTH_KEYS = ("username", "password", "authSource", "authMechanism")


def read_keyfile(path: str) -> str:
    """A key file's key: its contents with every whitespace character removed."""
    with open(path, encoding="ascii") as handle:
        return "".join(handle.read().split())


def internal_auth_kwargs(options: ServerOptions) -> dict:
    """How a member or router authenticates to the cluster: __system with the key file, over TLS
    with this node's certificate when TLS is on (shared by replication peers and mongos)."""
    kwargs: dict = {}
    keyfile = options.get("security.keyFile")
    if keyfile:
        kwargs.update(
            username="__system",
            password=read_keyfile(keyfile),
            authSource="local",
            authMechanism="SCRAM-SHA-256",
        )
    if options.get("net.tls.mode", "disabled") in ("requireTLS", "preferTLS"):
        kwargs["tls"] = True
        if options.get("net.tls.certificateKeyFile"):
            kwargs["tlsCertificateKeyFile"] = options.get("net.tls.certificateKeyFile")
        if options.get("net.tls.CAFile"):
            kwargs["tlsCAFile"] = options.get("net.tls.CAFile")
        if options.get("net.tls.allowInvalidHostnames"):
            kwargs["tlsAllowInvalidHostnames"] = True
    return kwargs


def client_kwargs(options: ServerOptions) -> dict:
    """pymongo keyword arguments for connections to peers, from this node's parsed options."""
    kwargs: dict = {
        "directConnection": True,
        "connectTimeoutMS": CONNECT_TIMEOUT_MS,
        "serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS,
        "socketTimeoutMS": HEARTBEAT_TIMEOUT_MS,
        "appname": "mongod double replication",
        "retryReads": False,
        "retryWrites": False,
    }
    kwargs.update(internal_auth_kwargs(options))
    return kwargs


class Peers:
    """One client per (peer host, purpose), created on first use and closed on shutdown."""

    def __init__(self, options: ServerOptions) -> None:
        self.kwargs = client_kwargs(options)
        # transitionToAuth: the kwargs of a connection without authentication, and the peers
        # reached that way for now.
        self.transition = (
            bool(options.get("security.transitionToAuth")) and "username" in self.kwargs
        )
        self.plain_kwargs = {k: v for k, v in self.kwargs.items() if k not in AUTH_KEYS}
        self._unauthenticated: set[str] = set()
        self._clients: dict[tuple[str, str], pymongo.MongoClient] = {}
        self._lock = threading.Lock()

    def client(self, host: str, purpose: str = "heartbeat") -> pymongo.MongoClient:
        with self._lock:
            client = self._clients.get((host, purpose))
            if client is None:
                kwargs = self.plain_kwargs if host in self._unauthenticated else self.kwargs
                client = pymongo.MongoClient(host, document_class=dict, **kwargs)
                self._clients[(host, purpose)] = client
            return client

    def command(self, host: str, body: dict, purpose: str = "heartbeat", **kwargs) -> dict:
        """Run an admin command on a peer; raises pymongo's errors."""
        try:
            return self._command(host, body, purpose, **kwargs)
        except OperationFailure as exc:
            if not (self.transition and exc.code in SWITCH_CODES):
                raise
        self._switch(host)
        return self._command(host, body, purpose, **kwargs)

    def _command(self, host: str, body: dict, purpose: str, **kwargs) -> dict:
        db = self.client(host, purpose).get_database("admin", codec_options=CODEC)
        return db.command(body, **kwargs)

    def _switch(self, host: str) -> None:
        """transitionToAuth: reach ``host`` the other way (with or without the key file)."""
        with self._lock:
            if host in self._unauthenticated:
                self._unauthenticated.discard(host)
            else:
                self._unauthenticated.add(host)
            stale = [key for key in self._clients if key[0] == host]
            clients = [self._clients.pop(key) for key in stale]
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()

    def drop(self, host: str, purpose: str) -> None:
        with self._lock:
            client = self._clients.pop((host, purpose), None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
