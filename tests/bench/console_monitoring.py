"""Console monitoring bench: what the monitoring pages cost as hosts grow. A real `wap web` on the
embedded store; per step, that many hosts (replica sets of three, each member's agent reporting
one round of host and MongoDB samples through the ingest API, as agents do); then the overview
with Home, the hosts page, a cluster's page and its topology (what the page polls every 3 s) are
asked for repeatedly. Prints p50/p99 per page and the answer's size. Not a test: figures only.

Usage: python -m tests.bench.console_monitoring [--steps 30,300] [--requests 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from tests.bench.webui_platform import platform
from tests.webui.test_monitoring_console import host_round, mongod_round
from webui.services import agents, projects
from webui.services.audit import Actor
from webui.store import Store


def populate(store: Store, api_base: str, http, hosts: int) -> str:
    """A project of `hosts` hosts in sets of three, each set a registered cluster, every member
    having reported one round; returns one cluster's id."""
    admin = store.users.find_one({"role": "admin"})
    actor = Actor(admin["_id"], admin["username"], "admin", "bench")
    project = projects.create_project(store, actor, f"bench-{uuid.uuid4().hex[:6]}")
    at, cluster_id = time.time(), ""
    for first in range(0, hosts - hosts % 3, 3):
        ids, members = [], [f"10.2.{(first + k) // 250}.{(first + k) % 250 + 1}:27017"
                            for k in range(3)]  # fmt: skip
        states = {m: 1 if k == 0 else 2 for k, m in enumerate(members)}
        for k, member in enumerate(members):
            host = projects.add_host(store, actor, project["_id"],
                                     {"name": f"h{first + k}", "address": member[:-6]})  # fmt: skip
            ids.append(host["_id"])
            token = agents.create_token(store, actor, project["_id"], host["_id"])[0]
            samples = host_round(at, 0.1 * k, 0.5, 0.3)
            samples += mongod_round(at, member, states, 10 + k, 100.0, {})
            batch = {"stream": "cd" * 8, "seq": 1, "time": at, "samples": samples}
            answer = http.post(f"{api_base}/api/v1/agent/samples",
                               data=json.dumps({"agent": {"version": "bench"}, "batches": [batch]}),
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"})  # fmt: skip
            answer.raise_for_status()
        cluster = projects.create_cluster(store, actor, project["_id"], f"c{first}", ids, "x.yml")
        cluster_id = cluster_id or cluster["_id"]
    return cluster_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="30,300")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with platform(workers=0) as (settings, api, _):
        store = Store(settings.mongodb_uri or "")
        total = 0
        print("hosts  page                          p50 ms   p99 ms   bytes")
        for step in (int(s) for s in args.steps.split(",")):
            cluster_id = populate(store, api.base, api.http, step - total)
            total = step
            pages = {
                "overview (Home)": "/",
                "hosts": "/hosts",
                "cluster page": f"/clusters/{cluster_id}",
                "topology API (polled)": f"/api/v1/clusters/{cluster_id}/topology",
            }
            for name, path in pages.items():
                times, size = [], 0
                for _ in range(args.requests):
                    started = time.perf_counter()
                    answer = api.http.get(api.base + path)
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                    size = len(answer.content)
                times.sort()
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                print(f"{total:5}  {name:28} {statistics.median(times):7.1f}  {p99:7.1f}  {size:6}")
        store.close()


if __name__ == "__main__":
    main()
