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
    # Auth (later phase) fills these; commands read them through the context only.
    authenticated_users: list[dict] = field(default_factory=list)
    authenticated_roles: list[dict] = field(default_factory=list)
    # TLS (later phase): the peer certificate's subject, when TLS is on.
    tls_peer_subject: str | None = None
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
