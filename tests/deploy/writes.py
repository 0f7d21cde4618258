"""A steady w:majority write load with a counter, as Jepsen's counter check does: every write the
set acknowledged must be there afterwards."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pymongo
from pymongo.errors import DuplicateKeyError, PyMongoError


@dataclass
class WriteCounter:
    """Inserts {_id: n} with w: majority in a thread until stopped; keeps the acknowledged ids."""

    client: pymongo.MongoClient
    database: str = "app"
    collection: str = "upgrade_counter"
    interval: float = 0.05
    acknowledged: list[int] = field(default_factory=list)
    failed: int = 0

    def __enter__(self) -> WriteCounter:
        majority = pymongo.WriteConcern(w="majority", wtimeout=30_000)
        self._coll = self.client[self.database].get_collection(
            self.collection, write_concern=majority
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()
        return self

    def _write(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                self._coll.insert_one({"_id": n, "at": time.time()})
                self.acknowledged.append(n)
            except DuplicateKeyError:
                self.acknowledged.append(n)  # a retried insert whose first attempt went in
            except PyMongoError:
                self.failed += 1
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def missing(self, client: pymongo.MongoClient) -> list[int]:
        """The acknowledged ids not found now, read from the primary through ``client``."""
        coll = client[self.database][self.collection]
        found = {d["_id"] for d in coll.find({}, {"_id": 1})}
        return [n for n in self.acknowledged if n not in found]
