"""Rollback: what a member that diverged from its sync source undoes, and the files it keeps.

A member rolls back when its newest oplog entries are not on its sync source: writes accepted by
a primary that lost its role before a majority had them. The common point is the newest entry
that both oplogs hold with the same ``ts`` and ``t`` (MongoDB's roll_back_local_operations walks
both oplogs backwards the same way). What the divergent entries changed is undone by refetching
from the source, and the local version of every document they touched is kept, as mongod keeps
it, in ``<dbPath>/rollback/<collection UUID>/removed.<time>.bson``
(https://www.mongodb.com/docs/manual/core/replica-set-rollbacks/#collect-rollback-data).
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import bson
from bson.int64 import Int64

from mongod_double.logs import log
from mongod_double.replication.states import (
    RECOVERING,
    ROLLBACK,
    utcnow,
)
from mongod_double.storage import OPLOG_NS, Storage, split_ns

SOURCE_BATCH = 1000
# Commands whose effect is undone by cloning the collections they name from the source.
COLLECTION_COMMANDS = ("create", "drop", "createIndexes", "dropIndexes", "collMod")


def source_entries(local) -> Iterator[dict]:
    """The source's oplog, newest first (``local`` is the source's ``local`` database)."""
    cursor = local["oplog.rs"].find({}, batch_size=SOURCE_BATCH).sort("$natural", -1)
    try:
        yield from cursor
    finally:
        cursor.close()


def newest_entry(local) -> dict:
    return next(source_entries(local))


def find_common_point(mine: list[dict], theirs: Iterable[dict]) -> tuple[dict | None, list[dict]]:
    """Walk both oplogs from their newest entry back; returns (common point, our entries after
    it, newest first). None when no entry of ours is on the source."""
    divergent: list[dict] = []
    ours = iter(reversed(mine))
    theirs = iter(theirs)
    mine_entry = next(ours, None)
    their_entry = next(theirs, None)
    while mine_entry is not None and their_entry is not None:
        if mine_entry["ts"] > their_entry["ts"]:
            divergent.append(mine_entry)
            mine_entry = next(ours, None)
        elif their_entry["ts"] > mine_entry["ts"]:
            their_entry = next(theirs, None)
        elif int(mine_entry.get("t", -1)) == int(their_entry.get("t", -1)):
            return mine_entry, divergent
        else:
            divergent.append(mine_entry)
            mine_entry = next(ours, None)
            their_entry = next(theirs, None)
    if mine_entry is not None:
        divergent.append(mine_entry)
        divergent.extend(ours)
    return None, divergent


@dataclass
class Plan:
    """What a rollback undoes: documents to refetch, collections to clone whole."""

    documents: dict[tuple[str, object], None] = field(default_factory=dict)
    collections: set[str] = field(default_factory=set)


def plan(divergent: list[dict]) -> Plan:
    result = Plan()
    for entry in divergent:
        kind, ns = entry["op"], entry["ns"]
        if kind in ("i", "u", "d"):
            _id = (entry.get("o2") or entry["o"]).get("_id")
            result.documents[(ns, _id)] = None
        elif kind == "c":
            db = split_ns(ns)[0]
            name = next(iter(entry["o"]), "")
            if name in COLLECTION_COMMANDS:
                result.collections.add(f"{db}.{entry['o'][name]}")
            elif name == "renameCollection":
                result.collections.update((entry["o"][name], entry["o"]["to"]))
            elif name == "applyOps":
                nested = plan(entry["o"][name])
                result.documents.update(nested.documents)
                result.collections |= nested.collections
    return result


def save_local_versions(storage: Storage, plan: Plan, now: datetime.datetime) -> list[str]:
    """Write the local version of every touched document to its collection's rollback file;
    returns the files written (caller holds ``storage.lock``)."""
    by_ns: dict[str, list[dict]] = {}
    for ns, _id in plan.documents:
        if ns == OPLOG_NS or not storage.exists(ns):
            continue
        found = storage.collection(ns).find_one({"_id": _id})
        if found is not None:
            by_ns.setdefault(ns, []).append(found)
    for ns in plan.collections:
        if storage.exists(ns):
            known = {doc["_id"] for doc in by_ns.get(ns, [])}
            by_ns.setdefault(ns, []).extend(
                doc for doc in storage.documents(ns) if doc["_id"] not in known
            )
    written = []
    stamp = now.strftime("%Y-%m-%dT%H-%M-%S.0")
    for ns, docs in by_ns.items():
        if not docs:
            continue
        folder = os.path.join(storage.dbpath, "rollback", str(_uuid(storage, ns)))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"removed.{stamp}.bson")
        with open(path, "ab") as out:
            for doc in docs:
                out.write(bson.encode(doc))
            out.flush()
            os.fsync(out.fileno())
        written.append(path)
    return written


def _uuid(storage: Storage, ns: str) -> uuid.UUID:
    return storage.catalog[ns].uuid.as_uuid()


def refetch(storage: Storage, client, ns: str, _id) -> None:
    """Make one document what it is on the source (caller holds ``storage.lock``)."""
    from mongod_double.peers import CODEC

    db, coll = split_ns(ns)
    found = client.get_database(db, codec_options=CODEC)[coll].find_one({"_id": _id})
    exists = storage.exists(ns)
    here = exists and storage.collection(ns).find_one({"_id": _id}, {"_id": 1}) is not None
    if found is None:
        if here:
            storage.apply({"op": "d", "ns": ns, "o": {"_id": _id}}, logged=False)
    elif here:
        storage.apply({"op": "u", "ns": ns, "o2": {"_id": _id}, "o": found}, logged=False)
    else:
        storage.apply({"op": "i", "ns": ns, "o": found}, logged=False)


class RollbackMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

    def _rollback(self, source: str, local) -> None:
        """Roll back our entries after the common point with the source, as mongod does.

        The common point is the newest entry both oplogs hold with the same ``ts`` and ``t``.
        Every document a divergent entry touched is saved, as it is here, to
        ``<dbPath>/rollback/<collection UUID>/removed.<time>.bson``, then refetched from the
        source (or deleted when the source has none); a collection a divergent command touched is
        cloned from the source whole. The oplog is cut at the common point and the member stays
        in ROLLBACK until it has applied the source's entries up to the source's newest one at
        the time of the refetch (minValid), when its data is consistent again: then SECONDARY.
        """
        with self.mutex:
            self._set_state(ROLLBACK, f"our oplog diverged from {source}")
        storage = self.storage
        with storage.lock:
            records = [record.doc for record in storage.capped[OPLOG_NS].records]
        common, divergent = find_common_point(records, source_entries(local))
        if common is None:
            self._rollback_failed(f"no common point with {source}: resync needed")
            return
        committed = self.last_committed
        if committed is not None and common["ts"] < committed["ts"]:
            self._rollback_failed(
                f"the common point with {source} ({common['ts']}) is older than the majority "
                f"commit point ({committed['ts']}): rollback would lose committed writes"
            )
            return
        undo = plan(divergent)
        client = self.peers.client(source, "oplog")
        newest = newest_entry(local)
        files = []
        with storage.lock:
            saved = save_local_versions(storage, undo, utcnow())
            files = sorted(saved)
            for ns in undo.collections:
                self._clone_collection(client, ns)
            for ns, _id in undo.documents:
                if ns in undo.collections:
                    continue
                refetch(storage, client, ns, _id)
            storage.truncate_oplog_after(common["ts"])
            self.last_applied = {"ts": common["ts"], "t": Int64(common.get("t", -1))}
            self.last_applied_wall = common.get("wall")
            self.min_valid = {"ts": newest["ts"], "t": Int64(newest.get("t", -1))}
        log.info(
            "ROLLBACK",
            21612,
            "Rollback summary",
            {
                "syncSource": source,
                "commonPoint": common["ts"],
                "rolledBackEntries": len(divergent),
                "refetchedDocuments": len(undo.documents),
                "resyncedCollections": sorted(undo.collections),
                "rollbackDataFiles": files,
                "minValid": newest["ts"],
            },
            ctx="BackgroundSync",
        )

    def _rollback_failed(self, message: str) -> None:
        with self.mutex:
            self.info_message = message
            log.error("ROLLBACK", 21606, "Rollback failed", {"error": message}, ctx="Rollback")
            self._set_state(RECOVERING, message)
        self._stop.wait(2)
