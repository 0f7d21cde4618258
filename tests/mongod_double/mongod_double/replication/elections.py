"""Elections (protocol version 1, pure rules in :mod:`mongod_double.election`): votes, dry runs,
step-down, freeze, and the ticker that calls elections, priority takeovers, and steps a primary
down when it cannot see a majority.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

from bson.int64 import Int64

from mongod_double import election, rsconfig
from mongod_double.errors import CommandError
from mongod_double.logs import log
from mongod_double.replication.states import (
    ELECTION_NS,
    NOT_YET_INITIALIZED,
    PRIMARY,
    SECONDARY,
    TICK_SECONDS,
    ZERO_OPTIME,
    MemberStatus,
)


class ElectionsMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

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
