"""A cluster's topology as its agents see it now: replica sets (config servers and shards of a
sharded cluster) with each member's state, health and lag, and the routers.

Built from the latest samples of the agents on the cluster's hosts (webui.services.metrics.latest)
joined with the members the cluster describes (webui.services.deployments.members). replSetGetStatus
is read by every member's agent: a set's members are taken from the view of the member that says
it is primary (the freshest one, if two still do after an election), else from the freshest view;
each member's own `myState` wins over another's view of it when it is fresher. A member the
cluster describes and no agent reports is shown with state `not reported`; one reported and not
described (a member added by hand) is shown too. A view older than STALE_AFTER seconds is marked
stale: its agent stopped sending.

The cluster page polls `GET /api/v1/clusters/{id}/topology` every few seconds rather than being
pushed over Socket.IO: samples arrive at the agents' interval (10 s by default) through web
processes that publish nothing, so a push would need every ingest request to compute and publish
each cluster's topology whether or not anyone looks; a poll costs one indexed read of the latest
batches per open page, needs no room authorisation of its own, and picks up after a restart of
the platform without anything to resubscribe.
"""

from __future__ import annotations

from typing import Any

from webui.services import cloud, deployments, metrics, projects
from webui.services.audit import Actor
from webui.store import Store, now

STALE_AFTER = 60.0
# A replica set sample this much older than its process's latest `mongodb_up` is from an earlier
# round (the two are read a moment apart in one round).
ROUND_SLACK = 30.0
# replSetGetStatus's member states (https://www.mongodb.com/docs/manual/reference/replica-states/).
STATES = {
    0: "STARTUP", 1: "PRIMARY", 2: "SECONDARY", 3: "RECOVERING", 5: "STARTUP2", 6: "UNKNOWN",
    7: "ARBITER", 8: "DOWN", 9: "ROLLBACK", 10: "REMOVED",
}  # fmt: skip
NAMES = [
    "mongodb_up",
    "mongodb_version_info",
    "mongodb_replset_my_state",
    "mongodb_replset_member_state",
    "mongodb_replset_member_health",
    "mongodb_replset_member_replication_lag_seconds",
    "mongodb_replset_member_ping_seconds",
    "mongodb_connections",
]


def state_name(code: float | None) -> str:
    if code is None:
        return "not reported"
    return STATES.get(int(code), f"state {int(code)}")


def _instances(latest: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per MongoDB process (its `instance` label): the host whose agent reads it, its samples by
    name (a list each: some names have several label sets), and `t`, when its agent last read
    it (its `mongodb_up`)."""
    found: dict[str, dict[str, Any]] = {}
    for batch in latest:
        for sample in batch.get("samples", []):
            instance = sample["labels"].get("instance")
            if not instance:
                continue
            entry = found.setdefault(instance, {"host_id": batch["host_id"], "samples": {}})
            entry["samples"].setdefault(sample["name"], []).append(sample)
    for entry in found.values():
        up = _sample(entry, "mongodb_up")
        entry["t"] = up["t"] if up else max(
            s["t"] for group in entry["samples"].values() for s in group)  # fmt: skip
    return found


def _sample(entry: dict[str, Any], name: str, **labels: str) -> dict[str, Any] | None:
    for sample in entry["samples"].get(name, []):
        if all(sample["labels"].get(k) == v for k, v in labels.items()):
            return sample
    return None


def _value(entry: dict[str, Any], name: str, **labels: str) -> float | None:
    sample = _sample(entry, name, **labels)
    return sample["value"] if sample else None


def _label(entry: dict[str, Any], name: str, label: str) -> str | None:
    sample = _sample(entry, name)
    return sample["labels"].get(label) if sample else None


def _round_of(entry: dict[str, Any]) -> float | None:
    """When the process last answered replSetGetStatus, if that is its current word: a process
    whose agent now finds it down keeps older replica set samples in `latest` for a while."""
    mine = _sample(entry, "mongodb_replset_my_state")
    if mine is None or _value(entry, "mongodb_up") == 0 or mine["t"] < entry["t"] - ROUND_SLACK:
        return None
    return mine["t"]


def _view(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Whose replSetGetStatus to believe: the freshest self-declared primary, else the freshest."""
    current = [e for e in entries if _round_of(e) is not None]
    primaries = [e for e in current if _value(e, "mongodb_replset_my_state") == 1]
    pool = primaries or current
    return max(pool, key=_round_of) if pool else None


def _members_of(
    entries: list[dict[str, Any]], instances: dict[str, dict[str, Any]], at: float
) -> list[dict[str, Any]]:
    view = _view(entries)
    if view is None:
        return []
    when = _round_of(view)

    def of_view(name: str, address: str) -> float | None:
        sample = _sample(view, name, member=address)
        return sample["value"] if sample and sample["t"] == when else None

    addresses = [
        s["labels"].get("member", "")
        for s in view["samples"].get("mongodb_replset_member_state", [])
        if s["t"] == when
    ]
    rows = []
    for address in addresses:
        own = instances.get(address)
        state, seen = of_view("mongodb_replset_member_state", address), when
        own_round = _round_of(own) if own else None
        if own is not None and own_round is not None and own_round >= when:
            state, seen = _value(own, "mongodb_replset_my_state"), own_round
        health = of_view("mongodb_replset_member_health", address)
        rows.append({
            "address": address,
            "host_id": own["host_id"] if own else None,
            "state": state_name(state),
            "health": "ok" if health == 1 else ("down" if health == 0 else "unknown"),
            "lag_seconds": of_view("mongodb_replset_member_replication_lag_seconds", address),
            "ping_seconds": of_view("mongodb_replset_member_ping_seconds", address),
            "connections": _value(own, "mongodb_connections", state="current") if own else None,
            "seen_at": seen,
            "stale": at - seen > STALE_AFTER,
        })  # fmt: skip
    return rows


def _set_role(cluster: dict[str, Any], name: str) -> str:
    if cluster.get("topology") == "sharded" or name == "cfg":
        return "config servers" if name == "cfg" else "shard"
    return "replica set"


def build(
    cluster: dict[str, Any],
    hosts: list[dict[str, Any]],
    described: list[dict[str, Any]],
    latest: list[dict[str, Any]],
    at: float,
) -> dict[str, Any]:
    """The topology from the cluster, its hosts, the members it describes and the agents' latest
    batches (a pure function: the service below does the reading)."""
    names = {h["_id"]: h["name"] for h in hosts}
    instances = _instances(latest)
    by_set: dict[str, list[dict[str, Any]]] = {}
    routers = []
    for address, entry in sorted(instances.items()):
        replica_set = _label(entry, "mongodb_replset_my_state", "set")
        process = _label(entry, "mongodb_version_info", "process") or ""
        if replica_set:
            by_set.setdefault(replica_set, []).append(entry)
        elif process.rsplit("/", 1)[-1].startswith("mongos"):
            routers.append({
                "address": address, "host_id": entry["host_id"],
                "host": names.get(entry["host_id"], ""),
                "up": _value(entry, "mongodb_up") == 1,
                "state": "ROUTER" if _value(entry, "mongodb_up") == 1 else "unreachable",
                "version": _label(entry, "mongodb_version_info", "version"),
                "connections": _value(entry, "mongodb_connections", state="current"),
                "seen_at": entry["t"], "stale": at - entry["t"] > STALE_AFTER,
            })  # fmt: skip
    wanted = {str(m["replica_set"]) for m in described if m.get("replica_set")}
    sets = []
    for name in sorted(wanted | set(by_set), key=lambda n: (n != "cfg", n)):
        members = _members_of(by_set.get(name, []), instances, at)
        reported = {m["address"] for m in members}
        for m in described:
            address = f"{m['address']}:{m['port']}"
            if str(m.get("replica_set")) == name and address not in reported:
                members.append({
                    "address": address, "host_id": None, "state": "not reported",
                    "health": "unknown", "lag_seconds": None, "ping_seconds": None,
                    "connections": None, "seen_at": None, "stale": False,
                })  # fmt: skip
        for m in members:
            m["host"] = names.get(m["host_id"], "") if m["host_id"] else _host_by_address(
                hosts, m["address"])  # fmt: skip
        primary = next((m["address"] for m in members if m["state"] == "PRIMARY"), None)
        sets.append({"name": name, "role": _set_role(cluster, name), "primary": primary,
                     "members": members})  # fmt: skip
    return {
        "cluster_id": cluster["_id"],
        "name": cluster["name"],
        "topology": cluster.get("topology") or ("sharded" if routers else "replicaset"),
        "at": at,
        "sets": sets,
        "routers": routers,
        "hosts": [
            {"host_id": h["_id"], "name": h["name"], "agent": _agent(h.get("agent"), at)}
            for h in hosts
        ],
    }


def _host_by_address(hosts: list[dict[str, Any]], address: str) -> str:
    ip = address.rpartition(":")[0]
    matches = [h["name"] for h in hosts if h["address"] == ip]
    return matches[0] if len(matches) == 1 else ""


def _agent(agent: dict[str, Any] | None, at: float) -> dict[str, Any]:
    """What the hosts page and the topology say of a host's agent: its state (`no agent` before
    it first sent, `silent` when it stopped for longer than STALE_AFTER), version, last seen."""
    if not agent or not agent.get("last_seen"):
        return {"state": "no agent", "version": None, "last_seen": None, "errors": {}}
    silent = at - agent["last_seen"] > STALE_AFTER
    return {
        "state": "silent" if silent else agent.get("state", "ok"),
        "version": agent.get("version"),
        "last_seen": agent["last_seen"],
        "errors": agent.get("errors") or {},
    }


def agent_status(host: dict[str, Any]) -> dict[str, Any]:
    return _agent(host.get("agent"), now())


def processes(drawn: dict[str, Any]) -> list[dict[str, Any]]:
    """The MongoDB processes an agent reads in a topology (its charts' choices): members by set,
    each set's primary first, then routers, with their host and state."""
    members = [
        m
        for s in drawn["sets"]
        for m in sorted(s["members"], key=lambda m: m["state"] != "PRIMARY")
    ]
    return [
        {"instance": m["address"], "host_id": m["host_id"], "host": m["host"], "state": m["state"]}
        for m in [*members, *drawn["routers"]]
        if m["host_id"]
    ]


def of_cluster(store: Store, actor: Actor, cluster_id: str) -> dict[str, Any]:
    """The topology of a cluster on registered hosts the actor may read (NotFound otherwise)."""
    cluster, project = cloud.get_cluster(store, actor, cluster_id)
    ids = cluster.get("host_ids", [])
    hosts = [h for h in projects.list_hosts(store, project["_id"]) if h["_id"] in ids]
    described = [] if cluster.get("plan") else deployments.members(store, cluster)[0]
    latest = metrics.latest(store, project["_id"], host_ids=ids, names=NAMES)
    return build(cluster, hosts, described, latest, now())
