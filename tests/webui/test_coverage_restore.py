"""Point-in-time restore from the platform, through the agents' own commands (backup,
oplog_follow, restore), the platform's API and console, moto's S3 on 127.0.0.1 and one-member
sets of the mongod double: a snapshot, continuous backup turned on from the API, writes with a
shadow of what each acknowledged write left; a moment chosen between them is checked against the
coverage, the cluster restored to it into another cluster equals the shadow at that moment (a
collection created after the snapshot included, nothing written after it), and the verification
report and the audit log say the moment and what was replayed. A moment past the coverage is
refused naming the windows; a UTC second from the wizard restores every write of that second."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest
from bson.timestamp import Timestamp

from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
from tests.waiting import wait_until
from tests.webui.test_backups import BUCKET, Backups, moto, platform  # noqa: F401 (fixtures)
from tests.webui.test_restores import Agent, aws_env, no_secret, replica_set  # noqa: F401
from tests.webui.test_web import csrf, login
from wap_agent.backup import manifest as mf
from wap_agent.backup import pitr
from wap_agent.backup.slices import OplogStore
from wap_agent.commands import BadArguments
from wap_agent.commands.backup import Backup, Restore
from wap_agent.commands.follow import FollowOplog
from webui.services import backups, projects
from webui.services.audit import Actor

SNAPSHOT_AT = 40  # writes before the snapshot


class Writes:
    """Inserts, updates and deletes on app.items (and a collection made on the way), each
    acknowledged write's oplog timestamp with the shadow of app after it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.shadow: dict[str, dict[Any, dict]] = {"items": {}}
        self.history: list[tuple[Timestamp, dict[str, dict[Any, dict]]]] = []

    def apply(self, first: int, count: int) -> None:
        app, oplog = self.client.app, self.client.local["oplog.rs"]
        for n in range(first, first + count):
            key = n % 23
            if n % 7 == 3:
                app.items.delete_one({"_id": key})
                self.shadow["items"].pop(key, None)
            elif n % 7 == 5:
                app.items.update_one({"_id": key}, {"$inc": {"seen": 1}, "$set": {"n": n}})
                if key in self.shadow["items"]:
                    doc = self.shadow["items"][key]
                    doc.update(seen=doc.get("seen", 0) + 1, n=n)
            else:
                doc = {"_id": key, "n": n, "tag": f"t{n % 4}"}
                app.items.replace_one({"_id": key}, doc, upsert=True)
                self.shadow["items"][key] = dict(doc)
            if n % 10 == 9 and n >= SNAPSHOT_AT:  # a collection made after the snapshot
                app.later.insert_one({"_id": n, "at": n})
                self.shadow.setdefault("later", {})[n] = {"_id": n, "at": n}
            # the set has one member: its newest oplog entry is the last write's
            newest = oplog.find_one(sort=[("$natural", -1)])["ts"]
            now = {k: {i: dict(d) for i, d in v.items()} for k, v in self.shadow.items()}
            self.history.append((newest, now))


def restored(client: Any) -> dict[str, dict[Any, dict]]:
    app = client.app
    return {name: {d["_id"]: d for d in app[name].find()} for name in app.list_collection_names()}


def target_cluster(platform: Backups, name: str, uri: str, tmp: Path) -> tuple[Agent, dict]:  # noqa: F811
    """A host with its agent, and a cluster on it to restore into."""
    project = platform.project["id"]
    host = platform.api("POST", f"/projects/{project}/hosts",
                        json={"name": name, "address": "10.0.0.2"}).get_json()  # fmt: skip
    token = platform.api("POST", f"/projects/{project}/hosts/{host['id']}/agent-token")
    agent = Agent(platform, token.get_json()["token"], uri, tmp)
    agent.alive()
    admin = Actor(None, "admin", "admin", "tests")
    cluster = projects.create_cluster(platform.store, admin, project, f"{name}-copy",
                                      [host["id"]], "steps.yml")  # fmt: skip
    return agent, cluster


def test_a_cluster_restored_to_a_moment_equals_the_writes_up_to_it(
    platform: Backups,  # noqa: F811 (the fixture)
    launcher: Any,  # noqa: F811 (the fixture)
    aws_env: None,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    source, source_uri = replica_set(launcher, "rs0")
    writes = Writes(source)
    writes.apply(0, SNAPSHOT_AT)
    cluster = platform.cluster["_id"]
    assert platform.policy(compression="zstd").status_code == 200
    agent = Agent(platform, platform.token, source_uri, tmp_path / "db1")
    agent.alive()
    assert platform.api("POST", f"/clusters/{cluster}/backups").status_code == 202
    assert agent.run(Backup())["state"] == "succeeded"
    backups.tick(platform.store, platform.settings)
    [base] = platform.catalogue()["snapshots"]
    assert base["status"] == "done"

    on = platform.api("POST", f"/clusters/{cluster}/continuous-backup", json={"action": "start"})
    assert on.status_code == 202, on.get_json()
    follow = FollowOplog()
    try:
        assert agent.run(follow)["state"] == "succeeded"
        writes.apply(SNAPSHOT_AT, 120)
        moment, shadow = writes.history[len(writes.history) * 3 // 4]
        assert "later" in shadow, "the moment comes after app.later was made"
        writes.apply(160, 40)  # after the moment: none of these in the restore
        second = writes.history[-1][0].time
        wait_until(lambda: time.time() >= second + 1, timeout=5, what="the next second")
        writes.apply(200, 1)  # a second later: the one before is then whole in the store
        last = writes.history[-1][0]
        layout = mf.Layout("wap", platform.project["id"], cluster)
        oplog = OplogStore(platform.s3, BUCKET, layout, "rs0")
        wait_until(lambda: (c := oplog.checkpoint()) is not None and c.ts >= last, timeout=60,
                   what="the last write durable in the store", seen=oplog.checkpoint)  # fmt: skip
    finally:
        follow.shutdown()

    at = f"Timestamp({moment.time}, {moment.inc})"
    checked = platform.api("GET", f"/clusters/{cluster}/backup-coverage/target?at={at}")
    assert checked.status_code == 200, checked.get_json()
    assert checked.get_json()["replica_sets"]["rs0"]["snapshot_id"] == base["id"]

    copied, copied_uri = replica_set(launcher, "rs1")
    other, copy = target_cluster(platform, "db2", copied_uri, tmp_path / "2")
    path = f"/clusters/{cluster}/point-in-time-restores"
    future = Timestamp(last.time + 3600, 1)
    late = platform.api("POST", path, json={"target": "cluster", "cluster_id": copy["_id"],
                                            "at": f"{future.time}:{future.inc}"})  # fmt: skip
    assert late.status_code == 422, late.get_json()
    assert "no restorable window of rs0 holds the target" in late.get_json()["message"]
    assert f"{base['oplog']['end']['t']}:{base['oplog']['end']['i']}" in late.get_json()["message"]
    refused = platform.audit("backup.restore")[0]
    assert (refused["outcome"], refused["detail"]["at"]) == ("refused", f"{future.time}:1")

    started = platform.api("POST", path, json={"target": "cluster", "cluster_id": copy["_id"],
                                               "at": at})  # fmt: skip
    assert started.status_code == 202, started.get_json()
    restore = started.get_json()
    assert restore["snapshot_id"] == base["id"]
    assert restore["point_in_time"]["until"] == {"t": moment.time, "i": moment.inc}
    assert other.run(Restore())["state"] == "succeeded"
    assert restore["id"] in backups.tick(platform.store, platform.settings)["restored"]
    done = platform.api("GET", f"/restores/{restore['id']}").get_json()
    assert done["status"] == "done", done["verification"]
    report = done["verification"]
    assert report["equal"] and report["point_in_time"]["at"] == at
    assert report["point_in_time"]["followed_entries"] > 0
    assert report["point_in_time"]["last"]["t"] == moment.time
    assert report["point_in_time"]["last"]["i"] == moment.inc
    assert f"(up to Timestamp({moment.time}, {moment.inc}) included)" in report["note"]
    rows = {r["ns"]: r for r in report["collections"]}
    assert rows["app.later"]["changed_by_replay"] == [pitr.CREATED]
    assert restored(copied) == shadow

    said = [e for e in platform.audit("backup.restore") if e["outcome"] != "refused"]
    assert {e["action"] for e in said} == {"backup.restore", "backup.restore.done"}
    assert all(e["detail"]["at"] == at for e in said)
    assert login(platform.client, "admin") == 302
    page = platform.client.get(f"/restores/{restore['id']}").get_data(as_text=True)
    assert 'id="restore-moment"' in page and at in page and "equal to the snapshot" in page
    no_secret(started, checked, late)

    # the wizard on the snapshot's page, a UTC second: every write of that second, none after
    expected = [s for ts, s in writes.history if ts.time <= second][-1]
    utc = datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    again, again_uri = replica_set(launcher, "rs2")
    wizard, into = target_cluster(platform, "db3", again_uri, tmp_path / "3")
    snapshot_path = f"/snapshots/{base['id']}"
    prefilled = platform.client.get(f"{snapshot_path}?at={utc}").get_data(as_text=True)
    assert f'name="at" value="{utc}"' in prefilled
    form = {"csrf_token": csrf(platform.client, snapshot_path), "target": "cluster",
            "cluster_id": into["_id"], "at": utc}  # fmt: skip
    posted = platform.client.post(f"{snapshot_path}/restore", data=form)
    assert posted.status_code == 302, posted.get_data(as_text=True)
    assert wizard.run(Restore())["state"] == "succeeded"
    backups.tick(platform.store, platform.settings)
    restore_id = posted.headers["Location"].rsplit("/", 1)[1]
    by_wizard = platform.api("GET", f"/restores/{restore_id}").get_json()
    assert by_wizard["status"] == "done", by_wizard["verification"]
    assert by_wizard["point_in_time"]["until"] == {"t": second, "i": 0xFFFFFFFF}
    assert restored(again) == expected


@pytest.mark.parametrize("at", ["", "yesterday", "2026-05-28 20:37:30" + "x" * 5000])
def test_a_moment_is_required_and_checked_before_anything_runs(
    platform: Backups,  # noqa: F811 (the fixture)
    at: str,
) -> None:
    assert platform.policy().status_code == 200
    answer = platform.api("POST", f"/clusters/{platform.cluster['_id']}/point-in-time-restores",
                          json={"target": "same", "confirm": "orders", "at": at})  # fmt: skip
    assert answer.status_code == 422 and "a UTC time" in str(answer.get_json())
    assert len(answer.get_data()) < 2000  # a long moment is not echoed whole
    assert not platform.store.db.restores.find_one({})


def test_the_agents_restore_takes_a_moment_only_whole_and_names_what_the_replay_wrote() -> None:
    where = {"bucket": BUCKET, "manifest_key": "wap/p/c/snapshots/x/manifest.json"}
    assert Restore().check({**where, "until": {"t": 5, "i": 7}})["until"] == {"t": 5, "i": 7}
    for wrong in ({"t": 5}, {"t": "5", "i": 1}, {"t": True, "i": 1}, [5, 1]):
        with pytest.raises(BadArguments, match="until: the last oplog entry"):
            Restore().check({**where, "until": wrong})
    with pytest.raises(BadArguments, match="no selection"):
        Restore().check({**where, "until": {"t": 5, "i": 7}, "include": ["app.*"]})

    assert pitr.namespaces_of({"op": "i", "ns": "app.items", "o": {}}) == ["app.items"]
    assert pitr.namespaces_of({"op": "n", "ns": "", "o": {"msg": "x"}}) == []
    assert pitr.namespaces_of({"op": "c", "ns": "app.$cmd", "o": {"create": "later"}}) == [
        "app.later"
    ]
    renamed = {"op": "c", "ns": "admin.$cmd", "o": {"renameCollection": "app.a", "to": "app.b"}}
    assert pitr.namespaces_of(renamed) == ["app.a", "app.b"]
    transaction = {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "u", "ns": "shop.orders", "o": {}}, {"op": "i", "ns": "admin.system.users"},
        {"op": "i", "ns": "shop.system.profile"}]}}  # fmt: skip
    assert pitr.namespaces_of(transaction) == ["shop.orders"]
