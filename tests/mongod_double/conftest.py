"""Fixtures that start the mongod double as a real process on 127.0.0.1 and always stop it."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pymongo
import pytest

HERE = pathlib.Path(__file__).resolve().parent
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Node:
    proc: subprocess.Popen
    port: int
    dbpath: pathlib.Path
    logpath: pathlib.Path
    clients: list = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def client(self, **kwargs) -> pymongo.MongoClient:
        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        kwargs.setdefault("socketTimeoutMS", 90_000)  # no reply in 90 s fails, never hangs
        client = pymongo.MongoClient(self.uri, **kwargs)
        self.clients.append(client)
        return client

    def log_lines(self) -> list[str]:
        return self.logpath.read_text().splitlines() if self.logpath.exists() else []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


class Launcher:
    """Starts nodes (from the source package, or from a built bin/mongod) and kills leftovers."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.tmp_path = tmp_path
        self.nodes: list[Node] = []
        self.count = 0

    def command(self, executable: str | None) -> list[str]:
        if executable is None:
            return [sys.executable, "-m", "mongod_double"]
        if os.path.exists("/usr/bin/python3"):
            return ["/usr/bin/python3", "-I", "-S", executable]
        return [sys.executable, "-I", "-S", executable]

    free_port = staticmethod(free_port)

    def env(self, version: str | None, program: str | None = None) -> dict:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(HERE)}
        if version:
            env["MONGOD_DOUBLE_VERSION"] = version
        if program:
            env["MONGOD_DOUBLE_PROGRAM"] = program
        return env

    def run(
        self,
        *args: str,
        version: str | None = None,
        executable: str | None = None,
        program: str | None = None,
        timeout: float = 20,
    ) -> subprocess.CompletedProcess:
        """Run to completion (--version, bad options, --fork parent)."""
        return subprocess.run(
            [*self.command(executable), *args],
            env=self.env(version, program),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(
        self,
        *args: str,
        dbpath: pathlib.Path | None = None,
        version: str | None = None,
        executable: str | None = None,
        port: int | None = None,
        wait: bool = True,
        log: bool = True,
    ) -> Node:
        self.count += 1
        if dbpath is None:
            dbpath = self.tmp_path / f"db{self.count}"
            dbpath.mkdir()
        port = port or free_port()
        logpath = self.tmp_path / f"mongod{self.count}.log"
        argv = ["--port", str(port), "--bind_ip", "127.0.0.1", "--dbpath", str(dbpath)]
        if log:
            argv += ["--logpath", str(logpath), "--logappend"]
        proc = subprocess.Popen(
            [*self.command(executable), *argv, *args],
            env=self.env(version),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        node = Node(proc, port, dbpath, logpath)
        self.nodes.append(node)
        if wait:
            deadline = time.monotonic() + START_TIMEOUT
            while not _listening(port):
                if proc.poll() is not None:
                    raise AssertionError(
                        f"mongod exited with {proc.returncode}: "
                        f"{proc.stdout.read() if proc.stdout else ''}"
                        f"{''.join(node.log_lines()[-5:])}"
                    )
                if time.monotonic() > deadline:
                    raise AssertionError("mongod did not listen in time")
                time.sleep(0.05)
        return node

    def cleanup(self) -> None:
        for node in self.nodes:
            for client in node.clients:
                client.close()
            if node.proc.poll() is None:
                node.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(5)
            if node.proc.stdout:
                node.proc.stdout.close()


@pytest.fixture
def launcher(tmp_path: pathlib.Path) -> Iterator[Launcher]:
    launch = Launcher(tmp_path)
    try:
        yield launch
    finally:
        launch.cleanup()


@pytest.fixture
def node(launcher: Launcher) -> Node:
    return launcher.start()


@pytest.fixture
def client(node: Node) -> pymongo.MongoClient:
    return node.client()


@pytest.fixture(scope="session")
def tarballs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """Built and extracted tarballs, by version: {version: extracted top-level folder}."""
    dest = tmp_path_factory.mktemp("tarballs")
    built = {}
    for version in ("6.0.19", "7.0.14", "8.0.4"):
        result = subprocess.run(
            [str(HERE / "build-tarball"), version, str(dest)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        tgz = pathlib.Path(result.stdout.strip().splitlines()[-1])
        with tarfile.open(tgz) as archive:
            archive.extractall(dest, filter="tar")
        built[version] = dest / tgz.name.removesuffix(".tgz")
    return built
