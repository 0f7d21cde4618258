"""Monitoring in the console through Flask's test client, from samples sent to the ingest API as
agents send them: Home on the overview (hosts and MongoDB processes by state, the top five by
CPU, memory, disk, connections and operations), the hosts page's agent columns, a host's page,
and a cluster's topology (page and API) with each member's state, health and lag."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.webui.test_web import api_token, setup_admin
from webui.services import projects, topology
from webui.services.audit import Actor
from webui.store import Store

SET = ["10.7.0.1:27017", "10.7.0.2:27017", "10.7.0.3:27017"]
ROOT_FS = {"mountpoint": "/", "device": "sda1", "fstype": "ext4"}


def sample(name: str, value: float, at: float, **labels: str) -> dict[str, Any]:
    return {"name": name, "labels": labels, "value": value, "kind": "gauge", "timestamp": at}


def host_round(at: float, busy: float, used: float, disk: float) -> list[dict[str, Any]]:
    """A host's round: 4 CPUs `busy` of the time, `used` of 8 GiB memory, a filesystem `disk`
    full."""
    return [
        sample("host_cpu_seconds_per_second", 4 * busy * 0.75, at, mode="user"),
        sample("host_cpu_seconds_per_second", 4 * busy * 0.25, at, mode="system"),
        sample("host_cpu_seconds_per_second", 4 * (1 - busy), at, mode="idle"),
        sample("host_memory_total_bytes", 8 * 2**30, at),
        sample("host_memory_available_bytes", 8 * 2**30 * (1 - used), at),
        sample("host_filesystem_size_bytes", 100e9, at, **ROOT_FS),
        sample("host_filesystem_used_bytes", 100e9 * disk, at, **ROOT_FS),
    ]  # fmt: skip


def mongod_round(at: float, me: str, states: dict[str, int], connections: int, ops: float,
                 lag: dict[str, float]) -> list[dict[str, Any]]:  # fmt: skip
    """One member's round: its serverStatus figures and replSetGetStatus as it sees the set."""
    mine = {"instance": me}
    out = [
        sample("mongodb_up", 1, at, **mine),
        sample("mongodb_version_info", 1, at, version="7.0.14", process="mongod", **mine),
        sample("mongodb_connections", connections, at, state="current", **mine),
        sample("mongodb_op_counters_per_second", ops, at, type="insert", **mine),
        sample("mongodb_op_counters_per_second", 1.0, at, type="query", **mine),
        sample("mongodb_replset_my_state", states[me], at, set="rs0", **mine),
    ]
    for member, state in states.items():
        out += [
            sample("mongodb_replset_member_state", state, at, set="rs0", member=member, **mine),
            sample("mongodb_replset_member_health", 1, at, set="rs0", member=member, **mine),
            sample("mongodb_replset_member_replication_lag_seconds", lag.get(member, 0.0), at,
                   set="rs0", member=member, **mine),
        ]  # fmt: skip
    return out


class Platform:
    """A set-up platform with a project of four hosts (db1-db3 run the set, db4 has no agent)."""

    def __init__(self, client: FlaskClient, store: Store) -> None:
        self.client, self.store = client, store
        setup_admin(client)
        self.auth = api_token(client)
        self.project = self.post("/projects", {"name": "shop"})
        self.hosts = {
            f"db{n}": self.post(f"/projects/{self.project['id']}/hosts",
                                {"name": f"db{n}", "address": f"10.7.0.{n}"})["id"]
            for n in range(1, 5)
        }  # fmt: skip
        self.tokens = {
            name: self.post(f"/projects/{self.project['id']}/hosts/{host_id}/agent-token")["token"]
            for name, host_id in self.hosts.items()
            if name != "db4"
        }
        self.seq = 0

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.client.post(f"/api/v1{path}", json=body or {}, headers=self.auth)
        assert answer.status_code in (200, 201), answer.get_data(as_text=True)
        return answer.get_json()

    def send(self, host: str, samples: list[dict[str, Any]], at: float) -> None:
        self.seq += 1
        batch = {"stream": "ab" * 8, "seq": self.seq, "time": at, "samples": samples}
        answer = self.client.post(
            "/api/v1/agent/samples", json={"agent": {"version": "0.1.0"}, "batches": [batch]},
            headers={"Authorization": f"Bearer {self.tokens[host]}"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.get_data(as_text=True)

    def set_reports(self, primary: int, at: float) -> None:
        """Every member's agent reports the set with member `primary` (0-2) PRIMARY."""
        states = {m: 1 if i == primary else 2 for i, m in enumerate(SET)}
        lag = {m: 0.0 if i == primary else 1.5 * i for i, m in enumerate(SET)}
        figures = [(0.9, 0.5, 0.2, 40, 100.0), (0.2, 0.8, 0.9, 7, 5.0), (0.5, 0.1, 0.5, 3, 0.5)]
        for i, member in enumerate(SET):
            busy, used, disk, connections, ops = figures[i]
            rounds = host_round(at, busy, used, disk)
            rounds += mongod_round(at, member, states, connections, ops, lag)
            self.send(f"db{i + 1}", rounds, at)

    def text(self, path: str) -> str:
        answer = self.client.get(path)
        assert answer.status_code == 200, answer.status_code
        return answer.get_data(as_text=True)


@pytest.fixture
def platform(client: FlaskClient, store: Store) -> Platform:
    return Platform(client, store)


def cells(page: str, section: str) -> list[list[str]]:
    """The rows of the table inside the element with id `section`, as text."""
    part = page.split(f'id="{section}"', 1)[1].split("</table>", 1)[0]
    rows = [re.findall(r"<td>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", part, re.S)]  # fmt: skip
    return [[" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in r] for r in rows if r]


def test_home_shows_hosts_and_nodes_by_state_and_the_busiest(platform: Platform) -> None:
    platform.set_reports(primary=0, at=time.time())
    page = platform.text("/")
    assert cells(page, "hosts-by-state") == [["no agent", "1"], ["ok", "3"]]
    assert cells(page, "nodes-by-state") == [["PRIMARY", "1"], ["SECONDARY", "2"]]
    top = {key: cells(page, f"top-{key}") for key in
           ("cpu", "memory", "disk", "connections", "operations")}  # fmt: skip
    assert [r[0] for r in top["cpu"]] == ["db1", "db3", "db2"]
    assert top["cpu"][0][1] == "90 %"
    assert [r[0] for r in top["memory"]] == ["db2", "db1", "db3"]
    assert [r[0] for r in top["disk"]] == ["db2", "db3", "db1"] and top["disk"][0][1] == "90 %"
    assert top["connections"] == [["10.7.0.1:27017 on db1", "40"], ["10.7.0.2:27017 on db2", "7"],
                                  ["10.7.0.3:27017 on db3", "3"]]  # fmt: skip
    assert top["operations"][0] == ["10.7.0.1:27017 on db1", "101"]
    assert f'href="/hosts/{platform.hosts["db2"]}"' in page  # a click to the host's page


def test_the_hosts_page_shows_each_agent_version_last_seen_and_state(
    platform: Platform,
) -> None:
    platform.set_reports(primary=0, at=time.time())
    rows = {r[1]: r for r in cells(platform.text("/hosts"), "host-table")}
    assert rows["db1"][0] == "ok" and rows["db1"][6] == "0.1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows["db1"][7])
    assert rows["db4"][0] == "no agent" and rows["db4"][6] == "" and rows["db4"][7] == "never"
    at = time.time()
    batch = mongod_round(at, SET[2], {SET[2]: 2}, 1, 0.0, {})
    platform.client.post(
        "/api/v1/agent/samples", headers={"Authorization": f"Bearer {platform.tokens['db3']}"},
        json={"agent": {"version": "0.1.1"}, "batches": [{"stream": "ef" * 8, "seq": 1,
              "time": at, "samples": batch, "errors": {"mongodb 10.7.0.3:27017": ["refused"]}}]},
    )  # fmt: skip
    rows = {r[1]: r for r in cells(platform.text("/hosts"), "host-table")}
    assert rows["db3"][0] == "errors" and rows["db3"][6] == "0.1.1"
    page = platform.text(f"/hosts/{platform.hosts['db1']}")
    assert 'id="agent-state">ok<' in page and "10.7.0.1:27017 (PRIMARY)" in page
    assert f'data-api="/api/v1/projects/{platform.project["id"]}/metrics"' in page
    assert platform.client.get("/hosts/nope").status_code == 404


def test_the_topology_follows_the_members_reports(platform: Platform) -> None:
    admin = Actor(None, "admin", "admin", "test")
    cluster = projects.create_cluster(
        platform.store, admin, platform.project["id"], "orders",
        [platform.hosts[f"db{n}"] for n in (1, 2, 3)], "deploy_replicaset.yml",
    )  # fmt: skip
    path = f"/api/v1/clusters/{cluster['_id']}/topology"
    empty = platform.client.get(path, headers=platform.auth).get_json()
    assert empty["sets"] == []
    assert "No agent reports" in platform.text(f"/clusters/{cluster['_id']}")
    at = time.time()
    platform.set_reports(primary=0, at=at)
    answer = platform.client.get(path, headers=platform.auth).get_json()
    (rs0,) = answer["sets"]
    assert rs0["name"] == "rs0" and rs0["primary"] == SET[0]
    members = {m["address"]: m for m in rs0["members"]}
    assert [members[a]["state"] for a in SET] == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert [members[a]["host"] for a in SET] == ["db1", "db2", "db3"]
    assert members[SET[2]]["lag_seconds"] == 3.0 and members[SET[1]]["health"] == "ok"
    assert members[SET[0]]["connections"] == 40
    page = platform.text(f"/clusters/{cluster['_id']}")
    for address, state in zip(SET, ["PRIMARY", "SECONDARY", "SECONDARY"], strict=True):
        node = page.split(f'data-address="{address}"', 1)[1]
        assert re.match(rf'>\s*<span class="node-state">{state}</span>', node), node[:80]
    assert '<option value="10.7.0.2:27017"' in page  # the charts' process choice
    assert f'<a href="/hosts/{platform.hosts["db3"]}">db3</a>' in page
    # An election: the second member's agent reports first that it is primary; the old primary
    # still says PRIMARY from an older round until its own report, then SECONDARY.
    platform.send("db2", mongod_round(at + 10, SET[1], {SET[0]: 2, SET[1]: 1, SET[2]: 2}, 7, 5.0,
                                      {}), at + 10)  # fmt: skip
    answer = platform.client.get(path, headers=platform.auth).get_json()
    states = {m["address"]: m["state"] for m in answer["sets"][0]["members"]}
    assert answer["sets"][0]["primary"] == SET[1] and states[SET[1]] == "PRIMARY"
    assert states[SET[0]] == "SECONDARY"  # the new primary's view is fresher than its own
    other = platform.client.get(path.replace(cluster["_id"], "x" * 32), headers=platform.auth)
    assert other.status_code == 404


def latest_of(host_id: str, *samples: dict[str, Any]) -> dict[str, Any]:
    """A host's entry of metrics.latest, from samples as agents send them."""
    return {"host_id": host_id, "t": max(s["timestamp"] for s in samples), "samples": [
        {"name": s["name"], "labels": s["labels"], "value": s["value"], "t": s["timestamp"]}
        for s in samples
    ]}  # fmt: skip


def test_a_sharded_topology_with_a_member_down_and_one_not_reported() -> None:
    at = 1_800_000_000.0
    h1 = {"_id": "h1", "name": "db1", "address": "10.0.0.1"}
    h2 = {"_id": "h2", "name": "db2", "address": "10.0.0.2"}
    cfg = {"10.0.0.1:27019": 1, "10.0.0.2:27019": 2}
    shard = {"10.0.0.1:27018": 1, "10.0.0.2:27018": 8}

    def member(me: str, set_name: str, states: dict[str, int], when: float) -> list:
        out = [
            sample("mongodb_up", 1, when, instance=me),
            sample("mongodb_replset_my_state", states[me], when, set=set_name, instance=me),
        ]
        for address, state in states.items():
            labels = {"set": set_name, "member": address, "instance": me}
            out += [
                sample("mongodb_replset_member_state", state, when, **labels),
                sample("mongodb_replset_member_health", int(state != 8), when, **labels),
            ]
        return out

    router = [sample("mongodb_up", 1, at, instance="10.0.0.1:27017"),
              sample("mongodb_version_info", 1, at, version="7.0.14", process="mongos",
                     instance="10.0.0.1:27017")]  # fmt: skip
    # db2's shard member answered as SECONDARY a minute ago; now its agent finds it down.
    down = [*member("10.0.0.2:27018", "shard1", {**shard, "10.0.0.2:27018": 2}, at - 60),
            sample("mongodb_up", 0, at, instance="10.0.0.2:27018")]  # fmt: skip
    latest = [
        latest_of("h1", *member("10.0.0.1:27019", "cfg", cfg, at),
                  *member("10.0.0.1:27018", "shard1", shard, at), *router),
        latest_of("h2", *member("10.0.0.2:27019", "cfg", cfg, at), *down),
    ]  # fmt: skip
    described = [
        {"address": "10.0.0.1", "port": 27020, "replica_set": "shard2"},
        {"address": "10.0.0.2", "port": 27020, "replica_set": "shard2"},
        {"address": "10.0.0.1", "port": 27019, "replica_set": "cfg"},
    ]
    cluster = {"_id": "c1", "name": "events", "topology": "sharded"}
    drawn = topology.build(cluster, [h1, h2], described, latest, at + 5)
    sets = {s["name"]: s for s in drawn["sets"]}
    assert [s["name"] for s in drawn["sets"]] == ["cfg", "shard1", "shard2"]
    assert sets["cfg"]["role"] == "config servers" and sets["shard1"]["role"] == "shard"

    def states(name: str) -> list[tuple[str, str, str, str]]:
        return [(m["address"], m["host"], m["state"], m["health"]) for m in sets[name]["members"]]

    assert states("cfg") == [("10.0.0.1:27019", "db1", "PRIMARY", "ok"),
                             ("10.0.0.2:27019", "db2", "SECONDARY", "ok")]  # fmt: skip
    assert states("shard1") == [("10.0.0.1:27018", "db1", "PRIMARY", "ok"),
                                ("10.0.0.2:27018", "db2", "DOWN", "down")]  # fmt: skip
    assert states("shard2") == [("10.0.0.1:27020", "db1", "not reported", "unknown"),
                                ("10.0.0.2:27020", "db2", "not reported", "unknown")]  # fmt: skip
    assert sets["shard2"]["primary"] is None
    (mongos,) = drawn["routers"]
    assert (mongos["address"], mongos["host"], mongos["state"]) == (
        "10.0.0.1:27017",
        "db1",
        "ROUTER",
    )
    assert [p["instance"] for p in topology.processes(drawn)] == [
        "10.0.0.1:27019",
        "10.0.0.2:27019",
        "10.0.0.1:27018",
        "10.0.0.2:27018",
        "10.0.0.1:27017",
    ]
    assert [h["agent"]["state"] for h in drawn["hosts"]] == ["no agent", "no agent"]
    h1["agent"] = {"last_seen": at, "version": "0.1.0", "state": "ok"}
    later = topology.build(cluster, [h1, h2], described, latest, at + topology.STALE_AFTER + 1)
    assert all(m["stale"] for m in later["sets"][0]["members"])
    assert later["hosts"][0]["agent"]["state"] == "silent"  # no report for over a minute
