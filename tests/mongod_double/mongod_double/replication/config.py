"""The replica set config: initiate, install (reconfig, or learnt by heartbeat), adopt, and
whether the config in use is committed.
"""

from __future__ import annotations

from mongod_double import rsconfig
from mongod_double.logs import log
from mongod_double.replication.states import (
    ARBITER,
    PRIMARY,
    REMOVED,
    REPLSET_NS,
    SECONDARY,
    STARTUP,
    STARTUP2,
    MemberStatus,
)
from mongod_double.storage import OPLOG_NS


class ConfigMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

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
