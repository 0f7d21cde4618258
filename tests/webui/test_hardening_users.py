"""Admins change a user's global role and disable users, on the users page and through the API;
the last active admin stays one (Flask's test client against the real store and Redis)."""

from __future__ import annotations

import contextlib
import threading

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.webui.test_web import PASSWORD, api_token, csrf, setup_admin
from webui.config import Settings
from webui.services import accounts
from webui.services.audit import SYSTEM, Actor
from webui.services.errors import Conflict
from webui.store import Store


def login(
    client: FlaskClient, username: str, password: str = PASSWORD, address: str = "127.0.0.1"
) -> TestResponse:
    return client.post(
        "/login",
        data={"csrf_token": csrf(client), "username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def audit_rows(client: FlaskClient, headers: dict[str, str], action: str) -> list[dict]:
    return client.get("/api/v1/audit", query_string={"action": action}, headers=headers).get_json()


def test_admins_change_roles_and_the_last_admin_stays(client: FlaskClient) -> None:
    setup_admin(client)
    headers = api_token(client)
    bob = client.post(
        "/api/v1/users", json={"username": "bob", "password": PASSWORD}, headers=headers
    ).get_json()
    assert bob["role"] == "user"
    admin_id = client.get("/api/v1/me", headers=headers).get_json()["id"]

    # The last admin cannot be demoted, by the API or the page; the message says what to do.
    last = client.patch(f"/api/v1/users/{admin_id}", json={"role": "user"}, headers=headers)
    assert last.status_code == 409
    assert (
        "admin is the last active admin: make another user admin first"
        in last.get_json()["message"]
    )
    page = client.post(
        f"/users/{admin_id}/role",
        data={"csrf_token": csrf(client, "/users"), "role": "user"},
        headers={"Referer": "/users"},
        follow_redirects=True,
    )
    assert "admin is the last active admin" in page.get_data(as_text=True)
    assert client.get("/api/v1/me", headers=headers).get_json()["role"] == "admin"

    # Bob becomes an admin from the users page, and can then use the admin API.
    page = client.post(
        f"/users/{bob['id']}/role",
        data={"csrf_token": csrf(client, "/users"), "role": "admin"},
        follow_redirects=True,
    )
    assert "User bob is now an admin." in page.get_data(as_text=True)
    bob_client = client.application.test_client()
    assert login(bob_client, "bob").status_code == 302
    assert bob_client.get("/users").status_code == 200

    # A request that is refused in part changes nothing.
    both = client.patch(
        f"/api/v1/users/{admin_id}", json={"role": "user", "disabled": True}, headers=headers
    )
    assert both.status_code == 422 and both.get_json()["message"] == "you cannot disable yourself"
    assert client.get("/api/v1/me", headers=headers).get_json()["role"] == "admin"

    # Now the first admin may step down (through the API); the page is then closed to them.
    down = client.patch(f"/api/v1/users/{admin_id}", json={"role": "user"}, headers=headers)
    assert down.status_code == 200 and down.get_json()["role"] == "user"
    assert client.get("/users").status_code == 403
    assert client.get("/api/v1/users", headers=headers).status_code == 403
    assert (
        client.patch(f"/api/v1/users/{bob['id']}", json={"role": "user"}, headers=headers)
    ).status_code == 403

    bob_token = bob_client.post(
        "/api/v1/tokens", json={"name": "b"}, headers={"X-CSRF-Token": csrf(bob_client, "/")}
    ).get_json()["token"]
    bob_headers = {"Authorization": f"Bearer {bob_token}"}
    rows = list(reversed(audit_rows(bob_client, bob_headers, "user.role")))
    assert [(r["actor"], r["target"], r["outcome"], r["detail"]) for r in rows] == [
        ("admin", "admin", "failed", {"reason": "last admin"}),
        ("admin", "admin", "failed", {"reason": "last admin"}),
        ("admin", "bob", "ok", {"from": "user", "to": "admin"}),
        ("admin", "admin", "ok", {"from": "admin", "to": "user"}),
    ]

    # Bad input: a clear message, never a 500.
    empty = bob_client.patch(f"/api/v1/users/{admin_id}", json={}, headers=bob_headers)
    assert empty.status_code == 422
    assert empty.get_json()["message"] == "nothing to change: send role and/or disabled"
    for body, field in (({"role": "root"}, "role"), ({"disabled": "maybe"}, "disabled")):
        response = bob_client.patch(f"/api/v1/users/{admin_id}", json=body, headers=bob_headers)
        assert response.status_code == 422, response.get_data(as_text=True)
        assert response.get_json()["errors"]["json"][field]  # the field and what is expected
    missing = bob_client.patch("/api/v1/users/nope", json={"role": "user"}, headers=bob_headers)
    assert missing.status_code == 404 and missing.get_json()["message"] == "no such user"
    page = bob_client.post(
        f"/users/{admin_id}/role",
        data={"csrf_token": csrf(bob_client, "/users"), "role": "root"},
        follow_redirects=True,
    )
    assert page.status_code == 200 and "unknown role" in page.get_data(as_text=True)


def test_admins_disable_users_and_never_the_last_admin(
    client: FlaskClient, settings: Settings
) -> None:
    setup_admin(client)
    headers = api_token(client)
    carol = client.post(
        "/api/v1/users", json={"username": "carol", "password": PASSWORD}, headers=headers
    ).get_json()
    carol_client = client.application.test_client()
    assert login(carol_client, "carol").status_code == 302
    carol_token = carol_client.post(
        "/api/v1/tokens", json={"name": "c"}, headers={"X-CSRF-Token": csrf(carol_client, "/")}
    ).get_json()["token"]
    carol_headers = {"Authorization": f"Bearer {carol_token}"}
    assert carol_client.get("/api/v1/me", headers=carol_headers).status_code == 200

    off = client.patch(f"/api/v1/users/{carol['id']}", json={"disabled": True}, headers=headers)
    assert off.status_code == 200 and off.get_json()["disabled"] is True
    assert carol_client.get("/api/v1/me", headers=carol_headers).status_code == 401  # token gone
    assert carol_client.get("/").status_code == 302  # session gone: back to the login page
    assert login(carol_client, "carol").status_code == 401

    page = client.post(
        f"/users/{carol['id']}/disable",
        data={"csrf_token": csrf(client, "/users"), "enable": "1"},
        follow_redirects=True,
    )
    assert "User carol is enabled." in page.get_data(as_text=True)
    assert login(carol_client, "carol").status_code == 302

    admin_id = client.get("/api/v1/me", headers=headers).get_json()["id"]
    myself = client.patch(f"/api/v1/users/{admin_id}", json={"disabled": True}, headers=headers)
    assert (
        myself.status_code == 422 and myself.get_json()["message"] == "you cannot disable yourself"
    )

    # Whoever asks (here the system itself), the last active admin is never disabled.
    store = Store(settings.mongodb_uri or "")
    try:
        try:
            accounts.set_disabled(store, SYSTEM, admin_id, True)
        except Conflict as exc:
            assert "last active admin" in exc.message
        else:
            raise AssertionError("the last admin was disabled")
        assert store.users.find_one({"_id": admin_id})["disabled"] is False
        assert store.audit.find_one({"action": "user.disable", "outcome": "failed"})
    finally:
        store.close()


def demote(store: Store, barrier: threading.Barrier, actor: Actor, target: str) -> None:
    barrier.wait()
    with contextlib.suppress(Conflict):
        accounts.set_role(store, actor, target, "user")


def test_two_admins_demoting_each_other_at_once_leave_an_admin(settings: Settings) -> None:
    store = Store(settings.mongodb_uri or "")
    store.migrate()
    try:
        first = accounts.setup_first_admin(store, "ann", PASSWORD, "test")
        second = accounts.create_user(
            store, Actor(first["_id"], "ann", "admin", "test"), "ben", PASSWORD, "admin"
        )
        for _ in range(5):
            actors = [
                (Actor(first["_id"], "ann", "admin", "t"), second["_id"]),
                (Actor(second["_id"], "ben", "admin", "t"), first["_id"]),
            ]
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(target=demote, args=(store, barrier, *pair)) for pair in actors
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            admins = store.users.count_documents({"role": "admin", "disabled": False})
            assert admins >= 1
            store.users.update_many({}, {"$set": {"role": "admin"}})  # again, from two admins
    finally:
        store.close()
