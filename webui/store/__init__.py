"""The platform store: MongoDB through pymongo, one code path for production and embedded use.

Only CRUD, indexes and plain aggregation are used, because the embedded server (nx-27017) answers ok
to commands it does not implement. Times are stored as float seconds since the epoch: the embedded
server does not compare BSON dates in queries, and numbers compare the same everywhere.
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from webui.store.migrations import MIGRATIONS, SCHEMA_DOC_ID

COLLECTIONS = (
    "meta",
    "users",
    "sessions",
    "tokens",
    "projects",
    "memberships",
    "hosts",
    "credentials",
    "clusters",
    "jobs",
    "job_events",
    "audit",
    "agent_tokens",
    "samples",
    "agent_commands",
)


class StoreUnavailable(RuntimeError):
    """The store cannot be reached; the message says where it was looked for."""


def now() -> float:
    return time.time()


class Store:
    """A connection to the platform database, with one attribute per collection."""

    def __init__(self, uri: str, *, timeout_ms: int = 5000) -> None:
        self.uri = uri
        self.client: MongoClient[dict[str, Any]] = MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms, appname="wap", uuidRepresentation="standard"
        )
        self.db: Database[dict[str, Any]] = self.client.get_default_database("wap")
        for name in COLLECTIONS:
            setattr(self, name, self.db[name])

    def ping(self) -> None:
        try:
            self.db.command("ping")
        except PyMongoError as exc:
            raise StoreUnavailable(
                f"the store at {self.redacted_uri} does not answer: {exc}"
            ) from None

    @property
    def redacted_uri(self) -> str:
        scheme, sep, rest = self.uri.partition("://")
        if "@" in rest:
            rest = "***@" + rest.rsplit("@", 1)[1]
        return scheme + sep + rest

    def schema_version(self) -> int:
        doc = self.db.meta.find_one({"_id": SCHEMA_DOC_ID})
        return int(doc["version"]) if doc else 0

    def migrate(self) -> int:
        """Bring the schema to the latest version (indexes included); return that version."""
        self.ping()
        current = self.schema_version()
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            migration.apply(self.db)
            self.db.meta.update_one(
                {"_id": SCHEMA_DOC_ID},
                {"$set": {"version": migration.version, "updated_at": now()}},
                upsert=True,
            )
            current = migration.version
        return current

    def close(self) -> None:
        self.client.close()
