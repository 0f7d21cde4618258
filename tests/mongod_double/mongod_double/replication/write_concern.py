"""Positions reported by the secondaries, the majority commit point, and write concern waits."""

from __future__ import annotations

import time

from mongod_double import election, rsconfig
from mongod_double.replication.states import (
    INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
    PRIMARY,
    UNKNOWN_REPL_WRITE_CONCERN,
    UNSATISFIABLE_WRITE_CONCERN,
    WRITE_CONCERN_FAILED,
    later,
)


class WriteConcernMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

    def process_update_position(self, body: dict) -> None:
        with self.mutex:
            # The reporter's term first: a member that voted in a newer election may still
            # apply what this (deposed) primary sends it, but must not count towards this
            # primary's commit point; the newer term makes it step down first.
            self._update_term(int(body.get("term", -1)))
            by_id = {m["_id"]: m["host"] for m in (self.config or {}).get("members", [])}
            for item in body.get("optimes") or []:
                host = by_id.get(item.get("memberId"))
                status = self.members.get(host) if host else None
                if status is None:
                    continue
                applied = item.get("appliedOpTime")
                if applied:
                    # An entry of a newer term: another primary was elected since (a newer term
                    # seen anywhere makes a primary step down, before it counts that entry).
                    self._update_term(int(applied.get("t", -1)))
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
        term = int(target["t"])
        with self.progress:
            # The state first: positions that arrive after a step-down (from a member that voted
            # in the newer election and still applied this term's entries) acknowledge nothing.
            while self.state != PRIMARY or self.term != term or not self._satisfied(target, w):
                if self.state != PRIMARY or self.term != term or self._stop.is_set():
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
