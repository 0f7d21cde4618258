"""Benchmark: upgrade_cluster.yml taking the secured 3-member lab example from 6.0 to 8.0 (through
7.0) under a steady w:majority write load: seconds without a primary per member step and in
total, the whole upgrade's time, acknowledged writes lost.

    .venv/bin/python -m tests.bench.upgrade_rolling   (from the repo root, as root)

The double's 6.0.20, 7.0.14 and 8.0.4 tarballs are built first, then deploy_replicaset.yml deploys
6.0.20 on a fresh 3-host lab (neither is timed). A thread polls every member's hello every 0.1 s;
a stretch of polls without a writable primary is attributed to the member whose turn (step-down,
restart, wait) it falls in. Prints the figures; asserts nothing (target: 0 writes lost).

Measured 2026-12-07 13:19-13:23 UTC (2 cores shared with other work, load 3.5 at the start and
7.7 at the end): each member's turn 11-20 s; without a primary 8.9 s in total, 8.6 s of it in the
old 6.0 primary's turn (about an election timeout; a 6.0 primary stepping down before two 7.0
secondaries hands off in 0.03 s on local doubles without keyFile or TLS, so the cause is not that:
not found yet) and 0.2 s in the 7.0 primary's; the playbook 142 s from the plan to FCV 8.0; 2,314
writes acknowledged with w: majority, 3 refused or timed out, 0 acknowledged and lost.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.deploy.deployment import APP, Deployment, PrimaryWatch, build_double_tarball
from tests.deploy.writes import WriteCounter
from tests.labhosts import start_lab
from wap.lab import Lab

FROM, MIDDLE, TO = "6.0.20", "7.0.14", "8.0.4"
INTERVAL = 0.1


def member_turns(output: dict) -> list[dict]:
    """(member, version, wall-clock start, end) of each member's turn, from the json callback."""
    turns: list[dict] = []
    for play in output.get("plays", []):
        for entry in play["tasks"]:
            task = entry["task"]
            name = task["name"].rpartition(" : ")[2]
            start, end = (_wall(task["duration"][k]) for k in ("start", "end"))
            result = next(iter(entry["hosts"].values()), {})
            if name == "Step the member down if it is the primary":
                member = result.get("invocation", {}).get("module_args", {}).get("member", "?")
                turns.append({"member": member, "start": start, "end": end, "version": ""})
            elif turns and name.startswith("Restart the member on the new release, "):
                turns[-1]["version"] = name.rpartition(", ")[2]
            elif turns and name.startswith("Wait until the member serves again"):
                turns[-1]["end"] = end
    return turns


def _wall(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def outages(samples: list[float]) -> list[tuple[float, float]]:
    """Stretches of consecutive polls without a primary, as (start, seconds)."""
    stretches: list[list[float]] = []
    for at in samples:
        if stretches and at - stretches[-1][1] <= 3 * INTERVAL + 0.5:
            stretches[-1][1] = at
        else:
            stretches.append([at, at])
    return [(first, last - first + INTERVAL) for first, last in stretches]


def build_tarballs(workdir: Path) -> dict[str, Path]:
    """The double's tarball of each version the path goes through."""
    return {v: build_double_tarball(workdir / v, v) for v in (FROM, MIDDLE, TO)}


def upgrade_vars(tarballs: dict[str, Path]) -> dict:
    """upgrade_cluster.yml's variables for the path FROM -> MIDDLE -> TO from those tarballs."""
    return {
        "mongodb_upgrade_version": TO,
        "mongodb_upgrade_releases": {"7.0": MIDDLE},
        "mongodb_upgrade_tarballs": [str(tarballs[MIDDLE]), str(tarballs[TO])],
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tarballs = build_tarballs(workdir)
        hosts = start_lab("bup0", 3, workdir, skip=160)
        try:
            deployment = Deployment(hosts, tarballs[FROM], workdir / "secrets")
            first = deployment.run("deploy_replicaset.yml", "replicaset.yml")
            if first.returncode != 0:
                sys.exit(f"deploy failed:\n{first.failures()}")
            addresses = [deployment.address(h) for h in ("lab1", "lab2", "lab3")]
            watch_started = time.time()  # the watch's times count from its start
            with (
                PrimaryWatch(addresses, deployment.secrets / "ca.pem", INTERVAL) as watch,
                deployment.client(replicaSet="rs0", user=APP, authSource="app") as app,
                WriteCounter(app) as counter,
            ):
                started = time.monotonic()
                upgrade = deployment.run(
                    "upgrade_cluster.yml", "replicaset.yml", **upgrade_vars(tarballs)
                )
                total = time.monotonic() - started
            if upgrade.returncode != 0:
                sys.exit(f"upgrade failed:\n{upgrade.failures()}")
            with deployment.client(replicaSet="rs0", user=APP, authSource="app") as app:
                lost = counter.missing(app)
        finally:
            Lab("bup0").down(progress=lambda _m: None)
    gaps = [(watch_started + at, seconds) for at, seconds in outages(watch.without_primary)]
    print(f"upgrade {FROM} -> {MIDDLE} -> {TO}, 3 members, secured (keyFile, TLS):")
    for turn in member_turns(upgrade.output):
        inside = sum(s for at, s in gaps if turn["start"] - 1 <= at <= turn["end"])
        print(f"  {turn['member']} to {turn['version']}: {turn['end'] - turn['start']:.1f} s, "
              f"{inside:.1f} s without a primary")  # fmt: skip
    print(f"without a primary in total: {sum(s for _, s in gaps):.1f} s in {len(gaps)} stretches "
          f"({watch.samples} polls every {INTERVAL} s)")  # fmt: skip
    print(f"upgrade playbook, plan to FCV {TO[:3]}: {total:.1f} s")
    print(f"writes: {len(counter.acknowledged)} acknowledged (w: majority), {counter.failed} "
          f"refused or timed out, {len(lost)} acknowledged and lost")  # fmt: skip
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
