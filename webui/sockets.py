"""Socket.IO: the /jobs namespace. A client is authenticated at connect (session cookie), authorised
per job room, then gets the stored events after its last counter, then the live stream."""

from __future__ import annotations

from typing import Any

from flask import current_app, request, session
from flask_socketio import SocketIO, join_room

from webui.jobs.publish import NAMESPACE
from webui.security import actor_for
from webui.services import accounts, jobs
from webui.services.errors import ServiceError


def _store() -> Any:
    return current_app.extensions["wap.store"]


def register(socketio: SocketIO) -> None:
    @socketio.on("connect", namespace=NAMESPACE)
    def connect(auth: Any = None) -> None:
        user = accounts.session_user(_store(), session.get("sid"))
        if user is None:
            raise ConnectionRefusedError("not logged in")

    @socketio.on("follow", namespace=NAMESPACE)
    def follow(data: Any) -> dict[str, Any]:
        store = _store()
        user = accounts.session_user(store, session.get("sid"))
        if user is None:
            return {"ok": False, "message": "your session has ended: log in again"}
        if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
            return {"ok": False, "message": "follow needs {job_id, after}"}
        after = data.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            after = 0
        try:
            job = jobs.get_job(
                store, actor_for(user, request.remote_addr or "socket"), data["job_id"]
            )
        except ServiceError as exc:
            return {"ok": False, "message": exc.message}
        join_room(jobs.job_room(job["_id"]))  # join first, then read: nothing falls in between
        events = jobs.events_after(store, job["_id"], after)
        job = store.jobs.find_one({"_id": job["_id"]}) or job
        return {
            "ok": True,
            "events": events,
            "more": len(events) >= jobs.EVENT_PAGE,
            "job": {k: job.get(k) for k in ("status", "reason", "rc", "stats")},
        }
