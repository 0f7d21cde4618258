"""Fixtures for the webui tests: real redis-server, store server(s), workers and web servers."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page, sync_playwright

from tests.webui.helpers import (
    PLAYBOOKS,
    Api,
    Proc,
    env_for,
    free_port,
    wait_for,
    wait_healthy_web,
)
from webui import create_app
from webui.config import Settings, load_settings
from webui.embedded import _redis_ready, _store_ready, redis_server_binary
from webui.store import Store

# The store's tests run against every server listed here; the mongod double joins with one line.
# The rest of the webui tests use the embedded default (the first).
STORE_SERVERS = ["nx-27017", "mongod-double"]
DOUBLE = Path(__file__).resolve().parents[1] / "mongod_double"
CHROMIUM = "/usr/bin/chromium"  # Debian's; never a browser Playwright downloads
# The endpoints the tests' platform allows besides AWS's own (WAP_ALLOWED_ENDPOINTS), as an admin
# lists a stand-in: moto servers on this machine.
ALLOWED_ENDPOINTS = "127.0.0.1"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _start_store(kind: str, data: Path, port: int) -> tuple[list[str], dict[str, str] | None]:
    if kind == "nx-27017":
        return [
            sys.executable, "-m", "webui.store.embedded_server", "--host", "127.0.0.1",
            "--port", str(port), "--data-dir", str(data), "--log-file", str(data / "nx.log"),
            "--pid-file", str(data / "nx.pid"),
        ], None  # fmt: skip
    if kind == "mongod-double":  # as in production: a replica set (of one member here)
        return [
            sys.executable, "-m", "mongod_double", "--port", str(port), "--bind_ip", "127.0.0.1",
            "--dbpath", str(data), "--replSet", "store",
        ], {**os.environ, "PYTHONPATH": str(DOUBLE)}  # fmt: skip
    raise ValueError(kind)


def _initiate(base: str, port: int) -> None:
    from pymongo import MongoClient

    with MongoClient(base, directConnection=True) as client:
        config = {"_id": "store", "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]}
        client.admin.command("replSetInitiate", config)
        wait_for(lambda: client.admin.command("hello")["isWritablePrimary"], what="a primary")


def _store_server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp(f"store-{kind}")
    port = free_port()
    argv, env = _start_store(kind, data, port)
    proc = Proc(argv, data / "server.log", env=env)
    base = f"mongodb://127.0.0.1:{port}"
    try:
        wait_for(_store_ready(base + "/ping?directConnection=true"), what=f"store server {kind}")
        if kind == "mongod-double":
            _initiate(base, port)
            yield base + "/{db}?replicaSet=store"
        else:
            yield base + "/{db}"
    finally:
        proc.stop()


@pytest.fixture(scope="session", autouse=True)
def allowed_endpoints() -> Iterator[None]:
    """Every web server and worker the tests start (their environment is this process's) allows
    the moto stand-ins on 127.0.0.1."""
    before = os.environ.get("WAP_ALLOWED_ENDPOINTS")
    os.environ["WAP_ALLOWED_ENDPOINTS"] = ALLOWED_ENDPOINTS
    yield
    if before is None:
        del os.environ["WAP_ALLOWED_ENDPOINTS"]
    else:
        os.environ["WAP_ALLOWED_ENDPOINTS"] = before


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("redis")
    port = free_port()
    argv = [
        str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
        "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    proc = Proc(argv, data / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(_redis_ready(url), what="redis-server")
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded default store server, shared by the session (URI without a database)."""
    for template in _store_server(STORE_SERVERS[0], tmp_path_factory):
        yield template.removesuffix("/{db}")


@pytest.fixture(scope="session", params=STORE_SERVERS)
def each_store_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Every store server the platform supports, as a URI template with `{db}`: the store's own
    tests run against each."""
    if request.param == STORE_SERVERS[0]:
        yield request.getfixturevalue("store_server") + "/{db}"
    else:
        yield from _store_server(request.param, tmp_path_factory)


@pytest.fixture
def settings(tmp_path: Path, store_server: str, redis_url: str) -> Settings:
    """Settings of one test: its own database, queue, data dir and job dir."""
    name = uuid.uuid4().hex[:10]
    env = {
        "WAP_DATA_DIR": str(tmp_path / "data"),
        "WAP_BIND": f"127.0.0.1:{free_port()}",
        "WAP_MONGODB_URI": f"{store_server}/wap_{name}",
        "WAP_REDIS_URL": redis_url,
        "WAP_PLAYBOOKS_DIR": str(PLAYBOOKS),
        "WAP_RUNTIME_DIR": str(tmp_path / "run"),
        "WAP_QUEUE": f"wap-test-{name}",
        "WAP_JOB_TIMEOUT": "120",
        "WAP_HEARTBEAT_INTERVAL": "0.5",
        "WAP_LOST_AFTER": "3",
        "WAP_ALLOWED_ENDPOINTS": ALLOWED_ENDPOINTS,
    }
    return load_settings(env)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.mongodb_uri or "")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app({"WAP_SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["wap.store"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path, processes: list[Proc]) -> Callable[..., Proc]:
    """Start a `wap worker`; `env`, when given, is its whole environment instead of the test's."""

    def start(env: dict[str, str] | None = None) -> Proc:
        log = tmp_path / f"worker-{len(processes)}.log"
        proc = Proc([sys.executable, "-m", "wap.cli", "worker"], log, env or env_for(settings))
        processes.append(proc)
        return proc

    return start


@pytest.fixture
def start_web(settings: Settings, tmp_path: Path, processes: list[Proc]) -> Callable[[], str]:
    """Start `wap web` on the test's port (again after a stop: same port, same data)."""

    def start() -> str:
        log = tmp_path / f"web-{len(processes)}.log"
        proc = Proc([sys.executable, "-m", "wap.cli", "web"], log, env_for(settings))
        processes.append(proc)
        base = f"http://{settings.bind}"
        wait_healthy_web(proc, base, timeout=30, what="wap web")
        return base

    return start


@pytest.fixture
def web(start_web: Callable[[], str]) -> str:
    return start_web()


@pytest.fixture
def admin_api(web: str) -> Api:
    api = Api(web)
    assert api.setup().ok
    api.use_token("admin-tests")
    return api


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(bypass_csp=True)  # our CSP forbids the eval Playwright waits with
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()
