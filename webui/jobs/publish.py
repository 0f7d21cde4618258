"""Publishing to browsers from any process: Flask-SocketIO's Redis message queue, write-only."""

from __future__ import annotations

from typing import Any

from flask_socketio import SocketIO

NAMESPACE = "/jobs"


class Publisher:
    def __init__(self, redis_url: str) -> None:
        self._sio = SocketIO(message_queue=redis_url)

    def events(self, job_id: str, events_json: str) -> None:
        """One message for a batch of events, in counter order (per-message costs dominate at
        thousands of events a second: Redis, the relay, the browser's parser): `{job_id,
        events_json}`, the events as the JSON text the store keeps (encoded once, in the worker;
        Socket.IO, the Redis queue and the relay then carry one string, not thousands of
        values each walked, pickled and encoded again)."""
        self._sio.emit(
            "events",
            {"job_id": job_id, "events_json": events_json},
            to=f"job:{job_id}",
            namespace=NAMESPACE,
        )

    def status(self, job_id: str, job: dict[str, Any]) -> None:
        payload = {
            k: job.get(k) for k in ("status", "reason", "rc", "stats", "finished_at", "started_at")
        }
        self._sio.emit(
            "status", {"job_id": job_id, **payload}, to=f"job:{job_id}", namespace=NAMESPACE
        )
