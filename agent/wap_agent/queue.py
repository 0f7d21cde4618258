"""The on-disk queue: every round becomes a batch with the next sequence number, kept in a file
until the platform acknowledges it, in order, across agent restarts.

Layout of the queue's directory::

    state.json      {"stream", "last_seq", "dropped_batches", "dropped_samples"}
    batches/<seq, 20 digits>-<unix time>.json   one batch each, as it is sent

A batch is written to a temporary file, fsynced, renamed into place and the directory fsynced,
then ``state.json`` the same way: once ``append`` returns, the batch and its number survive a
crash. On start the last number is the larger of the state's and the newest file's, so a number
is never given twice. ``ack`` deletes without fsync: a deleted file that a crash brings back is
sent again, and the platform stores a batch once per (stream, seq).

Bounds: the queue keeps at most ``max_bytes`` of batches, none older than ``max_age`` seconds.
Past a bound the oldest batches are dropped, and the totals of batches and samples dropped
(since the stream began) travel in every later batch, so the platform learns of each drop.
``stream`` is a random id made when the directory is first used: a queue directory that is
wiped starts a new stream from 1 and is never mistaken for the old one's duplicates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE = "state.json"


@dataclass(frozen=True)
class Entry:
    seq: int
    created: float
    size: int
    samples: int
    path: Path


def write_durably(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` or what it held before, whatever the moment of a crash."""
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class BatchQueue:
    """Thread-safe: the collecting loop appends, the sender peeks and acknowledges."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int = 256 * 1024**2,
        max_age: float = 86400.0,
        clock: Any = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.batches_dir = self.directory / "batches"
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self.batches_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._entries: list[Entry] = []
        # Batches the sender has taken for its request. One dropped past the bounds meanwhile and
        # then acknowledged reached the platform after all: it is taken off the drop totals.
        self._in_flight: set[int] = set()
        self._dropped_in_flight: dict[int, int] = {}  # seq: samples
        self._state = self._load()

    # -- start-up ---------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError):
            try:
                state = json.loads((self.directory / STATE).read_text())
            except ValueError:
                log.error("queue state %s is unreadable: starting a new stream", STATE)
        for stray in self.batches_dir.glob(".tmp-*"):
            stray.unlink()
        for path in sorted(self.batches_dir.glob("*.json")):
            try:
                seq_text, created_text = path.stem.split("-")
                seq, created = int(seq_text), float(created_text)
            except ValueError:
                log.error("not a batch of this queue, removed: %s", path)
                path.unlink()
                continue
            # samples 0: counted from the file only if it is ever dropped
            self._entries.append(Entry(seq, created, path.stat().st_size, 0, path))
        newest = self._entries[-1].seq if self._entries else 0
        state.setdefault("stream", uuid.uuid4().hex)
        state["last_seq"] = max(int(state.get("last_seq", 0)), newest)
        state.setdefault("dropped_batches", 0)
        state.setdefault("dropped_samples", 0)
        write_durably(self.directory / STATE, json.dumps(state).encode())
        return state

    # -- what the loop does -----------------------------------------------------------------

    @property
    def stream(self) -> str:
        return str(self._state["stream"])

    @property
    def last_seq(self) -> int:
        return int(self._state["last_seq"])

    @property
    def dropped(self) -> tuple[int, int]:
        return int(self._state["dropped_batches"]), int(self._state["dropped_samples"])

    def append(self, batch: dict[str, Any]) -> int:
        """Number ``batch`` (a round: time, samples, errors), store it durably, return its
        sequence number. Older batches are dropped first when it would not fit in the bounds."""
        with self._lock:
            seq = self.last_seq + 1
            created = float(batch.get("time") or self.clock())
            body = dict(batch)
            body.update(stream=self.stream, seq=seq)
            # The drop totals this batch reports include the batches dropped to make room for it.
            size_guess = len(json.dumps(body, separators=(",", ":"), allow_nan=False)) + 80
            self._drop_past_bounds(incoming=size_guess)
            body["dropped"] = {
                "batches": self._state["dropped_batches"],
                "samples": self._state["dropped_samples"],
            }
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            path = self.batches_dir / f"{seq:020d}-{int(created)}.json"
            write_durably(path, data)
            self._entries.append(Entry(seq, created, len(data), len(body["samples"]), path))
            self._state["last_seq"] = seq
            write_durably(self.directory / STATE, json.dumps(self._state).encode())
        self.changed.set()
        return seq

    def _drop_past_bounds(self, incoming: int = 0) -> None:
        """Drop the oldest batches that are past ``max_age``, and as many more as it takes for
        ``incoming`` bytes to fit in ``max_bytes``; count them. Holds the lock."""
        cutoff = self.clock() - self.max_age
        total = sum(e.size for e in self._entries) + incoming
        dropped: list[Entry] = []
        while self._entries and (self._entries[0].created < cutoff or total > self.max_bytes):
            entry = self._entries.pop(0)
            total -= entry.size
            dropped.append(entry)
        for entry in dropped:
            samples = entry.samples or self._count_samples(entry.path)
            if entry.seq in self._in_flight:
                self._dropped_in_flight[entry.seq] = samples
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
            self._state["dropped_batches"] += 1
            self._state["dropped_samples"] += samples
        if dropped:
            log.warning(
                "queue past its bounds (%d bytes, %.0f s): dropped batches %d to %d, the oldest",
                self.max_bytes, self.max_age, dropped[0].seq, dropped[-1].seq,
            )  # fmt: skip

    @staticmethod
    def _count_samples(path: Path) -> int:
        try:
            return len(json.loads(path.read_bytes()).get("samples", []))
        except (OSError, ValueError):
            return 0

    # -- what the sender does ---------------------------------------------------------------

    def peek(self, max_batches: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """The oldest batches, in order, as their stored bytes: at most ``max_batches`` and
        ``max_bytes`` together (but always the first one, whatever its size)."""
        out: list[tuple[int, bytes]] = []
        with self._lock:
            if self._entries and self._entries[0].created < self.clock() - self.max_age:
                self._drop_past_bounds()
                write_durably(self.directory / STATE, json.dumps(self._state).encode())
            used = 0
            for entry in self._entries[:max_batches]:
                if out and used + entry.size > max_bytes:
                    break
                try:
                    data = entry.path.read_bytes()
                except OSError as exc:
                    log.error("batch %d cannot be read (%s): skipped", entry.seq, exc)
                    continue
                out.append((entry.seq, data))
                used += entry.size
            # the previous request's outcome is known by now (acknowledged, or tried again)
            self._in_flight = {seq for seq, _ in out}
            self._dropped_in_flight.clear()
        return out

    def ack(self, seqs: list[int]) -> None:
        """The platform has these batches: forget them."""
        done = set(seqs)
        with self._lock:
            arrived = [seq for seq in seqs if seq in self._dropped_in_flight]
            for seq in arrived:
                self._state["dropped_batches"] -= 1
                self._state["dropped_samples"] -= self._dropped_in_flight.pop(seq)
            if arrived:
                write_durably(self.directory / STATE, json.dumps(self._state).encode())
                log.info("batches %s, dropped while being sent, reached the platform", arrived)
            keep = []
            for entry in self._entries:
                if entry.seq in done:
                    with contextlib.suppress(FileNotFoundError):
                        entry.path.unlink()
                else:
                    keep.append(entry)
            self._entries = keep

    def discard(self, seq: int, reason: str) -> None:
        """Give up on one batch the platform will never take (refused as too large or
        malformed): counted as dropped, like a batch past the bounds."""
        with self._lock:
            for entry in list(self._entries):
                if entry.seq == seq:
                    self._entries.remove(entry)
                    samples = self._count_samples(entry.path)
                    with contextlib.suppress(FileNotFoundError):
                        entry.path.unlink()
                    self._state["dropped_batches"] += 1
                    self._state["dropped_samples"] += samples
                    write_durably(self.directory / STATE, json.dumps(self._state).encode())
                    log.error("batch %d dropped: %s", seq, reason)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries)
