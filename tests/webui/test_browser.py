"""The console in a real Chromium (Debian's, driven by Playwright): setup, login, hosts,
credentials, a live job whose lines arrive exactly once across reloads and a web-server restart;
a read-only user can neither start a job nor follow another project's job."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.webui.helpers import PASSWORD, Api, Proc

pytestmark = pytest.mark.browser


def shown_counters(page: Page) -> list[int]:
    return page.eval_on_selector_all("#log .line", "els => els.map(e => Number(e.dataset.counter))")


def wait_lines(page: Page, at_least: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#log .line').length >= n", arg=at_least, timeout=30_000
    )


def test_setup_login_and_a_live_job_without_lost_or_doubled_lines(
    page: Page, web: str, start_web: Callable[[], str], start_worker: Callable[[], Proc],
    processes: list[Proc],
) -> None:  # fmt: skip
    start_worker()
    page.goto(web + "/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("#setup-form button")
    expect(page.locator("h1")).to_have_text("Overview")

    page.click("text=Log out")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button")
    page.click("nav >> text=Projects")
    page.fill("#project-form input[name=name]", "demo")
    page.click("#project-form button")
    page.fill("#host-form input[name=name]", "local1")
    page.fill("#host-form input[name=address]", "127.0.0.1")
    page.select_option("#host-form select[name=connection]", "local")
    page.click("#host-form button")
    page.fill("#credential-form input[name=name]", "db")
    page.select_option("#credential-form select[name=kind]", "mongodb")
    page.fill("#credential-form input[name=username]", "app")
    page.fill("#credential-form input[name=password]", "s3cret-pass-for-db")
    page.click("#credential-form button")
    expect(page.locator(".flash.ok")).to_contain_text("will not be shown again")
    assert "s3cret-pass-for-db" not in page.content()

    page.select_option("#job-form select[name=playbook]", "slow_steps.yml")
    page.click("#job-form button")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]

    wait_lines(page, 4)
    page.reload()  # mid-job
    wait_lines(page, 8)
    first_web = processes[0]
    first_web.stop()  # the web server goes away mid-job...
    page.wait_for_function("document.querySelector('#job').dataset.caughtUp === '0'")
    start_web()  # ...and comes back on the same port: the page reconnects by itself
    page.wait_for_function(
        "document.querySelector('#job').dataset.caughtUp === '1'", timeout=30_000
    )
    page.reload()
    # Thirty Ansible steps: on a loaded machine (the suite runs four lab modules at once) they
    # take minutes rather than the ~10 s they take alone.
    expect(page.locator("#job-status")).to_have_text("successful", timeout=240_000)
    page.wait_for_function("document.querySelector('#job').dataset.caughtUp === '1'")

    stored = page.request.get(f"{web}/api/v1/jobs/{job_id}/events?after=0").json()
    expected = [e["counter"] for e in stored if e["stdout"]]
    shown = shown_counters(page)
    assert shown == expected, "every stored line exactly once, in order"
    expect(page.locator("#log")).to_contain_text("slow step 30")
    expect(page.locator("#recap")).to_be_visible()
    expect(page.locator("#recap-table")).to_contain_text("local1")
    assert page.text_content("#hosts-changed") == "1"  # the looped task, once per host
    assert page.text_content("#tasks-done") == "2"
    assert page.locator("#log .ansi-32").count() > 0  # ANSI colours became styles


def test_read_only_user_cannot_start_jobs_or_follow_other_projects(
    page: Page, admin_api: Api, start_worker: Callable[[], Proc], web: str
) -> None:
    start_worker()
    ids = {}
    for name in ("mine", "theirs"):
        project = admin_api.call("POST", "/projects", json={"name": name}).json()
        host = admin_api.call(
            "POST", f"/projects/{project['id']}/hosts",
            json={"name": "h", "address": "127.0.0.1", "connection": "local"},
        ).json()  # fmt: skip
        job = admin_api.call(
            "POST", f"/projects/{project['id']}/jobs",
            json={"playbook": "steps.yml", "host_ids": [host["id"]], "extra_vars": {"steps": 1}},
        ).json()  # fmt: skip
        ids[name] = (project["id"], job["id"])
    admin_api.call("POST", "/users", json={"username": "reader", "password": PASSWORD})
    admin_api.call(
        "PUT",
        f"/projects/{ids['mine'][0]}/members",
        json={"username": "reader", "role": "read-only"},
    )

    page.goto(web + "/login")
    page.fill("input[name=username]", "reader")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button")
    page.goto(f"{web}/projects/{ids['mine'][0]}")
    expect(page.locator("h1")).to_contain_text("read-only")
    assert page.locator("#job-form").count() == 0
    assert page.locator("#credential-form").count() == 0

    page.goto(f"{web}/jobs/{ids['mine'][1]}")
    page.wait_for_function("document.querySelector('#job').dataset.caughtUp === '1'")
    assert page.locator("#cancel-form").count() == 0
    answer = page.evaluate(
        """jobId => new Promise(resolve => {
            const s = io('/jobs');
            s.on('connect', () => s.emit('follow', {job_id: jobId, after: 0}, resolve));
        })""",
        ids["theirs"][1],
    )
    assert answer["ok"] is False and "no such project" in answer["message"]
    assert page.goto(f"{web}/jobs/{ids['theirs'][1]}").status == 404
