"""An operator of one project, and a read-only member, try to become root on the platform or read
its secrets through a job (Flask's test client, the real store and Redis, the repository's
playbooks). Every attempt is refused with a message that says what was wrong, and nothing is run
or stored: no job, no queued work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from tests.webui.helpers import ssh_private_key, wait_for
from tests.webui.test_cloud_clusters import repo_playbooks  # noqa: F401 (the repo's playbooks)
from tests.webui.test_hardening_users import login
from tests.webui.test_web import api_token, csrf, setup_admin
from webui.config import Settings
from webui.store import Store

EXFILTRATE = "x-{{ lookup('pipe','id') }}-{{ lookup('env','AWS_SECRET_ACCESS_KEY') | b64encode }}"
PASSWORD = "correct horse battery staple"
SPEC = {"region": "eu-west-1", "zones": 3, "members": 3, "platform_cidr": "10.250.0.0/24"}


@dataclass
class World:
    app: Flask
    admin: dict[str, str]
    operator: dict[str, str]
    reader: dict[str, str]
    operator_client: FlaskClient
    reader_client: FlaskClient
    project: str
    host: str  # ssh, registered by the operator
    local_host: str  # connection local, registered by the admin
    aws: str
    mongodb: str

    def call(self, who: dict[str, str], method: str, path: str, body: Any = None) -> Any:
        client = self.app.test_client()
        return client.open(f"/api/v1{path}", method=method, json=body, headers=who)


def _user_client(app: Flask, admin: dict[str, str], name: str) -> tuple[FlaskClient, dict]:
    admin_client = app.test_client()
    made = admin_client.post(
        "/api/v1/users", json={"username": name, "password": PASSWORD}, headers=admin
    )
    assert made.status_code == 201, made.get_json()
    client = app.test_client()
    assert login(client, name).status_code == 302
    return client, api_token(client)


@pytest.fixture
def world(app: Flask, client: FlaskClient) -> World:
    setup_admin(client)
    admin = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "acme"}, headers=admin).get_json()
    operator_client, operator = _user_client(app, admin, "oper")
    reader_client, reader = _user_client(app, admin, "reader")
    for name, role in (("oper", "operator"), ("reader", "read-only")):
        done = client.put(
            f"/api/v1/projects/{project['id']}/members",
            json={"username": name, "role": role},
            headers=admin,
        )
        assert done.status_code == 200, done.get_json()
    host = client.post(
        f"/api/v1/projects/{project['id']}/hosts",
        json={"name": "db1", "address": "10.0.0.1"},
        headers=operator,
    ).get_json()
    local = client.post(
        f"/api/v1/projects/{project['id']}/hosts",
        json={"name": "platform", "address": "127.0.0.1", "connection": "local"},
        headers=admin,
    ).get_json()
    ids = {}
    for kind, fields in (
        ("aws", {"access_key_id": "AKIAWAPTEST", "secret_access_key": "aws-secret-CANARY",
                 "endpoint_url": "http://127.0.0.1:9"}),
        ("mongodb", {"username": "admin", "password": "mongo-secret-CANARY"}),
    ):  # fmt: skip
        done = client.post(
            f"/api/v1/projects/{project['id']}/credentials",
            json={"name": kind, "kind": kind, "fields": fields},
            headers=admin,
        )
        assert done.status_code == 201, done.get_json()
        ids[kind] = done.get_json()["id"]
    return World(
        app, admin, operator, reader, operator_client, reader_client, project["id"],
        host["id"], local["id"], ids["aws"], ids["mongodb"],
    )  # fmt: skip


def nothing_started(settings: Settings) -> None:
    store = Store(settings.mongodb_uri or "")
    try:
        jobs = list(store.jobs.find({}, {"playbook": 1, "extra_vars": 1}))
    finally:
        store.close()
    queued = Queue(settings.queue_name, connection=Redis.from_url(settings.redis_url or "")).count
    assert (jobs, queued) == ([], 0), "a refused job was stored or queued"


def start(world: World, who: dict[str, str], extra_vars: dict, **more: Any) -> Any:
    body = {"playbook": "deploy_replicaset.yml", "host_ids": [world.host],
            "credential_ids": [world.mongodb], "extra_vars": extra_vars, **more}  # fmt: skip
    return world.call(who, "POST", f"/projects/{world.project}/jobs", body)


ATTACKS: list[tuple[dict[str, Any], str]] = [
    ({"wap_replicaset_hosts": EXFILTRATE}, "wap_replicaset_hosts: values are data, not templates"),
    ({"mongodb_users_users": [{"name": "{{ lookup('env', 'WAP_MONGODB_PASSWORD') }}"}]},
     "mongodb_users_users[0].name: values are data, not templates"),
    ({"ansible_connection": "local"}, "ansible_connection: ansible_* variables"),
    ({"ansible_python_interpreter": "/bin/sh"}, "ansible_python_interpreter: ansible_*"),
    ({"ansible_ssh_common_args": "-o ProxyCommand=id"}, "ansible_ssh_common_args: ansible_*"),
    ({"ansible_become_exe": "/tmp/x"}, "ansible_become_exe: ansible_*"),
    ({"become_user": "root"}, "become_user: a name Ansible reserves"),
    ({"environment": {"LD_PRELOAD": "/tmp/x.so"}}, "environment: a name Ansible reserves"),
    ({"wap_replicaset_hosts": "localhost"}, "'localhost' is not a host or group of this job"),
    ({"wap_replicaset_hosts": "db1:127.0.0.1"}, "'127.0.0.1' is not a host or group"),
    ({"mongodb_security_secrets_dir": "/var/lib/wap"},
     "mongodb_security_secrets_dir: not a variable deploy_replicaset.yml documents"),
    ({"mongodb_install_tarball": "/var/lib/wap/credential_key"},
     "mongodb_install_tarball: not a variable deploy_replicaset.yml documents"),
    ({"wap_aws_endpoint_url": "http://169.254.169.254/"},
     "wap_aws_endpoint_url: not a variable deploy_replicaset.yml documents"),
    ({"anything_else": 1}, "anything_else: not a variable deploy_replicaset.yml documents"),
]  # fmt: skip


@pytest.mark.parametrize(("extra_vars", "message"), ATTACKS)
def test_an_operators_job_with_dangerous_variables_is_refused_through_the_api(
    world: World, settings: Settings, extra_vars: dict, message: str
) -> None:
    refused = start(world, world.operator, extra_vars)
    body = refused.get_json()
    assert refused.status_code == 422, body
    assert any(message in line for line in body["errors"]["json"]["extra_vars"]), body
    read_only = start(world, world.reader, extra_vars)
    assert read_only.status_code == 403 and "operator role" in read_only.get_json()["message"]
    nothing_started(settings)


def test_the_same_variables_are_refused_in_the_console_form(
    world: World, settings: Settings
) -> None:
    for client in (world.operator_client, world.reader_client):
        for extra_vars, message in (
            (f'wap_replicaset_hosts: "{EXFILTRATE}"', "values are data, not templates"),
            ("ansible_connection: local", "ansible_* variables"),
        ):
            page = client.post(
                f"/projects/{world.project}/jobs",
                data={"csrf_token": csrf(client, "/"), "playbook": "deploy_replicaset.yml",
                      "host_ids": world.host, "extra_vars": extra_vars},
                headers={"Referer": f"/projects/{world.project}"},
            )  # fmt: skip
            shown = client.get(page.headers["Location"]).get_data(as_text=True)
            expected = message if client is world.operator_client else "operator role"
            assert page.status_code == 302 and expected in shown, shown[-2000:]
    nothing_started(settings)


def test_an_operator_still_starts_a_job_with_documented_data(
    world: World, settings: Settings
) -> None:
    """The rules refuse attacks, not work: documented names with data values are accepted, and the
    host pattern may name the job's own hosts."""
    started = start(world, world.operator, {
        "wap_replicaset_hosts": "db1", "mongodb_security_tls": True,
        "mongodb_users_users": [{"name": "app", "database": "app", "roles": ["readWrite"]}],
    })  # fmt: skip
    assert started.status_code == 201, started.get_json()
    assert started.get_json()["extra_vars"]["wap_replicaset_hosts"] == "db1"


def test_the_platform_machine_is_an_admins_decision(world: World, settings: Settings) -> None:
    registered = world.call(
        world.operator, "POST", f"/projects/{world.project}/hosts",
        {"name": "mine", "address": "127.0.0.1", "connection": "local"},
    )  # fmt: skip
    assert registered.status_code == 403
    assert "only an admin may register one" in registered.get_json()["message"]
    on_local = start(world, world.operator, {}, host_ids=[world.local_host])
    message = on_local.get_json()["message"]
    assert on_local.status_code == 403
    assert "the platform machine itself" in message and "only an admin" in message
    direct = world.call(
        world.operator, "POST", f"/projects/{world.project}/jobs",
        {"playbook": "provision_cluster.yml", "host_ids": [], "credential_ids": [world.aws],
         "extra_vars": {}},
    )  # fmt: skip
    assert direct.status_code == 403 and "from the cluster's page" in direct.get_json()["message"]
    nothing_started(settings)
    names = [
        h["name"]
        for h in world.call(world.admin, "GET", f"/projects/{world.project}/hosts").get_json()
    ]
    assert sorted(names) == ["db1", "platform"]

    page = world.operator_client.get(f"/projects/{world.project}").get_data(as_text=True)
    form = page[page.index('id="job-form"') :]
    assert "> platform</label>" not in form and "provision_cluster.yml" not in form
    assert "> db1</label>" in form and "<option>local</option>" not in page

    admin_job = start(world, world.admin, {}, host_ids=[world.local_host])
    assert admin_job.status_code == 201, admin_job.get_json()
    audit = world.call(world.admin, "GET", "/audit", None)
    starts = [r for r in audit.get_json() if r["action"] == "job.start"]
    assert starts[0]["detail"]["local_hosts"] == ["platform"]
    adds = {r["target"]: r["detail"] for r in audit.get_json() if r["action"] == "host.add"}
    assert adds["acme/platform"]["connection"] == "local"


def test_free_form_variables_are_an_admins_tool_on_the_record(world: World) -> None:
    started = start(world, world.admin, {"wap_rolling_batch": 2, "my_switch": "on"})
    assert started.status_code == 201, started.get_json()
    refused = start(world, world.admin, {"ansible_connection": "local"})
    assert refused.status_code == 422  # no one sets those
    audit = world.call(world.admin, "GET", "/audit", None).get_json()
    starts = [r for r in audit if r["action"] == "job.start"]
    assert starts[0]["detail"]["free_form_vars"] == ["my_switch", "wap_rolling_batch"]


ENDPOINTS: list[tuple[str, int]] = [
    ("https://ec2.eu-west-1.amazonaws.com", 201),
    ("http://127.0.0.1:9", 201),  # listed: the tests' stand-in
    ("http://169.254.169.254/latest/meta-data/", 422),
    ("http://localhost:6379", 422),
    ("http://127.0.0.1:6379", 422),  # listed host, other port
    ("http://ec2.eu-west-1.amazonaws.com", 422),  # AWS, but not over TLS
    ("https://x:y@ec2.eu-west-1.amazonaws.com", 422),
    ("https://[::1]:443", 422),
]


@pytest.mark.parametrize(("url", "status"), ENDPOINTS)
def test_an_aws_credential_endpoint_follows_the_admins_policy(
    app: Flask, client: FlaskClient, settings: Settings, url: str, status: int
) -> None:
    app.extensions["wap.settings"] = settings.with_(allowed_endpoints=("127.0.0.1:9",))
    setup_admin(client)
    admin = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "p"}, headers=admin).get_json()
    done = client.post(
        f"/api/v1/projects/{project['id']}/credentials",
        json={"name": "aws", "kind": "aws", "fields": {
            "access_key_id": "AKIAWAPTEST", "secret_access_key": "s", "endpoint_url": url}},
        headers=admin,
    )  # fmt: skip
    assert done.status_code == status, done.get_json()
    if status == 422:
        why = done.get_json()["errors"]["json"]["endpoint_url"][0]
        assert "not an allowed endpoint" in why or "no user or password" in why, why
        assert "WAP_ALLOWED_ENDPOINTS" in why or "no user or password" in why


def test_a_stored_endpoint_the_policy_no_longer_allows_stops_the_provision(
    app: Flask, client: FlaskClient, settings: Settings
) -> None:
    setup_admin(client)
    admin = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "p"}, headers=admin).get_json()
    ids = {}
    for kind, fields in (
        ("aws", {"access_key_id": "AKIAWAPTEST", "secret_access_key": "s",
                 "endpoint_url": "http://127.0.0.1:9"}),
        ("ssh_key", {"username": "root", "private_key": ssh_private_key()}),
    ):  # fmt: skip
        done = client.post(
            f"/api/v1/projects/{project['id']}/credentials",
            json={"name": kind, "kind": kind, "fields": fields},
            headers=admin,
        )
        ids[kind] = done.get_json()["id"]
    planned = client.post(
        f"/api/v1/projects/{project['id']}/clusters/cloud",
        json={"name": "orders", "spec": SPEC,
              "cloud_credential_id": ids["aws"], "ssh_credential_id": ids["ssh_key"],
              "deploy_vars": {"wap_aws_endpoint_url": "http://169.254.169.254"}},
        headers=admin,
    )  # fmt: skip
    assert planned.status_code == 422
    assert "deploy_vars" in planned.get_json()["errors"]["json"]
    planned = client.post(
        f"/api/v1/projects/{project['id']}/clusters/cloud",
        json={"name": "orders", "spec": SPEC,
              "cloud_credential_id": ids["aws"], "ssh_credential_id": ids["ssh_key"]},
        headers=admin,
    ).get_json()  # fmt: skip
    app.extensions["wap.settings"] = settings.with_(allowed_endpoints=())  # the admin changed it
    provision = client.post(f"/api/v1/clusters/{planned['id']}/provision", headers=admin)
    assert provision.status_code == 422, provision.get_json()
    assert "is not allowed" in provision.get_json()["message"]
    nothing_started(settings)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}]\n"
    for n in range(8)
)


@pytest.mark.parametrize(
    ("text", "message"),
    [(BOMB, "anchors and aliases are not accepted"),
     ("x: " + "[" * 200 + "]" * 200, "nested deeper than 32 levels")],
)  # fmt: skip
def test_yaml_in_the_forms_is_bounded(
    world: World, settings: Settings, text: str, message: str
) -> None:
    client = world.operator_client
    # (the cluster form takes no YAML: its fields become the variables, tests/webui/test_console.py)
    for path, data in (
        (f"/projects/{world.project}/jobs",
         {"playbook": "deploy_replicaset.yml", "host_ids": world.host, "extra_vars": text}),
    ):  # fmt: skip
        page = client.post(
            path, data={"csrf_token": csrf(client, "/"), **data},
            headers={"Referer": f"/projects/{world.project}"},
        )  # fmt: skip
        shown = client.get(page.headers["Location"]).get_data(as_text=True)
        assert message in shown, shown[-1500:]
    cloud = client.post(
        f"/projects/{world.project}/clusters/new-aws",
        data={"csrf_token": csrf(client, "/"), "name": "orders", "deploy_vars": text},
    )
    assert cloud.status_code == 422 and message in cloud.get_data(as_text=True)
    nothing_started(settings)
    assert world.call(world.admin, "GET", f"/projects/{world.project}/clusters").get_json() == []


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json_is_a_400_with_a_message(world: World, depth: int) -> None:
    client = world.app.test_client()
    body = '{"playbook": "steps.yml", "extra_vars": {"x": ' + "[" * depth + "]" * depth + "}}"
    response = client.post(
        f"/api/v1/projects/{world.project}/jobs", data=body,
        headers={**world.operator, "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "nested deeper than 32 levels" in response.get_json()["message"]


def test_usernames_that_only_look_alike_are_one_user(world: World) -> None:
    def create(name: str) -> Any:
        return world.call(world.admin, "POST", "/users", {"username": name, "password": PASSWORD})

    assert create("Alice").status_code == 201
    assert create("alice").status_code == 409
    assert create("\uff21\uff2c\uff29\uff23\uff25").status_code == 409  # full-width letters, NFKC
    cyrillic = create("\u0430lice")  # Cyrillic a
    assert cyrillic.status_code == 422
    assert "no other alphabets" in cyrillic.get_json()["errors"]["json"]["username"][0]
    users = [u["username"] for u in world.call(world.admin, "GET", "/users").get_json()]
    assert users.count("alice") == 1 and "Alice" not in users
    client = world.app.test_client()
    assert login(client, "ALICE").status_code == 302  # logs in whatever the case typed
    added = world.call(world.admin, "PUT", f"/projects/{world.project}/members",
                       {"username": "Alice", "role": "read-only"})  # fmt: skip
    assert (
        added.status_code == 200 and {"username": "alice", "role": "read-only"} in added.get_json()
    )


def test_pages_and_answers_with_tokens_are_not_cached(world: World) -> None:
    client = world.operator_client
    page = client.post(
        "/account/tokens", data={"csrf_token": csrf(client, "/account/tokens"), "name": "cli"}
    )
    assert "wap_" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    answer = client.post("/api/v1/tokens", json={"name": "t2"}, headers=world.operator)
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    for path in ("/setup", "/login", f"/projects/{world.project}"):
        assert client.get(path).headers["Cache-Control"] == "no-store", path
    assert "no-store" not in client.get("/static/app.css").headers.get("Cache-Control", "")


def test_a_stranger_cannot_lock_a_user_out(world: World) -> None:
    stranger = world.app.test_client()
    for _ in range(5):
        assert login(stranger, "oper", "wrong password!", "192.0.2.66").status_code == 401
    assert login(stranger, "oper", PASSWORD, "192.0.2.66").status_code == 429  # the guesser
    assert login(world.app.test_client(), "oper").status_code == 302  # the user, from theirs


def test_guesses_from_many_addresses_only_slow_down_for_seconds(world: World) -> None:
    client = world.app.test_client()
    for number in range(20):  # four times the per-pair limit, one guess per address
        assert login(client, "oper", "wrong password!", f"192.0.2.{number}").status_code == 401
    refused = login(client, "oper", PASSWORD, "198.51.100.1")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 2
    wait_for(
        lambda: login(client, "oper", PASSWORD, "198.51.100.1").status_code == 302,
        timeout=5, what="the user's login after the short delay",
    )  # fmt: skip
