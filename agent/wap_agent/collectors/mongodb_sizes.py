"""Database and collection sizes at a bounded cost per round and per minute.

Sizes change slowly: the survey runs at most once every ``every`` seconds (default 60; the
rounds between report what is known and cost no command), so a 1 s interval does not read them
sixty times more often than a minute needs. A run costs at most
``1 + dbstats_per_round + collections_per_round`` commands, whatever the number of databases and
collections:

- ``listDatabases`` (nameOnly) once;
- ``dbStats`` for every database, or for the next ``dbstats_per_round`` of them in rotation when
  there are more;
- a collection lane of ``collections_per_round`` commands that works through a survey:
  ``listCollections`` of one database, then ``$collStats`` (storageStats) of its collections one
  by one, then the next database; when the survey is done, the next round starts another.

Every figure is kept with the time it was read, and each round reports the ``top_databases`` and
``top_collections`` largest (data plus indexes on disk) from what is known, each with the
timestamp of its own reading. With 10,000 collections and 20 per run, each collection is read
again every 500 runs (about 8 hours at one run a minute); the largest ones are reported every
round. ``local`` has no collection lane (its one large collection, the oplog, has series of its
own).
"""

from __future__ import annotations

import collections
import heapq
import time
from typing import Any, Callable

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from wap_agent.collectors.mongodb_status import number
from wap_agent.sample import GAUGE, Sample

SKIPPED_COLLECTION_DBS = ("local",)


class SizeSurvey:
    def __init__(
        self,
        dbstats_per_round: int = 10,
        collections_per_round: int = 20,
        top_databases: int = 20,
        top_collections: int = 20,
        clock: Callable[[], float] = time.time,
        every: float = 60.0,
    ) -> None:
        if dbstats_per_round < 1 or collections_per_round < 1:
            raise ValueError("the size survey needs at least one command per round for each lane")
        self.every = every
        self._last_run: float | None = None
        # The largest databases and collections, found again only after a run changed them.
        self._top: tuple[list, list] | None = None
        self.dbstats_per_round = dbstats_per_round
        self.collections_per_round = collections_per_round
        self.top_databases = top_databases
        self.top_collections = top_collections
        self.clock = clock
        self.databases: dict[str, tuple[float, dict]] = {}
        self.collections: dict[tuple[str, str], tuple[float, dict]] = {}
        self._db_rotation: collections.deque[str] = collections.deque()
        self._to_list: collections.deque[str] = collections.deque()
        self._to_stat: collections.deque[tuple[str, str]] = collections.deque()
        self.commands = 0  # commands of the last round

    def run(self, client: MongoClient, errors: list[str]) -> None:
        """One round: refresh what the budget allows, when ``every`` seconds have passed since
        the last run. Errors are appended, never raised."""
        self.commands = 0
        now = self.clock()
        if self._last_run is not None and 0 <= now - self._last_run < self.every:
            return
        self._last_run = now
        self._top = None
        names = self._list_databases(client, errors)
        if names is None:
            return
        for gone in set(self.databases) - set(names):
            del self.databases[gone]
        for key in [k for k in self.collections if k[0] not in names]:
            del self.collections[key]
        self._db_stats(client, names, errors)
        self._collection_lane(client, names, errors)

    def _command(self, client: MongoClient, db: str, command: dict) -> dict:
        self.commands += 1
        return client[db].command(command)

    def _list_databases(self, client: MongoClient, errors: list[str]) -> list[str] | None:
        try:
            reply = self._command(client, "admin", {"listDatabases": 1, "nameOnly": True})
        except PyMongoError as exc:
            errors.append(f"listDatabases: {exc}")
            return None
        return [d["name"] for d in reply.get("databases", []) if isinstance(d.get("name"), str)]

    def _db_stats(self, client: MongoClient, names: list[str], errors: list[str]) -> None:
        if len(names) <= self.dbstats_per_round:
            chosen = list(names)
        else:
            chosen = []
            while len(chosen) < self.dbstats_per_round:
                if not self._db_rotation:
                    self._db_rotation.extend(n for n in names if n not in chosen)
                    if not self._db_rotation:
                        break
                name = self._db_rotation.popleft()
                if name in names:
                    chosen.append(name)
        for name in chosen:
            try:
                reply = self._command(client, name, {"dbStats": 1})
            except PyMongoError as exc:
                errors.append(f"dbStats {name}: {exc}")
                continue
            self.databases[name] = (self.clock(), _kept(reply, DB_FIELDS))

    def _collection_lane(self, client: MongoClient, names: list[str], errors: list[str]) -> None:
        spent = 0
        started_survey = False
        while spent < self.collections_per_round:
            if self._to_stat:
                db, coll = self._to_stat.popleft()
                if db not in names:
                    continue
                spent += 1
                self._coll_stats(client, db, coll, errors)
            elif self._to_list:
                db = self._to_list.popleft()
                if db not in names:
                    continue
                spent += 1
                self._list_collections(client, db, errors)
            elif started_survey:  # everything surveyed within this round
                break
            else:  # a new survey: every database's collections again
                started_survey = True
                self._to_list.extend(n for n in names if n not in SKIPPED_COLLECTION_DBS)

    def _list_collections(self, client: MongoClient, db: str, errors: list[str]) -> None:
        self.commands += 1
        try:
            # One command: the whole list in the first batch (names only: no collection locks).
            cursor = client[db].list_collections(
                filter={"type": "collection"},
                nameOnly=True,
                authorizedCollections=True,
                cursor={"batchSize": 100_000},
            )
            listed = [c["name"] for c in cursor if not c["name"].startswith("system.")]
        except PyMongoError as exc:
            errors.append(f"listCollections {db}: {exc}")
            return
        for key in [k for k in self.collections if k[0] == db and k[1] not in listed]:
            del self.collections[key]
        self._to_stat.extend((db, coll) for coll in listed)

    def _coll_stats(self, client: MongoClient, db: str, coll: str, errors: list[str]) -> None:
        self.commands += 1
        try:
            docs = list(client[db][coll].aggregate([{"$collStats": {"storageStats": {}}}]))
        except PyMongoError as exc:
            errors.append(f"$collStats {db}.{coll}: {exc}")
            return
        if docs and isinstance(docs[0].get("storageStats"), dict):
            stats = _kept(docs[0]["storageStats"], COLLECTION_FIELDS)
            self.collections[(db, coll)] = (self.clock(), stats)

    def samples(self, labels: dict[str, str]) -> list[Sample]:
        out: list[Sample] = []
        if self._top is None:  # 10 ms with 10,000 collections: once a run, not every round
            self._top = (
                heapq.nlargest(self.top_databases, self.databases.items(),
                               key=lambda kv: _db_size(kv[1][1])),
                heapq.nlargest(self.top_collections, self.collections.items(),
                               key=lambda kv: _coll_size(kv[1][1])),
            )  # fmt: skip
        dbs, colls = self._top
        for name, (ts, stats) in dbs:
            db_labels = {**labels, "db": name}
            for field, metric in DB_FIELDS:
                value = number(stats, field)
                if value is not None:
                    out.append(Sample(metric, value, GAUGE, db_labels, ts))
        for (db, coll), (ts, stats) in colls:
            coll_labels = {**labels, "db": db, "collection": coll}
            for field, metric in COLLECTION_FIELDS:
                value = number(stats, field)
                if value is not None:
                    out.append(Sample(metric, value, GAUGE, coll_labels, ts))
        now = self.clock()
        out.append(
            Sample(
                "mongodb_size_survey_collections", float(len(self.collections)), GAUGE, labels, now
            )
        )
        out.append(Sample("mongodb_size_survey_commands", float(self.commands), GAUGE, labels, now))
        return out


DB_FIELDS = (
    ("dataSize", "mongodb_db_data_size_bytes"),
    ("storageSize", "mongodb_db_storage_size_bytes"),
    ("indexSize", "mongodb_db_index_size_bytes"),
    ("objects", "mongodb_db_objects"),
    ("collections", "mongodb_db_collections"),
    ("indexes", "mongodb_db_indexes"),
)
COLLECTION_FIELDS = (
    ("size", "mongodb_collection_size_bytes"),
    ("storageSize", "mongodb_collection_storage_size_bytes"),
    ("totalIndexSize", "mongodb_collection_index_size_bytes"),
    ("count", "mongodb_collection_documents"),
)


def _kept(reply: dict, fields: tuple[tuple[str, str], ...]) -> dict:
    """Only the figures reported: mongod's storageStats also holds the whole WiredTiger section
    and each index's (hundreds of values), which 10,000 collections would keep in memory."""
    return {field: reply[field] for field, _metric in fields if field in reply}


def _db_size(stats: Any) -> float:
    return (number(stats, "storageSize") or 0.0) + (number(stats, "indexSize") or 0.0)


def _coll_size(stats: Any) -> float:
    return (number(stats, "storageSize") or 0.0) + (number(stats, "totalIndexSize") or 0.0)
