"""The ingest API for agents, through the app: agent tokens (created by operators, audited, hashed,
replaced), POST /api/v1/agent/samples authenticated by them alone, bounded (413), rate-limited
(429), checked (400 with the reason, counted, never a 500), idempotent by stream and sequence
number, on the embedded store and on the mongod double alike."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.webui.helpers import PASSWORD, free_port
from webui import create_app
from webui.config import Settings, load_settings
from webui.services import accounts, metrics, projects
from webui.services.audit import Actor
from webui.store import Store

STREAM = uuid.uuid4().hex


def batch(seq: int, samples: int = 3, stream: str = STREAM, **extra: Any) -> dict[str, Any]:
    at = time.time()
    return {
        "stream": stream,
        "seq": seq,
        "time": at,
        "samples": [
            {"name": "host_load1", "labels": {"n": str(i)}, "value": 0.5 + i, "timestamp": at}
            for i in range(samples)
        ],
        "errors": {},
        "dropped": {"batches": 0, "samples": 0},
        **extra,
    }


def body(*batches: dict[str, Any]) -> dict[str, Any]:
    return {"agent": {"version": "0.1.0", "hostname": "db1"}, "batches": list(batches)}


class Platform:
    """An app with an admin, a project, a host and its agent token, reached as a test client."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.store: Store = app.extensions["wap.store"]
        admin = accounts.setup_first_admin(self.store, "admin", PASSWORD, "tests")
        self.admin_token, _ = accounts.create_token(
            self.store, Actor(admin["_id"], "admin", "admin", "tests"), "tests"
        )
        self.project = self.api("POST", "/projects", json={"name": "p1"}).get_json()
        host = {"name": "db1", "address": "10.0.0.1"}
        self.host = self.api("POST", f"/projects/{self.project['id']}/hosts", json=host).get_json()
        self.token = self.new_token().get_json()["token"]

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def new_token(self, token: str | None = None) -> Any:
        path = f"/projects/{self.project['id']}/hosts/{self.host['id']}/agent-token"
        return self.api("POST", path, token=token)

    def send(self, payload: Any, token: str | None = None, raw: bytes | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        data = raw if raw is not None else json.dumps(payload)
        return self.client.post(
            "/api/v1/agent/samples", data=data, headers=headers, content_type="application/json"
        )

    def stored(self) -> list[dict[str, Any]]:
        return metrics.host_batches(self.store, self.host["id"])

    def agent(self) -> dict[str, Any]:
        return projects.list_hosts(self.store, self.project["id"])[0].get("agent", {})


def platform_settings(tmp_path: Path, store_uri: str, redis_url: str, **env: str) -> Settings:
    name = uuid.uuid4().hex[:10]
    return load_settings(
        {
            "WAP_DATA_DIR": str(tmp_path / "data"),
            "WAP_BIND": f"127.0.0.1:{free_port()}",
            "WAP_MONGODB_URI": store_uri.format(db=f"wap_{name}"),
            "WAP_REDIS_URL": redis_url,
            "WAP_QUEUE": f"wap-test-{name}",
            **env,
        }
    )


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    app = create_app({"WAP_SETTINGS": settings, "TESTING": True})
    yield Platform(app)
    app.extensions["wap.store"].close()


def test_a_batch_is_stored_once_and_the_host_shows_its_agent(platform: Platform) -> None:
    before = time.time()
    first = platform.send(body(batch(1), batch(2)))
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"acknowledged": [1, 2], "stored": 2, "duplicates": 0}
    again = platform.send(body(batch(2), batch(3, errors={"mongodb db1:27017": ["refused"]})))
    assert again.get_json() == {"acknowledged": [2, 3], "stored": 1, "duplicates": 1}
    stored = platform.stored()
    assert [b["seq"] for b in stored] == [1, 2, 3]
    full = platform.store.samples.find_one({"_id": stored[0]["_id"]})
    assert full["project_id"] == platform.project["id"]
    assert [s["n"] for s in full["samples"]] == ["host_load1"] * 3
    assert full["samples"][1]["l"] == {"n": "1"} and full["samples"][1]["v"] == 1.5
    agent = platform.agent()
    assert agent["version"] == "0.1.0" and agent["hostname"] == "db1"
    assert agent["last_seq"] == 3 and agent["batches"] == 3 and agent["duplicates"] == 1
    assert agent["state"] == "errors" and agent["errors"] == {"mongodb db1:27017": ["refused"]}
    assert agent["last_seen"] >= before
    platform.send(body(batch(4)))
    assert platform.agent()["state"] == "ok"


def test_agent_tokens_open_the_ingest_alone(platform: Platform) -> None:
    record = platform.store.agent_tokens.find_one({"host_id": platform.host["id"]})
    assert record["token_hash"] == hashlib.sha256(platform.token.encode()).hexdigest()
    assert platform.token not in json.dumps(record, default=str)
    # a user's API token is not an agent token, and an agent token is not a user's
    assert platform.send(body(batch(1)), token=platform.admin_token).status_code == 401
    assert platform.api("GET", "/projects", token=platform.token).status_code == 401
    for wrong in ("wapa_" + "x" * 43, "nonsense"):
        refused = platform.send(body(batch(1)), token=wrong)
        assert refused.status_code == 401 and "agent token" in refused.get_json()["message"]
    no_header = platform.client.post("/api/v1/agent/samples", json=body(batch(1)))
    assert no_header.status_code == 401
    assert platform.stored() == []
    # a new token replaces the old one at once
    old = platform.token
    platform.token = platform.new_token().get_json()["token"]
    assert platform.send(body(batch(1)), token=old).status_code == 401
    assert platform.send(body(batch(1))).status_code == 200
    entries = [e for e in platform.store.audit.find({"action": "agent.token"})]
    assert len(entries) == 2 and entries[0]["target"] == "p1/db1"
    # a removed host's token authenticates nothing
    platform.api("DELETE", f"/projects/{platform.project['id']}/hosts/{platform.host['id']}")
    assert platform.send(body(batch(2))).status_code == 401
    assert platform.store.agent_tokens.count_documents({"host_id": platform.host["id"]}) == 0


def test_only_operators_of_the_project_create_tokens(platform: Platform) -> None:
    store = platform.store
    admin = Actor(None, "admin", "admin", "tests")
    for name, role in (("reader", "read-only"), ("oper", "operator")):
        user = accounts.create_user(store, admin, name, PASSWORD, "user")
        projects.set_member(store, admin, platform.project["id"], name, role)
        token, _ = accounts.create_token(store, Actor(user["_id"], name, "user", "t"), "t")
        answer = platform.new_token(token=token)
        assert answer.status_code == (403 if role == "read-only" else 201), answer.get_json()
    stranger = accounts.create_user(store, admin, "stranger", PASSWORD, "user")
    token, _ = accounts.create_token(store, Actor(stranger["_id"], "stranger", "user", "t"), "t")
    assert platform.new_token(token=token).status_code == 404
    missing = f"/projects/{platform.project['id']}/hosts/nohost/agent-token"
    assert platform.api("POST", missing).status_code == 404


def sample(**fields: Any) -> dict[str, Any]:
    return {"name": "up", "value": 1, "timestamp": 1, **fields}


def with_samples(*samples: dict[str, Any]) -> dict[str, Any]:
    return body({**batch(1), "samples": list(samples)})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "the body must be a JSON object"),
        ({"agent": {}, "batches": []}, "batches: a list of 1 to"),
        (body(batch(0)), "batches[0].seq: a sequence number from 1"),
        (body(batch(1, stream="not hex!")), "batches[0].stream"),
        (body({**batch(1), "time": "now"}), "batches[0].time"),
        (
            body(batch(1), {**batch(2), "samples": [sample(name="x y")]}),
            "batches[1].samples[0].name",
        ),
        (with_samples(sample(value="1")), "batches[0].samples[0].value: a finite number"),
        (with_samples(sample(), sample(value=True)), "batches[0].samples[1].value"),
        (with_samples(sample(labels={"a.b": "x"})), "labels: 'a.b' is not a label name"),
        (with_samples(sample(kind="histogram")), "batches[0].samples[0].kind: counter or gauge"),
        (with_samples(sample(timestamp=None)), "batches[0].samples[0].timestamp"),
        (body({**batch(1), "errors": {"host": "not a list"}}), "batches[0].errors"),
        (body({**batch(1), "dropped": {"batches": -1}}), "batches[0].dropped"),
    ],
)
def test_a_malformed_request_is_400_with_the_reason(
    platform: Platform, payload: Any, reason: str
) -> None:
    answer = platform.send(payload)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert reason in answer.get_json()["message"]
    assert platform.stored() == []
    agent = platform.agent()
    assert agent["rejected"] == 1 and agent["last_rejection"]["status"] == 400
    assert reason in agent["last_rejection"]["reason"]


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b'{"a": NaN}']
)
def test_bodies_that_are_not_json_are_400_never_500(platform: Platform, raw: bytes) -> None:
    answer = platform.send(None, raw=raw)
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert platform.stored() == []


def test_too_large_is_413_and_too_many_is_429(
    tmp_path: Path, store_server: str, redis_url: str
) -> None:
    settings = platform_settings(
        tmp_path, store_server + "/{db}", redis_url,
        WAP_AGENT_MAX_BODY="20000", WAP_AGENT_REQUESTS_PER_MINUTE="5",
    )  # fmt: skip
    app = create_app({"WAP_SETTINGS": settings, "TESTING": True})
    try:
        platform = Platform(app)
        large = platform.send(body(batch(1, samples=400)))
        assert large.status_code == 413, large.get_json()
        assert "send fewer batches" in large.get_json()["message"]
        # 12 requests: whichever minute boundary falls among them, one window sees 6 or more
        answers = {seq: platform.send(body(batch(seq))) for seq in range(1, 13)}
        refused = [seq for seq, answer in answers.items() if answer.status_code == 429]
        assert refused and all(a.status_code in (200, 429) for a in answers.values())
        first = answers[refused[0]]
        assert 1 <= int(first.headers["Retry-After"]) <= 61
        assert "more than 5 requests in a minute" in first.get_json()["message"]
        assert {b["seq"] for b in platform.stored()} == set(answers) - set(refused)
    finally:
        app.extensions["wap.store"].close()


def test_ingest_on_every_store_server(
    tmp_path: Path, each_store_server: str, redis_url: str
) -> None:
    app = create_app(
        {"WAP_SETTINGS": platform_settings(tmp_path, each_store_server, redis_url),
         "TESTING": True}
    )  # fmt: skip
    try:
        platform = Platform(app)
        assert platform.send(body(batch(1), batch(2))).status_code == 200
        assert platform.send(body(batch(2), batch(3))).get_json()["duplicates"] == 1
        assert [b["seq"] for b in platform.stored()] == [1, 2, 3]
        agent = platform.agent()
        assert agent["batches"] == 3 and agent["duplicates"] == 1 and agent["last_seq"] == 3
        indexes = platform.store.samples.index_information()
        assert any(dict(ix["key"]) == {"host_id": 1, "t": 1} for ix in indexes.values())
    finally:
        app.extensions["wap.store"].close()
