"""A job's wall time through the platform against a bare `ansible-playbook` run of the same
playbook on the same hosts.

Platform time: from the API call that starts the job to its `finished_at` (queueing, the worker,
ansible-runner, storing and publishing every event). Bare time: the ansible-playbook process.

Two playbooks: the test playbook `steps.yml` on local hosts (seconds long: the platform's fixed
cost shows most), or with `--lab` (as root) the no-change re-run of deploy_replicaset.yml on three
lab hosts after one deployment (a real job: SSH, every role's checks, ~30 s).

    .venv/bin/python -m tests.bench.webui_job_walltime [--runs 3] [--steps 20] [--hosts 3] [--lab]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ansible_runner
import psutil
import yaml

from tests.bench.webui_platform import platform
from tests.deploy.deployment import build_double_tarball
from tests.labhosts import free_subnet
from tests.webui.helpers import PLAYBOOKS, wait_for
from wap.lab import Lab, LabError
from webui.config import REPO_ROOT
from webui.jobs.runner import inventory_for
from webui.jobs.store import all_events
from webui.store import Store


@dataclass
class Workload:
    """One playbook on some hosts, run bare and as a job the same way."""

    playbook: Path
    inventory: Path  # for the bare run: the job's own inventory, plus the SSH key file
    extra_vars: dict
    job: dict  # the API body that starts it as a job (without extra_vars)


def bare_run(work: Workload) -> float:
    """ansible-playbook as a terminal would run it, with SSH connections as cold as a job's:
    ansible-runner gives every job its own ControlPath dir, so no SSH master connection of an
    earlier run (ControlPersist) is reused; a shared one would flatter the bare runs."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="bare-cp-") as control:
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = control
        start = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work.inventory),
             str(work.playbook), "-e", json.dumps(work.extra_vars)],
            check=True, stdout=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        return time.perf_counter() - start


SERVICES = {"store (nx-27017)": "-m webui.store.embedded_server", "redis-server": "redis-server",
            "web (Socket.IO relay)": "-m wap.cli web"}  # fmt: skip


def service_cpu() -> dict[str, float]:
    """CPU seconds used so far by the platform's long-lived processes (children of this one). A
    service that no process matches is an error, not a zero (the web relay read 0 for a while:
    it was looked for under a command line it no longer had)."""
    used: dict[str, float] = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.cmdline())  # redis-server rewrites its own as one string
            for name, marker in SERVICES.items():
                if marker in line:
                    times = proc.cpu_times()
                    used[name] = used.get(name, 0.0) + times.user + times.system
    missing = set(SERVICES) - set(used)
    if missing:
        raise RuntimeError(f"no process found for {', '.join(sorted(missing))}")
    return used


def runner_run(work: Workload) -> float:
    """The same run through ansible-runner alone (no store, no Redis, no worker), logging in
    as a job does (the key in ssh-agent): what the runner costs by itself, against what the
    platform around it costs."""
    inventory = json.loads(work.inventory.read_text())
    key_file = inventory["all"].get("vars", {}).pop("ansible_ssh_private_key_file", None)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": path}
    with tempfile.TemporaryDirectory(prefix="bare-runner-", dir="/dev/shm") as private:
        start = time.perf_counter()
        done = ansible_runner.run(
            private_data_dir=private, project_dir=str(work.playbook.parent),
            playbook=work.playbook.name, inventory=inventory, extravars=work.extra_vars,
            envvars=env, suppress_env_files=True, quiet=True, event_handler=lambda _e: False,
            ssh_key=Path(key_file).read_text() if key_file else None,  # ssh-agent, as a job
        )  # fmt: skip
        elapsed = time.perf_counter() - start
    assert done.status == "successful", done.status
    return elapsed


def local_steps(api, root: Path, project_id: str, hosts: int, steps: int) -> Workload:
    registered = [
        api.call(
            "POST", f"/projects/{project_id}/hosts",
            json={"name": f"local{n}", "address": "127.0.0.1", "connection": "local"},
        ).json()
        for n in range(hosts)
    ]  # fmt: skip
    inventory = root / "inventory.json"
    inventory.write_text(json.dumps(inventory_for(registered_hosts(registered))))
    return Workload(
        PLAYBOOKS / "steps.yml", inventory, {"steps": steps, "step_delay": 0},
        {"playbook": "steps.yml", "host_ids": [h["id"] for h in registered]},
    )  # fmt: skip


def lab_rerun(api, root: Path, project_id: str, stack: contextlib.ExitStack) -> Workload:
    """Three lab hosts with the secured replica set deployed once (bare); the workload is the
    no-change re-run of deploy_replicaset.yml."""
    lab = Lab(f"bw{os.getpid() % 10000}")  # its own name: two benches may run side by side
    with contextlib.suppress(LabError):
        lab.down(progress=lambda _m: None)
    state = lab.up(3, free_subnet(skip=150), progress=lambda _m: None)
    stack.callback(lab.down, progress=lambda _m: None)
    registered = [
        api.call(
            "POST", f"/projects/{project_id}/hosts",
            json={"name": h.name, "address": h.ip, "user": "root", "connection": "ssh"},
        ).json()
        for h in state.hosts.values()
    ]  # fmt: skip
    key = api.call(
        "POST", f"/projects/{project_id}/credentials",
        json={"name": "lab", "kind": "ssh_key",
              "fields": {"username": "root", "private_key": lab.key_file.read_text()}},
    ).json()  # fmt: skip
    # A job on the hosts, not a cluster's: creating a cluster through the API deploys it at once,
    # with the platform's variables; the bench runs the lab's own on both sides.
    inventory_data = inventory_for(registered_hosts(registered))
    inventory_data["all"]["vars"] = {"ansible_ssh_private_key_file": str(lab.key_file)}
    inventory = root / "lab-inventory.json"
    inventory.write_text(json.dumps(inventory_data))
    # jobs take data, not templates: the lab's variables as a person types them in the console
    text = (REPO_ROOT / "inventory" / "lab" / "replicaset.yml").read_text()
    text = text.replace("{{ wap_lab_admin_password }}", "wap-lab-admin")
    for host in state.hosts.values():
        text = text.replace(f"{{{{ hostvars['{host.name}']['ansible_host'] }}}}", host.ip)
    extra = yaml.safe_load(text)
    extra.update(
        mongodb_install_tarball=str(build_double_tarball(root)),
        mongodb_security_secrets_dir=str(root / "secrets"),
    )
    work = Workload(
        REPO_ROOT / "playbooks" / "deploy_replicaset.yml", inventory, extra,
        {"playbook": "deploy_replicaset.yml", "host_ids": [h["id"] for h in registered],
         "credential_ids": [key["id"]]},
    )  # fmt: skip
    print(f"deploying the replica set once on {', '.join(h.ip for h in state.hosts.values())}")
    bare_run(work)
    return work


def registered_hosts(answers: list[dict]) -> list[dict]:
    """API answers as the store's host documents, which inventory_for takes."""
    return [{**h, "_id": h["id"]} for h in answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--lab", action="store_true", help="deploy_replicaset.yml on lab hosts")
    args = parser.parse_args()
    playbooks = REPO_ROOT / "playbooks" if args.lab else PLAYBOOKS
    with contextlib.ExitStack() as stack:
        settings, api, root = stack.enter_context(platform(workers=1, playbooks=playbooks))
        store = Store(settings.mongodb_uri or "")
        project = api.call("POST", "/projects", json={"name": "walltime"}).json()
        if args.lab:
            work = lab_rerun(api, root, project["id"], stack)
        else:
            work = local_steps(api, root, project["id"], args.hosts, args.steps)
        platform_times, bare_times, runner_times, events, phases = [], [], [], 0, []
        service_seconds: list[dict[str, float]] = []
        for _ in range(args.runs):
            bare_times.append(bare_run(work))
            runner_times.append(runner_run(work))
            cpu_before = service_cpu()
            start = time.time()
            job = api.call(
                "POST", f"/projects/{project['id']}/jobs",
                json={**work.job, "extra_vars": work.extra_vars},
            ).json()  # fmt: skip
            assert "id" in job, job
            path = f"/jobs/{job['id']}"
            done = wait_for(
                lambda path=path: (j := api.call("GET", path).json())["finished_at"] and j,
                timeout=600, every=1.0,  # finished_at is stored; polling often loads the platform
            )  # fmt: skip
            assert done["status"] == "successful", done
            platform_times.append(done["finished_at"] - start)
            cpu_after = service_cpu()
            service_seconds.append({k: cpu_after.get(k, 0) - v for k, v in cpu_before.items()})
            events = done["last_counter"]
            stored = [e["created"] for page in all_events(store, job["id"]) for e in page]
            phases.append((
                done["started_at"] - start, min(stored) - done["started_at"],
                max(stored) - min(stored), done["finished_at"] - max(stored),
            ))  # fmt: skip
        print(f"{work.playbook.name} on {len(work.job.get('host_ids') or [1, 2, 3])} hosts, "
              f"{events} events")  # fmt: skip
        for name, times in (
            ("bare ansible-playbook", bare_times),
            ("ansible-runner alone", runner_times),
            ("WAP job (API to end)", platform_times),
        ):
            print(f"{name:<22} median {statistics.median(times):6.2f} s  min {min(times):6.2f} s  "
                  f"runs {[round(t, 2) for t in times]}")  # fmt: skip
        names = ("API call to running", "running to 1st event", "1st to last event",
                 "last event to finished")  # fmt: skip
        for name, values in zip(names, zip(*phases, strict=True), strict=True):
            print(f"  {name:<24} median {statistics.median(values):6.3f} s")
        for name in service_seconds[0]:
            used = statistics.median(run[name] for run in service_seconds)
            print(f"  CPU of {name:<21} median {used:6.2f} s per job")
        medians = statistics.median(platform_times) / statistics.median(bare_times)
        minimums = min(platform_times) / min(bare_times)
        print(f"ratio of medians {medians:.3f}, of minimums {minimums:.3f}"
              " (the minimum is the least disturbed by other load on the machine)")  # fmt: skip
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
