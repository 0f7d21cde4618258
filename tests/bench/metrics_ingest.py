"""Metrics ingest bench: simulated agents (100 series each, one batch every 10 s) posting to a real
`wap web` on the embedded store, more agents per step until ingest lags (the senders fall behind
their schedule or the answers slow past the interval). Prints per step the agents, batches per
second asked and done, answer p50/p99, how far behind schedule the senders ended, and the CPU of
each process per 1,000 batches (where the time goes). Not a test: figures only.

Usage: python -m tests.bench.metrics_ingest [--steps 500,1000,1500,2000,3000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import requests

from tests.bench.webui_platform import platform
from webui.services import agents, projects
from webui.services.audit import Actor
from webui.store import Store

INTERVAL = 10.0
SERIES = 100
SENDERS = 16


def batch_body(stream: str, seq: int) -> bytes:
    at = time.time()
    samples = [
        {"name": f"mongodb_bench_series_{i % 25}", "labels": {"instance": "db:27017",
         "kind": str(i // 25)}, "value": float(i + seq), "kind": "gauge", "timestamp": at}
        for i in range(SERIES)
    ]  # fmt: skip
    batch = {"stream": stream, "seq": seq, "time": at, "samples": samples, "errors": {},
             "dropped": {"batches": 0, "samples": 0}}  # fmt: skip
    return json.dumps({"agent": {"version": "bench", "hostname": "h"}, "batches": [batch]}).encode()


def make_agents(store: Store, count: int) -> list[str]:
    admin = store.users.find_one({"role": "admin"})
    actor = Actor(admin["_id"], admin["username"], "admin", "bench")
    project = projects.create_project(store, actor, f"bench-{uuid.uuid4().hex[:6]}")
    tokens = []
    for i in range(count):
        host = {"name": f"h{i}", "address": f"10.1.{i // 250}.{i % 250 + 1}"}
        host = projects.add_host(store, actor, project["_id"], host)
        tokens.append(agents.create_token(store, actor, project["_id"], host["_id"])[0])
    return tokens


def processes(root_pid: int) -> dict[str, psutil.Process]:
    found = {}
    for proc in psutil.Process(root_pid).children(recursive=True):
        cmd = " ".join(proc.cmdline())
        for name, marker in (("web", "wap.cli web"), ("store", "embedded_server"),
                             ("redis", "redis-server"), ("worker", "wap.cli worker")):  # fmt: skip
            if marker in cmd:
                found[name] = proc
    return found


def cpu(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for name, proc in procs.items():
        times = proc.cpu_times()
        out[name] = times.user + times.system
        for child in proc.children(recursive=True):
            ct = child.cpu_times()
            out[name] += ct.user + ct.system
    me = psutil.Process().cpu_times()
    out["senders"] = me.user + me.system
    return out


def step(url: str, tokens: list[str], seconds: float) -> dict[str, Any]:
    agents_n = len(tokens)
    streams = [uuid.uuid4().hex for _ in tokens]
    seqs = [0] * agents_n
    latencies: list[float] = []
    behind = [0.0]
    lock = threading.Lock()
    sessions = threading.local()
    start = time.time()
    offsets = [INTERVAL * i / agents_n for i in range(agents_n)]
    errors = [0]

    def send(i: int, due: float) -> None:
        if not hasattr(sessions, "s"):
            sessions.s = requests.Session()
        with lock:
            seqs[i] += 1
            seq = seqs[i]
            behind[0] = max(behind[0], time.time() - due)
        t0 = time.perf_counter()
        headers = {"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json"}
        r = sessions.s.post(url, data=batch_body(streams[i], seq), timeout=60, headers=headers)
        with lock:
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors[0] += 1

    sent = 0
    with ThreadPoolExecutor(SENDERS) as pool:
        futures = []
        k = 0
        while True:
            rnd, i = divmod(k, agents_n)
            due = start + rnd * INTERVAL + offsets[i]
            if due >= start + seconds:
                break
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(send, i, due))
            sent += 1
            k += 1
        for f in futures:
            f.result()
    elapsed = time.time() - start
    latencies.sort()
    return {
        "agents": agents_n,
        "asked_per_s": agents_n / INTERVAL,
        "done_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "behind_s": behind[0],
        "errors": errors[0],
        "batches": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="500,1000,1500,2000,3000")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    os.environ["WAP_AGENT_REQUESTS_PER_MINUTE"] = "1000"
    with platform(workers=0) as (settings, _api, _root):
        store = Store(settings.mongodb_uri or "")
        t0 = time.time()
        tokens = make_agents(store, max(steps))
        print(f"{max(steps)} hosts and agent tokens made in {time.time() - t0:.1f} s")
        url = f"http://{settings.bind}/api/v1/agent/samples"
        procs = processes(os.getpid())
        print(f"load before: {os.getloadavg()}")
        for count in steps:
            before = cpu(procs)
            result = step(url, tokens[:count], args.seconds)
            after = cpu(procs)
            per_k = {n: 1000 * (after[n] - before[n]) / result["batches"] for n in after}
            print(
                f"{count:5d} agents: asked {result['asked_per_s']:.0f}/s done "
                f"{result['done_per_s']:.0f}/s, answers p50 {result['p50_ms']:.0f} ms p99 "
                f"{result['p99_ms']:.0f} ms, senders behind by {result['behind_s']:.1f} s, "
                f"errors {result['errors']}; CPU s per 1,000 batches: "
                + ", ".join(f"{n} {v:.2f}" for n, v in per_k.items())
            )
            if result["behind_s"] > INTERVAL or result["p99_ms"] > 1000 * INTERVAL:
                print(f"ingest lags at {count} agents")
                break
        print(f"stored batches: {store.samples.estimated_document_count()}")
        store.close()


if __name__ == "__main__":
    main()
