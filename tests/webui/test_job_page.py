"""The job page in a real Chromium under a burst of events, and its timeline.

- A burst far larger than the lines the log keeps in its DOM, with a reload in the middle: the
  page holds every line exactly once and in order, the DOM holds only the latest ones, the earlier
  ones come back a click away, and the full log (text) has them all.
- A finished job's timeline: its play and tasks with a bar per host and outcome, drawn live and
  server-rendered on reload, and the same through the API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.webui.helpers import Api, Proc
from tests.webui.test_jobs import project_with_host, start_job, wait_job
from webui.config import Settings
from webui.jobs.publish import Publisher
from webui.jobs.runner import JobRun
from webui.jobs.timeline import fold
from webui.store import Store

pytestmark = pytest.mark.browser

BURST = 6000  # three times the lines the page keeps in its DOM


def login(page: Page, api: Api) -> None:
    page.context.add_cookies(
        [{"name": c.name, "value": c.value, "url": api.base} for c in api.http.cookies]
    )


def caught_up(page: Page) -> None:
    page.wait_for_function("document.querySelector('#job').dataset.caughtUp === '1'")


def in_dom(page: Page) -> list[int]:
    return page.eval_on_selector_all("#log .line", "els => els.map(e => Number(e.dataset.counter))")


def running_job(store: Store, project_id: str) -> dict[str, Any]:
    job = {
        "_id": uuid.uuid4().hex, "project_id": project_id, "playbook": "burst", "host_ids": [],
        "credential_ids": [], "extra_vars": {}, "cluster_id": None, "status": "running",
        "reason": "", "created_by": "admin", "created_at": time.time(), "last_counter": 0,
    }  # fmt: skip
    store.jobs.insert_one(job)
    return job


def feed(run: JobRun, first: int, last: int) -> None:
    """Runner events as fast as the handler takes them (ansible-runner's own callback)."""
    for counter in range(first, last + 1):
        run.event_handler({
            "counter": counter, "uuid": uuid.uuid4().hex, "event": "runner_on_ok",
            "stdout": f"\x1b[0;32mok: [h{counter % 3}] => (item=line {counter})\x1b[0m",
            "event_data": {"host": f"h{counter % 3}", "task": "burst", "res": {"changed": False}},
        })  # fmt: skip


def test_a_burst_shows_every_line_once_in_order_with_a_bounded_log(
    page: Page, admin_api: Api, settings: Settings, store: Store
) -> None:
    project = admin_api.call("POST", "/projects", json={"name": "burst"}).json()
    job = running_job(store, project["id"])
    run = JobRun(store, Publisher(settings.redis_url or ""), settings, job)
    login(page, admin_api)
    page.goto(f"{admin_api.base}/jobs/{job['_id']}")
    caught_up(page)

    feed(run, 1, BURST // 2)
    page.wait_for_function("n => window.wapJob.lines() >= n", arg=BURST // 3, timeout=60_000)
    page.reload()  # mid-burst: the page starts again from the stored events, then live
    caught_up(page)
    feed(run, BURST // 2 + 1, BURST)
    run.close()
    page.wait_for_function("n => window.wapJob.lines() === n", arg=BURST, timeout=60_000)

    held = page.evaluate("window.wapJob.counters()")
    assert held == list(range(1, BURST + 1))  # every line, once, in order
    page.wait_for_function("n => [...document.querySelectorAll('#log .line')].pop()"
                           "?.dataset.counter === String(n)", arg=BURST)  # fmt: skip
    shown = in_dom(page)
    assert 0 < len(shown) <= 2000 and shown == held[-len(shown) :]
    expect(page.locator("#log-hidden")).to_have_text(str(BURST - len(shown)))

    while page.locator("#log-more").is_visible():  # the earlier lines, a click away
        page.click("#log-more")
    assert in_dom(page) == held
    full = page.request.get(admin_api.base + page.get_attribute("#log-full", "href"))
    assert full.ok and full.headers["content-type"].startswith("text/plain")
    lines = full.text().splitlines()
    assert lines == [f"ok: [h{c % 3}] => (item=line {c})" for c in range(1, BURST + 1)]


def test_the_timeline_of_a_finished_job_has_its_tasks_with_a_bar_per_host(
    page: Page, admin_api: Api, start_worker: Callable[[], Proc]
) -> None:
    start_worker()
    project_id, host_ids = project_with_host(admin_api, "tl", hosts=2)
    login(page, admin_api)
    job_id = start_job(admin_api, project_id, host_ids, extra_vars={"steps": 2, "step_delay": 0})
    page.goto(f"{admin_api.base}/jobs/{job_id}")  # live, as it runs
    expect(page.locator("#job-status")).to_have_text("successful", timeout=60_000)
    assert wait_job(admin_api, job_id)["status"] == "successful"

    def bars(task: str) -> dict[str, str]:
        rects = page.locator(f"#timeline tr.tl-task[data-task='{task}'] rect")
        expect(rects).to_have_count(2)
        return {
            rects.nth(i).get_attribute("data-host"): rects.nth(i).get_attribute("data-outcome")
            for i in range(2)
        }

    expect(page.locator("#timeline tr.tl-play[data-play='Steps']")).to_have_count(1)
    # the timeline is drawn at most twice a second: its last drawing may follow the status
    expect(page.locator("#timeline tr.tl-task[data-task='Done'] rect[data-outcome='ok']")
           ).to_have_count(2)  # fmt: skip
    assert bars("Step") == bars("Done") == {"local0": "ok", "local1": "ok"}
    page.reload()  # a finished job: drawn from the server first, then from the stored events
    caught_up(page)
    assert bars("Step") == bars("Done") == {"local0": "ok", "local1": "ok"}
    html = admin_api.http.get(f"{admin_api.base}/jobs/{job_id}").text  # without JavaScript
    assert html.count('data-outcome="ok"') == 4 and 'data-task="Done"' in html

    timeline = admin_api.call("GET", f"/jobs/{job_id}/timeline").json()
    assert timeline["finished"] and sorted(timeline["hosts"]) == ["local0", "local1"]
    (play,) = timeline["plays"]
    assert play["name"] == "Steps" and [t["name"] for t in play["tasks"]] == ["Step", "Done"]
    step, done = play["tasks"]
    for task in (step, done):
        assert sorted(h["host"] for h in task["hosts"]) == ["local0", "local1"]
        for host in task["hosts"]:
            assert host["outcome"] == "ok" and host["end"] >= host["start"]
            assert task["start"] <= host["start"] and host["end"] <= task["end"]
    assert step["end"] <= done["start"]  # the linear strategy: Done waited for Step on every host
    assert timeline["start"] <= step["start"] and done["end"] <= timeline["end"]


def test_the_fold_keeps_a_running_host_and_a_result_without_its_task_start() -> None:
    events = [
        {"counter": 1, "event": "playbook_on_play_start", "play": "P", "uuid": "p", "at": 10.0},
        {"counter": 2, "event": "playbook_on_task_start", "task": "T", "uuid": "t", "at": 11.0},
        {"counter": 3, "event": "runner_on_start", "host": "a", "task_uuid": "t", "at": 11.1},
        {"counter": 4, "event": "runner_on_start", "host": "b", "task_uuid": "t", "at": 11.2},
        {"counter": 5, "event": "runner_on_failed", "host": "a", "task_uuid": "t", "at": 12.0,
         "start": 11.1, "end": 11.9, "ignored": True},
        {"counter": 6, "event": "runner_on_ok", "host": "c", "task": "U", "at": 13.0,
         "changed": True},
    ]  # fmt: skip
    timeline = fold(events)
    (play,) = timeline["plays"]
    task, orphan = play["tasks"]
    assert [(h["host"], h["outcome"], h["end"]) for h in task["hosts"]] == [
        ("a", "ignored", 11.9),
        ("b", "running", None),
    ]
    assert orphan["name"] == "U" and orphan["hosts"][0]["outcome"] == "changed"
    assert timeline["hosts"] == ["a", "b", "c"] and not timeline["finished"]
