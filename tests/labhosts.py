"""Lab hosts as tests use them: a handle on a running lab, a free subnet, Ansible's environment."""

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from wap.lab import Lab, LabError

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@dataclass
class LabHosts:
    """A running lab as a test sees it."""

    lab: Lab
    inventory: Path
    hosts: dict[str, str]  # name -> address

    def ssh(self, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command on a lab host over SSH, as Ansible would reach it."""
        return subprocess.run(
            ["ssh", "-i", str(self.lab.key_file), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
             f"root@{self.hosts[host]}", command],
            capture_output=True, text=True, check=check, timeout=60,
        )  # fmt: skip


# Labs of parallel test workers look for free subnets in different slices of the range, so that
# two workers rarely race for one (the lab's lock and the retries in start_lab settle the rest),
# and a range picked before any route exists (a VPC's, see tests/aws) is not picked twice.
WORKER_SLICES = 8


def worker_index() -> int:
    """This pytest-xdist worker's number (gw3 -> 3); 0 when the tests run in one process."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


def free_subnet(base: str = "10.213.0.0/16", prefix: int = 24, skip: int = 100) -> str:
    """A /prefix of `base` that no route of the machine uses yet (labs of other runs included),
    after the first `skip` ones, looked for from this worker's slice on."""
    routes = json.loads(
        subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout or "[]"
    )
    used = [
        ipaddress.IPv4Network(r["dst"], strict=False)
        for r in routes
        if r.get("dst") not in (None, "default")
    ]
    candidates = list(ipaddress.IPv4Network(base).subnets(new_prefix=prefix))[skip:]
    start = (worker_index() % WORKER_SLICES) * (len(candidates) // WORKER_SLICES)
    for net in candidates[start:] + candidates[:start]:
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError(f"no free /{prefix} left in {base}")


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env


def start_lab(name: str, hosts: int, workdir: Path, skip: int = 100) -> LabHosts:
    """Bring up a lab of N hosts on a free subnet (after removing leftovers of a killed run of the
    same name) and write its inventory into workdir."""
    lab = Lab(name)
    with contextlib.suppress(LabError):
        lab.down(progress=lambda _msg: None)
    for attempt in range(5):  # another test run may take the same free subnet first
        try:
            state = lab.up(hosts, free_subnet(skip=skip + attempt), progress=lambda _m: None)
            break
        except LabError as exc:
            if "overlaps" not in str(exc) or attempt == 4:
                raise
    inventory = workdir / f"{name}-inventory.yml"
    inventory.write_text(lab.inventory())
    return LabHosts(lab, inventory, {h.name: h.ip for h in state.hosts.values()})
