"""The overview: counts and states of what the actor may see (projects, hosts, clusters, jobs),
and Home: hosts and MongoDB processes by state and the five busiest by CPU, memory, disk,
connections and operations, from the agents' latest samples (webui.services.metrics.latest)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from webui.services import deployments, metrics, projects, topology
from webui.services.audit import Actor
from webui.services.errors import NotFound
from webui.store import Store, now

DAY = 24 * 3600


def summary(store: Store, actor: Actor) -> dict[str, Any]:
    """Projects, hosts, clusters by state, jobs running or queued, jobs failed in the last 24 h
    (failed or lost, by when they ended), and the latest jobs, over the actor's projects."""
    mine = projects.list_projects(store, actor)
    ids = [p["_id"] for p in mine]
    names = {p["_id"]: p["name"] for p in mine}
    clusters = list(store.clusters.find({"project_id": {"$in": ids}}).sort("name", 1))
    states = [(c, deployments.cluster_state(store, c)) for c in clusters]
    in_projects = {"project_id": {"$in": ids}}
    active = list(
        store.jobs.find({**in_projects, "status": {"$in": ["queued", "running"]}}).sort(
            "created_at", -1
        )
    )
    failed = list(
        store.jobs.find(
            {**in_projects, "status": {"$in": ["failed", "lost"]},
             "finished_at": {"$gte": now() - DAY}}
        ).sort("finished_at", -1)
    )  # fmt: skip
    latest = list(store.jobs.find(in_projects).sort("created_at", -1).limit(10))
    return {
        "projects": mine,
        "names": names,
        "hosts": store.hosts.count_documents(in_projects),
        "clusters": states,
        "cluster_states": Counter(state for _, state in states),
        "running": active,
        "failed": failed,
        "latest": latest,
        "jobs": store.jobs.count_documents(in_projects),
        "home": home(store, mine),
    }


TOP = 5
HOME_NAMES = sorted(metrics.SUMMARY_NAMES)  # what the Home reads: kept apart for it by metrics


def _sum(samples: list[dict[str, Any]], name: str, **labels: str) -> float | None:
    values = [
        s["value"]
        for s in samples
        if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def _host_figures(samples: list[dict[str, Any]]) -> dict[str, float | None]:
    """CPU busy (share of all CPU time not idle), memory used (share of total not available) and
    the fullest filesystem (share used) of one host's latest samples; None when not reported."""
    host = [s for s in samples if s["name"].startswith("host_")]
    cpu_all = _sum(host, "host_cpu_seconds_per_second")
    idle = _sum(host, "host_cpu_seconds_per_second", mode="idle") or 0.0
    total = _sum(host, "host_memory_total_bytes")
    available = _sum(host, "host_memory_available_bytes")
    disks = [
        s["value"] / size
        for s in host
        if s["name"] == "host_filesystem_used_bytes"
        and (size := _sum(host, "host_filesystem_size_bytes", **s["labels"]))
    ]
    return {
        "cpu": (cpu_all - idle) / cpu_all if cpu_all else None,
        "memory": (total - available) / total if total and available is not None else None,
        "disk": max(disks) if disks else None,
    }


def _node_state(samples: list[dict[str, Any]]) -> str:
    if _sum(samples, "mongodb_up") == 0:
        return "unreachable"
    process = next((s["labels"].get("process", "") for s in samples
                    if s["name"] == "mongodb_version_info"), "")  # fmt: skip
    if process.rsplit("/", 1)[-1].startswith("mongos"):
        return "ROUTER"
    mine = _sum(samples, "mongodb_replset_my_state")
    return topology.state_name(mine) if mine is not None else "STANDALONE"


def _top(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    ranked = [r for r in rows if r.get(key) is not None]
    return sorted(ranked, key=lambda r: (-r[key], r["name"]))[:TOP]


def home(store: Store, mine: list[dict[str, Any]]) -> dict[str, Any]:
    """Hosts by their agent's state, MongoDB processes (nodes) by state, and the top five hosts
    by CPU, memory and disk and nodes by connections and operations per second."""
    hosts, nodes = [], []
    for project in mine:
        listed = projects.list_hosts(store, project["_id"])
        names = {h["_id"]: h["name"] for h in listed}
        latest = {b["host_id"]: b for b in metrics.latest(store, project["_id"], names=HOME_NAMES)}
        for host in listed:
            samples = latest.get(host["_id"], {}).get("samples", [])
            hosts.append({
                "id": host["_id"], "name": host["name"], "project": project["name"],
                "state": topology.agent_status(host)["state"], **_host_figures(samples),
            })  # fmt: skip
            by_instance: dict[str, list[dict[str, Any]]] = {}
            for sample in samples:
                if "instance" in sample["labels"]:
                    by_instance.setdefault(sample["labels"]["instance"], []).append(sample)
            for instance, own in sorted(by_instance.items()):
                nodes.append({
                    "name": instance, "host": names[host["_id"]], "host_id": host["_id"],
                    "state": _node_state(own),
                    "connections": _sum(own, "mongodb_connections", state="current"),
                    "operations": _sum(own, "mongodb_op_counters_per_second"),
                })  # fmt: skip
    return {
        "hosts_by_state": Counter(h["state"] for h in hosts),
        "nodes_by_state": Counter(n["state"] for n in nodes),
        "top": {
            "cpu": _top(hosts, "cpu"),
            "memory": _top(hosts, "memory"),
            "disk": _top(hosts, "disk"),
            "connections": _top(nodes, "connections"),
            "operations": _top(nodes, "operations"),
        },
    }


def host(store: Store, actor: Actor, host_id: str) -> dict[str, Any]:
    """A host the actor may see, for its page: the host, its project, its clusters, its agent's
    state and the MongoDB processes its agent reads (NotFound otherwise)."""
    found = store.hosts.find_one({"_id": host_id})
    if found is None:
        raise NotFound("no such host")
    project = projects.require(store, actor, found["project_id"], "read-only")
    clusters = [c for c in projects.list_clusters(store, project["_id"])
                if host_id in c.get("host_ids", [])]  # fmt: skip
    latest = metrics.latest(store, project["_id"], host_ids=[host_id], names=HOME_NAMES)
    samples = latest[0]["samples"] if latest else []
    instances = sorted({s["labels"]["instance"] for s in samples if "instance" in s["labels"]})
    return {
        "host": found, "project": project, "clusters": clusters,
        "agent": topology.agent_status(found), "figures": _host_figures(samples),
        "processes": [
            {"instance": i, "host_id": host_id, "host": found["name"],
             "state": _node_state([s for s in samples if s["labels"].get("instance") == i])}
            for i in instances
        ],
    }  # fmt: skip
