"""`wap up` with nothing configured: embedded Redis and store, a worker, the web server; Ctrl-C
stops everything it started; a second start on the same data dir finds its data."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil

from tests.webui.helpers import PLAYBOOKS, Api, Proc, free_port, wait_for


def up_env(tmp_path: Path, port: int, data: str = "data") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAP_")}
    env.update(
        WAP_DATA_DIR=str(tmp_path / data),
        WAP_BIND=f"127.0.0.1:{port}",
        WAP_WORKERS="1",
        WAP_PLAYBOOKS_DIR=str(PLAYBOOKS),
        WAP_RUNTIME_DIR=str(tmp_path / "run"),
        WAP_HEARTBEAT_INTERVAL="0.5",
        WAP_LOST_AFTER="5",
    )
    return env


def start_up(tmp_path: Path, env: dict[str, str], name: str) -> Proc:
    return Proc([sys.executable, "-m", "webui.cli", "up"], tmp_path / f"{name}.log", env)


def test_wap_up_runs_everything_and_finds_its_data_again(tmp_path: Path) -> None:
    port = free_port()
    env = up_env(tmp_path, port)
    started: list[Proc] = []
    try:
        up = start_up(tmp_path, env, "up1")
        started.append(up)
        wait_for(lambda: "WAP is up" in up.output() or not up.alive(), timeout=60, what="wap up")
        assert f"http://127.0.0.1:{port}/" in up.output(), up.output()
        assert f"http://127.0.0.1:{port}/setup?token=" in up.output()
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 4  # redis, store, worker, web

        api = Api(f"http://127.0.0.1:{port}")
        assert api.setup().ok
        api.use_token()
        project = api.call("POST", "/projects", json={"name": "p"}).json()
        host = api.call(
            "POST", f"/projects/{project['id']}/hosts",
            json={"name": "h", "address": "127.0.0.1", "connection": "local"},
        ).json()  # fmt: skip
        job = api.call(
            "POST", f"/projects/{project['id']}/jobs",
            json={"playbook": "steps.yml", "host_ids": [host["id"]], "extra_vars": {"steps": 2}},
        ).json()  # fmt: skip
        done = wait_for(
            lambda: api.call("GET", f"/jobs/{job['id']}").json()["status"] == "successful",
            timeout=60, what="the job under wap up",
        )  # fmt: skip
        assert done

        same_dir = start_up(tmp_path, env, "up2")
        started.append(same_dir)
        assert same_dir.popen.wait(30) == 2
        assert "another `wap up`" in same_dir.output() and "WAP_DATA_DIR" in same_dir.output()
        same_port = start_up(tmp_path, up_env(tmp_path, port, data="other"), "up3")
        started.append(same_port)
        assert same_port.popen.wait(30) == 2
        assert f"127.0.0.1:{port}" in same_port.output() and "WAP_BIND" in same_port.output()

        slow = api.call(
            "POST", f"/projects/{project['id']}/jobs",
            json={"playbook": "steps.yml", "host_ids": [host["id"]],
                  "extra_vars": {"steps": 200, "step_delay": 0.2}},
        ).json()  # fmt: skip
        wait_for(
            lambda: api.call("GET", f"/jobs/{slow['id']}").json()["status"] == "running",
            timeout=30, what="the slow job to run",
        )  # fmt: skip
        up.popen.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.popen.wait(40) == 0
        assert "WAP stopped." in up.output()
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"left running: {alive}"

        again = start_up(tmp_path, env, "up4")
        started.append(again)
        wait_for(
            lambda: "WAP is up" in again.output() or not again.alive(), timeout=60, what="wap up"
        )
        assert "setup?token=" not in again.output()  # set up already
        api2 = Api(f"http://127.0.0.1:{port}")
        assert api2.login("admin").url.endswith("/")  # logged in: the admin is still there
        api2.use_token()
        jobs = {j["id"]: j for j in api2.call("GET", f"/projects/{project['id']}/jobs").json()}
        assert set(jobs) == {job["id"], slow["id"]}
        assert jobs[slow["id"]]["status"] == "canceled", jobs[slow["id"]]
        assert "wap up stopping" in jobs[slow["id"]]["reason"]
    finally:
        for proc in reversed(started):
            proc.stop(timeout=30)
