"""Member states, their codes, the optime helpers and what a member knows of the others."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from bson.int64 import Int64
from bson.timestamp import Timestamp

from mongod_double import election, rsconfig

REPLSET_NS = "local.system.replset"
ELECTION_NS = "local.replset.election"
STARTUP, PRIMARY, SECONDARY, RECOVERING = "STARTUP", "PRIMARY", "SECONDARY", "RECOVERING"
STARTUP2, UNKNOWN, ARBITER, DOWN = "STARTUP2", "UNKNOWN", "ARBITER", "DOWN"
ROLLBACK, REMOVED = "ROLLBACK", "REMOVED"
STATE_CODES = {
    STARTUP: 0,
    PRIMARY: 1,
    SECONDARY: 2,
    RECOVERING: 3,
    STARTUP2: 5,
    UNKNOWN: 6,
    ARBITER: 7,
    DOWN: 8,
    ROLLBACK: 9,
    REMOVED: 10,
}
STATE_NAMES = {code: name for name, code in STATE_CODES.items()}
# The states in which a member applies what it fetches from its sync source.
SYNCING_STATES = (SECONDARY, RECOVERING, ROLLBACK)
DOWN_TEXT = "(not reachable/healthy)"
TICK_SECONDS = 0.1
FETCH_AWAIT_MS = 500
FETCH_BATCH = 5000
NOT_PRIMARY_OR_SECONDARY = 13436
NOT_SECONDARY = 95
INCONSISTENT_SET_NAMES = 185
NOT_YET_INITIALIZED = 94
WRITE_CONCERN_FAILED = 64
UNKNOWN_REPL_WRITE_CONCERN = 79
UNSATISFIABLE_WRITE_CONCERN = 100
INTERRUPTED_DUE_TO_REPL_STATE_CHANGE = 11602
ZERO_OPTIME = {"ts": Timestamp(0, 0), "t": Int64(-1)}
EPOCH = datetime.datetime(1970, 1, 1)


def optime_date(optime: dict | None) -> datetime.datetime:
    if not optime:
        return EPOCH
    return datetime.datetime.fromtimestamp(optime["ts"].time, datetime.UTC).replace(tzinfo=None)


def later(a: dict | None, b: dict | None) -> dict | None:
    return a if election.optime_key(a) >= election.optime_key(b) else b


def config_newer(a: dict, b: dict | None) -> bool:
    """Is config ``a`` newer than ``b``? (term, version), or version alone after a force."""
    if b is None:
        return True
    if a.get("term", -1) == -1 or b.get("term", -1) == -1:
        return a["version"] > b["version"]
    return (a.get("term", 0), a["version"]) > (b.get("term", 0), b["version"])


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


@dataclass
class MemberStatus:
    """What this node knows of another member, from heartbeats and position reports."""

    host: str
    member_id: int
    health: float = 0.0
    state: str = UNKNOWN
    applied: dict | None = None
    applied_wall: datetime.datetime | None = None
    last_heartbeat: datetime.datetime | None = None
    last_heartbeat_recv: datetime.datetime | None = None
    last_ok: float | None = None  # monotonic time of the last successful heartbeat
    up_since: float | None = None
    ping_ms: int = 0
    sync_source: str = ""
    config_version: int = -2
    config_term: int = -1
    term: int = -1
    election_time: Timestamp | None = None
    message: str = ""
    ever_heard: bool = False


def member_id(config: dict, host: str) -> int:
    member = rsconfig.member_by_host(config, host) if host else None
    return member["_id"] if member else -1


def error_text(host: str, exc: Exception) -> str:
    text = str(exc).split(", Timeout:")[0]
    return f"Error connecting to {host} :: caused by :: {text}"
