"""What WAP shows Prometheus, in its text exposition format (prometheus_client writes it).

- The platform's own health (`/metrics`): jobs by state, the job queue's depth, ingest rate and
  lag, agents seen, refused ingest requests, how far behind each rollup tier is.
- A project's latest samples (`/api/v1/projects/{id}/prometheus`): each host's newest value of
  every series its agent sends, with the labels people filter on in Grafana: `project`, `host`,
  `cluster` and, for a MongoDB process, `replica_set` and `member_state` (PRIMARY, SECONDARY...).
  A sample's own label of one of those names is kept as `exported_<name>`, as Prometheus does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from webui.services import rollups
from webui.store import Store, now

OURS = ("project", "host", "cluster", "replica_set", "member_state")
MEMBER_STATES = {
    0: "STARTUP", 1: "PRIMARY", 2: "SECONDARY", 3: "RECOVERING", 5: "STARTUP2", 6: "UNKNOWN",
    7: "ARBITER", 8: "DOWN", 9: "ROLLBACK", 10: "REMOVED",
}  # fmt: skip
SEEN_WITHIN = 60.0
# The classic text format generate_latest writes, which every Prometheus 2.x reads (the client's
# own default names a newer version that Debian's Prometheus does not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Families:
    """A registry collector over families built beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def exposition(families: Iterable[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    return generate_latest(registry)


def _family(name: str, kind: str) -> Metric:
    """A family for an agent's series: counters by their `_total` names, gauges as they are, a
    counter without the suffix untyped (its name cannot change under Prometheus's rules)."""
    if kind == "c" and name.endswith("_total"):
        return Metric(name[: -len("_total")], f"{name} as the agent sent it", "counter")
    return Metric(name, f"{name} as the agent sent it", "gauge" if kind == "g" else "untyped")


def project_samples(store: Store, project: dict[str, Any]) -> bytes:
    """The newest samples of the project's hosts, labelled."""
    hosts = {h["_id"]: h["name"] for h in store.hosts.find({"project_id": project["_id"]})}
    cluster_of: dict[str, dict[str, Any]] = {}
    for cluster in store.clusters.find({"project_id": project["_id"]}):
        for host_id in cluster.get("host_ids", []):
            cluster_of.setdefault(host_id, cluster)
    families: dict[str, Metric] = {}
    for doc in store.db.latest.find({"project_id": project["_id"]}).sort("_id", 1):
        if doc["_id"] not in hosts:
            continue
        samples = doc.get("samples", [])
        members = {
            s["l"].get("instance", ""): s for s in samples if s["n"] == "mongodb_replset_my_state"
        }
        cluster = cluster_of.get(doc["_id"])
        for s in samples:
            labels = {(f"exported_{k}" if k in OURS else k): v for k, v in s["l"].items()}
            labels["project"] = project["name"]
            labels["host"] = hosts[doc["_id"]]
            if cluster is not None:
                labels["cluster"] = cluster["name"]
            member = members.get(s["l"].get("instance", "")) if "instance" in s["l"] else None
            if member is not None:
                labels["replica_set"] = member["l"].get("set") or (cluster or {}).get(
                    "replica_set", ""
                )
                labels["member_state"] = MEMBER_STATES.get(int(member["v"]), str(member["v"]))
            family = families.get(s["n"])
            if family is None:
                family = families[s["n"]] = _family(s["n"], s["k"])
            if family.type != ("counter" if s["k"] == "c" and s["n"].endswith("_total") else
                               "gauge" if s["k"] == "g" else "untyped"):  # fmt: skip
                continue  # one series changed kind: the family keeps its first
            family.add_sample(s["n"], labels, s["v"], timestamp=s["t"])
    return exposition(families[name] for name in sorted(families))


def platform_health(store: Store, redis: Redis, queue_name: str, rejected: dict[str, int]) -> bytes:
    """The platform's own figures for `/metrics`."""
    at = now()
    jobs = GaugeMetricFamily("wap_jobs", "Jobs by state", labels=["state"])
    for state in sorted(s for s in store.jobs.distinct("status") if isinstance(s, str)):
        jobs.add_metric([state], store.jobs.count_documents({"status": state}))
    families: list[Metric] = [jobs]
    try:
        depth = Queue(queue_name, connection=redis).count
    except RedisError:
        depth = None
    if depth is not None:
        queue = GaugeMetricFamily("wap_queue_depth", "Jobs waiting in the queue for a worker")
        queue.add_metric([], depth)
        families.append(queue)
    latest = list(store.db.latest.find({}, {"t": 1, "last_seen": 1}))
    seen = GaugeMetricFamily(
        "wap_agents_seen", f"Agents heard from in the last {SEEN_WITHIN:.0f} s"
    )
    seen.add_metric([], sum(1 for d in latest if d.get("last_seen", 0) >= at - SEEN_WITHIN))
    known = GaugeMetricFamily("wap_agents_known", "Hosts whose agent has sent samples")
    known.add_metric([], len(latest))
    recent = [d for d in latest if d.get("last_seen", 0) >= at - SEEN_WITHIN]
    lag = GaugeMetricFamily(
        "wap_ingest_lag_seconds",
        "Largest delay between a round's time and its arrival, among agents seen recently",
    )
    lag.add_metric([], max((d["last_seen"] - d["t"] for d in recent), default=0.0))
    rate = GaugeMetricFamily("wap_ingest_batches_per_second", "Batches stored, last minute")
    rate.add_metric([], store.samples.count_documents({"t": {"$gte": at - 60}}) / 60)
    refused = Metric("wap_ingest_rejected", "Ingest requests refused, by status", "counter")
    for status, count in sorted(rejected.items()):
        refused.add_sample("wap_ingest_rejected_total", {"status": status}, count)
    behind = GaugeMetricFamily(
        "wap_metrics_rollup_lag_seconds", "Time since the end of the last rolled window",
        labels=["tier"],
    )  # fmt: skip
    for tier in rollups.WIDTHS:
        until = rollups.cursor(store, tier)
        if until is not None:
            behind.add_metric([tier], at - until)
    families += [seen, known, lag, rate, refused, behind]
    return exposition(families)
