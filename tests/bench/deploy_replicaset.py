"""Benchmark: deploy_replicaset.yml for the secured 3-member lab example, from bare lab hosts to a
healthy set, then a re-run that changes nothing.

    .venv/bin/python -m tests.bench.deploy_replicaset [--rounds 1] [--tarball TGZ]   (as root)

Prints the figures; asserts nothing (target: under 60 s from bare hosts). Without --tarball the
mongod double's tarball is built first (not timed). Each round starts a fresh lab; the machine's
load is printed with the figures, since other work on it moves them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.deploy.deployment import Deployment, build_double_tarball, wait_healthy
from tests.labhosts import LabHosts, free_subnet
from wap.lab import Lab


def one_round(tarball: Path, workdir: Path, index: int) -> tuple[float, float, float]:
    lab = Lab(f"bdr{index}")
    lab.down(progress=lambda _m: None)
    state = lab.up(3, free_subnet(skip=140), progress=lambda _m: None)
    try:
        inventory = workdir / f"inventory-{index}.yml"
        inventory.write_text(lab.inventory())
        hosts = LabHosts(lab, inventory, {h.name: h.ip for h in state.hosts.values()})
        deployment = Deployment(hosts, tarball, workdir / f"secrets-{index}")
        started = time.monotonic()
        first = deployment.run("deploy_replicaset.yml", "replicaset.yml")
        played = time.monotonic() - started
        if first.returncode != 0:
            sys.exit(f"deploy failed:\n{first.failures()}")
        with deployment.client(replicaSet="rs0") as client:
            status = wait_healthy(client, 3)
        healthy = time.monotonic() - started
        states = sorted(m["stateStr"] for m in status["members"])
        if states != ["PRIMARY", "SECONDARY", "SECONDARY"]:
            sys.exit(f"the set is not healthy: {states}")
        started = time.monotonic()
        again = deployment.run("deploy_replicaset.yml", "replicaset.yml")
        rerun = time.monotonic() - started
        if again.returncode != 0 or any(again.changed().values()):
            sys.exit(f"the re-run changed something: {again.changed()}\n{again.failures()}")
        return played, healthy, rerun
    finally:
        lab.down(progress=lambda _m: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tarball", type=Path, help="a MongoDB tarball (default: the double's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tarball = args.tarball or build_double_tarball(workdir)
        rounds = [one_round(tarball, workdir, i) for i in range(args.rounds)]
    load = os.getloadavg()
    for label, column in (("playbook, bare hosts to done", 0),
                          ("bare hosts to a healthy set", 1),
                          ("no-change re-run (changed=0)", 2)):  # fmt: skip
        values = [r[column] for r in rounds]
        print(f"{label}: median {statistics.median(values):.1f} s "
              f"(runs: {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip
    print(f"tarball: {tarball.name}; {os.cpu_count()} cores, load average {load[0]:.1f} "
          f"{load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
