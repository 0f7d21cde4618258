"""The audit log: every login and every change, with who, what, when, from where and the outcome."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webui.store import Store, now


@dataclass(frozen=True)
class Actor:
    """Who is acting, and from where (a request's remote address, or a process name)."""

    user_id: str | None
    username: str
    role: str
    source: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


SYSTEM = Actor(user_id=None, username="system", role="admin", source="wap")


def record(
    store: Store,
    actor: Actor,
    action: str,
    target: str = "",
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """`detail` must never hold a secret: callers pass names and ids only."""
    store.audit.insert_one(
        {
            "at": now(),
            "actor": actor.username,
            "actor_id": actor.user_id,
            "source": actor.source,
            "action": action,
            "target": target,
            "outcome": outcome,
            "detail": detail or {},
        }
    )


def search(
    store: Store,
    *,
    actor: str = "",
    action: str = "",
    outcome: str = "",
    limit: int = 200,
    skip: int = 0,
) -> list[dict[str, Any]]:
    query: dict[str, Any] = {}
    if actor:
        query["actor"] = actor
    if action:
        query["action"] = {"$regex": "^" + re.escape(action)}
    if outcome:
        query["outcome"] = outcome
    cursor = store.audit.find(query, {"_id": 0}).sort("at", -1).skip(skip).limit(limit)
    return list(cursor)
