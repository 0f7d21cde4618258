"""Heartbeats: one thread per other member sends ``replSetHeartbeat`` every
``heartbeatIntervalMillis``; replies carry state, term, optimes, config version, and the config
itself when the asker's is older, which is how new configs spread.
"""

from __future__ import annotations

import copy
import threading
import time

from mongod_double.errors import CommandError
from mongod_double.logs import log
from mongod_double.replication.states import (
    DOWN,
    EPOCH,
    INCONSISTENT_SET_NAMES,
    PRIMARY,
    STATE_CODES,
    STATE_NAMES,
    UNKNOWN,
    ZERO_OPTIME,
    config_newer,
    error_text,
    later,
    utcnow,
)


class HeartbeatsMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

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
                    status.last_heartbeat = utcnow()
                    if status.health or status.state != DOWN:
                        status.message = error_text(host, exc)
                    status.health = 0.0
                    status.state = DOWN
                    status.up_since = None
                    status.message = error_text(host, exc)
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
            status.last_heartbeat = utcnow()
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
                    self._learn_commit_point(committed)
            elif self.primary_host == host:
                self.primary_host = None
                self.bump_topology()
            config = reply.get("config")
            if isinstance(config, dict) and config_newer(config, self.config):
                new_config = config
            self._advance_commit_point()
        if new_config is not None:
            self.install_config(new_config, "heartbeat")

    def _learn_commit_point(self, committed: dict) -> None:
        """A secondary's commit point: the primary's, capped at its own last applied entry, and
        only while that entry is in the commit point's term, as mongod does: an entry of an older
        term may be on a branch the majority never had (caller holds mutex)."""
        mine = self.last_applied
        if mine is None or int(mine["t"]) != int(committed["t"]):
            return
        self.last_committed = later(
            self.last_committed, committed if later(mine, committed) is mine else mine
        )

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
                status.last_heartbeat_recv = utcnow()
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
