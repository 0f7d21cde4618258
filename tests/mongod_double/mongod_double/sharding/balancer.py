"""The balancer: drains shards being removed and evens out chunk counts.

MongoDB runs its balancer on the config server primary; the double runs it in the routers, one
at a time: a round happens only in the router holding the ``balancer`` lease in
``config.locks`` (renewed each round, taken over when it expires), as mongos did before 3.4.
Every ``ROUND_SECONDS`` the holder, unless ``config.settings`` says ``mode: "off"``, moves for
each sharded collection (``noBalance`` unset) one chunk: off a draining shard if any is left
there, else from the shard with the most chunks to the one with the fewest when they differ by
``THRESHOLD`` or more (MongoDB's migration threshold for collections with few chunks; MongoDB
6.0+ balances on data size, the double on chunk counts).
A round is marked in ``config.settings`` beside the mode (``inRound``, a count of ``rounds``), as
the config server primary's balancer is one for the whole cluster: balancerStatus through any
router reports it, and balancerStop waits for it to end.
Sources: https://www.mongodb.com/docs/manual/core/sharding-balancer-administration/
https://www.mongodb.com/docs/manual/reference/command/balancerStatus/
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
from typing import TYPE_CHECKING

from pymongo.errors import DuplicateKeyError, PyMongoError

from mongod_double.logs import log
from mongod_double.sharding.migration import move_chunk

if TYPE_CHECKING:
    from mongod_double.mongos import Router

ROUND_SECONDS = 1.0
LEASE_SECONDS = 10.0
# A round marked begun by a router that went away counts as over after this.
ROUND_LIMIT_SECONDS = 60.0
THRESHOLD = 2


class Balancer:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.process = f"{socket.gethostname()}:{router.port}:{os.getpid()}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="Balancer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(ROUND_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._take_lease():
                    self.balance_round()
            except PyMongoError as exc:
                log.info("SHARDING", 21870, "Balancer round failed", {"error": str(exc)})

    def _take_lease(self) -> bool:
        locks = self.router.cluster.config.locks
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        expires = now + datetime.timedelta(seconds=LEASE_SECONDS)
        taken = locks.find_one_and_update(
            {"_id": "balancer", "$or": [{"process": self.process}, {"expires": {"$lt": now}}]},
            {"$set": {"process": self.process, "expires": expires, "state": 2}},
        )
        if taken is not None:
            return True
        try:
            locks.insert_one(
                {"_id": "balancer", "process": self.process, "expires": expires, "state": 2}
            )
        except DuplicateKeyError:
            return False
        return True

    def balance_round(self) -> int:
        """One round; returns the number of chunks moved. The round is marked begun (only while
        the balancer is on) and ended, so that every router's balancerStatus and balancerStop
        see it."""
        cluster = self.router.cluster
        if not cluster.begin_balancer_round(ROUND_LIMIT_SECONDS):
            return 0
        moved = 0
        try:
            shards = cluster.shards()
            draining = {s["_id"] for s in shards if s.get("draining")}
            active = [s["_id"] for s in shards if not s.get("draining")]
            if not active:
                return 0
            for coll in cluster.sharded_collections():
                if coll.get("noBalance"):
                    continue
                routing = cluster.routing(coll["_id"])
                if routing is None:
                    continue
                if self._balance_collection(routing, draining, active):
                    moved += 1
        finally:
            cluster.end_balancer_round()
        return moved

    def _balance_collection(self, routing, draining: set[str], active: list[str]) -> bool:
        counts = {name: 0 for name in active}
        for chunk in routing.chunks:
            if chunk["shard"] in counts:
                counts[chunk["shard"]] += 1
        emptiest = min(active, key=lambda name: (counts[name], name))
        leaving = [c for c in routing.chunks if c["shard"] in draining or c["shard"] not in counts]
        if leaving:
            chunk = leaving[0]
        else:
            fullest = max(active, key=lambda name: (counts[name], name))
            if counts[fullest] - counts[emptiest] < THRESHOLD:
                return False
            chunk = next(c for c in routing.chunks if c["shard"] == fullest)
        log.info(
            "SHARDING",
            21871,
            "Migrating chunk",
            {"ns": routing.ns, "from": chunk["shard"], "to": emptiest, "min": chunk["min"]},
            ctx="Balancer",
        )
        move_chunk(self.router.cluster, routing, chunk, emptiest)
        return True
