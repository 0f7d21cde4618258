"""Versioned schema: each migration runs once, in order, and the store records the version reached.

A migration must be safe to run again (a crash between applying it and recording the version).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

SCHEMA_DOC_ID = "schema"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Database[dict[str, Any]]], None]


def _initial_indexes(db: Database[dict[str, Any]]) -> None:
    db.users.create_index("username", unique=True)
    db.sessions.create_index("user_id")
    db.tokens.create_index("token_hash", unique=True)
    db.tokens.create_index("user_id")
    db.projects.create_index("name", unique=True)
    db.memberships.create_index([("project_id", ASCENDING), ("user_id", ASCENDING)], unique=True)
    db.memberships.create_index("user_id")
    db.hosts.create_index([("project_id", ASCENDING), ("name", ASCENDING)], unique=True)
    db.credentials.create_index([("project_id", ASCENDING), ("name", ASCENDING)], unique=True)
    db.clusters.create_index([("project_id", ASCENDING), ("name", ASCENDING)], unique=True)
    db.jobs.create_index([("project_id", ASCENDING), ("created_at", DESCENDING)])
    db.jobs.create_index("status")
    db.job_events.create_index([("job_id", ASCENDING), ("counter", ASCENDING)], unique=True)
    db.audit.create_index([("at", DESCENDING)])
    db.audit.create_index("actor")


def _normalized_usernames(db: Database[dict[str, Any]]) -> None:
    """Usernames in the one spelling logins now look up: NFKC, case-folded (as
    webui.services.accounts.normalize_username was when this was written). Two users whose names
    only differed by case keep theirs and are logged: an admin renames one."""
    for user in list(db.users.find({}, {"username": 1})):
        name = unicodedata.normalize("NFKC", user["username"]).casefold().strip()
        if name == user["username"]:
            continue
        if db.users.find_one({"username": name}):
            log.warning("users %r and %r differ only by case: rename one", user["username"], name)
            continue
        db.users.update_one({"_id": user["_id"]}, {"$set": {"username": name}})


def _agents(db: Database[dict[str, Any]]) -> None:
    """Agent tokens (one per host, found by hash) and raw samples, one document per host per
    batch (`_id` host:stream:seq makes a batch sent twice one document), read by host or project
    over a time range and expired by time."""
    db.agent_tokens.create_index("token_hash", unique=True)
    db.agent_tokens.create_index("host_id", unique=True)
    db.samples.create_index([("host_id", ASCENDING), ("t", ASCENDING)])
    db.samples.create_index([("project_id", ASCENDING), ("t", ASCENDING)])
    db.samples.create_index("t")


def _agent_commands(db: Database[dict[str, Any]]) -> None:
    """Commands for agents: a host's waiting ones found by its poll, a host's latest listed."""
    db.agent_commands.create_index(
        [("host_id", ASCENDING), ("state", ASCENDING), ("created_at", ASCENDING)]
    )
    db.agent_commands.create_index([("host_id", ASCENDING), ("created_at", DESCENDING)])


def _metrics_tiers(db: Database[dict[str, Any]]) -> None:
    """The newest value of each host's series (`latest`, one document per host, read by project;
    `latest_summary`, the same for the series the overview reads) and the 1-minute and 1-hour
    rollups (webui.services.rollups): read by project or host, tier, series name and time,
    expired by tier and time."""
    db.latest.create_index("project_id")
    db.latest_summary.create_index("project_id")
    db.rollups.create_index(
        [("project_id", ASCENDING), ("tier", ASCENDING), ("n", ASCENDING), ("t1", ASCENDING)]
    )
    db.rollups.create_index(
        [("host_id", ASCENDING), ("tier", ASCENDING), ("n", ASCENDING), ("t1", ASCENDING)]
    )
    db.rollups.create_index([("tier", ASCENDING), ("t1", ASCENDING)])
    db.rollups.create_index([("tier", ASCENDING), ("t0", ASCENDING)])
    # one-field keys, which the embedded store's finds use (webui.services.rollups.host_key)
    db.rollups.create_index([("k", ASCENDING), ("t1", ASCENDING)])
    db.rollups.create_index([("pk", ASCENDING), ("t1", ASCENDING)])
    db.samples.create_index("w")
    db.samples.create_index("hw")
    db.samples.create_index("pw")


def _backups(db: Database[dict[str, Any]]) -> None:
    """Backup policies (one per cluster, `_id` its id; found due by their next run) and the
    snapshot catalogue (a cluster's newest first, a project's, the running ones to settle)."""
    db.backup_policies.create_index([("enabled", ASCENDING), ("next_run_at", ASCENDING)])
    db.snapshots.create_index([("cluster_id", ASCENDING), ("started_at", DESCENDING)])
    db.snapshots.create_index([("project_id", ASCENDING), ("started_at", DESCENDING)])
    db.snapshots.create_index("status")


def _rollup_keys(db: Database[dict[str, Any]]) -> None:
    """The rollups' one-field keys indexed alone as well: the embedded store's finds use an index
    only when it is on the one field they ask by (a find by `k` scanned all of `rollups` beside
    the index on (k, t1): one series' year of 1-hour rollups 0.9 s, 90 ms with this index, its
    last 30 days 350 ms, 8 ms; measured with tests/bench/metrics_query.py's data); MongoDB uses
    either."""
    db.rollups.create_index("k")
    db.rollups.create_index("pk")


def _one_field_keys(db: Database[dict[str, Any]]) -> None:
    """The fields pages find by, indexed alone: the embedded store takes an equality as a plain
    comparison that an index can serve only when an index is named after that one field (else it
    also tests for an array holding the value, which scans), whatever compound index begins with
    it. A job's events by job (its page reads them at every refresh), a cluster's jobs and
    snapshots by cluster; measured with tests/bench/store_indexes.py. MongoDB uses the compound
    ones either way."""
    db.job_events.create_index("job_id")
    db.jobs.create_index("cluster_id")
    db.snapshots.create_index("cluster_id")


MIGRATIONS: list[Migration] = [
    Migration(1, "collections and their indexes", _initial_indexes),
    Migration(2, "usernames normalised (NFKC, case-folded)", _normalized_usernames),
    Migration(3, "agent tokens and raw samples", _agents),
    Migration(4, "latest samples per host and the metrics' rollup tiers", _metrics_tiers),
    Migration(5, "commands for agents", _agent_commands),
    Migration(6, "backup policies and the snapshot catalogue", _backups),
    Migration(7, "the metrics rollups' one-field keys indexed alone", _rollup_keys),
    Migration(8, "job events, jobs and snapshots by one field", _one_field_keys),
]
