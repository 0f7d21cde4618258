"""The overview: counts and states of what the actor may see (projects, hosts, clusters, jobs)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from webui.services import deployments, projects
from webui.services.audit import Actor
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
    }
