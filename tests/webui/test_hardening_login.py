"""Failed logins are rate-limited per username and per address, in Redis so that every web server
refuses alike (Flask's test client against the real store and Redis)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.waiting import wait_until
from tests.webui.test_hardening_users import login
from tests.webui.test_web import PASSWORD, csrf, setup_admin
from webui import create_app
from webui.config import Settings
from webui.store import Store


def setup_admin_then_logout(client: FlaskClient) -> None:
    setup_admin(client)
    client.post("/logout", data={"csrf_token": csrf(client, "/")})


def test_five_failed_logins_lock_the_username_for_a_while(
    client: FlaskClient, settings: Settings
) -> None:
    setup_admin_then_logout(client)
    for _ in range(5):
        assert login(client, "admin", "wrong password!").status_code == 401
    refused = login(client, "admin")  # even the right password, while locked
    wait = int(refused.headers["Retry-After"])
    assert refused.status_code == 429 and 0 < wait <= settings.login_lockout
    assert (
        f"too many failed logins for this username or from your address: try again in {wait} s"
        in refused.get_data(as_text=True)
    )
    assert client.get("/").status_code == 302  # not logged in

    other = create_app({"WAP_SETTINGS": settings, "TESTING": True}).test_client()
    assert login(other, "admin").status_code == 429  # another web server refuses too (Redis)
    assert login(client, "nobody-else").status_code == 401  # other usernames are not locked

    store = Store(settings.mongodb_uri or "")
    try:
        refusals = list(store.audit.find({"action": "login.refused"}))
    finally:
        store.close()
    assert [(r["target"], r["outcome"], r["source"]) for r in refusals] == [
        ("admin", "failed", "127.0.0.1")
    ] * 2
    assert refusals[0]["detail"]["reason"] == "too many failed logins"
    assert PASSWORD not in str(refusals) and "wrong password!" not in str(refusals)


def test_the_lock_ends_and_a_success_clears_the_count(app: Flask, settings: Settings) -> None:
    client = app.test_client()
    setup_admin_then_logout(client)
    for _ in range(4):
        assert login(client, "admin", "wrong password!").status_code == 401
    assert login(client, "admin").status_code == 302  # a success clears the username's count
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    for _ in range(4):
        assert login(client, "admin", "wrong password!").status_code == 401
    assert login(client, "admin").status_code == 302

    short = create_app({"WAP_SETTINGS": settings.with_(login_lockout=2.0), "TESTING": True})
    client = short.test_client()
    for _ in range(5):
        login(client, "admin", "wrong password!")
    assert login(client, "admin").status_code == 429
    # A refused try is not a failure: asking again until the lock's 2 s have passed is harmless.
    wait_until(
        lambda: login(client, "admin").status_code == 302,
        timeout=30,
        every=0.25,
        what="the 2 s lock to end and the right password to be accepted",
    )


def test_one_address_trying_many_usernames_is_refused(client: FlaskClient) -> None:
    setup_admin_then_logout(client)
    guesser = "192.0.2.7"
    for number in range(20):  # four times the per-username limit, spread over usernames
        assert login(client, f"user{number}", "wrong password!", guesser).status_code == 401
    refused = login(client, "admin", PASSWORD, guesser)
    assert refused.status_code == 429 and "try again in" in refused.get_data(as_text=True)
    assert login(client, "admin", PASSWORD, "192.0.2.8").status_code == 302  # others still can
