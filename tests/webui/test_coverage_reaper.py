"""A backup store that never answers does not delay the marking of lost jobs: a worker's reaper
loop (webui.jobs.reaper, as its reaper process runs it) reads the followed clusters' stores in a
thread of its own, so a job whose heartbeats stop is marked lost while the coverage's read of an
S3 endpoint that accepts connections and never answers is still waiting (each request waits its
timeout, then tries again)."""

from __future__ import annotations

import socket
import threading
from typing import Any

from tests.aws.cloud import free_port
from tests.waiting import wait_until
from tests.webui.test_backups import Backups, moto, platform  # noqa: F401 (fixtures)
from webui.config import Settings
from webui.jobs import reaper
from webui.store import now


class Silent:
    """An endpoint on 127.0.0.1 that accepts connections, reads what is sent and never answers;
    `waiting` counts the connections whose client has not given up yet."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.accepted = 0
        self.waiting = 0
        self.lock = threading.Lock()
        self.held: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            with self.lock:
                self.accepted += 1
                self.waiting += 1
                self.held.append(conn)
            threading.Thread(target=self.drain, args=(conn,), daemon=True).start()

    def drain(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        with self.lock:
            self.waiting -= 1

    def close(self) -> None:
        self.server.close()
        with self.lock:
            for conn in self.held:
                conn.close()


def test_a_store_that_never_answers_does_not_delay_lost_jobs(
    platform: Backups,  # noqa: F811 (the fixture)
    settings: Settings,
) -> None:
    assert platform.policy().status_code == 200
    silent = Silent()
    store = platform.store
    store.db.backup_policies.update_one(
        {"_id": platform.cluster["_id"]}, {"$set": {"store.endpoint_url": silent.url}}
    )
    store.jobs.insert_one({"_id": "silent-job", "status": "running", "heartbeat_at": now(),
                           "project_id": platform.project["id"], "created_at": now()})  # fmt: skip
    stop = threading.Event()
    loop = threading.Thread(target=reaper._reap_every, args=(settings, stop.wait),
                            kwargs={"roll_up": True}, daemon=True)  # fmt: skip
    loop.start()
    try:
        wait_until(lambda: silent.accepted, timeout=30, what="the coverage's tick asking the store")

        def lost() -> Any:
            job = store.jobs.find_one({"_id": "silent-job"}) or {}
            return job.get("status") == "lost" and silent.waiting

        job = {"_id": "silent-job"}
        wait_until(lost, timeout=60, what="the job marked lost while the store's read waits",
                   seen=lambda: (store.jobs.find_one(job), silent.waiting))  # fmt: skip
        reason = store.jobs.find_one({"_id": "silent-job"})["reason"]
        assert reason.startswith("lost: worker ? stopped sending heartbeats")
    finally:
        stop.set()
        silent.close()
        loop.join(30)
    assert not loop.is_alive()
