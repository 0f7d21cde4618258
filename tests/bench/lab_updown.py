"""Benchmark: time of `wap lab up --hosts N` and `down`, and memory per lab host.

    .venv/bin/python -m tests.bench.lab_updown [--hosts 3] [--rounds 3]   (from the repo root)

Prints the figures; asserts nothing. Memory is the proportional set size (PSS) of every process
of a host, idle after boot and after an Ansible fact gathering.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from tests.labhosts import REPO, VENV_BIN, ansible_env, free_subnet
from wap.lab import Lab


def memory(lab: Lab) -> list[float]:
    return [row["memory_mib"] for row in lab.status()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lab = Lab("bench")
    lab.down(progress=lambda _m: None)
    ups, downs = [], []
    for _ in range(args.rounds):
        started = time.monotonic()
        lab.up(args.hosts, free_subnet(), progress=lambda _m: None)
        ups.append(time.monotonic() - started)
        idle = memory(lab)
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as inventory:
            inventory.write(lab.inventory())
            inventory.flush()
            subprocess.run(
                [str(VENV_BIN / "ansible"), "-i", inventory.name, "all", "-m", "setup"],
                env=ansible_env(), cwd=REPO, capture_output=True, check=True,
            )  # fmt: skip
        busy = memory(lab)
        started = time.monotonic()
        lab.down(progress=lambda _m: None)
        downs.append(time.monotonic() - started)
    print(f"lab up --hosts {args.hosts}: median {statistics.median(ups):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in ups)})")  # fmt: skip
    print(f"lab down: median {statistics.median(downs):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in downs)})")  # fmt: skip
    print(f"memory per host (PSS, MiB): idle {statistics.mean(idle):.1f}, "
          f"after Ansible fact gathering {statistics.mean(busy):.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
