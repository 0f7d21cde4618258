"""A job's wall time through the platform against a bare `ansible-playbook` run of the same
playbook on the same hosts.

Platform time: from the API call that starts the job to its `finished_at` (queueing, the worker,
ansible-runner, storing and publishing every event). Bare time: the ansible-playbook process.

    .venv/bin/python -m tests.bench.webui_job_walltime [--runs 3] [--steps 20] [--hosts 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.webui_platform import platform
from tests.webui.helpers import PLAYBOOKS, wait_for
from webui.config import REPO_ROOT
from webui.store import Store


def bare_run(inventory: Path, steps: int) -> float:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    start = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
         str(PLAYBOOKS / "steps.yml"), "-e", json.dumps({"steps": steps, "step_delay": 0})],
        check=True, stdout=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=3)
    args = parser.parse_args()
    with platform(workers=1) as (settings, api, root):
        store = Store(settings.mongodb_uri or "")
        project = api.call("POST", "/projects", json={"name": "walltime"}).json()
        hosts = [
            api.call(
                "POST", f"/projects/{project['id']}/hosts",
                json={"name": f"local{n}", "address": "127.0.0.1", "connection": "local"},
            ).json()
            for n in range(args.hosts)
        ]  # fmt: skip
        inventory = root / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": {
            h["name"]: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
            for h in hosts
        }}}))  # fmt: skip
        platform_times, bare_times, events, phases = [], [], 0, []
        for _ in range(args.runs):
            bare_times.append(bare_run(inventory, args.steps))
            start = time.time()
            job = api.call(
                "POST", f"/projects/{project['id']}/jobs",
                json={"playbook": "steps.yml", "host_ids": [h["id"] for h in hosts],
                      "extra_vars": {"steps": args.steps, "step_delay": 0}},
            ).json()  # fmt: skip
            path = f"/jobs/{job['id']}"
            done = wait_for(
                lambda path=path: (j := api.call("GET", path).json())["finished_at"] and j,
                timeout=600, every=0.05,
            )  # fmt: skip
            assert done["status"] == "successful", done
            platform_times.append(done["finished_at"] - start)
            events = done["last_counter"]
            stored = [e["created"] for e in store.job_events.find({"job_id": job["id"]})]
            phases.append((
                done["started_at"] - start, min(stored) - done["started_at"],
                max(stored) - min(stored), done["finished_at"] - max(stored),
            ))  # fmt: skip
        print(f"steps.yml, {args.steps} looped steps on {args.hosts} local hosts, {events} events")
        for name, times in (
            ("bare ansible-playbook", bare_times),
            ("WAP job (API to end)", platform_times),
        ):
            print(f"{name:<22} median {statistics.median(times):6.2f} s  min {min(times):6.2f} s  "
                  f"runs {[round(t, 2) for t in times]}")  # fmt: skip
        names = ("API call to running", "running to 1st event", "1st to last event",
                 "last event to finished")  # fmt: skip
        for name, values in zip(names, zip(*phases, strict=True), strict=True):
            print(f"  {name:<24} median {statistics.median(values):6.3f} s")
        medians = statistics.median(platform_times) / statistics.median(bare_times)
        minimums = min(platform_times) / min(bare_times)
        print(f"ratio of medians {medians:.3f}, of minimums {minimums:.3f}"
              " (the minimum is the least disturbed by other load on the machine)")  # fmt: skip


if __name__ == "__main__":
    main()
