"""Replication state of this node, as far as phase 1 goes.

Phase 1: the node knows whether it runs with ``--replSet``, loads its config from
``local.system.replset``, can be initiated as a one-member set (it then becomes PRIMARY and logs
every write to ``local.oplog.rs``), and reports all of that in ``hello``. Heartbeats, elections,
multi-member sets and oplog fetching are phase 2: they extend this class (``state``, ``term``,
``topology_changed``) and apply fetched entries through ``Storage.apply``.
"""

from __future__ import annotations

import datetime
import socket
import threading
import time

from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from mongod_double.errors import NOT_WRITABLE_PRIMARY, CommandError
from mongod_double.role import Role
from mongod_double.storage import OPLOG_NS, Storage

REPLSET_NS = "local.system.replset"
PRIMARY, SECONDARY, STARTUP, REMOVED = "PRIMARY", "SECONDARY", "STARTUP", "REMOVED"
STATE_CODES = {STARTUP: 0, PRIMARY: 1, SECONDARY: 2, REMOVED: 10}


class ReplicationCoordinator:
    def __init__(self, role: Role, set_name: str | None, storage: Storage, port: int) -> None:
        self.role = role
        self.set_name = set_name
        self.storage = storage
        self.port = port
        self.config: dict | None = None
        self.term = 0
        self.state = STARTUP
        self.election_id: ObjectId | None = None
        self.topology_version = {"processId": ObjectId(), "counter": Int64(0)}
        self.topology_changed = threading.Condition()
        self._ts_lock = threading.Lock()
        self._last_ts = Timestamp(0, 0)
        self.last_applied: dict | None = None

    # -- startup ---------------------------------------------------------------------------

    def startup(self) -> None:
        if not self.role.is_replicated:
            return
        docs = self.storage.documents(REPLSET_NS) if self.storage.exists(REPLSET_NS) else []
        last = self.storage.capped.get(OPLOG_NS)
        if last is not None and len(last):
            entry = last.records[-1].doc
            self._last_ts = entry["ts"]
            self.term = int(entry.get("t", 0))
            self.last_applied = {"ts": entry["ts"], "t": Int64(self.term)}
        if docs:
            self.config = docs[0]
            self.storage.oplog_hook = self.oplog_entry
            if not self.me_in_config(self.config):
                self.state = REMOVED
            elif len(self.config["members"]) == 1:
                self.become_primary()

    def me(self) -> str:
        return f"{socket.gethostname()}:{self.port}"

    def me_in_config(self, config: dict) -> bool:
        names = {socket.gethostname(), "localhost", "127.0.0.1", socket.getfqdn()}
        for member in config.get("members", []):
            host, _, port = str(member.get("host", "")).rpartition(":")
            if host in names and port.isdigit() and int(port) == self.port:
                return True
        return False

    def become_primary(self) -> None:
        """Win an election in the next term (a one-member set elects itself)."""
        self.term += 1
        self.election_id = ObjectId(f"7fffffff{self.term:016x}")
        self.state = PRIMARY
        self.storage.apply({"op": "n", "ns": "", "o": {"msg": "new primary"}})
        self.bump_topology()

    def bump_topology(self) -> None:
        with self.topology_changed:
            self.topology_version = {
                "processId": self.topology_version["processId"],
                "counter": Int64(self.topology_version["counter"] + 1),
            }
            self.topology_changed.notify_all()

    # -- the oplog -------------------------------------------------------------------------

    def next_timestamp(self) -> Timestamp:
        with self._ts_lock:
            now = int(time.time())
            if now > self._last_ts.time:
                ts = Timestamp(now, 1)
            else:
                ts = Timestamp(self._last_ts.time, self._last_ts.inc + 1)
            self._last_ts = ts
            return ts

    def oplog_entry(self, op: dict) -> dict | None:
        """The oplog entry for an applied operation (format of MongoDB 4.4+ oplog entries)."""
        if self.config is None:
            return None
        entry = {"op": op["op"], "ns": op["ns"]}
        if "ui" in op:
            entry["ui"] = op["ui"]
        entry["o"] = op["o"]
        if "o2" in op:
            entry["o2"] = op["o2"]
        ts = self.next_timestamp()
        entry.update(
            ts=ts, t=Int64(self.term), v=Int64(2), wall=datetime.datetime.now(datetime.UTC)
        )
        self.last_applied = {"ts": ts, "t": Int64(self.term)}
        return entry

    # -- what clients see ------------------------------------------------------------------

    @property
    def is_writable_primary(self) -> bool:
        return not self.role.is_replicated or self.state == PRIMARY

    def check_write(self, db: str) -> None:
        if db == "local" or self.is_writable_primary:
            return
        raise CommandError(NOT_WRITABLE_PRIMARY, "not primary")

    def check_read(self, db: str, read_preference: dict | None) -> None:
        if db == "local" or self.is_writable_primary:
            return
        mode = (read_preference or {}).get("mode", "primary")
        if mode == "primary":
            raise CommandError(13435, "not primary and secondaryOk=false")

    def hello_fields(self) -> dict:
        fields: dict = {"topologyVersion": dict(self.topology_version)}
        if not self.role.is_replicated:
            fields["isWritablePrimary"] = True
            return fields
        if self.config is None or self.state == REMOVED:
            fields.update(
                isWritablePrimary=False,
                secondary=False,
                info="Does not have a valid replica set config",
                isreplicaset=True,
            )
            return fields
        hosts = [m["host"] for m in self.config["members"] if not m.get("arbiterOnly")]
        fields.update(
            hosts=hosts,
            setName=self.config["_id"],
            setVersion=self.config.get("version", 1),
            isWritablePrimary=self.state == PRIMARY,
            secondary=self.state == SECONDARY,
        )
        if self.state == PRIMARY:
            fields["primary"] = self.me()
        fields["me"] = self.me()
        if self.election_id is not None and self.state == PRIMARY:
            fields["electionId"] = self.election_id
        if self.last_applied is not None:
            when = datetime.datetime.fromtimestamp(self.last_applied["ts"].time, datetime.UTC)
            fields["lastWrite"] = {
                "opTime": dict(self.last_applied),
                "lastWriteDate": when,
                "majorityOpTime": dict(self.last_applied),
                "majorityWriteDate": when,
            }
        return fields

    def cluster_time_fields(self) -> dict:
        """``$clusterTime`` and ``operationTime``, gossiped by replica set members."""
        if self.config is None or self.last_applied is None:
            return {}
        ts = self.last_applied["ts"]
        signature = {"hash": b"\x00" * 20, "keyId": Int64(0)}
        return {"$clusterTime": {"clusterTime": ts, "signature": signature}, "operationTime": ts}
