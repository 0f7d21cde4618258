"""Benchmark: time from kill -9 of the primary to a new primary, doubles on three lab hosts.

    .venv/bin/python -m tests.bench.replset_failover [--rounds 5]   (from the repo root, as root)

Each round: majority write, kill -9 the primary's process, poll the survivors' hello every 50 ms
until one is writable primary, then restart the killed member and wait until it is SECONDARY.
Prints the figures; asserts nothing. Expected: electionTimeoutMillis (10 s) plus a random
offset of up to 15 %, minus the time since the last heartbeat the survivors got (up to 2 s).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.mongod_double.labset import lab_replica_set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    failovers, rejoins = [], []
    with tempfile.TemporaryDirectory() as tmp, lab_replica_set(Path(tmp), name="rsbench") as rs:
        for name in rs.names:
            rs.start(name)
        rs.direct(rs.names[0]).admin.command("replSetInitiate", rs.config())
        client = rs.set_client(w="majority")
        for round_ in range(args.rounds):
            primary = rs.wait_primary()
            client.bench.c.insert_one({"round": round_})
            for name in rs.names:
                if name != primary:
                    rs.wait_state(name, "SECONDARY")
            rs.kill(primary)
            killed = time.monotonic()
            new = rs.wait_primary(among=[n for n in rs.names if n != primary], timeout=60)
            failovers.append(time.monotonic() - killed)
            restarted = time.monotonic()
            rs.start(primary)
            rs.wait_state(primary, "SECONDARY", timeout=60)
            rejoins.append(time.monotonic() - restarted)
            print(
                f"round {round_ + 1}: kill -9 {primary} -> primary {new} in "
                f"{failovers[-1]:.2f} s; {primary} back as SECONDARY in {rejoins[-1]:.2f} s",
                flush=True,
            )
    print(
        f"kill -9 primary -> new primary: median {statistics.median(failovers):.2f} s, "
        f"min {min(failovers):.2f} s, max {max(failovers):.2f} s ({len(failovers)} rounds)"
    )
    print(f"restart -> SECONDARY: median {statistics.median(rejoins):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
