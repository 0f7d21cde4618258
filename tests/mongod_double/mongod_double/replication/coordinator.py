"""The replication coordinator: one per server, holding the state every part works on (config,
term, member states, optimes), the oplog hook of the write path, and the write gate.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import socket
import threading
import time

from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from mongod_double import election, rsconfig
from mongod_double.errors import NOT_WRITABLE_PRIMARY, CommandError
from mongod_double.logs import log
from mongod_double.replication.config import ConfigMixin
from mongod_double.replication.elections import ElectionsMixin
from mongod_double.replication.fetcher import OplogFetcherMixin
from mongod_double.replication.heartbeats import HeartbeatsMixin
from mongod_double.replication.initial_sync import InitialSyncMixin
from mongod_double.replication.rollback import RollbackMixin
from mongod_double.replication.states import (
    ELECTION_NS,
    NOT_PRIMARY_OR_SECONDARY,
    PRIMARY,
    REPLSET_NS,
    SECONDARY,
    STARTUP,
    SYNCING_STATES,
    MemberStatus,
)
from mongod_double.replication.status import StatusMixin
from mongod_double.replication.write_concern import WriteConcernMixin
from mongod_double.role import Role
from mongod_double.storage import OPLOG_NS, Storage


class ReplicationCoordinator(
    ConfigMixin,
    HeartbeatsMixin,
    WriteConcernMixin,
    ElectionsMixin,
    OplogFetcherMixin,
    RollbackMixin,
    InitialSyncMixin,
    StatusMixin,
):
    def __init__(self, role: Role, set_name: str | None, storage: Storage, port: int) -> None:
        self.role = role
        self.set_name = set_name
        self.storage = storage
        self.port = port
        self.config: dict | None = None
        self.term = 0
        self.primary_term = -1  # the term this node was elected in, while it is primary
        self.state = STARTUP
        self.election_id: ObjectId | None = None
        self.election_time: Timestamp | None = None
        self.topology_version = {"processId": ObjectId(), "counter": Int64(0)}
        self.topology_changed = threading.Condition()
        self._ts_lock = threading.Lock()
        self._last_ts = Timestamp(0, 0)
        self.last_applied: dict | None = None
        self.last_applied_wall: datetime.datetime | None = None
        self.last_committed: dict | None = None
        self.mutex = threading.RLock()
        self.progress = threading.Condition(self.mutex)
        self.members: dict[str, MemberStatus] = {}
        self.primary_host: str | None = None
        self.self_host: str | None = None
        self.last_vote_term = -1
        self.freeze_until = 0.0
        self.election_deadline = float("inf")
        self.takeover_at: float | None = None
        self.sync_source = ""
        self.info_message = ""
        self.initiated_here = False
        self.last_election_reason = ""
        self.started = time.monotonic()
        self.options = None
        self.peers = None
        self._stop: threading.Event = threading.Event()
        self._hb_threads: dict[str, threading.Event] = {}
        self._electing = False
        self._config_fetches: set[str] = set()
        self._logging_allowed = False
        self.min_valid: dict | None = None  # ROLLBACK until applied up to here
        self._write_gate = threading.Condition()
        self._writers = 0
        self._draining = False
        self._rng = random.Random()

    def startup(self) -> None:
        if not self.role.is_replicated:
            return
        docs = self.storage.documents(REPLSET_NS) if self.storage.exists(REPLSET_NS) else []
        last = self.storage.capped.get(OPLOG_NS)
        if last is not None and len(last):
            entry = last.records[-1].doc
            self._last_ts = entry["ts"]
            self.term = max(int(entry.get("t", 0)), 0)
            self.last_applied = {"ts": entry["ts"], "t": Int64(entry.get("t", 0))}
            self.last_applied_wall = entry.get("wall")
        if self.storage.exists(ELECTION_NS):
            for doc in self.storage.documents(ELECTION_NS):
                self.last_vote_term = int(doc.get("term", -1))
                self.term = max(self.term, self.last_vote_term)
        if docs:
            self.storage.oplog_hook = self
            self._adopt_config(docs[0])
            if self.state == SECONDARY and self._sole_voter():
                self.become_primary("single node election at startup")

    def start(self, options, stop: threading.Event) -> None:
        """Start the replication threads (called once the server serves)."""
        if not self.role.is_replicated:
            return
        from mongod_double.peers import Peers

        self.options = options
        self.peers = Peers(options)
        self._stop = stop
        threading.Thread(target=self._ticker, name="ReplCoord-ticker", daemon=True).start()
        threading.Thread(target=self._fetcher, name="BackgroundSync", daemon=True).start()
        self._sync_heartbeat_threads()

    def stop(self) -> None:
        self._stop.set()
        for event in list(self._hb_threads.values()):
            event.set()
        with self.progress:
            self.progress.notify_all()
        if self.peers is not None:
            self.peers.close()

    def is_self(self, host: str) -> bool:
        name, _, port = str(host).rpartition(":")
        if not port.isdigit() or int(port) != self.port:
            return False
        if name in ("localhost", socket.gethostname(), socket.getfqdn()):
            return True
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET)}
        except OSError:
            return False
        for address in addresses:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind((address, 0))  # only an address of this machine binds
                except OSError:
                    continue
                return True
        return False

    def self_member(self, config: dict | None) -> dict | None:
        for member in (config or {}).get("members", []):
            if self.is_self(member.get("host", "")):
                return member
        return None

    def me_in_config(self, config: dict) -> bool:
        return self.self_member(config) is not None

    def me(self) -> str:
        return self.self_host or f"{socket.gethostname()}:{self.port}"

    def _my_member(self) -> dict | None:
        if self.config is None or self.self_host is None:
            return None
        return rsconfig.member_by_host(self.config, self.self_host)

    def _sole_voter(self) -> bool:
        me = self._my_member()
        voters = rsconfig.voting_members(self.config) if self.config else []
        return me is not None and len(voters) == 1 and voters[0] is me and rsconfig.electable(me)

    def _set_state(self, state: str, reason: str = "") -> None:
        if state == self.state:
            return
        old, self.state = self.state, state
        log.info(
            "REPL",
            21358,
            "Replica set state transition",
            {"newState": state, "oldState": old, "reason": reason}
            if reason
            else {"newState": state, "oldState": old},
            ctx="ReplCoord",
        )
        if state != PRIMARY:
            self.election_id = None
            if self.primary_host == self.self_host:
                self.primary_host = None
        self.bump_topology()
        with self.progress:
            self.progress.notify_all()

    def bump_topology(self) -> None:
        with self.topology_changed:
            self.topology_version = {
                "processId": self.topology_version["processId"],
                "counter": Int64(self.topology_version["counter"] + 1),
            }
            self.topology_changed.notify_all()

    def _reset_election_timer(self) -> None:
        timeout = self._settings("electionTimeoutMillis", 10000)
        self.election_deadline = time.monotonic() + election.election_timeout_with_offset(
            timeout, self._rng
        )

    def _settings(self, key: str, default):
        return ((self.config or {}).get("settings") or {}).get(key, default)

    def _update_term(self, term: int) -> None:
        """A higher term seen anywhere: adopt it; a primary steps down (caller holds mutex)."""
        if term <= self.term:
            return
        self.term = term
        if self.state == PRIMARY:
            self._step_down_locked(f"a newer term ({term}) was seen")

    def _step_down_locked(self, reason: str) -> None:
        log.info("REPL", 21809, "Stepping down from primary", {"reason": reason}, ctx="ReplCoord")
        self._set_state(SECONDARY, reason)
        self.primary_host = None
        self._reset_election_timer()

    def become_primary(self, reason: str = "election", term: int | None = None) -> bool:
        """Take the primary role in ``term`` (a new term when None): write the new-primary no-op."""
        with self.storage.lock, self.mutex:
            if term is None:
                self.term += 1
            elif term != self.term or self.state not in (SECONDARY, STARTUP):
                return False
            self.election_id = ObjectId(f"7fffffff{self.term:016x}")
            self.primary_term = self.term
            self.primary_host = self.me()
            self.initiated_here = False
            self.takeover_at = None
            self.sync_source = ""
            self.last_election_reason = reason
            self._set_state(PRIMARY, reason)
            entry = self.storage.apply({"op": "n", "ns": "", "o": {"msg": "new primary"}})
            self.election_time = entry["ts"] if entry else None
            if self.config is not None and self.config.get("term", 0) != -1:
                updated = dict(self.config, term=self.term)
                self._store_config(updated)
            self.election_id = ObjectId(f"7fffffff{self.term:016x}")
        log.info(
            "REPL",
            21331,
            "Transition to primary complete; database writes are now permitted",
            {"term": self.term},
            ctx="ReplCoord",
        )
        self.bump_topology()
        self._wake_heartbeats()
        return True

    def next_timestamp(self) -> Timestamp:
        with self._ts_lock:
            now = int(time.time())
            if now > self._last_ts.time:
                ts = Timestamp(now, 1)
            else:
                ts = Timestamp(self._last_ts.time, self._last_ts.inc + 1)
            self._last_ts = ts
            return ts

    def entry_for(self, op: dict) -> dict | None:
        """The oplog entry for an operation about to be applied here (MongoDB 4.4+ format).

        Refuses (NotWritablePrimary) on a member that is not primary, so that a write racing a
        step-down is either logged in the term it was accepted in or not applied at all. A primary
        that has adopted a newer term (a vote request or heartbeat carried it) and not yet stepped
        down refuses too: mongod updates its term and steps down as one step, so no entry of the
        old primary ever carries the new term (two primaries' entries would then share a term and
        could share a timestamp, and a rollback could not tell them apart). Called under
        ``storage.lock``: reads plain attributes only, never takes ``mutex``.
        """
        if self.config is None:
            return None
        primary = self.state == PRIMARY
        if not (primary or self._logging_allowed) or (primary and self.term != self.primary_term):
            raise CommandError(NOT_WRITABLE_PRIMARY, "not primary")
        # A transaction's commit (an applyOps) carries its session, as mongod's entry does.
        entry = {key: op[key] for key in ("lsid", "txnNumber") if key in op}
        entry.update(op=op["op"], ns=op["ns"])
        if "ui" in op:
            entry["ui"] = op["ui"]
        entry["o"] = op["o"]
        if "o2" in op:
            entry["o2"] = op["o2"]
        ts = self.next_timestamp()
        term = self.primary_term if primary else -1
        entry.update(ts=ts, t=Int64(term), v=Int64(2), wall=datetime.datetime.now(datetime.UTC))
        if "prevOpTime" in op:
            entry["prevOpTime"] = op["prevOpTime"]
        return entry

    def logged(self, entry: dict) -> None:
        """The write path applied ``entry`` and appended it to the oplog."""
        self.last_applied = {"ts": entry["ts"], "t": entry["t"]}
        self.last_applied_wall = entry["wall"].replace(tzinfo=None)

    def apply_fetched(self, entries: list[dict], after: dict) -> bool:
        """Apply entries fetched from the sync source, keeping their ts and t.

        ``after``: the entry the fetcher's cursor continues from. Only a member that syncs
        applies, and only while its last entry is still that one: a member that was primary for a
        moment while a getMore was in flight wrote entries of its own, and the source's next ones
        do not follow them (they may even share a timestamp): the fetcher must start again from
        its last entry, and find the divergence. Returns False when it stopped early.
        """
        expected = (after["ts"], int(after.get("t", -1)))
        for entry in entries:
            op = {key: entry[key] for key in ("op", "ns", "ui", "o", "o2") if key in entry}
            with self.storage.lock:
                if self.state not in SYNCING_STATES:
                    return False
                mine = self.last_applied
                if mine is None or (mine["ts"], int(mine["t"])) != expected:
                    return False
                expected = (entry["ts"], int(entry.get("t", -1)))
                try:
                    self.storage.apply(op, replicated=entry)
                except CommandError as exc:
                    log.error(
                        "REPL",
                        21260,
                        "Error applying operation",
                        {"oplogEntry": {"ts": entry["ts"], "ns": entry["ns"]}, "error": exc.errmsg},
                        ctx="ReplWriterWorker",
                    )
                    self.storage.apply({"op": "n", "ns": "", "o": {}}, replicated=entry)
                with self._ts_lock:
                    if entry["ts"] > self._last_ts:
                        self._last_ts = entry["ts"]
                self.last_applied = {"ts": entry["ts"], "t": Int64(entry.get("t", -1))}
                wall = entry.get("wall")
                self.last_applied_wall = wall.replace(tzinfo=None) if wall else None
        return True

    @property
    def is_writable_primary(self) -> bool:
        return not self.role.is_replicated or self.state == PRIMARY

    def check_write(self, db: str) -> None:
        if db == "local" or self.is_writable_primary:
            return
        raise CommandError(NOT_WRITABLE_PRIMARY, "not primary")

    @contextlib.contextmanager
    def write_intent(self, db: str):
        """Around a write command: waits while a step-down drains writes (mongod's RSTL in
        intent mode), then checks this node may write."""
        if db == "local" or not self.role.is_replicated:
            self.check_write(db)
            yield
            return
        with self._write_gate:
            while self._draining:
                self._write_gate.wait()
            self._writers += 1
        try:
            self.check_write(db)
            yield
        finally:
            with self._write_gate:
                self._writers -= 1
                self._write_gate.notify_all()

    @contextlib.contextmanager
    def writes_blocked(self):
        """A step-down's exclusive hold: no write runs or starts until it is over, so that the
        secondaries it waits for can catch up with a last optime that stays put."""
        with self._write_gate:
            while self._draining:
                self._write_gate.wait()
            self._draining = True
            while self._writers:
                self._write_gate.wait()
        try:
            yield
        finally:
            with self._write_gate:
                self._draining = False
                self._write_gate.notify_all()

    def check_read(self, db: str, read_preference: dict | None, established: bool = False) -> None:
        """May this node serve a read? ``established``: the read continues a cursor (getMore),
        which carries no read preference: the one that opened it allowed a secondary."""
        if db == "local" or self.is_writable_primary:
            return
        if self.config is not None and self.state not in (SECONDARY, PRIMARY):
            raise CommandError(
                NOT_PRIMARY_OR_SECONDARY, "node is not in primary or recovering state"
            )
        if established:
            return
        mode = (read_preference or {}).get("mode", "primary")
        if mode == "primary":
            raise CommandError(13435, "not primary and secondaryOk=false")
