"""Metrics tiers: the newest value per series, chart queries through the API, rollups (min, max,
mean, last per window) equal to what the raw samples give, expiry on time and the tier a query
picks, on the embedded store and on the mongod double. Time is an argument here, never waited
for."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.webui.helpers import Proc, env_for, wait_for
from tests.webui.test_agent_ingest import Platform, body, platform_settings
from webui import create_app
from webui.config import Settings
from webui.services import metrics, overview, rollups
from webui.services.agents import AgentIdentity
from webui.services.rollups import HOUR, MINUTE, Retention
from webui.store import Store

DAY = 86400
RETENTION = Retention()
# A past time on a 6-hour boundary, so that the test's hours fill a whole slice of the 1-hour tier.
T0 = float(1_700_000_000 - 1_700_000_000 % (6 * HOUR))
INTERVAL = 20
SPAN = 6 * HOUR + 35 * MINUTE  # the last minutes within LAG, not rolled up yet


@pytest.fixture
def platform(tmp_path: Path, each_store_server: str, redis_url: str) -> Iterator[Platform]:
    app: Flask = create_app(
        {"WAP_SETTINGS": platform_settings(tmp_path, each_store_server, redis_url),
         "TESTING": True}
    )  # fmt: skip
    yield Platform(app)
    app.extensions["wap.store"].close()


def rounds(start: float, span: float, seed: int = 13) -> list[dict[str, Any]]:
    """One batch every INTERVAL seconds: a load per CPU (labelled) and a connection count."""
    rng = random.Random(seed)
    stream = uuid.uuid4().hex
    out = []
    for seq, k in enumerate(range(int(span // INTERVAL)), start=1):
        at = start + k * INTERVAL + rng.uniform(0, 2)
        samples = [
            {"n": "host_cpu", "l": {"cpu": str(c)}, "v": rng.uniform(0, 100), "k": "g", "t": at}
            for c in range(2)
        ]
        samples.append(
            {"n": "mongodb_connections", "l": {"state": "current"}, "k": "g", "t": at,
             "v": float(rng.randint(0, 500))}
        )  # fmt: skip
        out.append({"stream": stream, "seq": seq, "time": at, "samples": samples, "errors": {},
                    "dropped": {"batches": 0, "samples": 0}})  # fmt: skip
    return out


def wire(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch as an agent sends it."""
    samples = [{"name": s["n"], "labels": s["l"], "value": s["v"], "kind": "gauge",
                "timestamp": s["t"]} for s in batch["samples"]]  # fmt: skip
    return {**batch, "samples": samples}


def expected(batches: list[dict[str, Any]], name: str, labels: dict, width: float) -> dict:
    """Per window of `width` seconds: (min, max, mean, last) of the raw samples."""
    windows: dict[float, list[tuple[float, float]]] = {}
    for batch in batches:
        for s in batch["samples"]:
            if s["n"] == name and s["l"] == labels:
                windows.setdefault(s["t"] - s["t"] % width, []).append((s["t"], s["v"]))
    return {
        t: (min(v for _, v in p), max(v for _, v in p), sum(v for _, v in p) / len(p),
            max(p)[1])
        for t, p in windows.items()
    }  # fmt: skip


def as_windows(series: dict[str, Any]) -> dict:
    return {
        t: (series["min"][i], series["max"][i], series["mean"][i], series["last"][i])
        for i, t in enumerate(series["t"])
    }


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for t in want:
        assert got[t] == pytest.approx(want[t]), t


def load(platform: Platform, batches: list[dict[str, Any]]) -> AgentIdentity:
    agent = AgentIdentity(platform.host["id"], platform.project["id"], "db1")
    for i in range(0, len(batches), 100):
        metrics.store_batches(platform.store, agent, batches[i : i + 100])
    return agent


def chart(store: Store, project_id: str, start: float, end: float, points: int, at: float,
          labels: dict | None = None) -> dict[str, Any]:  # fmt: skip
    return metrics.query(
        store, project_id, names=["host_cpu"], labels=labels or {"cpu": "1"}, start=start,
        end=end, max_points=points, at=at,
    )  # fmt: skip


def test_rollups_equal_the_raw_samples_and_expire_on_time(platform: Platform) -> None:
    store, project = platform.store, platform.project["id"]
    batches = rounds(T0, SPAN)
    load(platform, batches)
    cpu1 = {"cpu": "1"}
    at = T0 + SPAN + 2 * MINUTE
    done = rollups.run(store, RETENTION, at)
    assert done is not None and done["1m"] > 0 and done["1h"] > 0
    assert rollups.cursor(store, "1h") == T0 + 6 * HOUR

    # The stored 1-minute and 1-hour windows are the raw samples' min, max, mean and last.
    def stored(tier: str) -> dict:
        docs = store.db.rollups.find({"tier": tier, "n": "host_cpu", "l.cpu": "1"})
        return {
            t: (d["min"][i], d["max"][i], d["mean"][i], d["last"][i])
            for d in docs for i, t in enumerate(d["t"])
        }  # fmt: skip

    minutes = expected(batches, "host_cpu", cpu1, MINUTE)
    rolled_until = rollups.cursor(store, "1m")
    assert_same(stored("1m"), {t: w for t, w in minutes.items() if t < rolled_until})
    hours = expected(batches, "host_cpu", cpu1, HOUR)
    assert_same(stored("1h"), {t: w for t, w in hours.items() if t < T0 + 6 * HOUR})

    # A query picks its tier by range, and the columns are what the raw samples give, including
    # windows not rolled up yet (computed from the finer tier).
    raw = chart(store, project, T0, T0 + HOUR, 600, at)
    assert raw["tier"] == "raw" and raw["step"] == INTERVAL
    [series] = raw["series"]
    assert series["host_id"] == platform.host["id"] and series["labels"] == cpu1
    assert series["mean"] == series["min"] == series["max"] == series["last"]
    assert len(series["t"]) == HOUR // INTERVAL
    in_hour = [s for b in batches for s in b["samples"]
               if s["n"] == "host_cpu" and s["l"] == cpu1 and s["t"] < T0 + HOUR]  # fmt: skip
    assert (series["t"], series["last"]) == ([s["t"] for s in in_hour], [s["v"] for s in in_hour])
    # the same hour read from the raw samples (its columns gone) answers the same
    store.db.rollups.delete_many({"tier": "raw"})
    store.db.meta.delete_one({"_id": "rollup:1m"})
    assert chart(store, project, T0, T0 + HOUR, 600, at)["series"] == [series]
    rollups.run(store, RETENTION, at)
    assert rollups.cursor(store, "1m") == T0 + SPAN - 3 * MINUTE
    by_minute = chart(store, project, T0, T0 + SPAN, SPAN // (5 * MINUTE), at)
    assert by_minute["tier"] == "1m" and by_minute["step"] == 5 * MINUTE
    assert_same(as_windows(by_minute["series"][0]), expected(batches, "host_cpu", cpu1, 300))
    by_hour = chart(store, project, T0, T0 + 7 * HOUR, 7, at)
    assert by_hour["tier"] == "1h" and by_hour["step"] == HOUR
    assert_same(as_windows(by_hour["series"][0]), hours)

    # Raw samples go after a day, 1-minute rollups after 14 days, 1-hour ones after a year.
    later = T0 + SPAN + DAY
    expired = rollups.run(store, RETENTION, later)
    assert expired is not None and expired["expired"]["raw"] == len(batches)
    assert expired["expired"]["raw columns"] > 0
    assert store.samples.count_documents({}) == 0
    assert store.db.rollups.count_documents({"tier": "raw"}) == 0
    day_after = chart(store, project, T0, T0 + 6 * HOUR, 600, later)
    assert day_after["tier"] == "1m"
    assert_same(as_windows(day_after["series"][0]), {t: w for t, w in minutes.items()
                                                     if t < T0 + 6 * HOUR})  # fmt: skip
    assert rollups.run(store, RETENTION, T0 + 14 * DAY - MINUTE)["expired"]["1m"] == 0
    assert rollups.run(store, RETENTION, T0 + SPAN + 14 * DAY)["expired"]["1m"] > 0
    assert store.db.rollups.count_documents({"tier": "1m"}) == 0
    month_after = chart(store, project, T0, T0 + 6 * HOUR, 600, T0 + 30 * DAY)
    assert month_after["tier"] == "1h"
    assert_same(as_windows(month_after["series"][0]),
                {t: w for t, w in hours.items() if t < T0 + 6 * HOUR})  # fmt: skip
    assert rollups.run(store, RETENTION, T0 + SPAN + 365 * DAY)["expired"]["1h"] > 0
    assert store.db.rollups.count_documents({}) == 0


def minute_slices(host: str, project: str, start: float, span: float) -> dict[float, dict]:
    """1-minute windows of two series (host_cpu of cpu 0 and 1) written as a round writes them,
    a document per series and 10-minute slice; returns the windows stored, per series' cpu and
    time, as (min, max, mean, last, count)."""
    rng = random.Random(21)
    stored: dict[tuple[str, float], tuple] = {}
    documents = []
    for since in range(int(start), int(start + span), 600):
        gathered: rollups.Gathered = {}
        for cpu in ("0", "1"):
            series = rollups.Series(host, project, "host_cpu", {"cpu": cpu})
            for t in range(since, since + 600, MINUTE):
                count = rng.randint(1, 6)
                low, high = sorted((rng.uniform(0, 100), rng.uniform(0, 100)))
                mean, last = rng.uniform(low, high), rng.uniform(low, high)
                series.windows[float(t)] = [low, high, mean * count, count, last, t]
            gathered[(host, ("host_cpu", (("cpu", cpu),)))] = series
        for doc in rollups.rollup_documents("1m", gathered):
            documents.append(doc)
            for i, t in enumerate(doc["t"]):
                stored[(doc["l"]["cpu"], t)] = tuple(
                    doc[c][i] for c in ("min", "max", "mean", "last", "count")
                )
    return stored, documents


def windows_of(store: Store, tier: str) -> dict[tuple[str, float], tuple]:
    """Every stored window of the tier, per cpu label and time; a window stored twice fails."""
    found: dict[tuple[str, float], tuple] = {}
    for doc in store.db.rollups.find({"tier": tier}):
        for i, t in enumerate(doc["t"]):
            assert (doc["l"]["cpu"], t) not in found, (doc["_id"], t)
            found[(doc["l"]["cpu"], t)] = tuple(
                doc[c][i] for c in ("min", "max", "mean", "last", "count")
            )
    return found


def test_compacted_spans_and_days_read_back_as_their_slices(platform: Platform) -> None:
    """Slices merged into spans of an hour and six hours (and 1-hour windows into days, and
    those into 1-day windows) hold exactly the windows of the slices they replace, and charts
    read the same from them; a slice left behind by a round that died is not counted twice."""
    store, project, host = platform.store, platform.project["id"], platform.host["id"]
    cpu1 = {"cpu": "1"}  # the series chart() reads
    day0 = T0 - T0 % DAY
    start, span = day0 + 2 * HOUR, 2 * DAY + 4 * HOUR + 30 * MINUTE
    minutes, documents = minute_slices(host, project, start, span)
    store.db.rollups.insert_many(documents)
    store.db.meta.insert_one({"_id": "rollup:1m", "until": start + span})
    at = start + span + rollups.LAG
    before = {
        days: chart(store, project, start + span - days * DAY, start + span, 600, at)
        for days in (1, 2)
    }
    assert {answer["tier"] for answer in before.values()} == {"1m"}

    rollups.roll_hours(store)
    rollups.roll_days(store)
    hours = windows_of(store, "1h")
    compacted = {tier: rollups.compact(store, tier) for tier in rollups.LEVELS}
    assert compacted["1m"] > 0 and compacted["1h"] > 0
    assert windows_of(store, "1m") == minutes
    assert windows_of(store, "1h") == hours
    # per series: a document of each 6 hours (from 00:00), the three slices after the last
    spans = list(store.db.rollups.find({"tier": "1m", "level": 2}))
    assert len(spans) == 2 * 9
    assert {d["p1"] - d["p0"] for d in spans} == {6 * HOUR}
    assert store.db.rollups.count_documents({"tier": "1m", "level": 1}) == 0
    assert store.db.rollups.count_documents({"tier": "1m", "level": None}) == 2 * 3
    for days, answer in before.items():
        after = chart(store, project, start + span - days * DAY, start + span, 600, at)
        assert after["step"] == answer["step"]
        for was, now_ in zip(answer["series"], after["series"], strict=True):
            assert_same(as_windows(now_), as_windows(was))

    # a slice whose deletion a round did not reach is read once, from its span
    left = next(d for d in documents if d["t0"] == start + DAY + 5 * HOUR and d["l"] == cpu1)
    store.db.rollups.insert_one(left)
    for days, answer in before.items():
        again = chart(store, project, start + span - days * DAY, start + span, 600, at)
        for was, now_ in zip(answer["series"], again["series"], strict=True):
            assert_same(as_windows(now_), as_windows(was))

    # months' charts take whole days from the 1-day windows and the first, partial day (it
    # begins at 02:00) from the 1-hour ones: the same as the 1-minute windows give
    assert rollups.cursor(store, "1d") == day0 + 2 * DAY
    by_day = chart(store, project, start, start + span, 3, at + 20 * DAY)
    assert by_day["tier"] == "1h" and by_day["step"] == DAY
    want = {}
    for (cpu, t), (low, high, mean, last, count) in sorted(minutes.items()):
        if cpu != "1":
            continue
        d = want.setdefault(t - t % DAY, [low, high, 0.0, 0, last])
        d[0], d[1], d[2], d[3], d[4] = (min(d[0], low), max(d[1], high), d[2] + mean * count,
                                        d[3] + count, last)  # fmt: skip
    assert_same(
        as_windows(by_day["series"][0]),
        {t: (w[0], w[1], w[2] / w[3], w[4]) for t, w in want.items()},
    )


def test_a_round_is_not_rolled_twice_and_one_process_rolls_at_a_time(platform: Platform) -> None:
    store = platform.store
    load(platform, rounds(T0, HOUR))
    at = T0 + HOUR + 2 * MINUTE
    rollups.run(store, RETENTION, at)
    first = sorted(d["_id"] for d in store.db.rollups.find({}, {"_id": 1}))
    assert first
    nothing = {
        "1m": 0,
        "1h": 0,
        "1d": 0,
        "compacted": {"raw": 0, "1m": 0, "1h": 0, "1d": 0},
        "expired": {},
    }  # and no expiry again within EXPIRE_EVERY
    assert rollups.run(store, RETENTION, at) == nothing
    assert sorted(d["_id"] for d in store.db.rollups.find({}, {"_id": 1})) == first
    assert rollups._take_lease(store, "someone-else")
    assert rollups.run(store, RETENTION, at) is None


def test_query_picks_the_tier_its_range_needs() -> None:
    at = 1_800_000_000.0
    assert rollups.pick_tier(RETENTION, at - HOUR, at, 600, at) == "raw"
    assert rollups.pick_tier(RETENTION, at - DAY, at, 600, at) == "1m"
    assert rollups.pick_tier(RETENTION, at - 7 * DAY, at, 600, at) == "1m"
    assert rollups.pick_tier(RETENTION, at - 30 * DAY, at, 600, at) == "1h"
    assert rollups.pick_tier(RETENTION, at - 365 * DAY, at, 600, at) == "1h"
    # an hour two days ago is beyond raw retention; an hour a month ago beyond 1-minute's
    assert rollups.pick_tier(RETENTION, at - 2 * DAY, at - 2 * DAY + HOUR, 600, at) == "1m"
    assert rollups.pick_tier(RETENTION, at - 30 * DAY, at - 30 * DAY + HOUR, 600, at) == "1h"


def test_latest_values_and_charts_through_the_api(platform: Platform) -> None:
    project, host = platform.project["id"], platform.host["id"]
    start = time.time() - 10 * MINUTE
    first = rounds(start, 3 * INTERVAL)
    assert platform.send(body(*map(wire, first))).status_code == 200
    latest = platform.api("GET", f"/projects/{project}/metrics/latest").get_json()
    assert [h["host_id"] for h in latest] == [host]
    newest = {(s["name"], s["labels"].get("cpu")): s["value"] for s in latest[0]["samples"]}
    assert newest == {
        ("host_cpu", "0"): first[-1]["samples"][0]["v"],
        ("host_cpu", "1"): first[-1]["samples"][1]["v"],
        ("mongodb_connections", None): first[-1]["samples"][2]["v"],
    }
    assert latest[0]["t"] == first[-1]["time"]
    only = platform.api(
        "GET", f"/projects/{project}/metrics/latest?host={host}&name=mongodb_connections"
    ).get_json()
    assert [s["name"] for s in only[0]["samples"]] == ["mongodb_connections"]

    url = (f"/projects/{project}/metrics?name=host_cpu&name=mongodb_connections&host={host}"
           f"&from={start - MINUTE}&to={start + HOUR}&label=cpu:0")  # fmt: skip
    answer = platform.api("GET", url)
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()
    assert data["tier"] == "raw" and data["step"] == INTERVAL
    assert [(s["name"], s["labels"]) for s in data["series"]] == [("host_cpu", {"cpu": "0"})]
    assert data["series"][0]["t"] == [b["samples"][0]["t"] for b in first]
    assert data["series"][0]["last"] == [b["samples"][0]["v"] for b in first]

    bad = platform.api("GET", f"/projects/{project}/metrics?name=no%20such&from=2&to=1")
    assert bad.status_code == 422
    backwards = platform.api("GET", f"/projects/{project}/metrics?name=host_cpu&from=2&to=1")
    assert backwards.status_code == 422 and "from" in backwards.get_json()["message"]
    anonymous = platform.client.get(f"/api/v1/projects/{project}/metrics/latest")
    assert anonymous.status_code == 401


def test_latest_keeps_series_a_round_missed_and_another_writer_s_values(
    platform: Platform,
) -> None:
    project, host = platform.project["id"], platform.host["id"]
    start = time.time() - 5 * MINUTE
    full = rounds(start, 2 * INTERVAL)
    assert platform.send(body(*map(wire, full))).status_code == 200
    # a round whose MongoDB collector failed carries the host's series only
    partial = rounds(start + 2 * INTERVAL, INTERVAL, seed=5)[0]
    partial["samples"] = [s for s in partial["samples"] if s["n"] == "host_cpu"]
    partial["seq"], partial["errors"] = 3, {"mongodb db1:27017": ["refused"]}
    assert platform.send(body(wire(partial))).status_code == 200

    def newest() -> dict[tuple[str, str | None], float]:
        [latest] = metrics.latest(platform.store, project, [host])
        return {(s["name"], s["labels"].get("cpu")): s["value"] for s in latest["samples"]}

    assert newest() == {
        ("host_cpu", "0"): partial["samples"][0]["v"],
        ("host_cpu", "1"): partial["samples"][1]["v"],
        ("mongodb_connections", None): full[-1]["samples"][2]["v"],
    }
    # another web server's process writes the host's values in between
    other = {"n": "mongodb_up", "l": {}, "v": 1.0, "k": "g", "t": partial["time"]}
    written = platform.store.db.latest.find_one({"_id": host})
    written["samples"].append(other)
    platform.store.db.latest.replace_one({"_id": host}, {**written, "w": uuid.uuid4().hex})
    last = rounds(start + 3 * INTERVAL, INTERVAL, seed=9)[0]
    last["seq"] = 4
    last["samples"] = [s for s in last["samples"] if s["n"] == "mongodb_connections"]
    assert platform.send(body(wire(last))).status_code == 200
    assert newest() == {
        ("host_cpu", "0"): partial["samples"][0]["v"],
        ("host_cpu", "1"): partial["samples"][1]["v"],
        ("mongodb_connections", None): last["samples"][0]["v"],
        ("mongodb_up", None): 1.0,
    }
    # the names the overview reads come from the host's small summary: the same newest values
    [summary] = metrics.latest(platform.store, project, [host], names=overview.HOME_NAMES)
    assert summary["t"] == last["time"]
    assert {(s["name"], s["value"]) for s in summary["samples"]} == {
        ("mongodb_connections", last["samples"][0]["v"]), ("mongodb_up", 1.0)
    }  # fmt: skip


def test_a_worker_rolls_up_on_its_own(
    settings: Settings, store: Store, start_worker: Callable[..., Proc]
) -> None:
    """`wap worker` runs the rounds (in its reaper process) with the time of day: the 1-minute
    windows of samples older than a slice appear without anyone asking."""
    project_host = AgentIdentity("h-worker", "p-worker", "h")
    now = time.time()
    batches = rounds(now - 20 * MINUTE, 12 * MINUTE)
    for i in range(0, len(batches), 100):
        metrics.store_batches(store, project_host, batches[i : i + 100])
    worker = start_worker({**env_for(settings), "WAP_METRICS_ROLLUP_EVERY": "60"})
    # Twelve slices, each a few reads and writes: seconds on a quiet machine, but a CI run at load
    # 12-25 once took more than a minute (the worker and its reaper starting included).
    wait_for(
        # past the last sample: a slice with nothing to roll does not move the cursor, so the
        # end of the samples (8 minutes ago) is not reached when a slice ends just before it
        lambda: (rollups.cursor(store, "1m") or 0) > batches[-1]["time"],
        timeout=240,
        what="the worker's rounds rolling every sample up",
        seen=lambda: {
            "1m cursor, seconds before the test began": now - (rollups.cursor(store, "1m") or 0),
            "worker alive": worker.alive(),
            "worker's log": worker.log.read_text(errors="replace").splitlines()[-5:],
        },
    )
    rolled_until = rollups.cursor(store, "1m")
    docs = store.db.rollups.find({"tier": "1m", "n": "host_cpu", "l.cpu": "0"})
    got = {t: (d["min"][i], d["max"][i], d["mean"][i], d["last"][i])
           for d in docs for i, t in enumerate(d["t"])}  # fmt: skip
    want = expected(batches, "host_cpu", {"cpu": "0"}, MINUTE)
    assert_same(got, {t: w for t, w in want.items() if t < rolled_until})
