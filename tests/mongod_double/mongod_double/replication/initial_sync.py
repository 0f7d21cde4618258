"""Initial sync: a new member (STARTUP2) notes the source's newest oplog entry, clones every
database but ``local``, stores that entry as its first, and fetches from there.
"""

from __future__ import annotations

from bson.int64 import Int64

from mongod_double import election, rsconfig
from mongod_double.logs import log
from mongod_double.replication.states import (
    PRIMARY,
    SECONDARY,
    STARTUP2,
)
from mongod_double.storage import OPLOG_NS, split_ns


class InitialSyncMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

    def _initial_sync(self) -> None:
        from mongod_double.peers import CODEC

        source = self._choose_sync_source() or self._any_data_source()
        if source is None:
            self._stop.wait(0.5)
            return
        self.sync_source = source
        log.info("INITSYNC", 21173, "Initial sync attempt", {"syncSource": source}, ctx="ReplCoord")
        client = self.peers.client(source, "initialsync")
        local = client.get_database("local", codec_options=CODEC)
        newest = local.command({"find": "oplog.rs", "sort": {"$natural": -1}, "limit": 1})
        begin = newest["cursor"]["firstBatch"]
        if not begin:
            self._stop.wait(0.5)
            return
        begin_entry = begin[0]
        storage = self.storage
        with storage.lock:
            for ns in [n for n in list(storage.catalog) if split_ns(n)[0] != "local"]:
                db, coll = split_ns(ns)
                storage.apply({"op": "c", "ns": f"{db}.$cmd", "o": {"drop": coll}}, logged=False)
        for db_info in client.admin.command("listDatabases")["databases"]:
            db_name = db_info["name"]
            if db_name == "local":
                continue
            db = client.get_database(db_name, codec_options=CODEC)
            for info in db.command("listCollections")["cursor"]["firstBatch"]:
                if info.get("type", "collection") == "collection":
                    self._clone_collection(client, f"{db_name}.{info['name']}", info)
        with storage.lock:
            storage.apply({"op": "i", "ns": OPLOG_NS, "o": begin_entry}, logged=False)
            self.last_applied = {"ts": begin_entry["ts"], "t": Int64(begin_entry.get("t", -1))}
            self.last_applied_wall = begin_entry.get("wall")
            with self._ts_lock:
                self._last_ts = max(self._last_ts, begin_entry["ts"])
        log.info("INITSYNC", 21192, "Initial sync done", {"syncSource": source}, ctx="ReplCoord")
        with self.mutex:
            if self.state == STARTUP2:
                self._set_state(SECONDARY, "initial sync done")
                self._reset_election_timer()

    def _clone_collection(self, client, ns: str, info: dict | None = None) -> None:
        """Make collection ``ns`` what it is on the source: options, UUID, indexes, documents
        (initial sync, and rollback of commands). Dropped here when the source has none."""
        from mongod_double.peers import CODEC

        db_name, name = split_ns(ns)
        if name == "system.profile":
            return
        db = client.get_database(db_name, codec_options=CODEC)
        if info is None:
            found = db.command("listCollections", filter={"name": name})["cursor"]["firstBatch"]
            info = found[0] if found else None
        storage = self.storage
        with storage.lock:
            if storage.exists(ns):
                storage.apply(
                    {"op": "c", "ns": f"{db_name}.$cmd", "o": {"drop": name}}, logged=False
                )
            if info is None:
                return
            create = {"create": name, **(info.get("options") or {})}
            uuid = info["info"]["uuid"]
            storage.apply(
                {"op": "c", "ns": f"{db_name}.$cmd", "ui": uuid, "o": create}, logged=False
            )
        for spec in db[name].list_indexes():
            spec = dict(spec)
            if spec.get("name") == "_id_":
                continue
            spec.pop("v", None)
            with storage.lock:
                storage.apply(
                    {"op": "c", "ns": f"{db_name}.$cmd", "o": {"createIndexes": name, **spec}},
                    logged=False,
                )
        for doc in db[name].find({}):
            with storage.lock:
                storage.apply({"op": "i", "ns": ns, "ui": uuid, "o": doc}, logged=False)

    def _any_data_source(self) -> str | None:
        with self.mutex:
            best = None
            for host, status in self.members.items():
                member = rsconfig.member_by_host(self.config, host) if self.config else None
                if member is None or member["arbiterOnly"] or not status.health:
                    continue
                if status.state not in (PRIMARY, SECONDARY) or status.applied is None:
                    continue
                if best is None or election.optime_key(status.applied) > election.optime_key(
                    self.members[best].applied
                ):
                    best = host
            return best
