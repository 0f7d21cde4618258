"""Pure mappings from MongoDB's replies (serverStatus, replSetGetStatus, the oplog's ends and
stats) to samples. Field names are those of MongoDB's reference pages for serverStatus,
replSetGetStatus and $collStats; a field a server does not report gives no sample (fields vary
by version, platform and process: mongod or mongos)."""

from __future__ import annotations

import datetime
from typing import Any, Union

from wap_agent.sample import COUNTER, GAUGE, Sample

MIB = 1 << 20
MICROS = 1e-6


def number(doc: Any, *path: str) -> float | None:
    """The number at ``path`` in nested documents, or None (absent, or not a number)."""
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    if isinstance(doc, bool) or not isinstance(doc, (int, float)):
        return None
    return float(doc)


def seconds(value: Any) -> float | None:
    """A BSON date or timestamp as Unix seconds."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    time_part = getattr(value, "time", None)  # bson.Timestamp
    if isinstance(time_part, int):
        return float(time_part)
    return None


class _Out:
    """Collects samples sharing labels and a timestamp."""

    def __init__(self, labels: dict[str, str], ts: float) -> None:
        self.labels, self.ts = labels, ts
        self.samples: list[Sample] = []

    def add(
        self,
        name: str,
        value: float | None,
        kind: str = GAUGE,
        scale: float = 1.0,
        **labels: str,
    ) -> None:
        if value is None:
            return
        self.samples.append(Sample(name, value * scale, kind, {**self.labels, **labels}, self.ts))


Field = Union[str, tuple[str, ...]]  # a field of the section, or a path below it


def _same(*names: str) -> tuple[tuple[Field, str], ...]:
    return tuple((n, n) for n in names)


def _rw(*fields: str) -> tuple[tuple[Field, str], ...]:
    return tuple(((rw, f), rw) for rw in ("read", "write") for f in fields)


OPCOUNTERS = _same("insert", "query", "update", "delete", "getmore", "command")
LATENCY_TYPES = ("reads", "writes", "commands", "transactions")

# serverStatus, one row per series: (name, kind, section, label, ((field, label value), ...),
# scale). A row without a label reads the section itself. Field names are those of MongoDB's
# serverStatus page; a field the server does not report gives no sample.
SERVER_STATUS: tuple[tuple[str, str, tuple[str, ...], str | None, tuple, float], ...] = (
    ("mongodb_instance_uptime_seconds", GAUGE, ("uptime",), None, (), 1.0),
    ("mongodb_op_counters_total", COUNTER, ("opcounters",), "type", OPCOUNTERS, 1.0),
    ("mongodb_op_counters_repl_total", COUNTER, ("opcountersRepl",), "type", OPCOUNTERS, 1.0),
    ("mongodb_connections", GAUGE, ("connections",), "state",
     _same("current", "available", "active"), 1.0),
    ("mongodb_connections_created_total", COUNTER, ("connections", "totalCreated"), None, (), 1.0),
    ("mongodb_memory_bytes", GAUGE, ("mem",), "type", _same("resident", "virtual"), MIB),
    ("mongodb_extra_info_page_faults_total", COUNTER, ("extra_info", "page_faults"), None, (),
     1.0),
    ("mongodb_asserts_total", COUNTER, ("asserts",), "type",
     _same("regular", "warning", "msg", "user", "tripwire", "rollovers"), 1.0),
    ("mongodb_network_bytes_total", COUNTER, ("network",), "state",
     (("bytesIn", "in"), ("bytesOut", "out")), 1.0),
    ("mongodb_network_requests_total", COUNTER, ("network", "numRequests"), None, (), 1.0),
    ("mongodb_global_lock_current_queue", GAUGE, ("globalLock", "currentQueue"), "type",
     _same("readers", "writers"), 1.0),
    ("mongodb_global_lock_active_clients", GAUGE, ("globalLock", "activeClients"), "type",
     _same("readers", "writers"), 1.0),
    ("mongodb_wiredtiger_cache_bytes", GAUGE, ("wiredTiger", "cache"), "type",
     (("bytes currently in the cache", "total"), ("tracked dirty bytes in the cache", "dirty")),
     1.0),
    ("mongodb_wiredtiger_cache_max_bytes", GAUGE,
     ("wiredTiger", "cache", "maximum bytes configured"), None, (), 1.0),
    ("mongodb_wiredtiger_cache_bytes_total", COUNTER, ("wiredTiger", "cache"), "type",
     (("bytes read into cache", "read"), ("bytes written from cache", "written")), 1.0),
    ("mongodb_wiredtiger_cache_pages_total", COUNTER, ("wiredTiger", "cache"), "type",
     (("pages read into cache", "read"), ("pages written from cache", "written")), 1.0),
    ("mongodb_wiredtiger_cache_evicted_total", COUNTER, ("wiredTiger", "cache"), "type",
     (("modified pages evicted", "modified"), ("unmodified pages evicted", "unmodified")), 1.0),
    ("mongodb_wiredtiger_concurrent_transactions_out_tickets", GAUGE,
     ("wiredTiger", "concurrentTransactions"), "type", _rw("out"), 1.0),
    ("mongodb_wiredtiger_concurrent_transactions_available_tickets", GAUGE,
     ("wiredTiger", "concurrentTransactions"), "type", _rw("available"), 1.0),
    ("mongodb_wiredtiger_concurrent_transactions_total_tickets", GAUGE,
     ("wiredTiger", "concurrentTransactions"), "type", _rw("totalTickets"), 1.0),
    ("mongodb_metrics_document_total", COUNTER, ("metrics", "document"), "state",
     _same("deleted", "inserted", "returned", "updated"), 1.0),
    ("mongodb_metrics_query_executor_total", COUNTER, ("metrics", "queryExecutor"), "state",
     (("scanned", "scanned"), ("scannedObjects", "scanned_objects")), 1.0),
    ("mongodb_metrics_query_executor_collection_scans_total", COUNTER,
     ("metrics", "queryExecutor", "collectionScans", "total"), None, (), 1.0),
    ("mongodb_metrics_operation_total", COUNTER, ("metrics", "operation"), "type",
     (("scanAndOrder", "scan_and_order"), ("writeConflicts", "write_conflicts")), 1.0),
    ("mongodb_metrics_cursor_open", GAUGE, ("metrics", "cursor", "open"), "state",
     (("total", "total"), ("pinned", "pinned"), ("noTimeout", "no_timeout")), 1.0),
    ("mongodb_metrics_cursor_timed_out_total", COUNTER, ("metrics", "cursor", "timedOut"), None,
     (), 1.0),
    ("mongodb_op_latencies_seconds_total", COUNTER, ("opLatencies",), "type",
     tuple(((kind, "latency"), kind) for kind in LATENCY_TYPES), MICROS),
    ("mongodb_op_latencies_ops_total", COUNTER, ("opLatencies",), "type",
     tuple(((kind, "ops"), kind) for kind in LATENCY_TYPES), 1.0),
    ("mongodb_transactions_total", COUNTER, ("transactions",), "state",
     (("totalStarted", "started"), ("totalCommitted", "committed"), ("totalAborted", "aborted")),
     1.0),
    ("mongodb_transactions_current", GAUGE, ("transactions",), "state",
     (("currentOpen", "open"), ("currentActive", "active"), ("currentInactive", "inactive")),
     1.0),
)  # fmt: skip


def _section(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def server_status_samples(status: dict, labels: dict[str, str], ts: float) -> list[Sample]:
    out = _Out(labels, ts)
    if isinstance(status.get("version"), str):
        out.add(
            "mongodb_version_info",
            1.0,
            version=status["version"],
            process=str(status.get("process", "")),
        )
    for name, kind, path, label, fields, scale in SERVER_STATUS:
        section = _section(status, path)
        if label is None:
            out.add(name, number(section), kind, scale)
            continue
        for field, value in fields:
            at = field if isinstance(field, tuple) else (field,)
            out.add(name, number(section, *at), kind, scale, **{label: value})
    _locks(out, status.get("locks"))
    repl = status.get("repl")
    if isinstance(repl, dict) and "isWritablePrimary" in repl:
        out.add("mongodb_replset_is_writable_primary", 1.0 if repl["isWritablePrimary"] else 0.0)
    return out.samples


def _locks(out: _Out, locks: Any) -> None:
    if not isinstance(locks, dict):
        return
    for resource, stats in sorted(locks.items()):
        if not isinstance(stats, dict):
            continue
        for field, name, scale in (
            ("acquireCount", "mongodb_locks_acquire_total", 1.0),
            ("acquireWaitCount", "mongodb_locks_acquire_wait_total", 1.0),
            ("timeAcquiringMicros", "mongodb_locks_time_acquiring_seconds_total", MICROS),
        ):
            modes = stats.get(field)
            if isinstance(modes, dict):
                for mode in sorted(modes):
                    out.add(name, number(modes, mode), COUNTER, scale, resource=resource, mode=mode)


def replset_samples(status: dict, labels: dict[str, str], ts: float) -> list[Sample]:
    """replSetGetStatus: this member's state, and each member's state, health, optime, lag."""
    out = _Out({**labels, "set": str(status.get("set", ""))}, ts)
    out.add("mongodb_replset_my_state", number(status, "myState"))
    members = [m for m in status.get("members") or [] if isinstance(m, dict)]
    primary = [m for m in members if m.get("state") == 1]
    primary_optime = seconds(primary[0].get("optimeDate")) if primary else None
    for member in members:
        name = str(member.get("name", member.get("_id", "")))
        out.add("mongodb_replset_member_state", number(member, "state"), member=name)
        out.add("mongodb_replset_member_health", number(member, "health"), member=name)
        optime = seconds(member.get("optimeDate"))
        usable = member.get("health") == 1 and member.get("state") in (1, 2) and optime
        if not usable:  # arbiters, members down or syncing: no optime worth charting
            continue
        out.add("mongodb_replset_member_optime_date_seconds", optime, member=name)
        if primary_optime is not None:
            lag = max(0.0, primary_optime - optime)
            out.add("mongodb_replset_member_replication_lag_seconds", lag, member=name)
        ping = number(member, "pingMs")
        out.add("mongodb_replset_member_ping_seconds", ping, scale=1e-3, member=name)
    return out.samples


def oplog_samples(
    first: dict | None,
    last: dict | None,
    stats: dict | None,
    labels: dict[str, str],
    ts: float,
) -> list[Sample]:
    """The oplog's oldest and newest entries (``ts``) and its $collStats storageStats."""
    out = _Out(labels, ts)
    tail = seconds(first.get("ts")) if first else None
    head = seconds(last.get("ts")) if last else None
    out.add("mongodb_oplog_tail_timestamp_seconds", tail)
    out.add("mongodb_oplog_head_timestamp_seconds", head)
    if head is not None and tail is not None:
        out.add("mongodb_oplog_window_seconds", head - tail)
    storage = (stats or {}).get("storageStats")
    out.add("mongodb_oplog_size_bytes", number(storage, "size"))
    out.add("mongodb_oplog_storage_size_bytes", number(storage, "storageSize"))
    out.add("mongodb_oplog_max_size_bytes", number(storage, "maxSize"))
    out.add("mongodb_oplog_entries", number(storage, "count"))
    return out.samples
