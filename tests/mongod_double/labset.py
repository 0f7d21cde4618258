"""A replica set of mongod doubles on separate lab hosts, for the tests and the failover benchmark.

Each member runs from the built tarball (extracted to /opt/mongodb on its host) as the transient
systemd unit ``mongod-rs``, listening on the host's lab address; this machine drives the set
with pymongo through those addresses. ``lab_replica_set()`` tears everything down on exit.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pymongo

from tests.labhosts import LabHosts, free_subnet
from tests.waiting import member_states, wait_until
from wap.lab import Lab, LabError

HERE = pathlib.Path(__file__).resolve().parent
PORT = 27017
SET_NAME = "rs0"
UNIT = "mongod-rs"
INSTALL_DIR = "/opt/mongodb"
# A write that asks for more than one member waits at most this long for them (wtimeout), then
# fails with the members' states, instead of waiting as long as the test may run.
WRITE_CONCERN_TIMEOUT_MS = 30_000
# No reply from a member in this long is a failure (the longest command a test sends, a
# step-down with its catch-up period, takes well under it), not a test waiting forever.
SOCKET_TIMEOUT_MS = 90_000
STATES = {"PRIMARY": 1, "SECONDARY": 2, "RECOVERING": 3}


def build_tarball(version: str, dest: pathlib.Path) -> pathlib.Path:
    result = subprocess.run(
        [str(HERE / "build-tarball"), version, str(dest)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return pathlib.Path(result.stdout.strip().splitlines()[-1])


@dataclass
class LabReplicaSet:
    lab: LabHosts
    clients: list[pymongo.MongoClient] = field(default_factory=list)
    members: dict[str, pymongo.MongoClient] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted(self.lab.hosts)

    def address(self, name: str) -> str:
        return f"{self.lab.hosts[name]}:{PORT}"

    def name_of(self, address: str) -> str:
        return next(n for n in self.names if self.address(n) == address)

    def config(self, **per_member: dict) -> dict:
        members = []
        for i, name in enumerate(self.names):
            members.append({"_id": i, "host": self.address(name), **per_member.get(name, {})})
        return {"_id": SET_NAME, "members": members}

    def start(self, name: str, *args: str, timeout: float = 30) -> None:
        """Start (or restart) the member on its host and wait until it listens (a restart after
        kill -9 loads its last checkpoint and replays the journal: allow for it in ``timeout``)."""
        ip = self.lab.hosts[name]
        self.lab.ssh(name, f"systemctl reset-failed {UNIT} 2>/dev/null; mkdir -p /var/lib/mongo")
        self.lab.ssh(
            name,
            f"systemd-run --quiet --collect --unit {UNIT} {INSTALL_DIR}/bin/mongod "
            f"--port {PORT} --bind_ip 127.0.0.1,{ip} --dbpath /var/lib/mongo "
            f"--replSet {SET_NAME} --logpath /var/log/mongod.log --logappend {' '.join(args)}",
        )
        wait_until(
            lambda: _listening(ip, PORT),
            timeout=timeout,
            what=f"mongod on {name} to listen on {ip}:{PORT}",
            every=0.05,
            seen=lambda: self.lab.ssh(name, "tail -5 /var/log/mongod.log", check=False).stdout,
        )

    def kill(self, name: str) -> None:
        """kill -9 the member's process (the host stays up)."""
        self.lab.ssh(name, f"systemctl kill --signal=SIGKILL {UNIT}", check=False)
        wait_until(
            lambda: not _listening(self.lab.hosts[name], PORT),
            timeout=15,
            what=f"the killed mongod on {name} to stop listening",
            every=0.02,
        )

    def direct(self, name: str, **kwargs) -> pymongo.MongoClient:
        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        kwargs.setdefault("socketTimeoutMS", SOCKET_TIMEOUT_MS)
        client = pymongo.MongoClient(self.address(name), directConnection=True, **kwargs)
        self.clients.append(client)
        return client

    def set_client(self, **kwargs) -> pymongo.MongoClient:
        """A client of the whole set; writes wait for their write concern WRITE_CONCERN_TIMEOUT_MS
        at most (then `WriteConcernError`: use `explained` to say what the members were doing)."""
        kwargs.setdefault("serverSelectionTimeoutMS", 30000)
        kwargs.setdefault("wTimeoutMS", WRITE_CONCERN_TIMEOUT_MS)
        kwargs.setdefault("socketTimeoutMS", SOCKET_TIMEOUT_MS)
        hosts = ",".join(self.address(n) for n in self.names)
        client = pymongo.MongoClient(f"mongodb://{hosts}/?replicaSet={SET_NAME}", **kwargs)
        self.clients.append(client)
        return client

    def member(self, name: str) -> pymongo.MongoClient:
        """The member's own client, kept for the set's life (a client per call would leave
        hundreds to close, each waiting on a killed member); it reads from secondaries too."""
        if name not in self.members:
            self.members[name] = self.direct(
                name, readPreference="secondaryPreferred", serverSelectionTimeoutMS=2000,
                socketTimeoutMS=60_000,
            )  # fmt: skip
        return self.members[name]

    def hello(self, name: str) -> dict | None:
        """The member's ``hello``, or None while it cannot answer (killed, restarting)."""
        try:
            return self.member(name).admin.command("hello")
        except pymongo.errors.PyMongoError:
            return None

    def states(self) -> str:
        """What each member says of itself (state, term, optime, sync source, message), for
        failure messages: a killed member shows as unreachable."""
        return member_states({name: self.member(name) for name in self.names})

    @contextlib.contextmanager
    def explained(self, what: str) -> Iterator[None]:
        """Turn a driver error inside the block (a write concern timed out, no primary found)
        into a failure that says what was being done and what every member was doing."""
        try:
            yield
        except pymongo.errors.PyMongoError as exc:
            raise AssertionError(f"{what} failed: {exc}; members: {self.states()}") from exc

    def wait_primary(self, among: list[str] | None = None, timeout: float = 30) -> str:
        """The name of the member that reports itself writable primary."""

        def primary() -> str | None:
            for name in among or self.names:
                reply = self.hello(name)
                if reply and reply.get("isWritablePrimary"):
                    return name
            return None

        return wait_until(
            primary,
            timeout=timeout,
            every=0.05,
            what=f"a primary among {among or self.names}",
            seen=self.states,
        )

    def wait_state(self, name: str, state: str, timeout: float = 30) -> None:
        admin = self.member(name).admin
        wait_until(
            lambda: admin.command("replSetGetStatus")["myState"] == STATES[state],
            timeout=timeout,
            what=f"{name} to be {state}",
            retry=pymongo.errors.PyMongoError,
            seen=self.states,
        )

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        self.members.clear()


def _listening(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((ip, port)) == 0


def _install(lab: LabHosts, name: str, tgz: pathlib.Path) -> None:
    with open(tgz, "rb") as handle:
        subprocess.run(
            ["ssh", "-i", str(lab.lab.key_file), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
             f"root@{lab.hosts[name]}",
             f"mkdir -p {INSTALL_DIR} && tar xz -C {INSTALL_DIR} --strip-components=1"],
            stdin=handle, check=True, timeout=60, capture_output=True,
        )  # fmt: skip


@contextlib.contextmanager
def lab_replica_set(
    tmp: pathlib.Path, hosts: int = 3, version: str = "7.0.14", name: str | None = None
) -> Iterator[LabReplicaSet]:
    """Lab hosts with the double installed (not started); everything is removed on exit."""
    tgz = build_tarball(version, tmp)
    lab = Lab(name or f"rs{os.getpid() % 100000}")
    quiet = lambda _msg: None  # noqa: E731
    with contextlib.suppress(LabError):
        lab.down(progress=quiet)
    replset = None
    try:
        for attempt in range(5):  # another run may take the same free subnet first
            try:
                state = lab.up(hosts, free_subnet(skip=150 + attempt), progress=quiet)
                break
            except LabError as exc:
                if "overlaps" not in str(exc) or attempt == 4:
                    raise
        inventory = tmp / "inventory.yml"
        inventory.write_text(lab.inventory())
        lab_hosts = LabHosts(lab, inventory, {h.name: h.ip for h in state.hosts.values()})
        threads = [
            threading.Thread(target=_install, args=(lab_hosts, n, tgz)) for n in lab_hosts.hosts
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        replset = LabReplicaSet(lab_hosts)
        yield replset
    finally:
        if replset is not None:
            replset.close()
            for host in replset.names:
                replset.lab.ssh(host, f"systemctl kill --signal=SIGKILL {UNIT}", check=False)
        lab.down(progress=quiet)
