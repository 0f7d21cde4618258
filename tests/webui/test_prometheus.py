"""Prometheus: a project's latest samples at /api/v1/projects/{id}/prometheus (API token) with
project, host, cluster, replica set and member state labels, and the platform's own /metrics;
both parse with prometheus_client's parser and pass `promtool check metrics` (Debian's
prometheus package, scripts/install.d/60-monitoring.sh)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from tests.webui.test_agent_ingest import Platform, body
from webui import create_app
from webui.config import Settings
from webui.services import accounts, projects
from webui.services.audit import Actor

INSTANCE = "db1:27017"


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    app: Flask = create_app({"WAP_SETTINGS": settings, "TESTING": True})
    yield Platform(app)
    app.extensions["wap.store"].close()


def agent_round(seq: int, state: int) -> dict[str, Any]:
    at = time.time()

    def sample(name: str, value: float, kind: str = "gauge", **labels: str) -> dict[str, Any]:
        return {"name": name, "labels": labels, "value": value, "kind": kind, "timestamp": at}

    return {
        "stream": STREAM, "seq": seq, "time": at, "errors": {},
        "dropped": {"batches": 0, "samples": 0},
        "samples": [
            sample("host_load1", 0.25 * seq),
            sample("host_cpu_seconds_total", 100.0 * seq, "counter", mode="user"),
            sample("host_filesystem_avail_bytes", 1e9, mountpoint="/", device="/dev/sda1",
                   fstype="ext4"),
            sample("mongodb_up", 1, instance=INSTANCE),
            sample("mongodb_replset_my_state", state, instance=INSTANCE, set="rs0"),
            sample("mongodb_connections", 12 + seq, instance=INSTANCE, state="current"),
            sample("mongodb_opcounters_total", 40.0 * seq, "counter", instance=INSTANCE,
                   type="insert"),
            sample("mongodb_opcounters_insert_per_second", 4.0, instance=INSTANCE),
            # a sample label of a name the endpoint adds is kept as exported_<name>
            sample("mongodb_replset_member_health", 1, instance=INSTANCE, set="rs0",
                   host="db2:27017"),
        ],
    }  # fmt: skip


STREAM = uuid.uuid4().hex


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: scripts/install.d/60-monitoring.sh installs it"
    return subprocess.run(
        [binary, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_project_endpoint_labels_the_latest_samples(platform: Platform) -> None:
    project = platform.project["id"]
    store = platform.store
    admin = store.users.find_one({"username": "admin"})
    actor = Actor(admin["_id"], "admin", "admin", "tests")
    projects.create_cluster(store, actor, project, "orders", [platform.host["id"]], "deploy.yml")
    store.clusters.update_one({"name": "orders"}, {"$set": {"replica_set": "rs0"}})
    assert platform.send(body(agent_round(1, 2))).status_code == 200
    assert platform.send(body(agent_round(2, 1))).status_code == 200

    answer = platform.api("GET", f"/projects/{project}/prometheus")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = answer.get_data(as_text=True)
    check = promtool(text)
    assert check.returncode == 0, check.stdout + check.stderr
    found = families(text)
    [state] = found["mongodb_replset_my_state"].samples
    assert state.value == 1
    assert state.labels == {
        "project": "p1", "host": "db1", "cluster": "orders", "instance": INSTANCE,
        "set": "rs0", "replica_set": "rs0", "member_state": "PRIMARY",
    }  # fmt: skip
    [load] = found["host_load1"].samples
    assert load.value == 0.5 and load.labels == {"project": "p1", "host": "db1",
                                                 "cluster": "orders"}  # fmt: skip
    assert found["mongodb_opcounters"].type == "counter"
    [ops] = found["mongodb_opcounters"].samples
    assert ops.name == "mongodb_opcounters_total" and ops.value == 80.0
    assert ops.labels["member_state"] == "PRIMARY" and ops.labels["type"] == "insert"
    [health] = found["mongodb_replset_member_health"].samples
    assert health.labels["exported_host"] == "db2:27017" and health.labels["host"] == "db1"


def test_a_wrong_token_is_refused_and_stores_nothing(platform: Platform) -> None:
    project = platform.project["id"]
    wrong_agent = platform.send(body(agent_round(1, 1)), token="wapa_" + "x" * 43)
    assert wrong_agent.status_code == 401
    scrape = platform.client.get(
        f"/api/v1/projects/{project}/prometheus", headers={"Authorization": "Bearer nope"}
    )
    assert scrape.status_code == 401
    assert platform.client.get(f"/api/v1/projects/{project}/prometheus").status_code == 401
    # an agent token opens the ingest API only
    agent_scrape = platform.api("GET", f"/projects/{project}/prometheus", token=platform.token)
    assert agent_scrape.status_code == 401
    text = platform.api("GET", f"/projects/{project}/prometheus").get_data(as_text=True)
    assert families(text) == {}
    assert platform.store.samples.count_documents({}) == 0

    # a user who is no member of the project sees none of it
    outsider = accounts.create_user(
        platform.store,
        Actor("x", "admin", "admin", "tests"),
        "outsider",
        "a long password!",
        "user",
    )
    token, _ = accounts.create_token(
        platform.store, Actor(outsider["_id"], "outsider", "user", "tests"), "scrape"
    )
    refused = platform.api("GET", f"/projects/{project}/prometheus", token=token)
    assert refused.status_code in (403, 404)


def test_platform_metrics(platform: Platform) -> None:
    assert platform.send(body(agent_round(1, 1))).status_code == 200
    platform.send(body(agent_round(2, 1)), token="wapa_" + "y" * 43)
    answer = platform.client.get("/metrics")
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    check = promtool(text)
    assert check.returncode == 0, check.stdout + check.stderr
    found = families(text)
    assert found["wap_agents_seen"].samples[0].value == 1
    assert found["wap_agents_known"].samples[0].value == 1
    assert found["wap_queue_depth"].samples[0].value == 0
    assert found["wap_ingest_batches_per_second"].samples[0].value == pytest.approx(1 / 60)
    assert found["wap_ingest_lag_seconds"].samples[0].value >= 0
    rejected = {s.labels["status"]: s.value for s in found["wap_ingest_rejected"].samples}
    assert rejected == {"401": 1}
    assert "wap_jobs" in found
