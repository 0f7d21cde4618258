"""Counters behind serverStatus and top."""

from __future__ import annotations

import collections
import threading

LATENCY_KINDS = ("reads", "writes", "commands", "transactions")


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opcounters = dict.fromkeys(
            ("insert", "query", "update", "delete", "getmore", "command"), 0
        )
        self.document = dict.fromkeys(("deleted", "inserted", "returned", "updated"), 0)
        self.ttl = dict.fromkeys(("deletedDocuments", "passes", "subPasses"), 0)
        self.scanned_objects = 0
        self.collection_scans = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0
        self.connections_created = 0
        self.commands: collections.Counter[str] = collections.Counter()
        self.failed_commands: collections.Counter[str] = collections.Counter()
        self.asserts = dict.fromkeys(
            ("regular", "warning", "msg", "user", "tripwire", "rollovers"), 0
        )
        # top: ns -> kind -> [time_us, count]
        self.top: dict[str, dict[str, list[int]]] = {}
        # serverStatus opLatencies: kind -> [latency_us, ops] (kinds as MongoDB's Top keeps them)
        self.latencies = {kind: [0, 0] for kind in LATENCY_KINDS}

    def add(self, section: dict, key: str, amount: int = 1) -> None:
        with self.lock:
            section[key] += amount

    def record_top(self, ns: str, kind: str, micros: int, write: bool) -> None:
        with self.lock:
            entry = self.top.setdefault(ns, {})
            for name in ("total", kind, "writeLock" if write else "readLock"):
                slot = entry.setdefault(name, [0, 0])
                slot[0] += micros
                slot[1] += 1

    def record_latency(self, kind: str, micros: int) -> None:
        with self.lock:
            slot = self.latencies[kind]
            slot[0] += micros
            slot[1] += 1
