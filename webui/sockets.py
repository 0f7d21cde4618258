"""Socket.IO: the /jobs namespace. A client is authenticated at connect (session cookie), authorised
per job room, then gets the stored events after its last counter, then the live stream.

Access is checked again every `RECHECK` seconds for as long as a client follows: one whose session
ended (logout, disabled user) gets a `revoked` event and is disconnected; one who lost the project
(membership removed, no longer an admin) gets `revoked` for each of its jobs there and is taken out
of their rooms, so the live stream stops within seconds whoever changed access, on whichever web
server, with nothing to notify.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, request, session
from flask_socketio import SocketIO, join_room

from webui.jobs.publish import NAMESPACE
from webui.security import actor_for
from webui.services import accounts, jobs, projects
from webui.services.errors import ServiceError

RECHECK = 2.0
SESSION_ENDED = "your session has ended: log in again"
log = logging.getLogger(__name__)


def _store() -> Any:
    return current_app.extensions["wap.store"]


@dataclass
class _Follower:
    session_id: str
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> project id


class Followers:
    """The job rooms that the clients of this web server follow, and the loop that re-checks
    their access (started with the first follow)."""

    def __init__(self, app: Flask, socketio: SocketIO) -> None:
        self.app, self.socketio = app, socketio
        self.lock = threading.Lock()
        self.clients: dict[str, _Follower] = {}
        self.started = False

    def add(self, sid: str, session_id: str, job_id: str, project_id: str) -> None:
        with self.lock:
            self.clients.setdefault(sid, _Follower(session_id)).jobs[job_id] = project_id
            if not self.started:
                self.started = True
                self.socketio.start_background_task(self._loop)

    def drop(self, sid: str) -> None:
        with self.lock:
            self.clients.pop(sid, None)

    def _loop(self) -> None:
        while True:
            self.socketio.sleep(RECHECK)
            try:
                with self.app.app_context():
                    self.recheck()
            except Exception as exc:  # the store may be briefly away: try again next round
                log.warning("socket access check: %s", exc)

    def _revoke(self, sid: str, job_id: str, message: str) -> None:
        server = self.socketio.server
        server.leave_room(sid, jobs.job_room(job_id), namespace=NAMESPACE)
        self.socketio.emit(
            "revoked", {"job_id": job_id, "message": message}, to=sid, namespace=NAMESPACE
        )

    def recheck(self) -> None:
        store = _store()
        with self.lock:
            clients = {sid: (f.session_id, dict(f.jobs)) for sid, f in self.clients.items()}
        users: dict[str, dict[str, Any] | None] = {}
        denied: dict[tuple[str, str], str] = {}
        for sid, (session_id, followed) in clients.items():
            if session_id not in users:
                users[session_id] = accounts.session_user(store, session_id)
            user = users[session_id]
            if user is None:
                for job_id in followed:
                    self._revoke(sid, job_id, SESSION_ENDED)
                self.drop(sid)
                with contextlib.suppress(Exception):  # already gone: nothing to end
                    self.socketio.server.disconnect(sid, namespace=NAMESPACE)
                continue
            for job_id, project_id in followed.items():
                key = (user["_id"], project_id)
                if key not in denied:
                    try:
                        projects.require(store, actor_for(user, "socket"), project_id, "read-only")
                        denied[key] = ""
                    except ServiceError:
                        denied[key] = (
                            "you no longer have access to this job's project: "
                            "its live log has stopped"
                        )
                if denied[key]:
                    self._revoke(sid, job_id, denied[key])
                    with self.lock:
                        follower = self.clients.get(sid)
                        if follower is not None:
                            follower.jobs.pop(job_id, None)


_followers_lock = threading.Lock()


def _followers(socketio: SocketIO) -> Followers:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with _followers_lock:
        if "wap.followers" not in app.extensions:
            app.extensions["wap.followers"] = Followers(app, socketio)
        return app.extensions["wap.followers"]


def register(socketio: SocketIO) -> None:
    @socketio.on("connect", namespace=NAMESPACE)
    def connect(auth: Any = None) -> None:
        user = accounts.session_user(_store(), session.get("sid"))
        if user is None:
            raise ConnectionRefusedError("not logged in")

    @socketio.on("disconnect", namespace=NAMESPACE)
    def disconnect(*_reason: Any) -> None:
        _followers(socketio).drop(request.sid)  # type: ignore[attr-defined]

    @socketio.on("follow", namespace=NAMESPACE)
    def follow(data: Any) -> dict[str, Any]:
        store = _store()
        user = accounts.session_user(store, session.get("sid"))
        if user is None:
            return {"ok": False, "message": SESSION_ENDED}
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
        _followers(socketio).add(
            request.sid,  # type: ignore[attr-defined]
            session["sid"],
            job["_id"],
            job["project_id"],
        )
        events = jobs.events_after(store, job["_id"], after, jobs.FOLLOW_PAGE)
        job = jobs.current(store, job)
        return {
            "ok": True,
            "events": events,
            "more": len(events) >= jobs.FOLLOW_PAGE,
            "job": {k: job.get(k) for k in ("status", "reason", "rc", "stats")},
        }
