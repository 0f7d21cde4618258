"""Agent commands bench: how long a command takes from the user's POST to its result, through a
real `wap web` (embedded store, Redis) and a real `wap-agent run` waiting in its long poll; and
what idle agents cost the platform while they wait for commands. Prints, from the platform's own
timestamps: asked -> given to the agent (the long poll woken), asked -> finished, for `ping` and
`collect`; then, with N simulated agents long-polling and no command asked, the CPU seconds the
web server and the store spend per minute. Not a test: figures only.

Usage: python -m tests.bench.agent_commands [--asks 50] [--idle 0,200,500] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import psutil
import requests

from tests.bench.webui_platform import platform
from tests.webui.helpers import Api, Proc, wait_for
from webui.services import agents, projects
from webui.services.audit import Actor
from webui.store import Store


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def tokens_for(store: Store, count: int, prefix: str) -> tuple[str, list[tuple[str, str]]]:
    admin = store.users.find_one({"role": "admin"})
    actor = Actor(admin["_id"], admin["username"], "admin", "bench")
    project = projects.create_project(store, actor, prefix)
    made = []
    for i in range(count):
        host = projects.add_host(
            store,
            actor,
            project["_id"],
            {"name": f"h{i}", "address": f"10.2.{i // 250}.{i % 250 + 1}"},
        )
        made.append(
            (host["_id"], agents.create_token(store, actor, project["_id"], host["_id"])[0])
        )
    return project["_id"], made


def latencies(api: Api, store: Store, project: str, host: str, name: str, asks: int) -> None:
    given, done = [], []
    for _ in range(asks):
        answer = api.call("POST", f"/projects/{project}/hosts/{host}/commands", json={"name": name})
        query = {"_id": answer.json()["id"]}
        final = wait_for(
            lambda q=query: (c := store.agent_commands.find_one(q))["state"]
            in ("succeeded", "failed", "refused") and c,
            timeout=60, every=0.02, what=f"{name} finished",
        )  # fmt: skip
        assert final["state"] == "succeeded", final
        given.append(final["sent_at"] - final["created_at"])
        done.append(final["finished_at"] - final["created_at"])
    for label, values in (("asked -> given", given), ("asked -> finished", done)):
        print(
            f"{name:8} {label:18} p50 {statistics.median(values) * 1000:7.1f} ms"
            f"  p99 {percentile(values, 0.99) * 1000:7.1f} ms  ({asks} asks)"
        )


def web_pid(bind: str) -> int:
    """The bench's `wap web` (python -m wap.cli web, serving on `bind`)."""
    for proc in psutil.process_iter(["cmdline"]):
        if (proc.info["cmdline"] or [])[-2:] != ["wap.cli", "web"]:
            continue
        try:
            if proc.environ().get("WAP_BIND") == bind:
                return proc.pid
        except psutil.Error:
            continue
    raise RuntimeError(f"no wap web serving {bind}")


def idle_cost(base: str, tokens: list[str], seconds: float, pids: dict[str, int]) -> None:
    stop = threading.Event()

    def poll(token: str) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        while not stop.is_set():
            try:
                session.get(f"{base}/api/v1/agent/commands?wait=25", timeout=40)
            except requests.RequestException:
                time.sleep(1)

    threads = [threading.Thread(target=poll, args=(t,), daemon=True) for t in tokens]
    for thread in threads:
        thread.start()
    time.sleep(5)  # the polls are waiting
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    time.sleep(seconds)
    used = {name: sum(p.cpu_times()[:2]) - before[name] for name, p in procs.items()}
    stop.set()
    per_minute = ", ".join(f"{name} {cpu * 60 / seconds:.2f} s" for name, cpu in used.items())
    print(f"idle agents {len(tokens):5}: CPU per minute: {per_minute}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asks", type=int, default=50)
    parser.add_argument("--idle", default="0,200,500")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    idle_steps = [int(n) for n in args.idle.split(",") if n]
    with platform(workers=0) as (settings, api, root):
        store = Store(settings.mongodb_uri or "")
        project, [(host, token)] = tokens_for(store, 1, "bench-commands")
        (root / "token").write_text(token)
        (root / "agent.ini").write_text(
            f"[platform]\nurl = http://{settings.bind}\ntoken_file = {root / 'token'}\n"
            f"[agent]\ninterval = 10\n[queue]\ndir = {root / 'queue'}\n"
        )
        argv = [sys.executable, "-m", "wap_agent", "run", "--config", str(root / "agent.ini")]
        agent = Proc(argv, root / "agent.log", dict(os.environ))
        try:
            wait_for(lambda: (root / "queue" / "state.json").exists(), timeout=30, what="agent")
            for name in ("ping", "collect"):
                latencies(api, store, project, host, name, args.asks)
        finally:
            agent.stop()
        web = web_pid(settings.bind)
        store_pid = int((root / "store.pid").read_text())
        for count in idle_steps:
            _, made = tokens_for(store, count, f"bench-idle-{count}")
            idle_cost(api.base, [t for _, t in made], args.seconds,
                      {"web": web, "store": store_pid})  # fmt: skip
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
