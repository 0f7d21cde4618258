"""Production serving as webui/README.md says: two gunicorn servers (threaded worker) behind a proxy
(`WAP_PROXIES=1`), sharing Redis: pages, the API, and job events over a real WebSocket."""

from __future__ import annotations

import json
import re
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import simple_websocket
from gunicorn.config import KNOWN_SETTINGS

from tests.webui.helpers import (
    PASSWORD,
    Api,
    Proc,
    env_for,
    free_port,
    wait_for,
    wait_healthy_web,
)
from tests.webui.test_jobs import project_with_host, start_job
from webui.config import Settings
from webui.jobs.publish import Publisher
from webui.store import Store

KNOWN_SETTINGS_NAMES = {setting.name for setting in KNOWN_SETTINGS}


def gunicorn(settings: Settings, port: int, log: Path) -> tuple[Proc, str]:
    """The command line of webui/README.md, on one port."""
    argv = [
        sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1",
        "--threads", "50", "--bind", f"127.0.0.1:{port}", "webui.wsgi:production_app()",
    ]  # fmt: skip
    if "control_socket" in KNOWN_SETTINGS_NAMES:  # gunicorn 25.1+: one control socket per server
        argv[-1:-1] = ["--control-socket", str(log.with_suffix(".ctl"))]
    env = {**env_for(settings), "WAP_PROXIES": "1"}
    proc = Proc(argv, log, env)
    base = f"http://127.0.0.1:{port}"
    wait_healthy_web(proc, base, timeout=60, what="gunicorn")
    return proc, base


@pytest.fixture
def servers(settings: Settings, tmp_path: Path) -> Iterator[tuple[Proc, list[str]]]:
    started = [gunicorn(settings, free_port(), tmp_path / f"gunicorn-{n}.log") for n in (1, 2)]
    yield started[0][0], [base for _, base in started]
    for proc, _ in started:
        proc.stop()


class EngineIO:
    """A bare Socket.IO client over a real WebSocket (the transport the browser prefers)."""

    def __init__(self, base: str, cookie: str, ssl_context: ssl.SSLContext | None = None) -> None:
        url = re.sub(r"^http", "ws", base) + "/socket.io/?EIO=4&transport=websocket"
        self.ws = simple_websocket.Client.connect(
            url, headers={"Cookie": cookie}, ssl_context=ssl_context
        )
        opened = self.ws.receive(timeout=30)
        assert opened and opened.startswith("0{"), opened  # engine.io open
        self.ws.send("40/jobs,")
        assert self.next(r"^40/jobs,").startswith("40/jobs,{")  # namespace joined

    def next(self, pattern: str, timeout: float = 30) -> str:
        while True:
            message = self.ws.receive(timeout=timeout)
            assert message is not None, f"nothing matching {pattern} arrived"
            if message == "2":  # ping
                self.ws.send("3")
            elif re.match(pattern, message):
                return message

    def follow(self, job_id: str) -> dict:
        self.ws.send("42/jobs,1" + json.dumps(["follow", {"job_id": job_id, "after": 0}]))
        return json.loads(self.next(r"^43/jobs,1")[len("43/jobs,1") :])[0]

    def close(self) -> None:
        self.ws.close()


def test_gunicorn_behind_a_proxy_with_two_servers_sharing_redis(
    settings: Settings, servers: tuple[Proc, list[str]]
) -> None:
    first, (one, two) = servers
    outside = {"X-Forwarded-For": "203.0.113.9"}

    # Through the proxy, a visitor from elsewhere is not "this machine": setup needs the token
    # whose link the server printed.
    assert requests.get(one + "/setup", headers=outside, timeout=10).status_code == 403
    printed = wait_for(
        lambda: re.search(r"/setup\?token=(\S+)", first.output()), what="the setup link"
    )
    admin = Api(one)
    admin.http.headers.update(outside)
    path = f"/setup?token={printed.group(1)}"
    form = {"username": "admin", "password": PASSWORD, "password2": PASSWORD}
    assert admin.http.post(one + path, data={"csrf_token": admin.csrf(path), **form}).ok
    admin.use_token()
    project_id, host_ids = project_with_host(admin)
    job_id = start_job(admin, project_id, host_ids)  # stays queued: no worker runs

    # The login on server two is audited with the client's address, not the proxy's.
    viewer = Api(two)
    viewer.http.headers.update({"X-Forwarded-For": "198.51.100.4"})
    assert viewer.login("admin").ok
    store = Store(settings.mongodb_uri or "")
    try:
        logins = list(store.audit.find({"action": "login", "outcome": "ok"}))
    finally:
        store.close()
    assert "198.51.100.4" in {row["source"] for row in logins}

    # Server two streams, over a WebSocket, what a worker publishes through Redis.
    cookie = "; ".join(f"{c.name}={c.value}" for c in viewer.http.cookies)
    socket = EngineIO(two, cookie)
    try:
        answer = socket.follow(job_id)
        assert answer["ok"] and answer["job"]["status"] == "queued"
        event = {
            "job_id": job_id,
            "counter": 1,
            "event": "verbose",
            "stdout": "hello from a worker",
        }
        Publisher(settings.redis_url or "").events(job_id, json.dumps([event]))
        live = json.loads(socket.next(r'^42/jobs,\["events"')[len("42/jobs,") :])
        assert live[0] == "events" and live[1]["job_id"] == job_id
        assert json.loads(live[1]["events_json"]) == [event]
        refused = socket.follow("no-such-job")
        assert refused == {"ok": False, "message": "no such job"}
    finally:
        socket.close()
