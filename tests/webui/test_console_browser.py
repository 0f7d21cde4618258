"""The console's layout in Chromium: reached with the keyboard alone (a skip link, the navigation,
a visible focus ring), and forms that fit their input (the credential form shows the fields of the
kind chosen, the cluster form those of the topology) while every field keeps its label."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.webui.helpers import PASSWORD, Api

pytestmark = pytest.mark.browser


def log_in(page: Page, web: str) -> None:
    page.goto(web + "/login")
    page.fill("#login-form input[name=username]", "admin")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button")
    expect(page.locator("h1")).to_have_text("Overview")


def focused(page: Page) -> dict:
    return page.evaluate(
        """() => { const e = document.activeElement; const s = getComputedStyle(e);
        return {text: e.textContent.trim(), tag: e.tagName, outline: s.outlineStyle,
                width: parseFloat(s.outlineWidth)}; }"""
    )


def test_the_console_is_usable_with_the_keyboard(page: Page, admin_api: Api, web: str) -> None:
    log_in(page, web)
    page.keyboard.press("Tab")
    first = focused(page)
    assert first["text"] == "Skip to content"
    expect(page.locator("a.skip")).to_be_in_viewport()  # shown when focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"
    page.keyboard.press("Shift+Tab")  # back up into the header: the brand, then the navigation
    for _ in range(30):
        if focused(page)["text"] == "Clusters":
            break
        page.keyboard.press("Tab")
    ring = focused(page)
    assert ring["text"] == "Clusters" and ring["outline"] != "none" and ring["width"] >= 2, ring
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/clusters$"))
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Clusters")


def test_forms_show_the_fields_of_what_is_chosen(page: Page, admin_api: Api, web: str) -> None:
    project = admin_api.call("POST", "/projects", json={"name": "shop"}).json()
    for n in (1, 2, 3):
        admin_api.call("POST", f"/projects/{project['id']}/hosts",
                       json={"name": f"db{n}", "address": f"10.7.0.{n}"})  # fmt: skip
    log_in(page, web)
    page.goto(f"{web}/projects/{project['id']}")
    form = page.locator("#credential-form")
    shown = {}
    for kind in ("aws", "mongodb", "ssh_key"):
        form.locator("select[name=kind]").select_option(kind)
        names = form.locator("input:visible, textarea:visible").evaluate_all(
            "els => els.map(e => e.name)"
        )
        shown[kind] = sorted(names)
    assert shown == {
        "aws": ["access_key_id", "endpoint_url", "name", "secret_access_key"],
        "mongodb": ["name", "password", "username"],
        "ssh_key": ["name", "passphrase", "private_key", "username"],
    }
    for field in form.locator("input:visible, textarea:visible, select").all():
        label = field.evaluate("e => e.labels.length ? e.labels[0].textContent.trim() : ''")
        assert label, field.evaluate("e => e.outerHTML")

    page.click("#new-cluster")
    cluster = page.locator("#cluster-form")
    expect(cluster.locator("input[name=replica_set]")).to_be_visible()
    expect(cluster.locator("input[name=shards]")).to_be_hidden()
    cluster.locator("input[name=topology][value=sharded]").check()
    expect(cluster.locator("input[name=shards]")).to_be_visible()
    expect(cluster.locator("input[name=replica_set]")).to_be_hidden()
    cluster.locator("input[name=name]").fill("events")
    for box in cluster.locator("input[name=host_ids]").all()[:2]:
        box.check()
    cluster.locator("input[name=shards]").fill("2")
    cluster.locator("button").click()  # two hosts, no administrator: refused, beside the fields
    expect(page.locator("#cluster-form")).to_contain_text("pick 1, 3, 5 or 7 hosts")
    expect(page.locator("#cluster-form")).to_contain_text("access control needs the administrator")
    expect(page.locator("#cluster-form input[name=topology][value=sharded]")).to_be_checked()
    expect(page.locator("#cluster-form input[name=name]")).to_have_value("events")
