"""Open cursors: materialised query results, and tailable cursors on capped collections."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import bson

from mongod_double.wire import CODEC

MAX_BATCH_BYTES = 16 * 1024 * 1024
FIRST_BATCH_DEFAULT = 101


@dataclass
class Cursor:
    cursor_id: int
    ns: str
    docs: list[dict]
    connection_id: int
    command: dict
    position: int = 0
    limit: int = 0  # 0: no limit
    returned: int = 0
    tailable: bool = False
    await_data: bool = False
    # Tailable cursors on capped collections resume after this record id.
    last_rid: int = 0
    capped_epoch: int = 0  # the capped collection's epoch when the cursor opened
    filter: dict = field(default_factory=dict)
    projection: dict | None = None
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    no_timeout: bool = False

    @property
    def exhausted(self) -> bool:
        if self.tailable:
            return False
        if self.limit and self.returned >= self.limit:
            return True
        return self.position >= len(self.docs)

    def next_batch(self, batch_size: int | None) -> list[dict]:
        """Up to ``batch_size`` documents (all that fit in 16 MB when None)."""
        batch: list[dict] = []
        size = 0
        while self.position < len(self.docs):
            if batch_size and len(batch) >= batch_size:
                break
            if self.limit and self.returned >= self.limit:
                break
            doc = self.docs[self.position]
            doc_size = len(bson.encode(doc, codec_options=CODEC))
            if batch and size + doc_size > MAX_BATCH_BYTES:
                break
            batch.append(doc)
            size += doc_size
            self.position += 1
            self.returned += 1
        self.last_used = time.time()
        return batch


class CursorManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cursors: dict[int, Cursor] = {}
        self.timed_out = 0
        self.total_opened = 0

    def new_id(self) -> int:
        with self._lock:
            while True:
                cursor_id = random.randint(1, 2**62)
                if cursor_id not in self.cursors:
                    return cursor_id

    def register(self, cursor: Cursor) -> None:
        with self._lock:
            self.cursors[cursor.cursor_id] = cursor
            self.total_opened += 1

    def get(self, cursor_id: int) -> Cursor | None:
        with self._lock:
            return self.cursors.get(cursor_id)

    def remove(self, cursor_id: int) -> Cursor | None:
        with self._lock:
            return self.cursors.pop(cursor_id, None)

    def reap(self, timeout_ms: int) -> int:
        """Close cursors idle for longer than ``cursorTimeoutMillis``."""
        cutoff = time.time() - timeout_ms / 1000
        with self._lock:
            stale = [c for c in self.cursors.values() if not c.no_timeout and c.last_used < cutoff]
            for cursor in stale:
                del self.cursors[cursor.cursor_id]
            self.timed_out += len(stale)
            return len(stale)

    def stats(self) -> dict:
        with self._lock:
            open_cursors = list(self.cursors.values())
        return {
            "timedOut": self.timed_out,
            "open": {
                "noTimeout": sum(1 for c in open_cursors if c.no_timeout),
                "pinned": 0,
                "total": len(open_cursors),
            },
            "totalOpened": self.total_opened,
        }
