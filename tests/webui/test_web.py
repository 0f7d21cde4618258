"""Pages and API through Flask's test client: setup gate, sessions, CSRF, roles, secrets."""

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.webui.helpers import ssh_private_key

PASSWORD = "correct horse battery staple"


def csrf(client: FlaskClient, path: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, path
    return match.group(1)


def setup_admin(client: FlaskClient) -> None:
    data = {
        "csrf_token": csrf(client, "/setup"),
        "username": "admin",
        "password": PASSWORD,
        "password2": PASSWORD,
    }
    assert client.post("/setup", data=data).status_code == 302


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> int:
    return client.post(
        "/login", data={"csrf_token": csrf(client), "username": username, "password": password}
    ).status_code


def api_token(client: FlaskClient) -> dict[str, str]:
    response = client.post(
        "/api/v1/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf(client, "/")}
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def test_nothing_is_reachable_before_setup(client: FlaskClient) -> None:
    for path in ("/", "/login", "/projects/x", "/audit"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/setup"), path
    api = client.get("/api/v1/projects")
    assert api.status_code == 503 and "/setup" in api.get_json()["message"]
    assert client.get("/api/v1/openapi.json").status_code == 200
    short = {
        "csrf_token": csrf(client, "/setup"),
        "username": "admin",
        "password": "short",
        "password2": "short",
    }
    page = client.post("/setup", data=short)
    assert page.status_code == 422 and "at least 10 characters" in page.get_data(as_text=True)
    setup_admin(client)
    assert client.get("/setup").status_code == 302  # only once


def test_session_cookie_flags_new_session_at_login_and_csrf(client: FlaskClient) -> None:
    setup_admin(client)
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    before = client.get_cookie("wap_session")
    response = client.post(
        "/login", data={"csrf_token": csrf(client), "username": "admin", "password": PASSWORD}
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get_cookie("wap_session").value != (before.value if before else None)
    # a form without its CSRF token changes nothing
    response = client.post("/projects", data={"name": "nope"})
    assert response.status_code == 302
    assert "nope" not in client.get("/projects").get_data(as_text=True)
    response = client.post("/projects", data={"name": "yes", "csrf_token": csrf(client, "/")})
    assert response.status_code == 302
    assert "yes" in client.get("/projects").get_data(as_text=True)
    assert client.post("/api/v1/projects", json={"name": "api-no-csrf"}).status_code == 403


def test_wrong_password_and_audit_filter(client: FlaskClient) -> None:
    setup_admin(client)
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert login(client, "admin", "not the password") == 401
    assert login(client, "admin") == 302
    page = client.get("/audit?outcome=failed").get_data(as_text=True)
    assert "login" in page and "setup.admin" not in page
    page = client.get("/audit?action=setup").get_data(as_text=True)
    assert "setup.admin" in page
    assert "logout" in client.get("/audit?action=logout").get_data(as_text=True)


def test_api_validation_gives_messages_per_field(client: FlaskClient) -> None:
    setup_admin(client)
    auth = api_token(client)
    response = client.post("/api/v1/projects", json={"name": ""}, headers=auth)
    assert response.status_code == 422
    assert "name" in response.get_json()["errors"]["json"]
    project = client.post("/api/v1/projects", json={"name": "p1"}, headers=auth).get_json()
    response = client.post(
        f"/api/v1/projects/{project['id']}/hosts",
        json={"name": "h", "address": "bad address", "port": 0},
        headers=auth,
    )
    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == {"port"}  # schema first, then the service
    response = client.post(
        f"/api/v1/projects/{project['id']}/hosts",
        json={"name": "h", "address": "bad address"},
        headers=auth,
    )
    assert response.status_code == 422 and "address" in response.get_json()["errors"]["json"]
    assert client.post(
        "/api/v1/projects", data="{not json", headers={**auth, "Content-Type": "application/json"}
    ).status_code in (400, 422)
    assert client.get("/api/v1/jobs/unknown", headers=auth).status_code == 404
    assert (
        client.get("/api/v1/projects", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )


def test_roles_on_pages_and_api(client: FlaskClient) -> None:
    setup_admin(client)
    auth = api_token(client)
    for name in ("p1", "p2"):
        assert client.post("/api/v1/projects", json={"name": name}, headers=auth).status_code == 201
    p1, p2 = client.get("/api/v1/projects", headers=auth).get_json()
    assert (
        client.post(
            "/api/v1/users", json={"username": "reader", "password": PASSWORD}, headers=auth
        ).status_code
        == 201
    )
    client.put(
        f"/api/v1/projects/{p1['id']}/members",
        json={"username": "reader", "role": "read-only"},
        headers=auth,
    )
    host = client.post(
        f"/api/v1/projects/{p1['id']}/hosts",
        json={"name": "local", "address": "127.0.0.1", "connection": "local"},
        headers=auth,
    ).get_json()
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert login(client, "reader") == 302
    reader = api_token(client)
    assert [p["name"] for p in client.get("/api/v1/projects", headers=reader).get_json()] == ["p1"]
    assert client.get(f"/api/v1/projects/{p2['id']}", headers=reader).status_code == 404
    assert client.get(f"/projects/{p2['id']}").status_code == 404
    job = {"playbook": "steps.yml", "host_ids": [host["id"]]}
    response = client.post(f"/api/v1/projects/{p1['id']}/jobs", json=job, headers=reader)
    assert response.status_code == 403 and "operator" in response.get_json()["message"]
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert login(client, "admin") == 302
    denied = client.get("/api/v1/audit?outcome=failed", headers=auth).get_json()
    assert any(r["actor"] == "reader" and r["action"] == "denied" for r in denied)
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert login(client, "reader") == 302
    page = client.get(f"/projects/{p1['id']}").get_data(as_text=True)
    assert "Start job" not in page and "local" in page
    response = client.post(
        f"/projects/{p1['id']}/jobs",
        data={"csrf_token": csrf(client, "/"), **job},
        headers={"Referer": f"/projects/{p1['id']}"},
    )
    assert response.status_code == 302
    assert "operator role" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert client.get("/api/v1/jobs?x=1", headers=reader).status_code in (404, 405)
    assert client.get("/audit").status_code == 403
    assert client.get("/api/v1/audit", headers=reader).status_code == 403
    assert client.get(f"/api/v1/projects/{p1['id']}/jobs", headers=reader).get_json() == []


def test_api_never_returns_a_secret(client: FlaskClient) -> None:
    setup_admin(client)
    auth = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "p1"}, headers=auth).get_json()
    canary = "canary-ssh-KEY-0042"
    key = ssh_private_key()
    key_line = key.splitlines()[1]  # a line of the key's body
    bodies = [
        {
            "name": "aws",
            "kind": "aws",
            "fields": {"access_key_id": "AKIA" + canary, "secret_access_key": canary},
        },
        {"name": "ssh", "kind": "ssh_key", "fields": {"username": "ops", "private_key": key}},
        {"name": "db", "kind": "mongodb", "fields": {"username": "app", "password": canary}},
    ]
    for body in bodies:
        response = client.post(
            f"/api/v1/projects/{project['id']}/credentials", json=body, headers=auth
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        assert canary not in response.get_data(as_text=True)
        assert key_line not in response.get_data(as_text=True)
    listing = client.get(f"/api/v1/projects/{project['id']}/credentials", headers=auth).get_data(
        as_text=True
    )
    assert canary not in listing and key_line not in listing and "ops" in listing
    page = client.get(f"/projects/{project['id']}").get_data(as_text=True)
    assert canary not in page and key_line not in page
    audit_log = client.get("/api/v1/audit", headers=auth).get_data(as_text=True)
    assert canary not in audit_log and "credential.create" in audit_log
    response = client.post(
        f"/api/v1/projects/{project['id']}/credentials",
        json={
            "name": "bad",
            "kind": "ssh_key",
            "fields": {"username": "x", "private_key": "not a key"},
        },
        headers=auth,
    )
    assert response.status_code == 422 and "private_key" in response.get_json()["errors"]["json"]


def test_errors_are_json_under_the_api_and_pages_elsewhere(client: FlaskClient) -> None:
    setup_admin(client)
    page = client.get("/no/such/page")
    assert page.status_code == 404 and "There is no such page" in page.get_data(as_text=True)
    api = client.get("/api/v1/no/such/thing")
    assert api.status_code == 404 and api.get_json()["code"] == 404
    assert client.get("/logout").status_code == 405
    assert (
        client.delete("/api/v1/projects", headers={"X-CSRF-Token": csrf(client, "/")}).status_code
        == 405
    )


def test_extra_variables_from_a_form(client: FlaskClient) -> None:
    setup_admin(client)
    auth = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "p1"}, headers=auth).get_json()
    host = client.post(
        f"/api/v1/projects/{project['id']}/hosts",
        json={"name": "h", "address": "10.0.0.1"},
        headers=auth,
    ).get_json()
    form = {"csrf_token": csrf(client, "/"), "playbook": "steps.yml", "host_ids": [host["id"]]}
    bad = client.post(
        f"/projects/{project['id']}/jobs",
        data={**form, "extra_vars": "steps: [1"},
        headers={"Referer": f"/projects/{project['id']}"},
    )
    assert "extra_vars: not YAML" in client.get(bad.headers["Location"]).get_data(as_text=True)
    good = client.post(
        f"/projects/{project['id']}/jobs", data={**form, "extra_vars": "steps: 3\nmode: fast"}
    )
    job_id = good.headers["Location"].rsplit("/", 1)[1]
    job = client.get(f"/api/v1/jobs/{job_id}", headers=auth).get_json()
    assert job["extra_vars"] == {"steps": 3, "mode": "fast"}


def test_setup_from_another_machine_needs_the_printed_token(
    client: FlaskClient, app: Flask
) -> None:
    from webui.security import setup_token

    remote = {"REMOTE_ADDR": "10.9.8.7"}
    page = client.get("/setup", environ_base=remote)
    assert page.status_code == 403 and "one-time token" in page.get_data(as_text=True)
    token = setup_token(app.extensions["wap.settings"])
    page = client.get(f"/setup?token={token}", environ_base=remote)
    assert page.status_code == 200 and f'value="{token}"' in page.get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    form = {
        "csrf_token": match.group(1),
        "username": "admin",
        "password": PASSWORD,
        "password2": PASSWORD,
    }
    assert client.post("/setup", data=form, environ_base=remote).status_code == 403
    done = client.post("/setup", data={**form, "token": token}, environ_base=remote)
    assert done.status_code == 302
    assert not (app.extensions["wap.settings"].data_dir / "setup_token").exists()
