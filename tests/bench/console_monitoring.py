"""Console monitoring bench: what the monitoring pages cost as hosts grow. A real `wap web` on the
embedded store; per step, that many hosts (replica sets of three, each member's agent reporting
one round of host and MongoDB samples through the ingest API, as agents do); then the overview
with Home, the hosts page, a cluster's page and its topology (what the page polls every 3 s) are
asked for repeatedly. Prints p50/p99 per page, the store's CPU per request and the answer's size.
Not a test: figures only.

Each round holds what the pages read and, with `--series N`, other series up to N samples (an
agent on a host with one mongod sends a few hundred: network and disk per device, serverStatus,
collection sizes; 258 on this machine's 28 interfaces without MongoDB): what a page costs depends
on how much of every round it has to read.

Usage: python -m tests.bench.console_monitoring [--steps 30,300] [--requests 30] [--series 250]

Measured 7 Dec 2026 (--requests 20, load 4-9 from other work), the overview's p50 and store CPU
per request before -> after the Home read the hosts' summaries (metrics.SUMMARY_NAMES):
250 samples a round, 30 hosts 190 -> 40 ms (130 -> 24 ms CPU), 300 hosts 5,079 -> 266 ms
(1,121 -> 172 ms); 22 samples, 300 hosts 1,158 -> 573 ms (273 -> 195 ms). What is left at 300
hosts is mostly each cluster's state (a query per cluster for its last deploy job).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from typing import Any

import psutil

from tests.bench.webui_platform import platform
from tests.webui.test_monitoring_console import host_round, mongod_round, sample
from webui.services import agents, projects
from webui.services.audit import Actor
from webui.store import Store


def other_series(at: float, count: int) -> list[dict[str, Any]]:
    """`count` samples of series no page reads, shaped as an agent's: per network interface and
    disk, and collection sizes."""
    kinds = [("host_network_receive_bytes_per_second", "device", "eth"),
             ("host_disk_read_bytes_per_second", "device", "sd"),
             ("mongodb_collection_size_bytes", "collection", "shop.c")]  # fmt: skip
    return [sample(name, float(i), at, **{label: f"{prefix}{i}"})
            for i in range(count) for name, label, prefix in [kinds[i % len(kinds)]]]  # fmt: skip


def populate(store: Store, api_base: str, http, hosts: int, series: int) -> str:
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
            samples += other_series(at, series - len(samples))
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
    parser.add_argument("--series", type=int, default=250, help="samples per round (at least 22)")
    args = parser.parse_args()
    with platform(workers=0) as (settings, api, _):
        store = Store(settings.mongodb_uri or "")
        total = 0
        store_proc = next(p for p in psutil.process_iter(["cmdline"])
                          if "webui.store.embedded_server" in (p.info["cmdline"] or [])
                          and settings.mongodb_uri.split(":")[-1].split("/")[0]
                          in p.info["cmdline"])  # fmt: skip
        print(f"{args.series} samples per round")
        print("hosts  page                          p50 ms   p99 ms  store CPU ms   bytes")
        for step in (int(s) for s in args.steps.split(",")):
            cluster_id = populate(store, api.base, api.http, step - total, args.series)
            total = step
            pages = {
                "overview (Home)": "/",
                "hosts": "/hosts",
                "cluster page": f"/clusters/{cluster_id}",
                "topology API (polled)": f"/api/v1/clusters/{cluster_id}/topology",
            }
            for name, path in pages.items():
                times, size = [], 0
                cpu_before = store_proc.cpu_times()
                for _ in range(args.requests):
                    started = time.perf_counter()
                    answer = api.http.get(api.base + path)
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                    size = len(answer.content)
                cpu_after = store_proc.cpu_times()
                store_ms = 1000 * (cpu_after.user + cpu_after.system - cpu_before.user
                                   - cpu_before.system) / args.requests  # fmt: skip
                times.sort()
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                print(f"{total:5}  {name:28} {statistics.median(times):7.1f}  {p99:7.1f}  "
                      f"{store_ms:12.1f}  {size:6}")  # fmt: skip
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        store.close()


if __name__ == "__main__":
    main()
