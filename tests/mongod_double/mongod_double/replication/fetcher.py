"""Oplog fetching: a secondary tails its sync source's ``local.oplog.rs`` with a tailable
awaitData cursor, applies each entry keeping its ``ts``/``t`` and reports its position with
``replSetUpdatePosition``; a member whose last entry is not on the source is too stale
(RECOVERING) or rolls back (:mod:`.rollback`).
"""

from __future__ import annotations

import contextlib

from bson.int64 import Int64

from mongod_double import election
from mongod_double.logs import log
from mongod_double.replication.states import (
    EPOCH,
    FETCH_AWAIT_MS,
    FETCH_BATCH,
    RECOVERING,
    ROLLBACK,
    SECONDARY,
    STARTUP2,
    SYNCING_STATES,
)


class OplogFetcherMixin:
    """Part of :class:`ReplicationCoordinator` (its state lives there)."""

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
                elif state in SYNCING_STATES:
                    # ROLLBACK too: catching up to minValid, or a rollback that failed midway
                    # (its source went away) finds the divergence again and starts over.
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
        if not self.apply_fetched(batch[1:], after=batch[0]):
            self._kill_cursor(local, cursor["id"])
            return
        self._report_position(source)
        self._check_min_valid()
        cursor_id = cursor["id"]
        last = batch[-1]
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
                    if not self.apply_fetched(entries, after=last):
                        break
                    last = entries[-1]
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
            "term": Int64(self.term),
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
