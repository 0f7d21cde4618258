"""Continuous backup: the oplog follower against a 3-member set of doubles on 127.0.0.1 (1 MB
oplogs) and moto's S3 on 127.0.0.1.

A writer keeps changing documents with w: majority and keeps a shadow of what was acknowledged.
The follower, started from a base snapshot's end, is stopped and started again (from its
checkpoint), the primary steps down and the member it reads is killed: the store then holds the
set's oplog after the snapshot, every entry once and in order, and a restore to the timestamp of
an acknowledged write equals the shadow as it was then. A follower stopped while the oplogs roll
over records a gap with its bounds; an FCV change ends a restorable window, with the reason.
"""

from __future__ import annotations

import datetime
import signal
import threading
import time
from typing import Any

import pymongo
import pytest
from bson.timestamp import Timestamp

from tests.agent.test_backup_restore import one_member_set
from tests.agent.test_oplog_store import BUCKET, moto_bucket
from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION, free_port
from tests.mongod_double.conftest import Launcher
from tests.waiting import member_states, wait_until
from wap_agent.backup import manifest
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.coverage import coverage
from wap_agent.backup.follower import Follower, FollowerError, FollowerOptions
from wap_agent.backup.manifest import Layout
from wap_agent.backup.pitr import restore_to
from wap_agent.backup.slices import OplogStore, OpTime, Stored
from wap_agent.commands import BadArguments, CommandRegistry, Context, follow
from wap_agent.commands.follow import FollowOplog
from wap_agent.config import AgentConfig

ARGS = ("--replSet", "rs0", "--oplogSize", "1")
FAST = {"chunk_seconds": 0.3, "slice_seconds": 2, "await_ms": 200, "retry_seconds": 0.3}


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    launch = Launcher(tmp_path_factory.mktemp("follower"))
    try:
        yield launch
    finally:
        launch.cleanup()


@pytest.fixture(scope="module")
def s3() -> Any:
    with moto_bucket() as client:
        yield client


@pytest.fixture(scope="module")
def rs(launcher):
    nodes = [launcher.start(*ARGS) for _ in range(3)]
    first = nodes[0].client()
    members = [{"_id": i, "host": f"127.0.0.1:{n.port}"} for i, n in enumerate(nodes)]
    first.admin.command("replSetInitiate", {"_id": "rs0", "members": members})
    uri = "mongodb://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes) + "/?replicaSet=rs0"
    client = pymongo.MongoClient(uri, w="majority", wTimeoutMS=30_000, socketTimeoutMS=60_000)
    wait_until(lambda: client.app.items.insert_one({"_id": "seed"}), timeout=60,
               what="a primary taking majority writes", retry=pymongo.errors.PyMongoError,
               seen=lambda: states(nodes))  # fmt: skip
    yield {"uri": uri, "nodes": nodes, "client": client}
    client.close()


def states(nodes) -> str:
    return member_states(
        {f"127.0.0.1:{n.port}": pymongo.MongoClient(f"127.0.0.1:{n.port}", directConnection=True,
                                                    serverSelectionTimeoutMS=1000)
         for n in nodes}, close=True,
    )  # fmt: skip


class Writer(threading.Thread):
    """Sets and deletes documents by _id with w: majority (idempotent, so a write retried after
    an election leaves the same state); after each acknowledged write, the shadow and the
    write's operationTime."""

    def __init__(self, client: pymongo.MongoClient) -> None:
        super().__init__(daemon=True)
        self.coll = client.app.items
        self.shadow: dict[Any, dict] = {"seed": {"_id": "seed"}}
        self.history: list[tuple[Timestamp, dict]] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        with self.coll.database.client.start_session() as session:
            while not self.stop.is_set():
                key = n % 97
                if n % 5 == 4:
                    self._write(
                        session, lambda s, k=key: self.coll.delete_one({"_id": k}, session=s)
                    )
                    self.shadow.pop(key, None)
                else:
                    doc = {"_id": key, "n": n, "pad": "x" * (n % 50)}
                    self._write(session, lambda s, d=doc: self.coll.replace_one(
                        {"_id": d["_id"]}, d, upsert=True, session=s))  # fmt: skip
                    self.shadow[key] = doc
                self.history.append((session.operation_time, dict(self.shadow)))
                n += 1

    def _write(self, session, write) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                write(session)
                return
            except pymongo.errors.PyMongoError as exc:  # an election: the same write again
                self.errors.append(str(exc)[:200])
                if time.monotonic() > deadline:
                    raise
                self.stop.wait(0.2)

    def wait_for(self, count: int) -> None:
        start = len(self.history)
        wait_until(lambda: len(self.history) >= start + count or not self.is_alive(),
                   timeout=120, what=f"{count} more acknowledged writes",
                   seen=lambda: (len(self.history), self.errors[-3:]))  # fmt: skip
        assert self.is_alive(), f"the writer stopped: {self.errors[-3:]}"


class Running:
    """A follower in a thread, stopped on leaving."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.stop = threading.Event()
        self.thread = threading.Thread(target=follower.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Follower:
        self.thread.start()
        return self.follower

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the follower did not stop"


def durable_to(store: OplogStore, ts: Timestamp, what: str) -> None:
    wait_until(lambda: (c := store.checkpoint()) is not None and c.ts >= ts, timeout=120,
               what=what, seen=store.checkpoint)  # fmt: skip


def stored(store: OplogStore) -> list[OpTime]:
    return [OpTime.of(e) for o in store.objects() for e in store.entries(o)]


def base_snapshot(uri: str, s3: Any, layout: Layout) -> manifest.Manifest:
    args = {"snapshot_id": manifest.snapshot_id(time.time()), "bucket": BUCKET,
            "prefix": layout.prefix, "project_id": layout.project_id,
            "cluster_id": layout.cluster_id, "compression": "zstd"}  # fmt: skip
    made = manifest.back_up(uri, args, s3=s3)
    return manifest.read(s3, BUCKET, made["manifest_key"])


def test_every_entry_once_in_order_through_restarts_and_elections_and_pitr(rs, s3, launcher):
    layout = Layout("pitr", "p1", "c1")
    client = rs["client"]
    store = OplogStore(s3, BUCKET, layout, "rs0", compression="gzip")
    writer = Writer(rs["client"])
    writer.start()
    try:
        writer.wait_for(50)
        base = base_snapshot(rs["uri"], s3, layout)
        base_end = Timestamp(base.oplog_end["t"], base.oplog_end["i"])
        with Running(Follower(rs["uri"], store, base_end, FollowerOptions(**FAST))):
            writer.wait_for(150)
        events: list[dict] = []
        options = FollowerOptions(**FAST, on_event=events.append)
        with Running(Follower(rs["uri"], store, None, options)) as follower:
            writer.wait_for(100)
            primary = rs["client"].primary
            with pymongo.MongoClient(f"{primary[0]}:{primary[1]}", directConnection=True) as old:
                old.admin.command("replSetStepDown", 10, secondaryCatchUpPeriodSecs=5)
            wait_until(lambda: client.primary not in (None, primary), timeout=60,
                       what="another primary", seen=lambda: states(rs["nodes"]))  # fmt: skip
            writer.wait_for(100)
            read = wait_until(lambda: follower.member, timeout=30, what="the member read")
            node = next(n for n in rs["nodes"] if read.endswith(f":{n.port}"))
            node.stop(signal.SIGKILL)
            wait_until(lambda: follower.member not in (None, read), timeout=60,
                       what="the follower on another member", seen=lambda: events[-3:])  # fmt: skip
            writer.wait_for(100)
            back = launcher.start(*ARGS, dbpath=node.dbpath, port=node.port)
            rs["nodes"][rs["nodes"].index(node)] = back  # the set's member from now on
            writer.wait_for(100)
            writer.stop.set()
            writer.join(90)
            last = writer.history[-1][0]
            durable_to(store, last, "the last acknowledged write durable in the store")
    finally:
        writer.stop.set()
    source = [OpTime.of(e) for e in client.local["oplog.rs"].find({"ts": {"$gt": base_end}})]
    kept = stored(store)
    assert len(kept) == len(set(kept)), "an entry stored twice"
    assert kept == source[: len(kept)] and kept[-1].ts >= last, (kept[-3:], source[-3:])
    assert store.slices(), "no chunks were compacted into slices"
    assert len({o.term for o in kept}) >= 2, "the step-down's new term is not among the entries"
    assert any(e["event"] == "interrupted" and e["member"] == read for e in events), events

    covered = coverage(s3, BUCKET, layout)["replica_sets"]["rs0"]
    assert covered["gaps"] == []
    [window] = covered["windows"]
    assert (window["from"]["t"], window["from"]["i"]) == (base_end.time, base_end.inc)
    assert (window["until"]["t"], window["until"]["i"]) == (kept[-1].ts.time, kept[-1].ts.inc)

    # restored to an acknowledged write's timestamp, to a UTC second, to the last write: each
    # equals the shadow as it was then (a UTC second: after the last write of that second)
    after = [(ts, shadow) for ts, shadow in writer.history if ts > base_end]
    middle = after[len(after) // 2][0]
    second = datetime.datetime.fromtimestamp(after[len(after) // 3][0].time, datetime.UTC)
    for target, expected in (
        (middle, after[len(after) // 2][1]),
        (second, [s for ts, s in after if ts.time <= second.timestamp()][-1]),
        (after[-1][0], after[-1][1]),
    ):
        into = one_member_set(launcher)
        done = restore_to(into.uri, s3, BUCKET, layout, "rs0", target)
        assert done["snapshot_id"] == base.snapshot_id and done["oplog_applied"] > 0
        restored = {d["_id"]: d for d in into.client().app.items.find()}
        assert restored == expected, f"restored to {target}"
        into.stop()


def test_a_gap_is_recorded_with_its_bounds_and_an_fcv_change_ends_a_window(rs, s3):
    layout = Layout("pitr", "p1", "c2")
    store = OplogStore(s3, BUCKET, layout, "rs0")
    client = rs["client"]
    newest = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    with Running(Follower(rs["uri"], store, newest, FollowerOptions(**FAST))):
        client.app.gap.insert_many([{"_id": i} for i in range(20)])
        durable_to(store, client.app.gap.database.client.local["oplog.rs"].find_one(
            sort=[("$natural", -1)])["ts"], "the writes before the stop")  # fmt: skip
    before = store.checkpoint()
    for i in range(60):  # 3 MB through 1 MB oplogs, on every member (w: majority)
        client.app.big.insert_one({"_id": i, "pad": "y" * 50_000})
    assert client.local["oplog.rs"].find_one({"ts": before.ts}) is None
    base = base_snapshot(rs["uri"], s3, layout)
    fcv = client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
    lower = {"8.0": "7.0", "7.0": "6.0", "6.0": "5.0"}[
        fcv["featureCompatibilityVersion"]["version"]
    ]
    with Running(Follower(rs["uri"], store, None, FollowerOptions(**FAST))):
        client.app.gap.insert_one({"_id": "after the snapshot"})
        client.admin.command("setFeatureCompatibilityVersion", lower, confirm=True)
        client.app.gap.insert_one({"_id": "after the change"})
        durable_to(store, client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"],
                   "the writes after the FCV change")  # fmt: skip

    covered = coverage(s3, BUCKET, layout)["replica_sets"]["rs0"]
    [gap] = covered["gaps"]
    assert OpTime.from_dict(gap["after"]) == before
    resumed = OpTime.from_dict(gap["resumed"])
    objects = store.objects()
    first_after = next(o for o in objects if o.first.ts > before.ts)
    assert first_after.prev is None and first_after.first == resumed
    [window] = covered["windows"]
    assert window["snapshot_id"] == base.snapshot_id
    mark = covered["unrestorable"][0]  # the FCV document changes more than once
    assert "admin.system.version" in mark["reason"] and window["ends"].startswith("unrestorable")
    assert (window["until"]["t"], window["until"]["i"]) == (mark["prev"]["t"], mark["prev"]["i"])
    end = Timestamp(base.oplog_end["t"], base.oplog_end["i"])
    assert Timestamp(mark["at"]["t"], mark["at"]["i"]) > end


def test_an_idle_follower_saves_its_checkpoint_again_as_its_heartbeat(rs, s3):
    """Nothing new to store: the checkpoint's `saved_at` still moves on (what the platform reads
    to tell an idle follower from a stopped one), its `last` unchanged."""
    store = OplogStore(s3, BUCKET, Layout("pitr", "p1", "heartbeat"), "rs0")
    newest = rs["client"].local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    options = FollowerOptions(**FAST, heartbeat_seconds=0.3)
    seen: list[dict] = []

    def beat() -> bool:
        record = store.checkpoint_record()
        if record is None:
            return False
        seen.append(record)
        before = seen[-2] if len(seen) > 1 else None
        return before is not None and (before["last"], before["saved_at"]) != (
            record["last"], record["saved_at"]) and before["last"] == record["last"]  # fmt: skip

    with Running(Follower(rs["uri"], store, newest, options)):
        wait_until(beat, timeout=30, every=0.2, what="a checkpoint saved again with the same last",
                   seen=lambda: seen[-2:])  # fmt: skip


def test_a_store_unreachable_for_a_while_loses_nothing_and_opens_no_gap(rs, s3):
    layout = Layout("pitr", "p1", "c4")
    store = OplogStore(s3, BUCKET, layout, "rs0")
    client = rs["client"]
    newest = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    events: list[dict] = []
    options = FollowerOptions(**FAST, on_event=events.append)
    with Running(Follower(rs["uri"], store, newest, options)):
        client.app.outage.insert_one({"_id": "before"})
        durable_to(store, client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"],
                   "the write before the outage")  # fmt: skip
        # nothing listens there: connections are refused, as by a store that is down
        store.s3 = s3mod.client(f"http://127.0.0.1:{free_port()}", REGION, FAKE_KEY, FAKE_SECRET,
                                max_attempts=1, timeout=2)  # fmt: skip
        for i in range(20):
            client.app.outage.insert_one({"_id": i})
        wait_until(lambda: [e for e in events if e["event"] == "store_failed"], timeout=60,
                   what="the follower failing to store", seen=lambda: events[-3:])  # fmt: skip
        store.s3 = s3
        last = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
        durable_to(store, last, "the writes made during the outage")
    source = [OpTime.of(e) for e in client.local["oplog.rs"].find({"ts": {"$gt": newest}})]
    kept = stored(store)
    assert kept == source[: len(kept)] and kept[-1].ts >= last
    assert store.gaps() == [] and not [e for e in events if e["event"] == "gap"]


def test_the_platform_starts_a_follower_that_an_agent_restart_resumes_and_stops_it(
    rs, s3, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY)  # the host's own credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    command = FollowOplog()
    with pytest.raises(BadArguments, match="action: one of start, stop, status"):
        command.check({})
    asked = {"action": "start", "bucket": BUCKET, "endpoint_url": s3.meta.endpoint_url,
             "region": REGION, "prefix": "cmd", "project_id": "p1", "cluster_id": "c3",
             "chunk_seconds": 0.3}  # fmt: skip
    with pytest.raises(BadArguments, match=r"start: a BSON timestamp \{t, i\}"):
        command.check({**asked, "start": {"t": "yesterday"}})
    with pytest.raises(BadArguments, match="unknown argument"):
        command.check({**asked, "secret_access_key": "x"})
    config = AgentConfig(url="http://platform", token_file=tmp_path / "token",
                         queue_dir=tmp_path / "queue", mongodb_uris=(rs["uri"],),
                         commands_allow=("oplog_follow",))  # fmt: skip
    context = Context(config)
    with pytest.raises(FollowerError, match="give the start"):
        command.run(command.check(asked), context)  # nothing stored yet, no start given

    client = rs["client"]
    newest = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    start = command.check({**asked, "start": {"t": newest.time, "i": newest.inc}})
    started = command.run(start, context)
    assert started["started"] and started["followers"][0]["key"] == "c3/rs0"
    assert command.run(start, context)["started"] is False, "a second follower of the same set"
    client.app.cmd.insert_many([{"_id": i} for i in range(10)])
    last = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    status = command.check({"action": "status", "cluster_id": "c3"})

    def durable() -> bool:
        [shown] = command.run(status, context)["followers"]
        return shown["last_durable"] is not None and (
            Timestamp(shown["last_durable"]["t"], shown["last_durable"]["i"]) >= last
        )

    wait_until(durable, timeout=60, what="the command's follower storing the inserts",
               seen=lambda: command.run(status, context))  # fmt: skip

    # The agent stops and starts again: its follower resumes from the checkpoint by itself.
    follow.shutdown(CommandRegistry([command]), config)
    client.app.cmd.insert_many([{"_id": i} for i in range(10, 20)])
    last = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    command = FollowOplog()
    follow.resume(CommandRegistry([command]), config, threading.Event()).join(30)
    [resumed] = command.run(status, context)["followers"]
    assert resumed["key"] == "c3/rs0" and resumed["running"]
    wait_until(durable, timeout=60, what="the resumed follower storing what came meanwhile",
               seen=lambda: command.run(status, context))  # fmt: skip

    [stopped] = command.run(command.check({"action": "stop", "cluster_id": "c3"}), context)[
        "followers"
    ]
    assert stopped["running"] is False and stopped["error"] == ""
    assert command.run(status, context)["followers"] == []
    again = FollowOplog()
    follow.resume(CommandRegistry([again]), config, threading.Event()).join(30)
    assert again.run(status, context)["followers"] == [], "stopped: not resumed"
    store = OplogStore(s3, BUCKET, Layout("cmd", "p1", "c3"), "rs0")
    source = [OpTime.of(e) for e in client.local["oplog.rs"].find({"ts": {"$gt": newest}})]
    kept = stored(store)
    assert kept == source[: len(kept)] and kept[-1].ts >= last


def test_entries_the_set_rolls_back_are_set_aside_and_following_goes_on(rs, s3, launcher):
    """The member read takes writes no other member gets (they are down), and is killed; the
    others come back and elect one of them: the follower had stored those writes, finds them
    absent from the member it reads next, and moves them to rolledback/. Last in the module:
    the old primary comes back and rolls them back too."""
    client = rs["client"]
    primary = "{}:{}".format(*client.primary)
    [old] = [n for n in rs["nodes"] if primary.endswith(f":{n.port}")]
    layout = Layout("pitr", "p1", "c5")
    store = OplogStore(s3, BUCKET, layout, "rs0")
    newest = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
    events: list[dict] = []
    options = FollowerOptions(**FAST, member=primary, on_event=events.append)
    with Running(Follower(rs["uri"], store, newest, options)):
        client.app.rollback.insert_one({"_id": "kept"})
        # killed, not paused: a paused member would still read a reply already on its socket
        others = [n for n in rs["nodes"] if n is not old]
        for node in others:
            node.stop(signal.SIGKILL)
        alone = old.client(w=1)
        alone.app.rollback.insert_many([{"_id": f"doomed {i}"} for i in range(3)])
        doomed = alone.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
        durable_to(store, doomed, "the writes the set will roll back")
        old.stop(signal.SIGKILL)
        others = [launcher.start(*ARGS, dbpath=n.dbpath, port=n.port) for n in others]
        rs["nodes"][:] = [old, *others]
        elected = others[0].client()
        wait_until(lambda: elected.admin.command("replSetStepUp"), timeout=60,
                   what="another member elected", retry=pymongo.errors.OperationFailure,
                   seen=lambda: states(others))  # fmt: skip
        wait_until(lambda: [e for e in events if e["event"] == "rollback" and e["rolled_back"]],
                   timeout=60, what="the follower finding the rollback",
                   seen=lambda: [e["event"] for e in events])  # fmt: skip
        client.app.rollback.insert_one({"_id": "after"})
        # the new term may reuse the rolled-back entries' timestamps: compared with their terms
        after = OpTime.of(elected.local["oplog.rs"].find_one(sort=[("$natural", -1)]))
        wait_until(lambda: (c := store.checkpoint()) is not None and (c == after
                                                                      or c.ts > after.ts),
                   timeout=60, what="the write after the election durable",
                   seen=store.checkpoint)  # fmt: skip
    back = rs["nodes"][0] = launcher.start(*ARGS, dbpath=old.dbpath, port=old.port)
    rejoined = back.client()
    wait_until(lambda: rejoined.admin.command("hello").get("secondary")
               and rejoined.app.rollback.find_one({"_id": "doomed 0"}) is None, timeout=90,
               what="the old primary rolled back, a secondary again",
               retry=pymongo.errors.PyMongoError, seen=lambda: states(rs["nodes"]))  # fmt: skip

    source = [OpTime.of(e) for e in elected.local["oplog.rs"].find({"ts": {"$gt": newest}})]
    kept = stored(store)
    # the elected member's oplog, without the rolled-back entries, and the write after
    assert kept == source[: len(kept)] and after in kept
    aside = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{store.root}/rolledback/")["Contents"]
    point = OpTime(doomed)
    held = [e["o"].get("_id") for a in aside
            for e in store.entries(Stored(a["Key"], point, point, None, 0))]  # fmt: skip
    assert {f"doomed {i}" for i in range(3)} <= set(held)


def collections_of(db: Any) -> dict[str, dict]:
    """What a user compares: per collection, its documents and its indexes' names."""
    return {
        name: {
            "documents": sorted(db[name].find(), key=str),
            "indexes": sorted(i["name"] for i in db[name].list_indexes()),
        }
        for name in sorted(db.list_collection_names())
    }


def test_restores_to_the_moments_between_commands_hold_what_was_there_then(rs, s3, launcher):
    """Index, collection and rename commands after the base snapshot, a collection of the
    snapshot dropped and made again: a restore to the entry after each holds what the source
    held then, field by field, and nothing after."""
    layout = Layout("pitr", "p1", "c6")
    client = rs["client"]
    db = client.pitrcmd
    db.a.insert_many([{"_id": i, "v": i} for i in range(5)])
    base = base_snapshot(rs["uri"], s3, layout)
    base_end = Timestamp(base.oplog_end["t"], base.oplog_end["i"])
    moments: list[tuple[Timestamp, dict]] = []

    def moment() -> None:
        newest = client.local["oplog.rs"].find_one(sort=[("$natural", -1)])["ts"]
        moments.append((newest, collections_of(db)))

    store = OplogStore(s3, BUCKET, layout, "rs0")
    with Running(Follower(rs["uri"], store, base_end, FollowerOptions(**FAST))):
        db.a.create_index("v", name="by_v")
        db.a.update_one({"_id": 1}, {"$set": {"v": 100}})
        moment()
        db.create_collection("b")
        db.b.insert_many([{"_id": i, "w": [i, {"x": i}]} for i in range(3)])
        moment()
        db.b.rename("c")
        db.c.delete_one({"_id": 0})
        moment()
        db.a.drop()
        db.a.insert_one({"_id": "again"})
        moment()
        durable_to(store, moments[-1][0], "the last command durable")
    for target, expected in moments:
        into = one_member_set(launcher)
        restore_to(into.uri, s3, BUCKET, layout, "rs0", target)
        assert collections_of(into.client().pitrcmd) == expected, f"restored to {target}"
        into.stop()
