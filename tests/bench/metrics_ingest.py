"""Metrics ingest bench: simulated agents (100 series each, one batch every 10 s) posting with their
own tokens through the real API to a `wap web` on the embedded store (a worker beside it, as in
production; its rollups start only once rounds are LAG old, 5 minutes, so a run of a few minutes
measures ingest alone), more agents per step until ingest lags: a round stored more than an interval
after it was due (the senders fall behind or the answers slow). Prints per step the agents,
batches per second asked and done, answer p50/p99, the worst lag, the CPU of each process per
1,000 batches and in all, and the top functions of the web and store processes (py-spy, sampled
through the step: self and inclusive share; `pip install py-spy`). Not a test: figures only.

Usage: python -m tests.bench.metrics_ingest [--steps 250,500,1000,1500,2000] [--seconds 30]

Measured (19:54-19:57 UTC, load 1.2 before, --steps 500,1000,1500 --seconds 30, 2 cores):
- 500 agents: 50 batches/s, answers p50 15 ms p99 62 ms, worst lag 0.1 s;
- 1,000 agents: 100 batches/s, p50 59 ms p99 273 ms, worst lag 0.5 s; cores used: store 0.71,
  web 0.51, senders 0.22 (per 1,000 batches: store 7.1 s, web 5.1 s, senders 2.2 s of CPU);
- 1,500 agents: 116 of 150 batches/s, p50 132 ms p99 322 ms, 9.0 s behind after 30 s and
  growing (store 0.99 core: its one thread, behind a lock, is the bound).
Where the time goes: the store's insert of a round (a third of its busy samples: nx-27017 and
NeoSQLite walk the 100 sample objects several times, JSON-encode, convert and deep-copy them;
2.4 ms of CPU apiece whatever the indexes), then `latest`'s replace; the web's request parsing
and checking of the 100 samples (a fifth), its store round trips (pymongo's per-operation cost:
one read for the token, the round's insert, `latest` and its summary, the host's report) and
the merge into `latest`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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


def batch_body(stream: str, seq: int, at: float) -> bytes:
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
    behind, lag = [0.0], [0.0]
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
        body = batch_body(streams[i], seq, due)
        r = sessions.s.post(url, data=body, timeout=60, headers=headers)
        with lock:
            latencies.append(time.perf_counter() - t0)
            lag[0] = max(lag[0], time.time() - due)  # stored (answered) this long after due
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
        "lag_s": lag[0],
        "errors": errors[0],
        "batches": len(latencies),
    }


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    """py-spy sampling `pid` for `seconds` (raw collapsed stacks), or None without py-spy: only
    the thread holding the GIL, so that what is sampled is the process's Python work (not its
    threads waiting, nor SQLite's C code, which runs without the GIL and is little here)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
         "--format", "raw", "--gil", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# Frames of threads waiting (for a request, a socket, a lock, a timer): not where time goes.
IDLE = ("select", "accept", "wait", "_worker", "readinto", "recv_into", "poll", "sleep", "get",
        "_read_from_socket", "_run", "_write_to_self")  # fmt: skip
# Inclusive shares are shown for the platform's own code and the store's command handlers.
OURS = ("webui/", "wap/", "nx_27017/handler.py", "neosqlite/collection/")


def top_functions(raw: Path, count: int = 12) -> list[str]:
    """The functions most sampled, by their own share (leaf) and inclusive share, from py-spy's
    collapsed stacks (`frame;frame;... samples`, a frame `function (file:line)`); threads
    waiting left out."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].split(" (")[0].rsplit(".", 1)[-1] in IDLE:
            continue
        n = int(samples)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if any(part in frame for part in OURS):
                inclusive[frame] += n
    if not total:
        return ["(no busy samples)"]
    return [f"{100 * n / total:5.1f}% self  {f}" for f, n in own.most_common(count)] + [
        f"{100 * n / total:5.1f}% incl  {f}" for f, n in inclusive.most_common(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    os.environ["WAP_AGENT_REQUESTS_PER_MINUTE"] = "1000"
    with platform(workers=1) as (settings, _api, _root), tempfile.TemporaryDirectory() as tmp:
        store = Store(settings.mongodb_uri or "")
        t0 = time.time()
        tokens = make_agents(store, max(steps))
        print(f"{max(steps)} hosts and agent tokens made in {time.time() - t0:.1f} s")
        url = f"http://{settings.bind}/api/v1/agent/samples"
        procs = processes(os.getpid())
        print(f"load before: {os.getloadavg()}")
        sustained = 0
        for count in steps:
            spies = {name: profile(procs[name].pid, args.seconds, Path(tmp) / f"{name}-{count}")
                     for name in ("web", "store") if name in procs}  # fmt: skip
            before = cpu(procs)
            result = step(url, tokens[:count], args.seconds)
            after = cpu(procs)
            used = {n: after[n] - before[n] for n in after}
            per_k = {n: 1000 * v / result["batches"] for n, v in used.items()}
            print(
                f"{count:5d} agents: asked {result['asked_per_s']:.0f}/s done "
                f"{result['done_per_s']:.0f}/s, answers p50 {result['p50_ms']:.0f} ms p99 "
                f"{result['p99_ms']:.0f} ms, worst lag {result['lag_s']:.1f} s (senders behind "
                f"by {result['behind_s']:.1f} s), errors {result['errors']}; CPU s per 1,000 "
                "batches: "
                + ", ".join(f"{n} {v:.2f}" for n, v in per_k.items())
                + "; cores used: "
                + ", ".join(f"{n} {v / args.seconds:.2f}" for n, v in used.items())
            )
            for name, spy in spies.items():
                if spy is None:
                    continue
                spy.wait(timeout=args.seconds + 60)
                out = Path(tmp) / f"{name}-{count}"
                if out.exists():
                    print(f"  {name} process, busy samples:")
                    print("\n".join(f"    {line}" for line in top_functions(out)))
            # behind by more than an interval, or falling behind (what is not done piles up)
            falling = result["done_per_s"] < 0.95 * result["asked_per_s"]
            if result["lag_s"] > INTERVAL or falling or result["errors"]:
                print(f"ingest lags at {count} agents")
                break
            sustained = count
        newest = store.samples.find_one({}, {"t": 1}, sort=[("t", -1)])
        print(f"agents sustained: {sustained}; stored batches: "
              f"{store.samples.estimated_document_count()}, newest "
              f"{time.time() - newest['t'] if newest else float('nan'):.1f} s old")  # fmt: skip
        print(f"load after: {os.getloadavg()}")
        store.close()


if __name__ == "__main__":
    main()
