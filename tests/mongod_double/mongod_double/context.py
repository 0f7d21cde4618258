"""Per-connection state, handed to every command."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

_connection_ids = itertools.count(1)


@dataclass
class ConnectionContext:
    peer: tuple[str, int]
    local: tuple[str, int]
    connection_id: int = field(default_factory=lambda: next(_connection_ids))
    connected_at: float = field(default_factory=time.time)
    client_metadata: dict | None = None
    # Auth: who this connection is ({user, db}) and the roles granted ({role, db}); authz.py
    # derives the privileges (cached until the next login/logout) and checks every command.
    authenticated_users: list[dict] = field(default_factory=list)
    authenticated_roles: list[dict] = field(default_factory=list)
    privileges_cache: tuple | None = None  # (users/roles generation, privileges)
    # The SASL conversation in progress (saslStart .. saslContinue), if any.
    sasl: object | None = None
    # TLS: whether the connection is encrypted, and the verified peer certificate's subject
    # (RFC 2253 text, and as (short name, value) pairs for x.509 membership).
    tls: bool = False
    tls_peer_subject: str | None = None
    tls_peer_rdns: list | None = None
    # Replica set internal connections (later phase) mark themselves here.
    is_internal_client: bool = False
    thread: threading.Thread | None = None

    @property
    def peer_text(self) -> str:
        return f"{self.peer[0]}:{self.peer[1]}"

    @property
    def app_name(self) -> str:
        meta = self.client_metadata or {}
        return (meta.get("application") or {}).get("name", "")

    @property
    def thread_name(self) -> str:
        return f"conn{self.connection_id}"
