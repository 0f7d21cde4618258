"""Event latency from the job's event handler to the browser, with lost and duplicated lines.

Synthetic runner events are fed at a fixed rate into `JobRun.event_handler` (the callback that
ansible-runner calls for every event): each is stored, published through Redis, relayed by the
Socket.IO server of `wap web` and shown by the job page in Chromium, which notes its arrival.
Latency = arrival in the page - the moment event_handler got the event (same clock); "drawn" is
the same up to the animation frame that put the line in the log's DOM. Lost and duplicated lines
are counted over every line the page holds (its DOM keeps the latest ones, the rest a click
away), and the lines in the DOM must be the latest ones, in order.

    .venv/bin/python -m tests.bench.webui_event_latency [--rates 300,3000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import uuid

import psutil
from playwright.sync_api import sync_playwright

from tests.bench.webui_job_walltime import service_cpu
from tests.bench.webui_platform import platform
from webui.jobs.publish import Publisher
from webui.jobs.runner import JobRun
from webui.jobs.sink import EventSink
from webui.store import Store

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(handler: list[float]) -> dict[str, float]:
    """CPU seconds so far of the platform's services, the runner's event handler and the sink's
    writes (each timed on its own thread: this process also paces the events and drives the
    browser), this whole process, and the browser (Chromium's processes)."""
    used = service_cpu()
    used["handler"], used["sink"] = handler
    times = psutil.Process().cpu_times()
    used["bench process"] = times.user + times.system
    used["chromium"] = 0.0
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in proc.name():
                times = proc.cpu_times()
                used["chromium"] += times.user + times.system
    return used


def run_rate(settings, api, browser, rate: int, seconds: float) -> dict[str, float]:
    project = api.call("POST", "/projects", json={"name": f"bench-{rate}"}).json()
    store = Store(settings.mongodb_uri)
    job_id = uuid.uuid4().hex
    store.jobs.insert_one({
        "_id": job_id, "project_id": project["id"], "playbook": "bench", "host_ids": [],
        "credential_ids": [], "extra_vars": {}, "cluster_id": None, "status": "running",
        "reason": "", "created_by": "bench", "created_at": time.time(), "last_counter": 0,
    })  # fmt: skip
    run = JobRun(
        store, Publisher(settings.redis_url), settings, store.jobs.find_one({"_id": job_id})
    )
    context = browser.new_context(bypass_csp=True)
    cookies = [{"name": c.name, "value": c.value, "url": api.base} for c in api.http.cookies]
    context.add_cookies(cookies)
    page = context.new_page()
    page.goto(f"{api.base}/jobs/{job_id}")
    page.wait_for_function("document.querySelector('#job').dataset.caughtUp === '1'")
    page.evaluate("""() => {
        window.arrivals = [];
        window.created = new Map();
        window.drawn = [];
        window.wapJob.onEvent = ev => {
            window.arrivals.push([ev.counter, Date.now() / 1000 - ev.created]);
            window.created.set(ev.counter, ev.created);
        };
        window.wapJob.onDraw = (from, to) => {
            const now = Date.now() / 1000;
            for (let c = from; c <= to; c++) {
                const t = window.created.get(c);
                if (t !== undefined) window.drawn.push(now - t);
                window.created.delete(c);
            }
        };
    }""")  # fmt: skip
    total = int(rate * seconds)
    threads = [0.0, 0.0]  # CPU seconds of the handler's calls, of the sink's writes
    run.sink = sink = EventSink(store, run.publisher, job_id)
    write = sink._write

    def timed_write(batch: list[dict]) -> None:
        began = time.thread_time()
        write(batch)
        threads[1] += time.thread_time() - began

    sink._write = timed_write  # type: ignore[method-assign]
    cpu_before = cpu_seconds(threads)
    start = time.perf_counter()
    for counter in range(1, total + 1):
        due = start + counter / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        began = time.thread_time()
        run.event_handler({
            "counter": counter, "uuid": uuid.uuid4().hex, "event": "runner_on_ok",
            "stdout": f"\x1b[0;32mok: [host{counter % 7}] => (item=event {counter})\x1b[0m",
            "event_data": {"host": f"h{counter % 7}", "task": "bench", "res": {"changed": False}},
        })  # fmt: skip
        threads[0] += time.thread_time() - began
    sent_for = time.perf_counter() - start
    run.close()  # everything handed over is stored and published
    deadline = time.monotonic() + 30
    while page.evaluate("window.arrivals.length") < total and time.monotonic() < deadline:
        time.sleep(0.2)
    page.wait_for_function(f"window.drawn.length + window.created.size >= {total}")
    cpu = {k: (v - cpu_before[k]) * 1e6 / total for k, v in cpu_seconds(threads).items()}
    arrivals = page.evaluate("window.arrivals")
    drawn = [lat * 1000 for lat in page.evaluate("window.drawn")]
    shown = page.evaluate("window.wapJob.counters()")
    in_dom = page.eval_on_selector_all(
        "#log .line", "els => els.map(e => Number(e.dataset.counter))"
    )
    context.close()
    store.close()
    assert in_dom == shown[len(shown) - len(in_dom) :], "the log's DOM is not the latest lines"
    latencies = [lat * 1000 for _, lat in arrivals]
    return {
        "cpu_ms_per_1000": cpu,
        "rate": rate,
        "achieved": total / sent_for,
        "events": total,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        "drawn_p99_ms": percentile(drawn, 0.99) if drawn else float("nan"),
        "in_dom": len(in_dom),
        "lost": len(set(range(1, total + 1)) - set(shown)),
        "duplicated": len(shown) - len(set(shown)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="300,3000")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with platform(workers=0) as (settings, api, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        columns = ("target/s", "achieved/s", "events", "p50 ms", "p99 ms", "drawn p99", "lost",
                   "dup", "in DOM")  # fmt: skip
        print(" ".join(f"{c:>11}" for c in columns))
        for rate in (int(r) for r in args.rates.split(",")):
            r = run_rate(settings, api, browser, rate, args.seconds)
            print(f"{r['rate']:>11} {r['achieved']:>11.0f} {r['events']:>11} {r['p50_ms']:>11.1f} "
                  f"{r['p99_ms']:>11.1f} {r['drawn_p99_ms']:>11.1f} {r['lost']:>11} "
                  f"{r['duplicated']:>11} {r['in_dom']:>11}")  # fmt: skip
            print("    CPU ms per 1,000 events: " + ", ".join(
                f"{name} {ms:.0f}" for name, ms in r["cpu_ms_per_1000"].items()))  # fmt: skip
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        browser.close()


if __name__ == "__main__":
    main()
