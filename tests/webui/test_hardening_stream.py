"""A live job stream ends for a user who loses access to the job's project, or whose account is
disabled, within seconds (a real `wap web` and `wap worker`, python-socketio clients)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import socketio

from tests.webui.helpers import PASSWORD, Api, Proc, wait_for
from tests.webui.test_jobs import events, project_with_host, start_job


class Follower:
    """A python-socketio client on the /jobs namespace, logged in as `username`."""

    def __init__(self, base: str, username: str, job_id: str) -> None:
        api = Api(base)
        assert api.login(username).status_code == 200, username  # redirected to the projects
        self.counters: list[int] = []
        self.revoked: list[dict[str, Any]] = []
        self.disconnected = False
        self.client = socketio.Client(reconnection=False)
        self.client.on("events", self._events, namespace="/jobs")
        self.client.on("revoked", self.revoked.append, namespace="/jobs")
        self.client.on("disconnect", self._gone, namespace="/jobs")
        cookie = "; ".join(f"{c.name}={c.value}" for c in api.http.cookies)
        self.client.connect(
            base, namespaces=["/jobs"], headers={"Cookie": cookie}, transports=["polling"]
        )
        self.answer = self.client.call(
            "follow", {"job_id": job_id, "after": 0}, namespace="/jobs", timeout=20
        )
        self.job_id = job_id

    def _events(self, batch: dict[str, Any]) -> None:
        self.counters.extend(e["counter"] for e in json.loads(batch["events_json"]))

    def _gone(self, *_reason: Any) -> None:
        self.disconnected = True

    def received_since(self, count: int) -> int:
        return len(self.counters) - count

    def close(self) -> None:
        if self.client.connected:
            self.client.disconnect()


def test_losing_access_ends_the_live_stream(
    web: str, admin_api: Api, start_worker: Callable[[], Proc]
) -> None:
    project_id, host_ids = project_with_host(admin_api)
    for name in ("removed", "disabled", "demoted", "kept"):
        body = {
            "username": name,
            "password": PASSWORD,
            "role": "admin" if name == "demoted" else "user",
        }
        assert admin_api.call("POST", "/users", json=body).status_code == 201
        if name != "demoted":
            member = {"username": name, "role": "read-only"}
            assert admin_api.call("PUT", f"/projects/{project_id}/members", json=member).ok
    users = {u["username"]: u["id"] for u in admin_api.call("GET", "/users").json()}
    start_worker()
    job_id = start_job(
        admin_api, project_id, host_ids, extra_vars={"steps": 120, "step_delay": 0.2}
    )
    followers = {
        name: Follower(web, name, job_id) for name in ("removed", "disabled", "demoted", "kept")
    }
    try:
        for name, follower in followers.items():
            assert follower.answer["ok"], (name, follower.answer)
        wait_for(
            lambda: all(len(f.counters) >= 3 for f in followers.values()),
            timeout=60,
            what="every follower to receive live events",
        )

        # The admin takes access away three ways, through the API as any admin script would.
        assert admin_api.call(
            "PUT", f"/projects/{project_id}/members", json={"username": "removed", "role": "none"}
        ).ok
        assert admin_api.call("PATCH", f"/users/{users['disabled']}", json={"disabled": True}).ok
        assert admin_api.call("PATCH", f"/users/{users['demoted']}", json={"role": "user"}).ok

        wait_for(
            lambda: followers["removed"].revoked and followers["demoted"].revoked,
            timeout=10,
            what="the followers who lost the project to be told",
            seen=lambda: {n: f.revoked for n, f in followers.items()},
        )
        wait_for(lambda: followers["disabled"].disconnected, timeout=10, what="a disconnect")
        for name in ("removed", "demoted"):
            notice = followers[name].revoked[0]
            assert notice["job_id"] == job_id and "no longer have access" in notice["message"]
        assert followers["disabled"].revoked[0]["message"].startswith("your session has ended")

        # Anything already on its way has arrived once the stream has gone on for the user
        # who kept access.
        kept = len(followers["kept"].counters)
        wait_for(
            lambda: followers["kept"].received_since(kept) >= 3,
            timeout=30,
            what="three more events for the user who kept access",
        )
        seen = {name: len(f.counters) for name, f in followers.items()}
        stored = len(events(admin_api, job_id))
        wait_for(
            lambda: (
                len(events(admin_api, job_id)) >= stored + 5
                and followers["kept"].received_since(seen["kept"]) >= 5
            ),
            timeout=30,
            what="the job to go on, and the user who kept access to see it",
        )
        for name in ("removed", "disabled", "demoted"):
            assert followers[name].received_since(seen[name]) == 0, name

        # Following again is refused with the reason.
        again = followers["removed"].client.call(
            "follow", {"job_id": job_id, "after": 0}, namespace="/jobs", timeout=20
        )
        assert again["ok"] is False and "no such project" in again["message"]
        assert followers["kept"].client.connected
    finally:
        for follower in followers.values():
            follower.close()
