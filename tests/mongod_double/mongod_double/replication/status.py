"""What clients see of replication: ``hello``'s fields, ``$clusterTime``, ``replSetGetStatus``."""

from __future__ import annotations

import time

from bson.int64 import Int64

from mongod_double import rsconfig
from mongod_double.replication.states import (
    DOWN,
    DOWN_TEXT,
    EPOCH,
    PRIMARY,
    REMOVED,
    SECONDARY,
    STATE_CODES,
    ZERO_OPTIME,
    MemberStatus,
    member_id,
    optime_date,
    utcnow,
)


class StatusMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

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
                "syncSourceId": member_id(config, status.sync_source),
                "infoMessage": "",
            }
            if state == PRIMARY and status.election_time is not None:
                entry["electionTime"] = status.election_time
                entry["electionDate"] = optime_date({"ts": status.election_time})
            entry.update(configVersion=status.config_version, configTerm=status.config_term)
            members.append(entry)
        reply = {
            "set": config["_id"],
            "date": utcnow(),
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
