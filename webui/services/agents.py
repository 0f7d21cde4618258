"""Agents: their per-host tokens, who is sending, how often, and what each host's agent last said.

A token belongs to one registered host. An operator (or owner, or admin) of the host's project
creates it; it is shown once and only its SHA-256 is stored; creating another replaces it (the
old one stops working at once). A token of a host that was removed authenticates nothing. Agent
tokens are not users' API tokens: they open only the ingest API, and users' tokens not that.
The host's `agent` field holds what its agent last reported: last seen, version, state (`ok` or
`errors` with the collectors' messages), sequence and drop totals, rejected requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from webui.services import audit, projects
from webui.services.audit import Actor
from webui.services.errors import NotFound, ServiceError, Unauthorized
from webui.store import Store, now

TOKEN_PREFIX = "wapa_"  # tells an agent token from a user's API token at a glance


class TooManyRequests(ServiceError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooLarge(ServiceError):
    status = 413


class Malformed(ServiceError):
    status = 400


@dataclass(frozen=True)
class AgentIdentity:
    """The host an agent token stands for."""

    host_id: str
    project_id: str
    host_name: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    store: Store, actor: Actor, project_id: str, host_id: str
) -> tuple[str, dict[str, Any]]:
    """A new token for the host's agent (replacing any earlier one): the token, shown once, and
    its record."""
    project = projects.require(store, actor, project_id, "operator")
    host = store.hosts.find_one({"_id": host_id, "project_id": project_id})
    if host is None:
        raise NotFound("no such host in this project")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = {
        "_id": uuid.uuid4().hex,
        "host_id": host_id,
        "project_id": project_id,
        "token_hash": _digest(token),
        "created_at": now(),
        "created_by": actor.username,
    }
    store.agent_tokens.delete_many({"host_id": host_id})
    store.agent_tokens.insert_one(record)
    audit.record(store, actor, "agent.token", f"{project['name']}/{host['name']}")
    return token, {k: v for k, v in record.items() if k != "token_hash"}


def _token_record(store: Store, authorization: str) -> dict[str, Any] | None:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        raise Unauthorized("send 'Authorization: Bearer <agent token>' (a host's agent token)")
    return store.agent_tokens.find_one({"token_hash": _digest(token)})


def authenticate(store: Store, authorization: str) -> AgentIdentity:
    """The host behind an `Authorization: Bearer <agent token>` header, or Unauthorized."""
    record = _token_record(store, authorization)
    host = store.hosts.find_one({"_id": record["host_id"]}) if record else None
    if host is None:
        raise Unauthorized("unknown or replaced agent token: create one for the host")
    return AgentIdentity(host["_id"], host["project_id"], host["name"])


def authenticate_ingest(store: Store, authorization: str) -> AgentIdentity:
    """As authenticate, for the ingest of samples: by the token's record alone, one read of the
    store instead of two at every batch (a host's removal deletes its token, so a token found
    is a host's that exists), the host's name left empty (ingest does not use it)."""
    record = _token_record(store, authorization)
    if record is None:
        raise Unauthorized("unknown or replaced agent token: create one for the host")
    return AgentIdentity(record["host_id"], record["project_id"], "")


@dataclass
class IngestLimiter:
    """Requests per agent per minute, counted in Redis so that every web server counts alike
    (a fixed window: simple, and an agent's steady rate is far below the limit)."""

    redis: Redis
    per_minute: int
    prefix: str

    def check(self, host_id: str) -> None:
        window = int(now() // 60)
        key = f"{self.prefix}:{host_id}:{window}"
        try:
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count = pipe.execute()[0]
        except RedisError:
            return  # no Redis, no limit: samples matter more than the count
        if count > self.per_minute:
            retry_after = max(1, int((window + 1) * 60 - now()) + 1)
            raise TooManyRequests(
                f"more than {self.per_minute} requests in a minute from this agent: "
                f"send again in {retry_after} s",
                retry_after,
            )

    def count_rejected(self, status: int) -> None:
        """Refused requests by status, for the platform's own metrics."""
        with contextlib.suppress(RedisError):
            self.redis.hincrby(f"{self.prefix}:rejected", str(status), 1)

    def rejected(self) -> dict[str, int]:
        try:
            raw = self.redis.hgetall(f"{self.prefix}:rejected")
        except RedisError:
            return {}
        return {k.decode(): int(v) for k, v in raw.items()}


def record_report(
    store: Store,
    agent: AgentIdentity,
    about: dict[str, Any],
    last: dict[str, Any],
    stored: int,
    duplicates: int,
) -> None:
    """What the agent said in its latest accepted request, on its host."""
    errors = last.get("errors") or {}
    dropped = last.get("dropped") or {}
    store.hosts.update_one(
        {"_id": agent.host_id},
        {
            "$set": {
                "agent.last_seen": now(),
                "agent.version": str(about.get("version", "")),
                "agent.hostname": str(about.get("hostname", "")),
                "agent.state": "errors" if errors else "ok",
                "agent.errors": errors,
                "agent.stream": last["stream"],
                "agent.last_seq": last["seq"],
                "agent.dropped_batches": int(dropped.get("batches", 0)),
                "agent.dropped_samples": int(dropped.get("samples", 0)),
            },
            "$inc": {"agent.batches": stored, "agent.duplicates": duplicates},
        },
    )


def record_rejection(store: Store, agent: AgentIdentity, status: int, reason: str) -> None:
    """A refused request of a known agent: counted on its host, with the latest reason."""
    store.hosts.update_one(
        {"_id": agent.host_id},
        {
            "$set": {
                "agent.last_rejection": {"at": now(), "status": status, "reason": reason[:500]}
            },
            "$inc": {"agent.rejected": 1},
        },
    )


def host_agent(store: Store, host_id: str) -> dict[str, Any]:
    host = store.hosts.find_one({"_id": host_id}, {"agent": 1})
    return (host or {}).get("agent") or {}
