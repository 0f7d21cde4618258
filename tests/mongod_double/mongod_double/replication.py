"""Replication: config, member states, heartbeats, elections, oplog fetching, write concern.

One :class:`ReplicationCoordinator` per server. It loads the config from
``local.system.replset`` and the last vote from ``local.replset.election``, and, once the server
serves, runs three kinds of threads:

- one heartbeat thread per other member: ``replSetHeartbeat`` every ``heartbeatIntervalMillis``
  over the wire (:mod:`mongod_double.peers`); replies carry state, term, optimes, config
  version, and the config itself when the asker's is older, which is how new configs spread;
- the ticker (every 100 ms): a secondary without a primary for ``electionTimeoutMillis`` (plus a
  random offset of up to 15 %) calls an election, a caught-up higher-priority secondary calls a
  priority takeover, a primary that cannot see a majority of voters steps down;
- the oplog fetcher: a secondary tails its sync source's ``local.oplog.rs`` with a tailable
  awaitData cursor, applies each entry through ``Storage.apply(op, replicated=entry)`` (keeping
  the fetched ``ts``/``t``) and reports its position with ``replSetUpdatePosition``. A new
  member first clones the data (initial sync, STARTUP2); a member that fell off its source's
  oplog says RECOVERING ("too stale"); one whose last entries are not on the source rolls them
  back by refetching the documents they touched (ROLLBACK).

Elections follow protocol version 1 (:mod:`mongod_double.election`): dry run, then a real
vote in ``term + 1`` (``replSetRequestVotes``), one vote per term persisted, majority of the
voting members. Lock order: ``storage.lock`` before ``mutex``; code under ``storage.lock`` (the
oplog hook) never takes ``mutex``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import datetime
import random
import socket
import threading
import time
from dataclasses import dataclass

from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from mongod_double import election, rollback, rsconfig
from mongod_double.errors import NOT_WRITABLE_PRIMARY, CommandError
from mongod_double.logs import log
from mongod_double.role import Role
from mongod_double.storage import OPLOG_NS, Storage, split_ns

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


def _now() -> datetime.datetime:
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

    # -- startup and threads ---------------------------------------------------------------

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

    # -- who am I --------------------------------------------------------------------------

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

    # -- state changes ---------------------------------------------------------------------

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

    # -- config ----------------------------------------------------------------------------

    def _store_config(self, config: dict) -> None:
        """Persist ``config`` in local.system.replset (caller holds storage.lock)."""
        storage = self.storage
        if not storage.exists(OPLOG_NS):
            storage.create_collection(OPLOG_NS, {"capped": True, "size": storage.oplog_size_bytes})
        if storage.exists(REPLSET_NS) and storage.documents(REPLSET_NS):
            old = storage.documents(REPLSET_NS)[0]
            if old["_id"] != config["_id"]:
                storage.delete(REPLSET_NS, old["_id"])
                storage.insert(REPLSET_NS, config)
            else:
                storage.replace(REPLSET_NS, config["_id"], config)
        else:
            storage.insert(REPLSET_NS, config)
        self.config = config

    def initiate(self, config: dict) -> None:
        """replSetInitiate on this node: store the config, log "initiating set", then stand for
        election (at once when this node is the only voter)."""
        with self.storage.lock, self.mutex:
            self._store_config(config)
            self.storage.oplog_hook = self
            self._logging_allowed = True
            try:
                self.storage.apply({"op": "n", "ns": "", "o": {"msg": "initiating set"}})
            finally:
                self._logging_allowed = False
            self._adopt_config(config)
            self.initiated_here = True
        self._sync_heartbeat_threads()
        self._wake_heartbeats()
        self.bump_topology()
        if self._sole_voter():
            self.become_primary("initiated a one-member set")

    def install_config(self, config: dict, reason: str) -> None:
        """Store and adopt a new config (initiate, reconfig, or one learnt by heartbeat)."""
        with self.storage.lock, self.mutex:
            self._store_config(config)
            self.storage.oplog_hook = self
            self._adopt_config(config)
        log.info(
            "REPL",
            21392,
            "New replica set config in use",
            {"version": config["version"], "term": config.get("term"), "reason": reason},
            ctx="ReplCoord",
        )
        self._sync_heartbeat_threads()
        self._wake_heartbeats()  # tell the others at once which config we run
        self.bump_topology()

    def _adopt_config(self, config: dict) -> None:
        self.config = config
        me = self.self_member(config)
        self.self_host = me["host"] if me else None
        known = self.members
        self.members = {}
        for member in config["members"]:
            if me is not None and member["host"] == me["host"]:
                continue
            status = known.get(member["host"]) or MemberStatus(member["host"], member["_id"])
            status.member_id = member["_id"]
            self.members[member["host"]] = status
        if me is None:
            self._set_state(REMOVED, "this node is not in the new config")
            return
        if me["arbiterOnly"]:
            self._set_state(ARBITER)
            return
        if self.state in (STARTUP, REMOVED, ARBITER):
            if self.last_applied is None:
                self._set_state(STARTUP2, "initial sync needed")
            else:
                self._set_state(SECONDARY)
            self._reset_election_timer()
        if self.state == PRIMARY and not rsconfig.electable(me):
            self._step_down_locked("no longer electable in the new config")

    def config_committed(self) -> bool:
        """A majority of voting members have this config, and an op of this term is committed."""
        if self.config is None:
            return False
        with self.mutex:
            have = 0
            me = self._my_member()
            for member in rsconfig.voting_members(self.config):
                if me is not None and member["host"] == me["host"]:
                    have += 1
                    continue
                status = self.members.get(member["host"])
                if (
                    status is not None
                    and status.health
                    and status.config_version == self.config["version"]
                    and status.config_term == self.config.get("term", -1)
                ):
                    have += 1
            configs = have >= rsconfig.majority_vote_count(self.config)
            oplog = (
                self.last_committed is not None and int(self.last_committed["t"]) == self.term
            ) or self._sole_voter()
            return configs and oplog

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

    def entry_for(self, op: dict) -> dict | None:
        """The oplog entry for an operation about to be applied here (MongoDB 4.4+ format).

        Refuses (NotWritablePrimary) on a member that is not primary, so that a write racing a
        step-down is either logged in the term it was accepted in or not applied at all. Called
        under ``storage.lock``: reads plain attributes only, never takes ``mutex``.
        """
        if self.config is None:
            return None
        primary = self.state == PRIMARY
        if not (primary or self._logging_allowed):
            raise CommandError(NOT_WRITABLE_PRIMARY, "not primary")
        entry = {"op": op["op"], "ns": op["ns"]}
        if "ui" in op:
            entry["ui"] = op["ui"]
        entry["o"] = op["o"]
        if "o2" in op:
            entry["o2"] = op["o2"]
        ts = self.next_timestamp()
        term = self.term if primary else -1
        entry.update(ts=ts, t=Int64(term), v=Int64(2), wall=datetime.datetime.now(datetime.UTC))
        return entry

    def logged(self, entry: dict) -> None:
        """The write path applied ``entry`` and appended it to the oplog."""
        self.last_applied = {"ts": entry["ts"], "t": entry["t"]}
        self.last_applied_wall = entry["wall"].replace(tzinfo=None)

    def apply_fetched(self, entries: list[dict]) -> None:
        """Apply entries fetched from the sync source, keeping their ts and t."""
        for entry in entries:
            op = {key: entry[key] for key in ("op", "ns", "ui", "o", "o2") if key in entry}
            with self.storage.lock:
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

    # -- what clients see ------------------------------------------------------------------

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

    def check_read(self, db: str, read_preference: dict | None) -> None:
        if db == "local" or self.is_writable_primary:
            return
        if self.config is not None and self.state not in (SECONDARY, PRIMARY):
            raise CommandError(
                NOT_PRIMARY_OR_SECONDARY, "node is not in primary or recovering state"
            )
        mode = (read_preference or {}).get("mode", "primary")
        if mode == "primary":
            raise CommandError(13435, "not primary and secondaryOk=false")

    def hello_fields(self) -> dict:
        fields: dict = {"topologyVersion": dict(self.topology_version)}
        if not self.role.is_replicated:
            fields["isWritablePrimary"] = True
            return fields
        config = self.config
        if config is None or self.state == REMOVED:
            fields.update(
                isWritablePrimary=False,
                secondary=False,
                info="Does not have a valid replica set config",
                isreplicaset=True,
            )
            return fields
        members = config["members"]
        data = [m for m in members if not m["arbiterOnly"] and not m["hidden"]]
        fields.update(
            hosts=[m["host"] for m in data if m["priority"] > 0],
            setName=config["_id"],
            setVersion=config.get("version", 1),
            isWritablePrimary=self.state == PRIMARY,
            secondary=self.state == SECONDARY,
        )
        passives = [m["host"] for m in data if m["priority"] == 0]
        if passives:
            fields["passives"] = passives
        arbiters = [m["host"] for m in members if m["arbiterOnly"]]
        if arbiters:
            fields["arbiters"] = arbiters
        if self.primary_host:
            fields["primary"] = self.primary_host
        me = self._my_member()
        if me is not None:
            if me["arbiterOnly"]:
                fields["arbiterOnly"] = True
            elif me["priority"] == 0:
                fields["passive"] = True
            if me["hidden"]:
                fields["hidden"] = True
            if me["tags"]:
                fields["tags"] = dict(me["tags"])
        fields["me"] = self.me()
        if self.election_id is not None and self.state == PRIMARY:
            fields["electionId"] = self.election_id
        if self.last_applied is not None:
            when = optime_date(self.last_applied)
            committed = self.last_committed or self.last_applied
            fields["lastWrite"] = {
                "opTime": dict(self.last_applied),
                "lastWriteDate": when,
                "majorityOpTime": dict(committed),
                "majorityWriteDate": optime_date(committed),
            }
        return fields

    def cluster_time_fields(self) -> dict:
        """``$clusterTime`` and ``operationTime``, gossiped by replica set members."""
        if self.config is None or self.last_applied is None:
            return {}
        ts = self.last_applied["ts"]
        signature = {"hash": b"\x00" * 20, "keyId": Int64(0)}
        return {"$clusterTime": {"clusterTime": ts, "signature": signature}, "operationTime": ts}

    # -- heartbeats ------------------------------------------------------------------------

    def _sync_heartbeat_threads(self) -> None:
        if self.peers is None:
            return
        with self.mutex:
            wanted = set(self.members) if self.config is not None else set()
        for host in list(self._hb_threads):
            if host not in wanted:
                self._hb_threads.pop(host).set()
        for host in wanted:
            if host not in self._hb_threads:
                event = threading.Event()
                self._hb_threads[host] = event
                threading.Thread(
                    target=self._heartbeat_loop,
                    args=(host, event),
                    name=f"ReplCoord-heartbeat-{host}",
                    daemon=True,
                ).start()

    def _wake_heartbeats(self) -> None:
        for event in list(self._hb_threads.values()):
            event.set()

    def _heartbeat_loop(self, host: str, wake: threading.Event) -> None:
        while not self._stop.is_set() and self._hb_threads.get(host) is wake:
            wake.clear()
            try:
                self.send_heartbeat(host)
            except Exception as exc:  # a bug must not end the member's heartbeats
                log.error("REPL", 1, "Heartbeat failed", {"error": repr(exc)}, ctx="ReplCoord")
            interval = self._settings("heartbeatIntervalMillis", 2000) / 1000
            wake.wait(interval)

    def heartbeat_request(self) -> dict:
        with self.mutex:
            me = self._my_member()
            return {
                "replSetHeartbeat": self.set_name,
                "configVersion": self.config["version"] if self.config else -2,
                "configTerm": self.config.get("term", -1) if self.config else -1,
                "hbv": 1,
                "from": self.me(),
                "fromId": me["_id"] if me else -1,
                "term": self.term,
            }

    def send_heartbeat(self, host: str) -> dict | None:
        body = self.heartbeat_request()
        started = time.monotonic()
        try:
            reply = self.peers.command(host, body)
        except Exception as exc:
            with self.mutex:
                status = self.members.get(host)
                if status is not None:
                    status.last_heartbeat = _now()
                    if status.health or status.state != DOWN:
                        status.message = _error_text(host, exc)
                    status.health = 0.0
                    status.state = DOWN
                    status.up_since = None
                    status.message = _error_text(host, exc)
                    if self.primary_host == host:
                        self.primary_host = None
                        self.bump_topology()
            return None
        self.process_heartbeat_reply(host, reply, int((time.monotonic() - started) * 1000))
        return reply

    def process_heartbeat_reply(self, host: str, reply: dict, ping_ms: int) -> None:
        new_config = None
        with self.mutex:
            status = self.members.get(host)
            if status is None:
                return
            now = time.monotonic()
            status.last_heartbeat = _now()
            status.health = 1.0
            status.ping_ms = ping_ms
            status.last_ok = now
            status.ever_heard = True
            status.up_since = status.up_since or now
            status.state = STATE_NAMES.get(int(reply.get("state", 6)), UNKNOWN)
            status.term = int(reply.get("term", -1))
            status.config_version = int(reply.get("v", -2))
            status.config_term = int(reply.get("configTerm", -1))
            status.sync_source = reply.get("syncingTo", "")
            status.message = ""
            applied = reply.get("opTime")
            if applied:
                status.applied = later(applied, status.applied)
                status.applied_wall = reply.get("wallTime")
            status.election_time = reply.get("electionTime")
            self._update_term(status.term)
            if status.state == PRIMARY and status.term >= self.term:
                if self.primary_host != host:
                    self.primary_host = host
                    self.bump_topology()
                if self.state != PRIMARY:
                    self._reset_election_timer()
                    self.initiated_here = False
                committed = reply.get("lastCommittedOpTime")
                if committed and self.state != PRIMARY:
                    mine = self.last_applied
                    self.last_committed = committed if later(mine, committed) is mine else mine
            elif self.primary_host == host:
                self.primary_host = None
                self.bump_topology()
            config = reply.get("config")
            if isinstance(config, dict) and config_newer(config, self.config):
                new_config = config
            self._advance_commit_point()
        if new_config is not None:
            self.install_config(new_config, "heartbeat")

    def process_heartbeat(self, body: dict) -> dict:
        """Answer a replSetHeartbeat from another member."""
        if not self.role.is_replicated:
            raise CommandError(76, "not running with --replSet")
        name = body.get("replSetHeartbeat")
        if name != self.set_name:
            raise CommandError(
                INCONSISTENT_SET_NAMES,
                f"Our set name of {self.set_name} does not match name {name} reported by "
                "remote node",
            )
        sender = body.get("from", "")
        fetch = False
        with self.mutex:
            sender_term = int(body.get("term", -1))
            news = sender_term > self.term or (
                self.config is not None
                and int(body.get("configTerm", -1)) > self.config.get("term", -1)
            )
            self._update_term(sender_term)
            if news and sender in self._hb_threads:
                self._hb_threads[sender].set()  # answer news with a heartbeat of our own now
            status = self.members.get(sender)
            if status is not None:
                status.last_heartbeat_recv = _now()
                if status.health:  # the sender runs this config now
                    status.config_version = int(body.get("configVersion", -2))
                    status.config_term = int(body.get("configTerm", -1))
            version = self.config["version"] if self.config else -2
            sender_version = int(body.get("configVersion", -2))
            reply: dict = {
                "set": self.set_name,
                "state": STATE_CODES[self.state],
                "term": self.term,
                "v": version,
                "configTerm": self.config.get("term", -1) if self.config else -1,
                "opTime": dict(self.last_applied or ZERO_OPTIME),
                "wallTime": self.last_applied_wall or EPOCH,
                "durableOpTime": dict(self.last_applied or ZERO_OPTIME),
                "durableWallTime": self.last_applied_wall or EPOCH,
                "syncingTo": self.sync_source,
            }
            if self.last_committed is not None:
                reply["lastCommittedOpTime"] = dict(self.last_committed)
            if self.state == PRIMARY and self.election_time is not None:
                reply["electionTime"] = self.election_time
            if self.config is not None and (
                sender_version < version
                or (
                    sender_version == version
                    and int(body.get("configTerm", -1)) < self.config.get("term", -1)
                )
            ):
                reply["config"] = copy.deepcopy(self.config)
            if sender and (self.config is None or sender_version > version):
                fetch = sender not in self._config_fetches
                self._config_fetches.add(sender)
        if fetch and self.peers is not None:
            threading.Thread(
                target=self._fetch_config_from, args=(sender,), name="ReplCoord-config", daemon=True
            ).start()
        return reply

    def _fetch_config_from(self, host: str) -> None:
        """A member told us it has a newer config: ask it with a heartbeat of our own."""
        try:
            reply = self.peers.command(host, self.heartbeat_request())
            config = reply.get("config")
            if (
                isinstance(config, dict)
                and config_newer(config, self.config)
                and (self.self_member(config) is not None or self.config is not None)
            ):
                self.install_config(config, f"heartbeat from {host}")
        except Exception:
            pass
        finally:
            with self.mutex:
                self._config_fetches.discard(host)

    # -- positions, commit point, write concern --------------------------------------------

    def process_update_position(self, body: dict) -> None:
        with self.mutex:
            by_id = {m["_id"]: m["host"] for m in (self.config or {}).get("members", [])}
            for item in body.get("optimes") or []:
                host = by_id.get(item.get("memberId"))
                status = self.members.get(host) if host else None
                if status is None:
                    continue
                applied = item.get("appliedOpTime")
                if applied:
                    status.applied = later(applied, status.applied)
                    status.applied_wall = item.get("appliedWallTime")
            self._advance_commit_point()
            self.progress.notify_all()

    def _data_voter_optimes(self, voters_only: bool) -> list[dict | None]:
        optimes = []
        me = self._my_member()
        for member in (self.config or {}).get("members", []):
            if member["arbiterOnly"] or (voters_only and not member["votes"]):
                continue
            if me is not None and member["host"] == me["host"]:
                optimes.append(self.last_applied)
            else:
                status = self.members.get(member["host"])
                optimes.append(status.applied if status else None)
        return optimes

    def _advance_commit_point(self) -> None:
        if self.state != PRIMARY or self.config is None:
            return
        needed = rsconfig.write_majority_count(self.config)
        optimes = sorted(self._data_voter_optimes(True), key=election.optime_key, reverse=True)
        if len(optimes) < needed:
            return
        candidate = optimes[needed - 1]
        if candidate and int(candidate["t"]) == self.term:
            self.last_committed = later(candidate, self.last_committed)

    def _satisfied(self, target: dict, w) -> bool:
        if w == "majority":
            needed = rsconfig.write_majority_count(self.config)
            optimes = self._data_voter_optimes(True)
        else:
            needed = int(w)
            optimes = self._data_voter_optimes(False)
        reached = sum(1 for o in optimes if election.optime_key(o) >= election.optime_key(target))
        return reached >= needed

    def default_write_concern(self) -> dict:
        if self.config is None:
            return {"w": 1, "wtimeout": 0}
        return {"w": rsconfig.implicit_default_w(self.config), "wtimeout": 0}

    def await_write_concern(self, write_concern: dict | None) -> dict | None:
        """Wait until the last write reached the members ``w`` asks for.

        Returns a ``writeConcernError`` document, or None when satisfied.
        """
        if not self.role.is_replicated or self.config is None or self.state != PRIMARY:
            return None
        provenance = "clientSupplied"
        if not write_concern or "w" not in write_concern:
            write_concern = {**self.default_write_concern(), **(write_concern or {})}
            provenance = "implicitDefault"
        w = write_concern.get("w", 1)
        wtimeout = int(write_concern.get("wtimeout", 0) or 0)
        shown = {"w": w, "wtimeout": wtimeout, "provenance": provenance}
        if isinstance(w, str) and w != "majority":
            return {
                "code": UNKNOWN_REPL_WRITE_CONCERN,
                "codeName": "UnknownReplWriteConcern",
                "errmsg": f"unrecognized getLastError mode: {w}",
                "errInfo": {"writeConcern": shown},
            }
        if not isinstance(w, str) and int(w) <= 1:
            return None
        data_members = sum(1 for m in self.config["members"] if not m["arbiterOnly"])
        if not isinstance(w, str) and int(w) > data_members:
            return {
                "code": UNSATISFIABLE_WRITE_CONCERN,
                "codeName": "UnsatisfiableWriteConcern",
                "errmsg": "Not enough data-bearing nodes",
                "errInfo": {"writeConcern": shown},
            }
        target = self.last_applied
        if target is None:
            return None
        deadline = time.monotonic() + wtimeout / 1000 if wtimeout else None
        with self.progress:
            while not self._satisfied(target, w):
                if self.state != PRIMARY or self._stop.is_set():
                    return {
                        "code": INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
                        "codeName": "InterruptedDueToReplStateChange",
                        "errmsg": "operation was interrupted because the node stepped down",
                        "errInfo": {"writeConcern": shown},
                    }
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return {
                        "code": WRITE_CONCERN_FAILED,
                        "codeName": "WriteConcernFailed",
                        "errmsg": "waiting for replication timed out",
                        "errInfo": {"wtimeout": True, "writeConcern": shown},
                    }
                self.progress.wait(min(remaining, 1.0))
        return None

    # -- elections -------------------------------------------------------------------------

    def can_stand(self) -> str:
        """Why this node cannot stand for election now ("" if it can)."""
        me = self._my_member()
        if self.config is None or me is None:
            return "not in the config"
        if not rsconfig.electable(me):
            return "not electable (priority 0, hidden or arbiter)"
        if self.state != SECONDARY:
            return f"not a secondary ({self.state})"
        if time.monotonic() < self.freeze_until:
            return "frozen"
        if self._electing:
            return "already running for election"
        return ""

    def process_vote_request(self, body: dict) -> dict:
        request = election.VoteRequest(
            set_name=body.get("setName", ""),
            term=int(body.get("term", -1)),
            candidate_index=int(body.get("candidateIndex", -1)),
            config_version=int(body.get("configVersion", -1)),
            config_term=int(body.get("configTerm", -1)),
            last_applied=body.get("lastAppliedOpTime") or body.get("lastCommittedOp"),
            dry_run=bool(body.get("dryRun")),
        )
        if self.config is None:
            raise CommandError(NOT_YET_INITIALIZED, "no replset config has been received")
        with self.storage.lock, self.mutex:
            if not request.dry_run:
                self._update_term(request.term)
            me = self._my_member()
            voter = election.Voter(
                set_name=self.config["_id"],
                term=self.term,
                last_vote_term=self.last_vote_term,
                config_version=self.config["version"],
                config_term=self.config.get("term", -1),
                last_applied=self.last_applied,
                is_arbiter=bool(me and me["arbiterOnly"]),
            )
            granted, reason = election.decide_vote(voter, request)
            if granted and not request.dry_run:
                self._persist_vote(request.term, request.candidate_index)
                self._reset_election_timer()
            log.info(
                "ELECTION",
                5972100 if request.dry_run else 5972101,
                "Voting in election" if granted else "Not voting in election",
                {"term": request.term, "dryRun": request.dry_run, "reason": reason},
                ctx="conn",
            )
            return {"term": self.term, "voteGranted": granted, "reason": reason}

    def _persist_vote(self, term: int, candidate_index: int) -> None:
        """The last vote, in local.replset.election (caller holds storage.lock and mutex)."""
        self.last_vote_term = term
        doc = {"_id": "lastVote", "term": Int64(term), "candidateIndex": Int64(candidate_index)}
        if self.storage.exists(ELECTION_NS) and self.storage.documents(ELECTION_NS):
            self.storage.replace(ELECTION_NS, "lastVote", doc)
        else:
            self.storage.insert(ELECTION_NS, doc)

    def _request_votes(self, term: int, dry_run: bool) -> tuple[int, int]:
        """Ask every other voter; returns (votes including mine, highest term seen)."""
        with self.mutex:
            config = self.config
            me = self._my_member()
            index = config["members"].index(me)
            body = {
                "replSetRequestVotes": 1,
                "setName": config["_id"],
                "dryRun": dry_run,
                "term": Int64(term),
                "candidateIndex": Int64(index),
                "configVersion": Int64(config["version"]),
                "configTerm": Int64(config.get("term", -1)),
                "lastAppliedOpTime": dict(self.last_applied or ZERO_OPTIME),
            }
            voters = [m["host"] for m in rsconfig.voting_members(config) if m is not me]
        votes = 1 if me["votes"] else 0
        highest = term
        needed = rsconfig.majority_vote_count(config)
        if not voters:
            return votes, highest
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(voters))
        try:
            futures = [pool.submit(self.peers.command, host, body, "vote") for host in voters]
            try:
                for future in concurrent.futures.as_completed(futures, timeout=5):
                    try:
                        reply = future.result()
                    except Exception:
                        continue
                    highest = max(highest, int(reply.get("term", -1)))
                    if reply.get("voteGranted"):
                        votes += 1
                        if votes >= needed:
                            break
            except concurrent.futures.TimeoutError:
                pass
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return votes, highest

    def run_election(self, reason: str, skip_dry_run: bool = False) -> bool:
        with self.mutex:
            why_not = self.can_stand()
            if why_not:
                return False
            self._electing = True
            term = self.term
            needed = rsconfig.majority_vote_count(self.config)
        try:
            log.info("ELECTION", 4615652, "Starting an election", {"reason": reason}, ctx="Repl")
            if not skip_dry_run:
                votes, highest = self._request_votes(term + 1, dry_run=True)
                with self.mutex:
                    self._update_term(highest if highest > term + 1 else -1)
                if not election.won(votes, needed):
                    log.info(
                        "ELECTION",
                        4615655,
                        "Not running for primary, the dry run failed",
                        {"votes": votes, "needed": needed},
                        ctx="ReplCoord",
                    )
                    with self.mutex:
                        self._reset_election_timer()
                    return False
            with self.storage.lock, self.mutex:
                if self.term != term or self.state != SECONDARY:
                    return False
                self.term = term + 1
                me = self._my_member()
                self._persist_vote(self.term, self.config["members"].index(me))
                new_term = self.term
            votes, highest = self._request_votes(new_term, dry_run=False)
            with self.mutex:
                self._update_term(highest)
                if not election.won(votes, needed) or self.term != new_term:
                    log.info(
                        "ELECTION",
                        4615656,
                        "Not becoming primary, we received insufficient votes",
                        {"votes": votes, "needed": needed, "term": new_term},
                        ctx="ReplCoord",
                    )
                    self._reset_election_timer()
                    return False
            log.info(
                "ELECTION",
                21450,
                "Election succeeded, assuming primary role",
                {"term": new_term, "votes": votes},
                ctx="ReplCoord",
            )
            return self.become_primary(reason, term=new_term)
        finally:
            with self.mutex:
                self._electing = False

    def _start_election(self, reason: str, skip_dry_run: bool = False) -> None:
        threading.Thread(
            target=self.run_election, args=(reason, skip_dry_run), name="election", daemon=True
        ).start()

    def step_down(self, reason: str, freeze_secs: float = 0) -> None:
        with self.mutex:
            if self.state == PRIMARY:
                self._step_down_locked(reason)
            if freeze_secs:
                self.freeze_until = time.monotonic() + freeze_secs

    def freeze(self, seconds: int) -> None:
        with self.mutex:
            self.freeze_until = time.monotonic() + seconds if seconds else 0.0
            if not seconds and self._sole_voter() and self.state == SECONDARY:
                self.election_deadline = time.monotonic()

    def caught_up_electable(self, target: dict | None) -> list[str]:
        """Electable secondaries whose applied optime reached ``target``."""
        found = []
        with self.mutex:
            for member in (self.config or {}).get("members", []):
                status = self.members.get(member["host"])
                if status is None or not rsconfig.electable(member) or not status.health:
                    continue
                if status.state != SECONDARY:
                    continue
                if election.optime_key(status.applied) >= election.optime_key(target):
                    found.append(member["host"])
        return found

    # -- the ticker ------------------------------------------------------------------------

    def _ticker(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self._tick()
            except Exception as exc:  # keep ticking: a bug shows in the log, not as a hang
                log.error("REPL", 2, "Replication ticker error", {"error": repr(exc)}, ctx="Repl")

    def _tick(self) -> None:
        now = time.monotonic()
        start = None
        with self.mutex:
            if self.config is None:
                return
            timeout = self._settings("electionTimeoutMillis", 10000) / 1000
            if self.state == PRIMARY:
                self._check_majority_visible(now, timeout)
                self._advance_commit_point()
                self.progress.notify_all()
                return
            if self.can_stand():
                self.takeover_at = None
                return
            primary = self.primary_host
            status = self.members.get(primary) if primary else None
            if status is not None and status.health and status.state == PRIMARY:
                start = self._priority_takeover_due(now, status)
            elif self._sole_voter():
                start = ("single node election", False)
            elif self.initiated_here and now >= self.election_deadline - timeout:
                start = ("new replica set", False)
                self.election_deadline = now + timeout + 1
            elif now >= self.election_deadline:
                start = ("election timeout", False)
                self._reset_election_timer()
        if start is not None:
            self._start_election(*start)

    def _check_majority_visible(self, now: float, timeout: float) -> None:
        me = self._my_member()
        visible = 1 if me and me["votes"] else 0
        for member in rsconfig.voting_members(self.config):
            status = self.members.get(member["host"])
            if status is not None and status.last_ok and now - status.last_ok < timeout:
                visible += 1
        if not election.sees_majority(visible, rsconfig.majority_vote_count(self.config)):
            self._step_down_locked("can't see a majority of the set, relinquishing primary")

    def _priority_takeover_due(self, now: float, primary: MemberStatus) -> tuple | None:
        me = self._my_member()
        primary_member = rsconfig.member_by_host(self.config, primary.host)
        if primary_member is None or not election.should_take_over(
            me["priority"], primary_member["priority"], self.last_applied, primary.applied
        ):
            self.takeover_at = None
            return None
        if self.takeover_at is None:
            others = [
                m["priority"]
                for m in self.config["members"]
                if m is not me
                and rsconfig.electable(m)
                and (self.members.get(m["host"]) or MemberStatus("", 0)).health
            ]
            rank = election.priority_takeover_rank(me["priority"], others)
            timeout = self._settings("electionTimeoutMillis", 10000)
            self.takeover_at = now + election.priority_takeover_delay(timeout, rank)
        if now >= self.takeover_at:
            self.takeover_at = None
            return ("priority takeover", False)
        return None

    # -- oplog fetching --------------------------------------------------------------------

    def _choose_sync_source(self) -> str | None:
        with self.mutex:
            primary = self.primary_host
            if primary and primary != self.self_host:
                status = self.members.get(primary)
                if status is not None and status.health:
                    return primary
            return None

    def _fetcher(self) -> None:
        while not self._stop.is_set():
            try:
                state = self.state
                if state == STARTUP2:
                    self._initial_sync()
                elif state in (SECONDARY, RECOVERING) or (
                    state == ROLLBACK and self.min_valid is not None
                ):
                    self._fetch_once()
                else:
                    self._stop.wait(0.2)
            except Exception as exc:
                log.warning(
                    "REPL", 21115, "Oplog fetcher error", {"error": repr(exc)}, ctx="BackgroundSync"
                )
                self._stop.wait(1)

    def _source_oplog(self, source: str):
        from mongod_double.peers import CODEC

        client = self.peers.client(source, "oplog")
        return client.get_database("local", codec_options=CODEC)

    def _fetch_once(self) -> None:
        source = self._choose_sync_source()
        if source is None or self.last_applied is None:
            if self.sync_source:
                self.sync_source = ""
            self._stop.wait(0.2)
            return
        self.sync_source = source
        local = self._source_oplog(source)
        mine = self.last_applied
        reply = local.command(
            {
                "find": "oplog.rs",
                "filter": {"ts": {"$gte": mine["ts"]}},
                "tailable": True,
                "awaitData": True,
                "batchSize": FETCH_BATCH,
            }
        )
        cursor = reply["cursor"]
        batch = cursor["firstBatch"]
        if not batch or (batch[0]["ts"], int(batch[0].get("t", -1))) != (
            mine["ts"],
            int(mine["t"]),
        ):
            self._kill_cursor(local, cursor["id"])
            self._diverged(source, local, mine)
            return
        if self.state == RECOVERING:
            with self.mutex:
                self.info_message = ""
                self._set_state(SECONDARY, "caught up with the sync source")
        self.apply_fetched(batch[1:])
        self._report_position(source)
        self._check_min_valid()
        cursor_id = cursor["id"]
        try:
            while cursor_id and not self._stop.is_set():
                if self.state not in (SECONDARY, ROLLBACK) or self._choose_sync_source() != source:
                    break
                more = local.command(
                    {
                        "getMore": cursor_id,
                        "collection": "oplog.rs",
                        "maxTimeMS": FETCH_AWAIT_MS,
                        "batchSize": FETCH_BATCH,
                    }
                )
                cursor_id = more["cursor"]["id"]
                entries = more["cursor"]["nextBatch"]
                if entries:
                    self.apply_fetched(entries)
                    self._report_position(source)
                self._check_min_valid()
        finally:
            self._kill_cursor(local, cursor_id)

    def _check_min_valid(self) -> None:
        """After a rollback: consistent again once applied up to minValid, then SECONDARY."""
        with self.mutex:
            if self.state != ROLLBACK or self.min_valid is None:
                return
            if election.optime_key(self.last_applied) >= election.optime_key(self.min_valid):
                self.min_valid = None
                self._set_state(SECONDARY, "rollback complete")
                self._reset_election_timer()

    @staticmethod
    def _kill_cursor(local, cursor_id: int) -> None:
        if cursor_id:
            with contextlib.suppress(Exception):
                local.command({"killCursors": "oplog.rs", "cursors": [cursor_id]})

    def _report_position(self, source: str) -> None:
        me = self._my_member()
        if me is None or self.last_applied is None:
            return
        wall = self.last_applied_wall or EPOCH
        body = {
            "replSetUpdatePosition": 1,
            "optimes": [
                {
                    "durableOpTime": dict(self.last_applied),
                    "durableWallTime": wall,
                    "appliedOpTime": dict(self.last_applied),
                    "appliedWallTime": wall,
                    "memberId": me["_id"],
                    "cfgver": self.config["version"],
                }
            ],
        }
        with contextlib.suppress(Exception):
            self.peers.command(source, body, "position")

    def _diverged(self, source: str, local, mine: dict) -> None:
        """Our last entry is not on the source: too stale, or rollback."""
        oldest = list(
            local.command({"find": "oplog.rs", "sort": {"$natural": 1}, "limit": 1})["cursor"][
                "firstBatch"
            ]
        )
        newest = list(
            local.command({"find": "oplog.rs", "sort": {"$natural": -1}, "limit": 1})["cursor"][
                "firstBatch"
            ]
        )
        if not newest or election.optime_key(
            {"ts": newest[0]["ts"], "t": newest[0].get("t", -1)}
        ) < election.optime_key(mine):
            self._stop.wait(0.5)  # the source is behind us: wait for it or another source
            return
        if oldest and oldest[0]["ts"] > mine["ts"]:
            with self.mutex:
                self.info_message = (
                    f"We are too stale to use {source} as a sync source. Our last optime "
                    f"({mine['ts']}) is older than the oldest entry on the source "
                    f"({oldest[0]['ts']})"
                )
                if self.state != RECOVERING:
                    log.warning("REPL", 21799, self.info_message, ctx="BackgroundSync")
                self._set_state(RECOVERING, "too stale to catch up")
            self._stop.wait(2)
            return
        self._rollback(source, local)

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
        common, divergent = rollback.find_common_point(records, rollback.source_entries(local))
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
        plan = rollback.plan(divergent)
        client = self.peers.client(source, "oplog")
        newest = rollback.newest_entry(local)
        files = []
        with storage.lock:
            saved = rollback.save_local_versions(storage, plan, _now())
            files = sorted(saved)
            for ns in plan.collections:
                self._clone_collection(client, ns)
            for ns, _id in plan.documents:
                if ns in plan.collections:
                    continue
                rollback.refetch(storage, client, ns, _id)
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
                "refetchedDocuments": len(plan.documents),
                "resyncedCollections": sorted(plan.collections),
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

    # -- initial sync ----------------------------------------------------------------------

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

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        with self.mutex:
            return self._status_locked()

    def _status_locked(self) -> dict:
        config = self.config
        now = time.monotonic()
        applied = dict(self.last_applied or ZERO_OPTIME)
        committed = dict(self.last_committed or ZERO_OPTIME)
        wall = self.last_applied_wall or EPOCH
        sync_id = -1
        if self.sync_source:
            member = rsconfig.member_by_host(config, self.sync_source)
            sync_id = member["_id"] if member else -1
        members = []
        for member in config["members"]:
            host = member["host"]
            if host == self.self_host:
                entry = {
                    "_id": member["_id"],
                    "name": host,
                    "health": 1.0,
                    "state": STATE_CODES[self.state],
                    "stateStr": self.state,
                    "uptime": int(now - self.started),
                    "optime": applied,
                    "optimeDate": optime_date(applied),
                    "lastAppliedWallTime": wall,
                    "lastDurableWallTime": wall,
                    "syncSourceHost": self.sync_source,
                    "syncSourceId": sync_id,
                    "infoMessage": self.info_message,
                }
                if self.state == PRIMARY and self.election_time is not None:
                    entry["electionTime"] = self.election_time
                    entry["electionDate"] = optime_date({"ts": self.election_time})
                entry.update(
                    configVersion=config["version"],
                    configTerm=config.get("term", -1),
                    self=True,
                    lastHeartbeatMessage="",
                )
                members.append(entry)
                continue
            status = self.members.get(host) or MemberStatus(host, member["_id"])
            state = status.state if status.health else DOWN
            optime = dict(status.applied or ZERO_OPTIME)
            entry = {
                "_id": member["_id"],
                "name": host,
                "health": float(status.health),
                "state": STATE_CODES[state],
                "stateStr": state if status.health else DOWN_TEXT,
                "uptime": int(now - status.up_since) if status.up_since else 0,
                "optime": optime,
                "optimeDurable": optime,
                "optimeDate": optime_date(optime),
                "optimeDurableDate": optime_date(optime),
                "lastAppliedWallTime": status.applied_wall or EPOCH,
                "lastDurableWallTime": status.applied_wall or EPOCH,
                "lastHeartbeat": status.last_heartbeat or EPOCH,
                "lastHeartbeatRecv": status.last_heartbeat_recv or EPOCH,
                "pingMs": Int64(status.ping_ms),
                "lastHeartbeatMessage": status.message,
                "syncSourceHost": status.sync_source,
                "syncSourceId": _member_id(config, status.sync_source),
                "infoMessage": "",
            }
            if state == PRIMARY and status.election_time is not None:
                entry["electionTime"] = status.election_time
                entry["electionDate"] = optime_date({"ts": status.election_time})
            entry.update(configVersion=status.config_version, configTerm=status.config_term)
            members.append(entry)
        reply = {
            "set": config["_id"],
            "date": _now(),
            "myState": STATE_CODES[self.state],
            "term": Int64(self.term),
            "syncSourceHost": self.sync_source,
            "syncSourceId": sync_id,
            "heartbeatIntervalMillis": Int64(self._settings("heartbeatIntervalMillis", 2000)),
            "majorityVoteCount": rsconfig.majority_vote_count(config),
            "writeMajorityCount": rsconfig.write_majority_count(config),
            "votingMembersCount": len(rsconfig.voting_members(config)),
            "writableVotingMembersCount": rsconfig.writable_voting_count(config),
            "optimes": {
                "lastCommittedOpTime": committed,
                "lastCommittedWallTime": optime_date(committed),
                "readConcernMajorityOpTime": committed,
                "appliedOpTime": applied,
                "durableOpTime": applied,
                "lastAppliedWallTime": wall,
                "lastDurableWallTime": wall,
            },
            "lastStableRecoveryTimestamp": committed["ts"],
        }
        if self.state == PRIMARY and self.election_time is not None:
            reply["electionCandidateMetrics"] = {
                "lastElectionReason": self.last_election_reason,
                "lastElectionDate": optime_date({"ts": self.election_time}),
                "electionTerm": Int64(self.term),
                "numVotesNeeded": rsconfig.majority_vote_count(config),
                "priorityAtElection": (self._my_member() or {}).get("priority", 1),
                "electionTimeoutMillis": Int64(self._settings("electionTimeoutMillis", 10000)),
            }
        reply["members"] = members
        return reply


def _member_id(config: dict, host: str) -> int:
    member = rsconfig.member_by_host(config, host) if host else None
    return member["_id"] if member else -1


def _error_text(host: str, exc: Exception) -> str:
    text = str(exc).split(", Timeout:")[0]
    return f"Error connecting to {host} :: caused by :: {text}"
