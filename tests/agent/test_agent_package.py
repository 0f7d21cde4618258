"""The agent installs on a MongoDB host on its own: no Flask, RQ or Ansible comes with it."""

import json
import subprocess
import sys
from pathlib import Path

from tests.labhosts import REPO

PLATFORM_ONLY = {"flask", "flask-socketio", "rq", "redis", "ansible-core", "ansible-runner"}


def test_agent_installs_alone_in_a_fresh_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "install", "-q", str(REPO / "agent")], capture_output=True, text=True, timeout=300
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([*pip, "list", "--format", "json"], capture_output=True, text=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"wap-agent", "pymongo", "psutil"} <= installed
    assert not installed & PLATFORM_ONLY, installed & PLATFORM_ONLY
    version = subprocess.run(
        [str(venv / "bin" / "wap-agent"), "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("wap-agent ")
    collected = subprocess.run(
        [str(venv / "bin" / "wap-agent"), "collect", "--once"], capture_output=True, text=True
    )
    assert collected.returncode == 0, collected.stderr
    assert "host_cpu_seconds_total" in {s["name"] for s in json.loads(collected.stdout)["samples"]}
