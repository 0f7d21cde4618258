"""`wap up` with nothing configured: embedded Redis and store, a worker, the web server; Ctrl-C
stops everything it started; a second start on the same data dir finds its data."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.webui.helpers import PLAYBOOKS, Api, Proc, free_port, wait_for
from webui.service_user import DEFAULT_USER


@pytest.fixture
def base() -> Iterator[Path]:
    """Where `wap up` keeps its data: a dir its workers' service user can reach (pytest's temp
    dirs are root's alone). This machine's Python lives under /root (0700), which that user must
    be able to pass through: a production install lives elsewhere (README); here /root gets
    search permission (not listing) for the test's length."""
    path = Path(tempfile.mkdtemp(prefix="wap-up-test-", dir="/var/tmp"))
    path.chmod(0o755)
    root_mode = stat.S_IMODE(os.stat("/root").st_mode)
    passes = Path(sys.executable).resolve().is_relative_to("/root")
    if passes:
        os.chmod("/root", root_mode | stat.S_IXOTH)
    yield path
    if passes:
        os.chmod("/root", root_mode)
    shutil.rmtree(path, ignore_errors=True)


def up_env(base: Path, port: int, data: str = "data") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAP_")}
    env.update(
        WAP_DATA_DIR=str(base / data),
        WAP_BIND=f"127.0.0.1:{port}",
        WAP_WORKERS="1",
        WAP_PLAYBOOKS_DIR=str(PLAYBOOKS),
        WAP_RUNTIME_DIR=str(base / "run"),
        WAP_HEARTBEAT_INTERVAL="0.5",
        WAP_LOST_AFTER="5",
    )
    return env


def job_playbooks(pid: int, job_id: str) -> list[psutil.Process]:
    """The ansible-playbook processes of a job among a process's descendants."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "ansible-playbook" in line and job_id in line:
            found.append(proc)
    return found


def uid_of(pid: int) -> int:
    """The real user id of a process, as /proc says (`Uid: real effective saved fs`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line in /proc/{pid}/status")


def start_up(tmp_path: Path, env: dict[str, str], name: str) -> Proc:
    return Proc([sys.executable, "-m", "wap.cli", "up"], tmp_path / f"{name}.log", env)


def test_wap_up_runs_everything_and_finds_its_data_again(tmp_path: Path, base: Path) -> None:
    port = free_port()
    env = up_env(base, port)
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
        same_port = start_up(tmp_path, up_env(base, port, data="other"), "up3")
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
        playbooks = wait_for(
            lambda: job_playbooks(up.pid, slow["id"]),
            timeout=30, what="the slow job's ansible-playbook",
        )  # fmt: skip
        service_uid = pwd.getpwnam(DEFAULT_USER).pw_uid
        workers = [p for p in children if "worker" in " ".join(p.cmdline())]
        assert service_uid != 0 and workers
        assert {uid_of(p.pid) for p in playbooks + workers} == {service_uid}, (
            f"job and worker processes should run as {DEFAULT_USER} ({service_uid})"
        )
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
