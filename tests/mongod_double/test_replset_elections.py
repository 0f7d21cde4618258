"""Elections under load, and a real rollback: what every later feature (rolling upgrades and
restarts, scaling one member at a time, continuous backup through elections) stands on.

- Three members on 127.0.0.1 stepped down round after round with majority writes in between:
  nobody rolls back, every member keeps the same oplog.
- A soak on lab hosts: a steady stream of ``w: 1`` and ``w: "majority"`` writes while the set goes
  through at least 50 elections of every kind (step-down, ``replSetStepUp``, priority takeover,
  kill -9 and restart of the primary); after each, every member is PRIMARY or SECONDARY again
  within a bound, none is ever RECOVERING, and at the end every majority-acknowledged write is on
  every member and ``dbHash`` agrees.
- A rollback as MongoDB does it: the primary cut off from the others by the network takes
  ``w: 1`` writes that only it has; the others elect a new primary and take writes; when the
  network heals, the old primary rolls its writes back into ``<dbPath>/rollback/<collection
  UUID>/removed.<time>.bson`` and becomes SECONDARY with the others' data.

Sources: https://www.mongodb.com/docs/manual/core/replica-set-elections/,
https://www.mongodb.com/docs/manual/core/replica-set-rollbacks/,
https://www.mongodb.com/docs/manual/reference/command/replSetStepDown/,
https://www.mongodb.com/docs/manual/reference/command/dbHash/.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import pathlib
import subprocess
import threading
import time
import uuid as uuid_module

import bson
import pymongo
import pytest
from pymongo import WriteConcern
from pymongo.errors import PyMongoError

from tests.mongod_double.labset import LabReplicaSet, lab_replica_set
from tests.waiting import member_states, wait_until

pytestmark = pytest.mark.timeout(900)

PRIMARY, SECONDARY, RECOVERING, ROLLBACK = 1, 2, 3, 9
ELECTIONS = 50
# How long the set may take to have a primary and two secondaries again after one election
# (an election after a kill -9 waits for the election timeout of SETTINGS first; under the
# parallel suite a member may take most of a minute to catch up after its restart).
SETTLE_SECONDS = 120
SETTINGS = {"electionTimeoutMillis": 3000, "heartbeatIntervalMillis": 500}
# A member restarted after kill -9 loads its checkpoint and replays up to a minute of journal.
RESTART_SECONDS = 120
KEEP_DIR = pathlib.Path(os.environ.get("WAP_TEST_KEEP_DIR", "/var/tmp/wap-test-kept"))


def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, mounts, cgroups)")


# -- three members on this machine ---------------------------------------------------------


def test_step_downs_with_majority_writes_roll_nothing_back(launcher):
    nodes = [launcher.start("--replSet", "rs0") for _ in range(3)]
    clients = {n.port: n.client() for n in nodes}
    config = {
        "_id": "rs0",
        "members": [{"_id": i, "host": f"127.0.0.1:{n.port}"} for i, n in enumerate(nodes)],
    }
    clients[nodes[0].port].admin.command("replSetInitiate", config)
    seen = lambda: member_states(clients)  # noqa: E731
    _settled(clients, seen, set())  # initial sync (STARTUP2) is over
    states: set[int] = set()
    written = 0
    for round_ in range(4):
        primary = _settled(clients, seen, states)
        coll = clients[primary].app.get_collection(
            "c", write_concern=WriteConcern(w="majority", wtimeout=30_000)
        )
        try:
            for _ in range(20):
                coll.insert_one({"_id": written})
                written += 1
        except PyMongoError as exc:
            raise AssertionError(
                f"round {round_}: write {written} failed: {exc}; {seen()}"
            ) from exc
        with contextlib.suppress(pymongo.errors.AutoReconnect):  # it closes connections
            clients[primary].admin.command("replSetStepDown", 10, secondaryCatchUpPeriodSecs=5)
        wait_until(
            lambda p=primary: not clients[p].admin.command("hello")["isWritablePrimary"],
            timeout=30,
            what=f"round {round_}: 127.0.0.1:{primary} to step down",
            seen=seen,
        )
        clients[primary].admin.command("replSetFreeze", 0)  # may stand again next round
    primary = _settled(clients, seen, states)
    assert states <= {PRIMARY, SECONDARY}, f"states seen during the rounds: {states}"
    last = clients[primary].local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    for port, client in clients.items():
        wait_until(
            lambda c=client: c.local["oplog.rs"].find_one({"ts": last}),
            timeout=30,
            what=f"127.0.0.1:{port} to apply the primary's last entry {last}",
            seen=seen,
        )
    oplogs = {
        port: [(e["ts"], e["t"]) for e in c.local["oplog.rs"].find({}, {"ts": 1, "t": 1})]
        for port, c in clients.items()
    }
    # A member's oplog starts where its initial sync began; from there on all are the same.
    start = max(oplog[0] for oplog in oplogs.values())
    tails = {port: [e for e in oplog if e >= start] for port, oplog in oplogs.items()}
    reference = tails[nodes[0].port]
    assert len(reference) > 80, f"the oplogs hold too little: {reference}"
    assert all(tail == reference for tail in tails.values()), f"the oplogs differ: {tails}"
    for node in nodes:  # read from each member in small batches: getMore on secondaries too
        found = list(node.client(readPreference="secondaryPreferred").app.c.find(batch_size=7))
        assert len(found) == written, f"127.0.0.1:{node.port} has {len(found)} of {written}"


def _settled(clients: dict, seen, states: set[int]) -> int:
    """Wait for one PRIMARY and the others SECONDARY; returns the primary's port."""

    def check() -> int | None:
        mine = {}
        for port, client in clients.items():
            mine[port] = client.admin.command("replSetGetStatus")["myState"]
        states.update(mine.values())
        primaries = [p for p, s in mine.items() if s == PRIMARY]
        if len(primaries) == 1 and sorted(mine.values()) == [PRIMARY, SECONDARY, SECONDARY]:
            return primaries[0]
        return None

    return wait_until(
        check, timeout=SETTLE_SECONDS, what="a primary and two secondaries", seen=seen,
        retry=PyMongoError,
    )  # fmt: skip


# -- the soak on lab hosts -----------------------------------------------------------------


class Writer(threading.Thread):
    """Inserts numbered documents through a set client, alternating ``w: 1`` and majority,
    and remembers which were acknowledged with which write concern."""

    def __init__(self, client: pymongo.MongoClient) -> None:
        super().__init__(name="writer", daemon=True)
        db = client.get_database("soak")
        self.collections = {
            "majority": db.get_collection("docs", write_concern=WriteConcern("majority", 30_000)),
            "w1": db.get_collection("docs", write_concern=WriteConcern(1)),
        }
        self.acknowledged: dict[str, list[int]] = {"majority": [], "w1": []}
        self.failures = 0
        self.done = threading.Event()

    def run(self) -> None:
        for n in itertools.count():
            if self.done.is_set():
                return
            kind = "majority" if n % 2 else "w1"
            try:
                self.collections[kind].insert_one({"_id": n, "kind": kind, "pad": "x" * 64})
            except PyMongoError:
                self.failures += 1  # an election in progress: no primary for a moment
                time.sleep(0.05)
                continue
            self.acknowledged[kind].append(n)
            time.sleep(0.01)


class StateWatch(threading.Thread):
    """Polls every member's own state; keeps every (member, state) it ever saw."""

    def __init__(self, rs: LabReplicaSet) -> None:
        super().__init__(name="watch", daemon=True)
        self.admins = {n: rs.direct(n, serverSelectionTimeoutMS=300).admin for n in rs.names}
        self.seen: set[tuple[str, int]] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for name, admin in self.admins.items():
                with contextlib.suppress(PyMongoError):  # killed, or restarting
                    self.seen.add((name, admin.command("replSetGetStatus")["myState"]))


@contextlib.contextmanager
def _lab_set(tmp_path_factory, name: str):
    """A lab replica set whose members' logs, stacks and oplogs are kept when the test fails, in
    KEEP_DIR (pytest removes all but its last three temporary folders, and a parallel run makes
    many)."""
    _root()
    tmp = tmp_path_factory.mktemp(name)
    with lab_replica_set(tmp, name=f"{name[:4]}{os.getpid() % 10000}") as rs:
        try:
            yield rs
        except BaseException:
            tmp = KEEP_DIR / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            tmp.mkdir(parents=True, exist_ok=True)
            for host in rs.names:
                log = rs.lab.ssh(host, "cat /var/log/mongod.log", check=False).stdout
                (tmp / f"{host}-mongod.log").write_text(log)
                stacks = rs.lab.ssh(  # the double writes its threads' stacks on SIGUSR2
                    host,
                    "systemctl kill --signal=SIGUSR2 mongod-rs; sleep 1; "
                    "journalctl -u mongod-rs --no-pager -o cat | tail -n 400",
                    check=False,
                ).stdout
                (tmp / f"{host}-stacks.txt").write_text(stacks)
                with contextlib.suppress(PyMongoError):
                    oplog = (
                        rs.member(host)
                        .local["oplog.rs"]
                        .find({}, {"ts": 1, "t": 1, "op": 1, "o.msg": 1, "o._id": 1})
                    )
                    (tmp / f"{host}-oplog.txt").write_text("\n".join(map(str, oplog)))
            print(f"members' logs kept in {tmp}")
            raise


def _initiate(rs: LabReplicaSet, **per_member: dict) -> str:
    for name in rs.names:
        rs.start(name)
    config = {**rs.config(**per_member), "settings": SETTINGS}
    rs.member(rs.names[0]).admin.command("replSetInitiate", config)
    return _settled_lab(rs, "the initiated set")


def _settled_lab(rs: LabReplicaSet, after: str) -> str:
    """One PRIMARY and two SECONDARY within SETTLE_SECONDS; returns the primary's name."""

    def check() -> str | None:
        states = {}
        for name in rs.names:
            reply = rs.hello(name)
            if not reply:
                return None
            states[name] = (
                PRIMARY if reply.get("isWritablePrimary") else SECONDARY if reply.get("secondary")
                else 0
            )  # fmt: skip
        if sorted(states.values()) == [PRIMARY, SECONDARY, SECONDARY]:
            return next(n for n, s in states.items() if s == PRIMARY)
        return None

    return wait_until(
        check,
        timeout=SETTLE_SECONDS,
        every=0.05,
        what=f"a primary and two secondaries after {after}",
        seen=rs.states,
    )


def _term(rs: LabReplicaSet, name: str) -> int:
    return int(rs.member(name).admin.command("replSetGetStatus")["term"])


def _step_down(rs: LabReplicaSet, primary: str) -> None:
    with contextlib.suppress(pymongo.errors.AutoReconnect):
        rs.member(primary).admin.command("replSetStepDown", 5, secondaryCatchUpPeriodSecs=3)


def _step_up(rs: LabReplicaSet, primary: str) -> None:
    """The secondary furthest ahead asks to be elected (one behind the primary cannot win)."""
    candidate = max((n for n in rs.names if n != primary), key=lambda n: _applied(rs, n))
    wait_until(
        lambda: rs.member(candidate).admin.command("replSetStepUp").get("ok"),
        timeout=SETTLE_SECONDS,
        what=f"{candidate} to win an election it asked for (replSetStepUp)",
        every=0.5,  # it may be behind the primary: let it catch up between attempts
        retry=pymongo.errors.OperationFailure,
        seen=rs.states,
    )


def _kill_and_restart(rs: LabReplicaSet, primary: str) -> None:
    rs.kill(primary)
    rs.wait_primary(among=[n for n in rs.names if n != primary], timeout=SETTLE_SECONDS)
    rs.start(primary, timeout=RESTART_SECONDS)


def _priority_takeover(rs: LabReplicaSet, primary: str) -> None:
    favourite = next(n for n in rs.names if n != primary)
    _reconfig(rs, {favourite: 2})
    rs.wait_primary(among=[favourite], timeout=SETTLE_SECONDS)
    _reconfig(rs, {})  # equal again: no takeover back


ROUNDS = [_step_down, _step_up, _priority_takeover, _step_down, _kill_and_restart]


def test_soak_fifty_elections_under_writes_lose_no_majority_write(tmp_path_factory):
    with _lab_set(tmp_path_factory, "soak") as rs:
        primary = _initiate(rs)
        first_term = _term(rs, primary)
        writer = Writer(rs.set_client(retryWrites=False, wTimeoutMS=30_000))
        watch = StateWatch(rs)
        writer.start()
        watch.start()
        kinds: dict[str, int] = {}
        try:
            for round_ in itertools.count():
                elections = _term(rs, primary) - first_term
                if elections >= ELECTIONS:
                    break
                change = ROUNDS[round_ % len(ROUNDS)]
                with rs.explained(f"round {round_} ({change.__name__}, primary {primary})"):
                    change(rs, primary)
                    _unfreeze(rs, primary, f"round {round_}")
                    primary = _settled_lab(rs, f"round {round_} ({change.__name__})")
                kinds[change.__name__] = kinds.get(change.__name__, 0) + 1
        finally:
            writer.done.set()
            watch.done.set()
            writer.join(60)
            watch.join(10)
        assert _term(rs, primary) - first_term >= ELECTIONS, kinds
        assert writer.acknowledged["majority"], f"no majority write was acknowledged: {kinds}"
        unwanted = sorted((n, s) for n, s in watch.seen if s not in (PRIMARY, SECONDARY, ROLLBACK))
        assert not unwanted, f"members left PRIMARY/SECONDARY during the soak: {unwanted}"
        newest = rs.member(primary).admin.command("replSetGetStatus")["optimes"]["appliedOpTime"]
        for name in rs.names:
            wait_until(
                lambda n=name: (
                    _state(rs, n) in (PRIMARY, SECONDARY)
                    and _applied(rs, n) >= (newest["ts"], newest["t"])
                ),
                timeout=SETTLE_SECONDS,
                what=f"{name} to apply the primary's last entry {newest}",
                seen=rs.states,
            )
        wanted = set(writer.acknowledged["majority"])
        for name in rs.names:
            docs = rs.member(name).soak.docs
            present = {d["_id"] for d in docs.find({}, {"_id": 1})}
            missing = sorted(wanted - present)
            assert not missing, f"{name} lacks {len(missing)} majority writes: {missing[:20]}"
        hashes = {n: rs.member(n).soak.command("dbHash")["md5"] for n in rs.names}
        assert len(set(hashes.values())) == 1, f"dbHash differs: {hashes}; {_differences(rs)}"


def _differences(rs: LabReplicaSet) -> str:
    """Which documents of soak.docs differ between the members, and their oplog entries."""
    docs = {n: {d["_id"]: d for d in rs.member(n).soak.docs.find()} for n in rs.names}
    ids = set().union(*docs.values())
    differ = sorted(i for i in ids if len({repr(docs[n].get(i)) for n in rs.names}) > 1)
    lines = [f"{len(differ)} documents differ: {differ[:10]}"]
    for name in rs.names:
        oplog = rs.member(name).local["oplog.rs"]
        for _id in differ[:3]:
            entries = list(oplog.find({"o._id": _id}, {"ts": 1, "t": 1, "op": 1}))
            lines.append(f"{name} {_id}: {docs[name].get(_id)} oplog {entries}")
    return "\n".join(lines)


def _unfreeze(rs: LabReplicaSet, name: str, when: str) -> None:
    """A stepped-down member may not stand for stepDownSecs: let it stand again at once."""
    wait_until(
        lambda: rs.member(name).admin.command("replSetFreeze", 0).get("ok"),
        timeout=SETTLE_SECONDS,
        what=f"{when}: the old primary {name} to be a member that can be unfrozen",
        retry=PyMongoError,
        seen=rs.states,
    )


def _reconfig(rs: LabReplicaSet, priorities: dict[str, int]) -> None:
    """Set member priorities on the primary of the moment (the new config waits for the
    current one to be committed; a primary that steps down meanwhile refuses it)."""

    def change() -> bool:
        primary = next((n for n in rs.names if (rs.hello(n) or {}).get("isWritablePrimary")), None)
        if primary is None:
            return False
        admin = rs.member(primary).admin
        config = admin.command("replSetGetConfig")["config"]
        for member in config["members"]:
            member["priority"] = priorities.get(rs.name_of(member["host"]), 1)
        config["version"] += 1
        return admin.command("replSetReconfig", config, maxTimeMS=30_000).get("ok")

    wait_until(
        change,
        timeout=SETTLE_SECONDS,
        what=f"a reconfig to priorities {priorities}",
        retry=PyMongoError,
        seen=rs.states,
    )


def _state(rs: LabReplicaSet, name: str) -> int:
    return rs.member(name).admin.command("replSetGetStatus")["myState"]


def _applied(rs: LabReplicaSet, name: str) -> tuple:
    optime = rs.member(name).admin.command("replSetGetStatus")["optimes"]["appliedOpTime"]
    return optime["ts"], optime["t"]


# -- a real rollback -------------------------------------------------------------------------


def _cut(rs: LabReplicaSet, name: str, heal: bool = False) -> None:
    """Cut ``name`` off the other members (a blackhole route each way, in the hosts' network
    namespaces), or heal the cut. This machine still reaches every member."""
    verb = "del" if heal else "add"
    others = [n for n in rs.names if n != name]
    pairs = [(name, o) for o in others] + [(o, name) for o in others]
    for host, peer in pairs:
        subprocess.run(
            ["ip", "netns", "exec", rs.lab.lab.netns(host),
             "ip", "route", verb, "blackhole", f"{rs.lab.hosts[peer]}/32"],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip


def test_writes_only_the_cut_off_primary_had_are_rolled_back_into_files(tmp_path_factory):
    with _lab_set(tmp_path_factory, "rollback") as rs:
        old = _initiate(rs)
        client = rs.set_client(retryWrites=False)
        events = client.app.get_collection("events", write_concern=WriteConcern("majority"))
        events.insert_many([{"_id": i, "v": "before"} for i in range(100)])
        _cut(rs, old)
        lonely = rs.member(old).app.get_collection("events", write_concern=WriteConcern(1))
        lonely.insert_many([{"_id": f"lost-{i}", "v": "only on the old one"} for i in range(20)])
        lonely.update_one({"_id": 0}, {"$set": {"v": "changed on the old primary"}})
        others = [n for n in rs.names if n != old]
        new = rs.wait_primary(among=others, timeout=SETTLE_SECONDS)
        wait_until(
            lambda: not (rs.hello(old) or {}).get("isWritablePrimary"),
            timeout=SETTLE_SECONDS,
            what=f"the cut-off {old} to step down (it sees no majority)",
            seen=rs.states,
        )
        fresh = rs.member(new).app.get_collection(
            "events", write_concern=WriteConcern(2, wtimeout=30_000)
        )
        fresh.insert_many([{"_id": f"new-{i}", "v": "after the election"} for i in range(30)])
        fresh.update_one({"_id": 1}, {"$set": {"v": "changed on the new primary"}})
        _cut(rs, old, heal=True)
        newest = _applied(rs, new)

        def old_log() -> str:
            tail = rs.lab.ssh(old, "tail -c 3000 /var/log/mongod.log", check=False).stdout
            return f"{rs.states()}\nlast lines of {old}'s log:\n{tail}"

        wait_until(
            lambda: _state(rs, old) == SECONDARY and _applied(rs, old) >= newest,
            timeout=SETTLE_SECONDS,
            what=f"{old} to roll back, be SECONDARY and catch up with {new}",
            retry=PyMongoError,
            seen=old_log,
        )
        mine = rs.member(old).app.events
        assert mine.count_documents({"_id": {"$regex": "^lost-"}}) == 0
        assert mine.count_documents({"_id": {"$regex": "^new-"}}) == 30
        assert mine.find_one({"_id": 0})["v"] == "before"
        assert mine.find_one({"_id": 1})["v"] == "changed on the new primary"
        hashes = {n: rs.member(n).app.command("dbHash")["md5"] for n in rs.names}
        assert len(set(hashes.values())) == 1, f"dbHash differs after the rollback: {hashes}"
        listing = rs.lab.ssh(old, "ls /var/lib/mongo/rollback/*/removed.*.bson").stdout.split()
        info = rs.member(new).app.command("listCollections", filter={"name": "events"})
        folder = str(uuid_module.UUID(bytes=bytes(info["cursor"]["firstBatch"][0]["info"]["uuid"])))
        assert [p.split("/")[-2] for p in listing] == [folder], listing
        raw = rs.lab.ssh(old, f"base64 -w0 {listing[0]}").stdout
        saved = {d["_id"]: d["v"] for d in bson.decode_all(base64.b64decode(raw))}
        assert saved == {
            **{f"lost-{i}": "only on the old one" for i in range(20)},
            0: "changed on the old primary",
        }
