"""Processes and clients for the webui tests: every process started here is stopped at the end."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests

from tests.waiting import wait_until
from webui.config import Settings

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).parent / "playbooks"
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], Any],
    timeout: float = 20.0,
    every: float = 0.1,
    what: str = "",
    seen: Callable[[], Any] | None = None,
) -> Any:
    """tests.waiting.wait_until with the webui tests' default bound."""
    return wait_until(check, timeout=timeout, every=every, what=what or repr(check), seen=seen)


class Proc:
    """A child process in its own session, its output in a log file; stop() ends its whole group."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.popen.pid).children(recursive=True)
        return []

    def kill_all(self) -> None:
        """SIGKILL the process and every descendant (RQ's work horse and ansible-playbook start
        sessions of their own): what a machine crash does to them."""
        doomed = self.descendants()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for proc in doomed:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill_all()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_healthy_web(proc: Proc, base: str, timeout: float, what: str) -> None:
    """Until the web server answers /healthz; fails with its output if it dies first."""

    def up() -> bool:
        assert proc.alive(), proc.output()
        try:
            return requests.get(base + "/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    wait_for(up, timeout=timeout, what=what)


def env_for(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "WAP_DATA_DIR": str(settings.data_dir),
            "WAP_BIND": settings.bind,
            "WAP_MONGODB_URI": settings.mongodb_uri or "",
            "WAP_REDIS_URL": settings.redis_url or "",
            "WAP_SECRET_KEY": settings.secret_key,
            "WAP_CREDENTIAL_KEY": settings.credential_key,
            "WAP_PLAYBOOKS_DIR": str(settings.playbooks_dir),
            "WAP_RUNTIME_DIR": str(settings.runtime_dir),
            "WAP_QUEUE": settings.queue_name,
            "WAP_JOB_TIMEOUT": str(settings.job_timeout),
            "WAP_HEARTBEAT_INTERVAL": str(settings.heartbeat_interval),
            "WAP_LOST_AFTER": str(settings.lost_after),
            "WAP_PUBLIC_URL": settings.public_url,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    if settings.agent_wheelhouse is not None:
        env["WAP_AGENT_WHEELHOUSE"] = str(settings.agent_wheelhouse)
    return env


class Api:
    """A requests session against a running web server, logged in through the console's forms."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()
        self.token: str | None = None

    def csrf(self, path: str = "/login") -> str:
        page = self.http.get(self.base + path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def setup(self, username: str = "admin", password: str = PASSWORD) -> requests.Response:
        data = {
            "csrf_token": self.csrf("/setup"),
            "username": username,
            "password": password,
            "password2": password,
        }
        return self.http.post(self.base + "/setup", data=data)

    def login(self, username: str, password: str = PASSWORD) -> requests.Response:
        data = {"csrf_token": self.csrf("/login"), "username": username, "password": password}
        return self.http.post(self.base + "/login", data=data)

    def form(self, path: str, data: dict[str, Any], page: str = "/") -> requests.Response:
        return self.http.post(self.base + path, data={"csrf_token": self.csrf(page), **data})

    def use_token(self, name: str = "tests") -> str:
        response = self.call("POST", "/tokens", json={"name": name})
        assert response.status_code == 201, response.text
        self.token = response.json()["token"]
        return self.token

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        else:
            headers["X-CSRF-Token"] = self.csrf("/")
        return self.http.request(method, f"{self.base}/api/v1{path}", headers=headers, **kwargs)


def ssh_private_key() -> str:
    """A fresh Ed25519 private key in OpenSSH format (what `ssh-keygen` writes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
