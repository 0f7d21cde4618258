"""Benchmark: upgrade_cluster.yml taking the secured sharded lab example (config servers, two
shards of three members, two routers) from 6.0 to 8.0 (through 7.0) under a steady w:majority
write load through both routers: seconds without a primary in each replica set, per member step
and in total, the whole upgrade's time, acknowledged writes lost.

    .venv/bin/python -m tests.bench.upgrade_sharded   (from the repo root, as root)

The double's 6.0.20, 7.0.14 and 8.0.4 tarballs are built first, then deploy_sharded.yml deploys
6.0.20 on a fresh 3-host lab (neither is timed). A thread per replica set polls its members'
hello every 0.1 s; a stretch of polls without a writable primary is attributed to the member whose
turn (step-down, restart, wait) it falls in. Prints the figures; asserts nothing (target: 0
writes lost).

Measured 2026-12-07 16:33-16:40 UTC (2 cores shared with other work, load 3.4-4.5): each
member's turn 5-10 s; without a primary 0.2 s (config servers), 0.5 s and 0.7 s (the shards),
1.4 s in all, each at a primary's step-down (0.0-0.6 s) and none at a secondary's; the playbook
183 s from the plan to FCV 8.0 (18 member turns, 4 router turns, two FCV changes through a
mongos); 2,842 writes acknowledged with w: majority through the two routers, none refused, none
lost.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pymongo

from tests.bench.upgrade_rolling import (
    FROM,
    INTERVAL,
    MIDDLE,
    TO,
    build_tarballs,
    member_turns,
    outages,
    upgrade_vars,
)
from tests.deploy.deployment import APP, Deployment, PrimaryWatch
from tests.deploy.writes import WriteCounter
from tests.labhosts import start_lab
from wap.lab import Lab

SETS = {"cfg": 27019, "shard1": 27018, "shard2": 27020}
HOSTS = ("lab1", "lab2", "lab3")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tarballs = build_tarballs(workdir)
        hosts = start_lab("bsh0", 3, workdir, skip=170)
        try:
            deployment = Deployment(hosts, tarballs[FROM], workdir / "secrets")
            first = deployment.run("deploy_sharded.yml", "sharded.yml")
            if first.returncode != 0:
                sys.exit(f"deploy failed:\n{first.failures()}")
            ca = deployment.secrets / "ca.pem"
            watch_started = time.time()  # the watches' times count from their start
            with ExitStack() as stack:
                watches = {
                    name: stack.enter_context(PrimaryWatch(
                        [deployment.address(h, port) for h in HOSTS], ca, INTERVAL))
                    for name, port in SETS.items()
                }  # fmt: skip
                app = stack.enter_context(pymongo.MongoClient(
                    [deployment.address(h) for h in ("lab1", "lab2")], tls=True, tlsCAFile=str(ca),
                    username=APP[0], password=APP[1], authSource="app"))  # fmt: skip
                counter = stack.enter_context(WriteCounter(app))
                started = time.monotonic()
                upgrade = deployment.run(
                    "upgrade_cluster.yml", "sharded.yml", **upgrade_vars(tarballs)
                )
                total = time.monotonic() - started
            if upgrade.returncode != 0:
                sys.exit(f"upgrade failed:\n{upgrade.failures()}")
            with pymongo.MongoClient(
                deployment.address("lab1"),
                tls=True,
                tlsCAFile=str(ca),
                username=APP[0],
                password=APP[1],
                authSource="app",
            ) as app:
                lost = counter.missing(app)  # fmt: skip
        finally:
            Lab("bsh0").down(progress=lambda _m: None)
    print(f"upgrade {FROM} -> {MIDDLE} -> {TO}, sharded: config servers and 2 shards of 3 members,"
          " 2 routers, secured (keyFile, TLS):")  # fmt: skip
    turns = member_turns(upgrade.output)
    grand = 0.0
    for name, watch in watches.items():
        gaps = [(watch_started + at, seconds) for at, seconds in outages(watch.without_primary)]
        grand += sum(s for _, s in gaps)
        print(f"  {name}: without a primary {sum(s for _, s in gaps):.1f} s in {len(gaps)} "
              f"stretches ({watch.samples} polls)")  # fmt: skip
        port = f":{SETS[name]}"
        for turn in (t for t in turns if t["member"].endswith(port)):
            inside = sum(s for at, s in gaps if turn["start"] - 1 <= at <= turn["end"])
            print(f"    {turn['member']} to {turn['version']}: {turn['end'] - turn['start']:.1f} s,"
                  f" {inside:.1f} s without a primary")  # fmt: skip
    print(f"without a primary, all sets together: {grand:.1f} s")
    print(f"upgrade playbook, plan to FCV {TO[:3]}: {total:.1f} s")
    print(f"writes through the routers: {len(counter.acknowledged)} acknowledged (w: majority), "
          f"{counter.failed} refused or timed out, {len(lost)} acknowledged and lost")  # fmt: skip
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
