"""Running the deployment playbooks against lab hosts, and looking at what they deployed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymongo

from tests.labhosts import REPO, VENV_BIN, LabHosts, ansible_env
from tests.waiting import wait_until

PLAYBOOKS = REPO / "playbooks"
LAB_VARS = REPO / "inventory" / "lab"
DOUBLE_VERSION = "7.0.14"
# The lab examples' credentials (inventory/lab/*.yml).
ADMIN = ("admin", "wap-lab-admin")
APP = ("app", "wap-lab-app")


def build_double_tarball(dest: Path, version: str = DOUBLE_VERSION) -> Path:
    """The mongod double packaged as MongoDB's tarball, built into ``dest``."""
    builder = REPO / "tests" / "mongod_double" / "build-tarball"
    built = subprocess.run(
        [sys.executable, str(builder), version, str(dest)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    return Path(built.stdout.strip().splitlines()[-1])


def build_agent_wheelhouse(dest: Path) -> Path:
    """The agent's wheelhouse for the lab hosts' Python (Debian 12: CPython 3.11, x86_64)."""
    built = subprocess.run(
        [sys.executable, str(REPO / "agent" / "build-wheelhouse"), str(dest),
         "--python", "3.11", "--arch", "x86_64"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    return dest


@dataclass
class PlaybookRun:
    """One ansible-playbook run, read through the ansible.posix.json callback."""

    returncode: int
    output: dict
    stderr: str

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        return self.output.get("stats", {})

    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.stats.items()}

    def every(self, task: str) -> list[tuple[str, dict]]:
        """Every (host, result) of the tasks named ``task`` (after any "role : "), in order:
        a task runs once per batch of a serial play, and once per item of an include loop."""
        return [
            (host, result)
            for play in self.output.get("plays", [])
            for entry in play["tasks"]
            if entry["task"]["name"].rpartition(" : ")[2] == task
            for host, result in entry["hosts"].items()
        ]

    def results(self, task: str) -> dict[str, dict]:
        """The last result of the tasks named ``task`` on each host."""
        return dict(self.every(task))

    def failures(self) -> str:
        """Every failed task with its message, for assertion messages."""
        lines = []
        for play in self.output.get("plays", []):
            for entry in play["tasks"]:
                for host, result in entry["hosts"].items():
                    if result.get("failed") or result.get("unreachable"):
                        lines.append(f"{host} {entry['task']['name']}: {result.get('msg')}")
        return "\n".join(lines) or self.stderr[-3000:]


@dataclass
class Deployment:
    """A lab, the MongoDB tarball to install, and where the controller keeps its secrets."""

    lab: LabHosts
    tarball: Path
    secrets: Path
    first: PlaybookRun | None = None  # the deploying run, kept by the fixtures

    def run(self, playbook: str, *var_files: str, check: bool = False, **extra) -> PlaybookRun:
        """ansible-playbook PLAYBOOK with the lab's inventory, the given inventory/lab files,
        the tarball, a private secrets directory and ``extra`` variables (JSON)."""
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.lab.inventory),
                   str(PLAYBOOKS / playbook)]  # fmt: skip
        for name in var_files:
            command += ["-e", f"@{LAB_VARS / name}"]
        extra = {"mongodb_install_tarball": str(self.tarball),
                 "mongodb_security_secrets_dir": str(self.secrets), **extra}  # fmt: skip
        command += ["-e", json.dumps(extra)]
        if check:
            command += ["--check", "--diff"]
        env = dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO,
                              timeout=900)  # fmt: skip
        try:
            output = json.loads(done.stdout[done.stdout.index("{") :])
        except ValueError:
            output = {}
        return PlaybookRun(done.returncode, output, done.stdout[-2000:] + done.stderr)

    def module(self, host: str, module: str, /, check: bool = False, **args) -> dict:
        """One whaleal.wap MongoDB module run on a lab host over localhost, with the lab's
        administrator and TLS files (ad hoc, as an operator would): its result."""
        args = {"login_user": ADMIN[0], "login_password": ADMIN[1], "tls": True,
                "tls_ca_file": "/etc/mongodb/tls/ca.pem",
                "tls_certificate_key_file": "/etc/mongodb/tls/server.pem", **args}  # fmt: skip
        command = [str(VENV_BIN / "ansible"), "-i", str(self.lab.inventory), host,
                   "-m", f"whaleal.wap.{module}", "-a", json.dumps(args)]  # fmt: skip
        if check:
            command += ["--check", "--diff"]
        env = dict(ansible_env(), ANSIBLE_CALLBACK_RESULT_FORMAT="json")
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO,
                              timeout=600)  # fmt: skip
        body = done.stdout.partition(" => ")[2]
        try:
            result = json.loads(body)
        except ValueError:
            raise AssertionError(done.stdout + done.stderr) from None
        assert not result.get("failed"), f"{module} failed on {host}: {result.get('msg')}"
        return result

    def client(self, host: str = "lab1", port: int = 27017, user=ADMIN, **kwargs):
        """A pymongo client over TLS (the lab examples require it), with ``user``'s credentials;
        a write waits 30 s at most for its write concern, a reply 90 s at most."""
        options = dict(tls=True, tlsCAFile=str(self.secrets / "ca.pem"),
                       serverSelectionTimeoutMS=20000, connectTimeoutMS=5000,
                       socketTimeoutMS=90_000, wTimeoutMS=30_000)  # fmt: skip
        if user is not None:
            options.update(username=user[0], password=user[1])
        options.update(kwargs)
        return pymongo.MongoClient(self.lab.hosts[host], port, **options)

    def address(self, host: str, port: int = 27017) -> str:
        return f"{self.lab.hosts[host]}:{port}"


def wait_healthy(client: pymongo.MongoClient, members: int, timeout: float = 90) -> dict:
    """replSetGetStatus once every member is healthy and one is primary; fails with the members'
    states and messages as the set sees them when that does not happen within ``timeout``."""
    wanted = ["PRIMARY"] + ["SECONDARY"] * (members - 1)
    last: list[dict] = []

    def healthy() -> dict | None:
        status = client.admin.command("replSetGetStatus")
        last[:] = [status]
        states = sorted(m["stateStr"] for m in status["members"])
        if all(m["health"] == 1 for m in status["members"]) and states == wanted:
            return status
        return None

    def seen() -> str:
        if not last:
            return "no replSetGetStatus answered"
        return "; ".join(
            f"{m['name']} {m['stateStr']} health {m['health']} {m.get('infoMessage', '')}".strip()
            for m in last[0]["members"]
        )

    return wait_until(
        healthy,
        timeout=timeout,
        every=1,
        what=f"{members} healthy members, one PRIMARY",
        retry=pymongo.errors.PyMongoError,
        seen=seen,
    )


@dataclass
class PrimaryWatch:
    """Polls ``hello`` on some members in a thread: were there moments without a primary?"""

    addresses: list[str]
    ca_file: Path
    interval: float = 0.25
    samples: int = 0
    without_primary: list[float] = field(default_factory=list)
    primaries: set[str] = field(default_factory=set)

    def __enter__(self) -> PrimaryWatch:
        self._stop = threading.Event()
        self._clients = [
            pymongo.MongoClient(address, directConnection=True, tls=True,
                                tlsCAFile=str(self.ca_file), serverSelectionTimeoutMS=2000,
                                connectTimeoutMS=2000, socketTimeoutMS=3000)
            for address in self.addresses
        ]  # fmt: skip
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            primary = None
            for client in self._clients:
                try:
                    hello = client.admin.command("hello")
                except pymongo.errors.PyMongoError:
                    continue
                if hello.get("isWritablePrimary"):
                    primary = hello.get("me")
            self.samples += 1
            if primary:
                self.primaries.add(primary)
            else:
                self.without_primary.append(round(time.monotonic() - self._started, 2))
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for client in self._clients:
            client.close()


def home_is_private(path: Path) -> bool:
    return path.is_dir() and (os.stat(path).st_mode & 0o077) == 0
