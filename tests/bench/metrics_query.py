"""Chart query bench: metrics.query p50/p99 for the last hour (raw), 24 h (1-minute rollups),
30 days and a year (1-hour rollups), of one series and of a 12-series dashboard, on the embedded
store (nx-27017); and the stored bytes per point of each tier (BSON: the rounds' documents and
the raw columns hold the same samples). Not a test: figures only.

The host has 100 series every 10 s for the last 24 h, rolled up by webui.services.rollups as
the workers do; the older 1-minute (13 days) and 1-hour (a year) slices are written with the same
code for the 12 dashboard series (the other 88 would only add documents the index skips), then
rolled into days and compacted as the workers' rounds do.

Usage: python -m tests.bench.metrics_query [--repeat 30]

Measured (19:50-19:55 UTC, load 1.2, --repeat 20), p50 / p99 ms, after compaction and 1-day
windows (before them, after migration 7, load 2-3, in the closing note):
| range | 1 series | 12-series dashboard |
| 1 h (raw) | 95 / 136 (178 / 213) | 145 / 186 (229 / 327) |
| 24 h (1 min) | 95 / 148 (237 / 356) | 247 / 313 (917 / 1,344) |
| 30 d (1 h) | 106 / 141 (214 / 380) | 197 / 241 (491 / 757) |
| 1 y (1 day) | 102 / 133 (327 / 453) | 269 / 325 (1,858 / 2,475) |
Filled in 247 s (rolled into days and compacted in 105 s). Stored bytes per point: raw rounds
116, raw columns 26, 1-minute 76, 1-hour 78, 1-day 92. A chart's floor is the raw rounds after
the last rolled-up minute (5 to 7 minutes and a minute's margin, ~45 rounds of 100 series: about
80 ms of the store's CPU); the dashboards' rest is the bytes of their 12 series' documents.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import bson

from tests.webui.helpers import Proc, free_port, wait_for
from webui.embedded import _store_ready
from webui.services import metrics, rollups
from webui.services.rollups import HOUR, HOUR_SLICE, MINUTE, Retention, Series
from webui.store import Store

DAY = 86400
SERIES = 100
INTERVAL = 10
DASHBOARD = [f"mongodb_bench_series_{i}" for i in range(12)]
LABELS = {"instance": "db:27017", "kind": "0"}


def samples(at: float, rng: random.Random) -> list[dict]:
    return [
        {"n": f"mongodb_bench_series_{i % 25}", "l": {"instance": "db:27017", "kind": str(i // 25)},
         "v": rng.uniform(0, 1000), "k": "g", "t": at}
        for i in range(SERIES)
    ]  # fmt: skip


def fill(store: Store, at: float) -> None:
    rng = random.Random(7)
    start = at - DAY
    docs = []
    stream = uuid.uuid4().hex
    for seq, k in enumerate(range(int(DAY // INTERVAL)), start=1):
        t = start + k * INTERVAL
        w = rollups.slot(t)
        docs.append({"_id": f"h0:{stream}:{seq}", "host_id": "h0", "project_id": "p",
                     "stream": stream, "seq": seq, "t": t, "w": w, "hw": f"h0:{w}",
                     "pw": f"p:{w}", "received_at": t, "errors": {}, "dropped": {},
                     "samples": samples(t, rng)})  # fmt: skip
        if len(docs) == 500:
            store.samples.insert_many(docs)
            docs = []
    if docs:
        store.samples.insert_many(docs)
    first_rolled = rollups.cursor(store, "1m")
    rollups.roll_minutes(store, Retention(), at)
    rollups.roll_hours(store)
    # older slices of the dashboard's series, as the rounds of the days before would have left
    first_rolled = start - start % MINUTE if first_rolled is None else first_rolled
    older: list[dict] = []

    def slices(tier: str, width: int, every: int, since: float, until: float) -> None:
        t = since
        while t < until:
            gathered = {}
            for name in DASHBOARD:
                series = Series("h0", "p", name, LABELS)
                for w in range(int(t), int(min(t + every, until)), width):
                    v = rng.uniform(0, 1000)
                    series.windows[float(w)] = [v / 2, v * 2, v * width / INTERVAL,
                                                width / INTERVAL, v, w]  # fmt: skip
                gathered[("h0", name)] = series
            older.extend(rollups.rollup_documents(tier, gathered))
            if len(older) >= 1000:
                store.db.rollups.insert_many(older)
                older.clear()
            t += every

    slices("1m", MINUTE, 600, start - 13 * DAY - start % 600, start - start % 600)
    hours_from = start - start % HOUR_SLICE  # where roll_hours began with the raw day's windows
    slices("1h", HOUR, HOUR_SLICE, hours_from - 365 * DAY, hours_from)
    if older:
        store.db.rollups.insert_many(older)
    # the days and compaction of those slices, as the workers' rounds do (after an upgrade, the
    # first rounds convert what earlier versions stored this way)
    t0 = time.time()
    days = rollups.roll_days(store)
    compacted = {tier: rollups.compact(store, tier) for tier in rollups.LEVELS}
    print(f"{days} 1-day documents, compacted {compacted} in {time.time() - t0:.0f} s")


def bytes_per_point(store: Store) -> dict[str, float]:
    raw = list(store.samples.find({}).limit(200))
    out = {
        "raw rounds": sum(len(bson.encode(d)) for d in raw) / sum(len(d["samples"]) for d in raw)
    }
    for tier in ("raw", "1m", "1h", "1d"):
        docs = list(store.db.rollups.find({"tier": {"$eq": tier}}).limit(2000))
        out[tier] = sum(len(bson.encode(d)) for d in docs) / sum(len(d["t"]) for d in docs)
    return out


@contextlib.contextmanager
def embedded_store() -> Iterator[tuple[Proc, Store]]:
    """The embedded store's server in a directory of its own, and a Store on it (not migrated:
    the caller decides); both gone at the end."""
    with tempfile.TemporaryDirectory(prefix="wap-bench-") as tmp:
        port = free_port()
        proc = Proc(
            [sys.executable, "-m", "webui.store.embedded_server", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", tmp, "--log-file", f"{tmp}/store.log",
             "--pid-file", f"{tmp}/store.pid"],
            Path(tmp) / "store.out",
        )  # fmt: skip
        try:
            uri = f"mongodb://127.0.0.1:{port}/wap"
            wait_for(_store_ready(uri), what="store")
            store = Store(uri)
            try:
                yield proc, store
            finally:
                store.close()
        finally:
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with embedded_store() as (_proc, store):
        store.migrate()
        at = time.time()
        t0 = time.time()
        fill(store, at)
        count = store.db.rollups.count_documents
        print(
            f"filled in {time.time() - t0:.0f} s: {store.samples.count_documents({})} raw "
            f"batches, {count({'tier': '1m'})} 1-minute, {count({'tier': '1h'})} 1-hour and "
            f"{count({'tier': '1d'})} 1-day documents"
        )
        print(f"load average before the queries: {os.getloadavg()}")
        for label, span in (("1 h", HOUR), ("24 h", DAY), ("30 d", 30 * DAY),
                            ("1 y", 365 * DAY)):  # fmt: skip
            for what, names in (("1 series", DASHBOARD[:1]), ("12 series", DASHBOARD)):
                times = []
                for _ in range(args.repeat):
                    q0 = time.perf_counter()
                    answer = metrics.query(store, "p", names=names, host_id="h0",
                                           labels={"kind": "0"}, start=at - span, end=at,
                                           at=at)  # fmt: skip
                    times.append(1000 * (time.perf_counter() - q0))
                times.sort()
                points = sum(len(s["t"]) for s in answer["series"])
                print(
                    f"{label:5s} {what:9s}: tier {answer['tier']:3s} step {answer['step']:6.0f}"
                    f" s, {len(answer['series'])} series, {points} points: p50 "
                    f"{statistics.median(times):6.1f} ms p99 "
                    f"{times[min(len(times) - 1, int(0.99 * len(times)))]:6.1f} ms"
                )
        for tier, size in bytes_per_point(store).items():
            print(f"stored bytes per point (BSON), {tier}: {size:.0f}")


if __name__ == "__main__":
    main()
