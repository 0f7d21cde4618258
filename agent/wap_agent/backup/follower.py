"""The oplog follower: one replica set's oplog, tailed from a member and made durable in a store.

From a start (a base snapshot's oplog end) or the store's checkpoint, the follower tails
``local.oplog.rs`` on a member (the one configured, else a secondary the driver selects; another
one when it is lost) and stores what it reads as chunks (slices.OplogStore) every
``chunk_seconds`` or ``chunk_bytes``, whichever comes first, never across a slice's span; each
stored chunk moves the checkpoint on, and the chunks of each span that has ended are compacted
into one slice.

Continuity is checked at every (re)connection: the last durable entry (timestamp and term) must
be on the member's oplog. When it is not:

- the member's oplog starts after it (the follower fell behind, was down too long, or the store
  was unreachable until the member's oplog rolled over): a gap is recorded with its bounds, and
  following goes on from the member's oldest entry (the gap's record moves on with it should that
  entry roll over too before it is stored; the checkpoint stays at the gap's start until then, so
  a restart finds the same gap);
- it is within the member's oplog but absent or of another term (the set rolled back entries the
  follower had stored): the stored chunks past the newest entry the member still holds go to
  ``rolledback/``, their entries up to that common point are stored again, and following goes
  on from there.

A start need not be an entry of the set's oplog: a sharded snapshot ends every set at one
common point, the newest of the sets' newest entries, which the other sets reached with entries
of their own after it. The follower then begins after the set's newest entry at or before the
start: the set's archive holds every entry up to the point, so nothing between is missed.

Entries read but not yet stored are dropped when the connection is lost and read again from the
checkpoint, so no entry is stored twice or skipped. Entries a restore cannot reproduce (see
``unrestorable_reason``) are stored and recorded, with the reason, as an end of the restorable
window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymongo
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp
from pymongo.cursor import CursorType

from wap_agent.backup.dump import client_for
from wap_agent.backup.restore import REPLAYED_COMMANDS, SKIPPED_COMMANDS
from wap_agent.backup.slices import DEFAULT_SLICE_SECONDS, RAW, OplogStore, OpTime

log = logging.getLogger(__name__)


class FollowerError(RuntimeError):
    """The follower cannot start; the message says why."""


@dataclass
class FollowerOptions:
    """``member``: host:port to read (else a secondary); ``buffer_bytes``: entries held while the
    store is unreachable before reading stops (the member's oplog then holds them);
    ``heartbeat_seconds``: while nothing new is read, the checkpoint is saved again this often,
    so that the platform tells a follower that is idle from one that stopped."""

    member: str | None = None
    chunk_seconds: float = 2.0
    chunk_bytes: int = 1 << 20
    slice_seconds: int = DEFAULT_SLICE_SECONDS
    buffer_bytes: int = 64 << 20
    await_ms: int = 500
    retry_seconds: float = 1.0
    heartbeat_seconds: float = 30.0
    on_event: Callable[[dict], None] | None = None


def unrestorable_reason(entry: Any) -> str | None:
    """Why a replay cannot reproduce this entry, or None. The restore replays CRUD and the
    commands it knows (restore.REPLAYED_COMMANDS, which include renames: after a consistent base
    a rename replays by name); it skips admin.system.* writes, so a write to
    admin.system.version (the FCV, the auth schema) would be silently lost, as mongodump refuses
    in its window; any other command (importCollection, resharding) stops a restore."""
    kind, ns = entry.get("op"), str(entry.get("ns", ""))
    if ns == "admin.system.version" and kind in ("i", "u", "d"):
        return "a write to admin.system.version (FCV or auth schema): a replay cannot make it"
    if kind != "c":
        return None
    command = entry.get("o") or {}
    name = next(iter(command), "")
    if name == "applyOps":
        for op in command.get("applyOps") or []:
            reason = unrestorable_reason(op)
            if reason:
                return reason
        return None
    if name not in REPLAYED_COMMANDS and name not in SKIPPED_COMMANDS:
        return f"a {name} command ({ns}): a replay cannot reproduce it"
    return None


class Follower:
    def __init__(
        self,
        uri: str,
        store: OplogStore,
        start: Timestamp | None = None,
        options: FollowerOptions | None = None,
    ) -> None:
        self.uri = uri
        self.store = store
        self.start = start
        self.options = options or FollowerOptions()
        self.last: OpTime | None = None  # the last durable entry
        self.read_last: OpTime | None = None  # the last entry taken (stored or pending)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.pending_since = 0.0
        self.retry_at = 0.0
        self.saved_at = 0.0  # time.monotonic() of the last checkpoint saved
        self.gap: tuple[OpTime, OpTime] | None = None  # open: (last stored, first read after)
        self.member: str | None = None

    def event(self, **body: Any) -> None:
        log.info("oplog follower %s: %s", self.store.replica_set, body)
        if self.options.on_event is not None:
            self.options.on_event(body)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follow until `stop` is set; what was read by then is stored before returning."""
        self.last = self.resume_point()
        while not stop.is_set():
            try:
                with self.connect() as client:
                    self.follow(client, stop)
                if not self.flush():  # the cursor died: what it gave is read again if not stored
                    self.drop_pending()
            except Exception as exc:  # a member lost, the store failing: read again from the last
                self.event(event="interrupted", member=self.member, error=str(exc)[:300])
                self.drop_pending()
                stop.wait(self.options.retry_seconds)
        self.retry_at = 0.0
        self.flush()

    def resume_point(self) -> OpTime | None:
        """The checkpoint, or a newer stored object's end (stored, then cut off before its
        checkpoint was written); None: the start is located on the first connection."""
        last = self.store.checkpoint()
        objects = self.store.objects()
        if objects and (last is None or objects[-1].last > last):
            last = objects[-1].last
        if last is None and self.start is None:
            raise FollowerError(
                f"no checkpoint for {self.store.replica_set} in the store: give the start "
                "(the base snapshot's oplog end)"
            )
        return last

    def connect(self) -> pymongo.MongoClient:
        extra = {"document_class": RawBSONDocument, "serverSelectionTimeoutMS": 5000}
        if self.options.member:
            client = client_for(self.uri, self.options.member, **extra)
            try:
                client.admin.command("ping")
                self.member = self.options.member
                return client
            except pymongo.errors.PyMongoError as exc:
                client.close()
                self.event(event="member_lost", member=self.options.member, error=str(exc)[:300])
        client = client_for(self.uri, readPreference="secondaryPreferred", **extra)
        self.member = None
        return client

    def follow(self, client: pymongo.MongoClient, stop: threading.Event) -> None:
        oplog = client.local.get_collection("oplog.rs", codec_options=RAW)
        self.position(oplog)
        assert self.last is not None
        self.read_last = self.last
        cursor = oplog.find(
            {"ts": {"$gte": self.last.ts}}, cursor_type=CursorType.TAILABLE_AWAIT
        ).max_await_time_ms(self.options.await_ms)
        # the cursor's first entry: the last stored one (skipped), or the first after a gap
        expected = self.gap[1] if self.gap else self.last
        first = True
        with cursor:
            while cursor.alive and not stop.is_set():
                try:
                    entry = cursor.next()
                except StopIteration:  # nothing new within await_ms; the cursor stays open
                    entry = None
                if self.member is None and cursor.address:
                    self.member = f"{cursor.address[0]}:{cursor.address[1]}"
                if entry is None:
                    self.flush_if_due()
                    self.beat()
                    continue
                optime = OpTime.of(entry)
                if first:
                    first = False
                    if optime != expected:  # rolled back since position() looked: look again
                        raise pymongo.errors.OperationFailure(
                            f"the oplog no longer holds {expected.text()} where expected"
                        )
                    if self.gap is None:
                        continue
                self.take(entry, optime)
                while self.pending_bytes >= self.options.buffer_bytes and not stop.is_set():
                    if not self.flush():
                        stop.wait(self.options.retry_seconds)

    def position(self, oplog: Any) -> None:
        """Check that the last durable entry is on this member's oplog; record a gap or mend a
        rollback when it is not (see the module's docstring)."""
        if self.last is None:  # first start: the base snapshot's end
            assert self.start is not None
            found = oplog.find_one({"ts": self.start}) or oplog.find_one(
                {"ts": {"$lte": self.start}}, sort=[("$natural", -1)]
            )  # a sharded snapshot's common point: the set's newest entry at or before it
            if found is not None:
                self.last = OpTime.of(found)
                return
            self.last = OpTime(self.start)
        if self.gap is not None:
            self.position_after_gap(oplog)
            return
        found = oplog.find_one({"ts": self.last.ts})
        if found is not None and (self.last.term == -1 or OpTime.of(found) == self.last):
            self.last = OpTime.of(found)
            return
        oldest = oplog.find_one({}, sort=[("$natural", 1)])
        if oldest is None:
            raise pymongo.errors.OperationFailure("the member's oplog is empty")
        if oldest["ts"] > self.last.ts:
            self.open_gap(self.last, OpTime.of(oldest))
            return
        self.mend_rollback(oplog)

    def open_gap(self, after: OpTime, resumed: OpTime) -> None:
        """Entries after `after` (the last stored) and before `resumed` are lost: recorded, and
        reading goes on from `resumed` (the checkpoint stays: a restart finds the same gap)."""
        self.store.record_gap(after, resumed, reason=(
            f"the oplog of {self.member or 'the member read'} begins at {resumed.text()}, after "
            f"the last stored entry {after.text()}: the entries in between were lost"
        ))  # fmt: skip
        self.event(event="gap", after=after.to_dict(), resumed=resumed.to_dict())
        self.gap = (after, resumed)
        self.last = OpTime(just_before(resumed.ts))  # the cursor begins at `resumed`

    def position_after_gap(self, oplog: Any) -> None:
        """Reconnected before storing anything after the gap: the entry it resumes from must
        still be there, else the gap reaches on to the member's first entry after its start."""
        assert self.gap is not None
        after, resumed = self.gap
        found = oplog.find_one({"ts": resumed.ts})
        if found is not None and OpTime.of(found) == resumed:
            return
        at = oplog.find_one({"ts": after.ts})
        if at is not None and OpTime.of(at) == after:  # this member still holds the gap's start
            self.store.drop_gaps(after)
            self.gap, self.last = None, after
            return
        first = oplog.find_one({"ts": {"$gt": after.ts}}, sort=[("$natural", 1)])
        if first is None:
            raise pymongo.errors.OperationFailure("the member's oplog holds nothing after the gap")
        self.open_gap(after, OpTime.of(first))

    def mend_rollback(self, oplog: Any) -> None:
        """Stored entries past the newest one the member still holds were rolled back."""
        for stored in reversed(self.store.objects()):
            entries = [bytes(e.raw) for e in self.store.entries(stored)]
            optimes = [OpTime.of(RawBSONDocument(raw)) for raw in entries]
            held = {
                OpTime.of(doc)
                for doc in oplog.find({"ts": {"$in": [o.ts for o in optimes]}}, {"ts": 1, "t": 1,
                                                                                  "h": 1})
            }  # fmt: skip
            keep = 0
            for index, optime in enumerate(optimes):
                if optime in held:
                    keep = index + 1
            kept = self.store.roll_back(stored, entries[:keep]) if keep < len(entries) else stored
            gone = len(entries) - keep
            self.event(event="rollback", chunk=stored.name, kept=keep, rolled_back=gone)
            if keep:
                assert kept is not None
                self.last = kept.last
                break
            if stored.prev is not None:
                self.last = stored.prev
        else:
            raise FollowerError("no stored entry is on the member's oplog any more")
        self.store.save_checkpoint(self.last)
        found = oplog.find_one({"ts": self.last.ts})
        if found is None or OpTime.of(found) != self.last:
            raise pymongo.errors.OperationFailure("the common point moved: look again")

    # -- chunks ------------------------------------------------------------------------------

    def take(self, entry: RawBSONDocument, optime: OpTime) -> None:
        span = self.options.slice_seconds
        if self.pending and optime.ts.time // span != self.read_last.ts.time // span:
            self.flush()  # a chunk never crosses a slice's span
        reason = unrestorable_reason(entry)
        if reason:
            self.flush()
            prev = self.read_last or self.last
            assert prev is not None
            self.store.record_unrestorable(optime, prev, reason)
            self.event(event="unrestorable", at=optime.to_dict(), reason=reason)
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append(bytes(entry.raw))
        self.pending_bytes += len(entry.raw)
        self.read_last = optime
        if self.pending_bytes >= self.options.chunk_bytes:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        if self.pending and time.monotonic() - self.pending_since >= self.options.chunk_seconds:
            self.flush()

    def flush(self) -> bool:
        """Store the pending entries as a chunk; False (kept, retried later) if the store fails."""
        if not self.pending:
            return True
        if time.monotonic() < self.retry_at:  # the store failed lately: not before retry_at
            return False
        prev = None if self.gap else self.last
        try:
            chunk = self.store.put_chunk(self.pending, prev)
        except Exception as exc:  # any store failure: keep the entries, retry
            self.retry_at = time.monotonic() + self.options.retry_seconds
            self.event(event="store_failed", error=str(exc)[:300], pending=len(self.pending))
            return False
        period = self.last.ts.time // self.options.slice_seconds if self.last else None
        self.last, self.gap = chunk.last, None
        self.pending, self.pending_bytes = [], 0
        self.save_checkpoint()  # the chunk is durable: without it, a restart resumes from its end
        if period is not None and chunk.first.ts.time // self.options.slice_seconds != period:
            self.compact()
        return True

    def save_checkpoint(self) -> None:
        assert self.last is not None
        self.saved_at = time.monotonic()  # tried: a failing store is not tried at every await
        try:
            self.store.save_checkpoint(self.last)
        except Exception as exc:
            self.event(event="checkpoint_failed", error=str(exc)[:300])

    def beat(self) -> None:
        """Idle and caught up: the checkpoint saved again, the follower's heartbeat (never
        while a gap is open: its checkpoint stays at the gap's start)."""
        due = time.monotonic() - self.saved_at >= self.options.heartbeat_seconds
        if due and not self.pending and self.gap is None and self.last is not None:
            self.save_checkpoint()

    def compact(self) -> None:
        try:
            for made in self.store.compact(self.options.slice_seconds):
                self.event(event="slice", key=made.key, count=made.count)
        except Exception as exc:  # chunks stay; the next span compacts them
            self.event(event="compaction_failed", error=str(exc)[:300])

    def drop_pending(self) -> None:
        """Entries read but not stored are read again from the checkpoint."""
        self.pending, self.pending_bytes = [], 0
        self.read_last = self.last


def just_before(ts: Timestamp) -> Timestamp:
    return Timestamp(ts.time, ts.inc - 1) if ts.inc else Timestamp(ts.time - 1, 0xFFFFFFFF)
