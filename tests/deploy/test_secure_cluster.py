"""secure_cluster.yml on one lab deployment of its own: a 3-member replica set deployed without
access control or TLS (the double's tarball), then access control and TLS enabled on it while it
takes writes, in two runs (to the transition, where the clients move to credentials and TLS, then
to the end: three rolling restarts in all), and a last run that changes nothing. Every
acknowledged write is there at the end; the moments a client polling hello saw no primary are
printed.
"""

from __future__ import annotations

import threading
import time

import pymongo
import pytest
from pymongo.errors import OperationFailure

from tests.deploy.deployment import ADMIN, APP, Deployment, wait_healthy
from tests.deploy.writes import WriteCounter
from tests.webui.test_secure_console import PASSES

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]

REPLICASET = "replicaset.yml"
# The lab example without its security: what an operator starts from.
OPEN = {
    "mongodb_config_auth": False,
    "mongodb_config_key_file": "",
    "mongodb_config_tls_mode": "disabled",
    "mongodb_security_tls": False,
    "mongodb_security_admin_password": "",
    "mongodb_replicaset_tls": False,
    "mongodb_replicaset_login_user": "",
    "mongodb_replicaset_login_password": "",
    "mongodb_users_users": [],
}


class HelloWatch:
    """Polls hello on every member, without TLS and with it: moments without a primary."""

    def __init__(self, rs: Deployment, hosts: list[str]) -> None:
        self.options = dict(directConnection=True, serverSelectionTimeoutMS=1500,
                            connectTimeoutMS=1500, socketTimeoutMS=3000)  # fmt: skip
        self.addresses = [rs.address(h) for h in hosts]
        self.ca = rs.secrets / "ca.pem"
        self.clients = [pymongo.MongoClient(a, **self.options) for a in self.addresses]
        self.with_tls = False
        self.without_primary: list[float] = []

    def __enter__(self) -> HelloWatch:
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            if not self.with_tls and self.ca.exists():  # the CA is made by the TLS run
                self.with_tls = True
                tls = dict(tls=True, tlsCAFile=str(self.ca), **self.options)
                self.clients += [pymongo.MongoClient(a, **tls) for a in self.addresses]
            primary = False
            for client in self.clients:
                try:
                    primary = primary or client.admin.command("hello")["isWritablePrimary"]
                except pymongo.errors.PyMongoError:
                    continue
            if not primary:
                self.without_primary.append(round(time.monotonic() - self._started, 1))
            self._stop.wait(0.25)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for client in self.clients:
            client.close()


@pytest.fixture(scope="module")
def rs(deployment_factory) -> Deployment:
    deployment = deployment_factory(3)
    deployment.first = deployment.run("deploy_replicaset.yml", REPLICASET, **OPEN)
    assert deployment.first.returncode == 0, deployment.first.failures()
    return deployment


def _connect(rs: Deployment, host: str = "lab1", tls: bool = True, user=None, **kwargs):
    """A client of the set (or, with directConnection, of one member), over TLS with the
    cluster's CA or without TLS, with ``user``'s credentials if given."""
    options = dict(serverSelectionTimeoutMS=20000, connectTimeoutMS=5000,
                   socketTimeoutMS=90_000, wTimeoutMS=30_000)  # fmt: skip
    if tls:
        options.update(tls=True, tlsCAFile=str(rs.secrets / "ca.pem"))
    if user is not None:
        options.update(username=user[0], password=user[1])
    options.update(kwargs)
    return pymongo.MongoClient(rs.lab.hosts[host], 27017, **options)


def _plain(rs: Deployment, **kwargs) -> pymongo.MongoClient:
    return _connect(rs, tls=False, replicaSet="rs0", **kwargs)


def _security(rs: Deployment, hosts: list[str], **kwargs) -> set[tuple]:
    found = set()
    for host in hosts:
        with _connect(rs, host, directConnection=True, **kwargs) as client:
            parsed = client.admin.command("getCmdLineOpts")["parsed"]
        security, tls = parsed.get("security", {}), parsed.get("net", {}).get("tls", {})
        found.add((bool(security.get("keyFile")), security.get("transitionToAuth", False),
                   security.get("authorization", ""), tls.get("mode", "disabled")))  # fmt: skip
    return found


def test_access_control_and_tls_enabled_on_a_running_set_under_writes(rs: Deployment) -> None:
    hosts = ["lab1", "lab2", "lab3"]
    with _plain(rs) as client:
        wait_healthy(client, 3)
    secure = {"wap_secure_auth": True, "wap_secure_tls": True}

    check = rs.run("secure_cluster.yml", REPLICASET, check=True, **secure)
    assert check.returncode == 0, check.failures()
    plan = check.results("Show the plan (check mode stops here)")["lab1"]["msg"]
    assert plan[0] == "enable access control and TLS on replica set rs0:"
    assert [line.partition(": ")[0] for line in plan[1:]] == PASSES
    assert sum(check.changed().values()) == 0
    assert _security(rs, hosts, tls=False) == {(False, False, "", "disabled")}

    # To the transition: clients without credentials or TLS keep writing; the users exist.
    started = time.monotonic()
    with HelloWatch(rs, hosts) as watch, WriteCounter(_plain(rs)) as open_writes:
        half = rs.run("secure_cluster.yml", REPLICASET, wap_secure_until="transition", **secure)
    assert half.returncode == 0, half.failures()
    print(f"to the transition: {time.monotonic() - started:.0f} s, without a primary at",
          watch.without_primary)  # fmt: skip
    assert _security(rs, hosts, tls=False) == {(True, True, "", "preferTLS")}
    with _plain(rs) as client:
        assert open_writes.missing(client) == [] and len(open_writes.acknowledged) > 20

    # The application moves to its credentials over TLS; then access control and requireTLS.
    app = _connect(rs, replicaSet="rs0", user=APP, authSource="app")
    started = time.monotonic()
    with HelloWatch(rs, hosts) as watch, WriteCounter(app) as app_writes:
        done = rs.run("secure_cluster.yml", REPLICASET, **secure)
    assert done.returncode == 0, done.failures()
    print(f"to the end: {time.monotonic() - started:.0f} s, without a primary at",
          watch.without_primary)  # fmt: skip
    assert _security(rs, hosts, user=ADMIN) == {(True, False, "enabled", "requireTLS")}
    with _connect(rs, replicaSet="rs0", user=ADMIN) as client:
        assert app_writes.missing(client) == [] and len(app_writes.acknowledged) > 20
        wait_healthy(client, 3)
    with _connect(rs, replicaSet="rs0") as anonymous, pytest.raises(OperationFailure):
        anonymous.app.c.insert_one({})
    with pytest.raises(pymongo.errors.PyMongoError):
        _plain(rs, serverSelectionTimeoutMS=2000).admin.command("ping")

    again = rs.run("secure_cluster.yml", REPLICASET, **secure)
    assert again.returncode == 0, again.failures()
    assert sum(again.changed().values()) == 0, again.changed()
    nothing = again.results("Show the plan (check mode stops here)")["lab1"]["msg"]
    assert nothing[1] == "nothing to do: every process runs access control and TLS"
