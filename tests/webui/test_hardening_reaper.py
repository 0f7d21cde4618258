"""Lost jobs are found with no web server running: a worker killed mid-job, and the reaper beside
another `wap worker` marks its job lost (real workers, real ansible-runner). How soon, against
the bound of lost_after plus the reaper's period, is a figure for tests/bench/, not a test."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from tests.webui.helpers import Proc, wait_for
from tests.webui.test_web import api_token, setup_admin
from webui.config import Settings
from webui.jobs.reaper import period
from webui.store import Store


def _running_on(workers: list[Proc], store: Store, job_id: str) -> Proc:
    """The worker whose work horse runs the job (its `worker` field is host:horse-pid)."""
    job = wait_for(
        lambda: (j := store.jobs.find_one({"_id": job_id})) and j["status"] == "running" and j,
        timeout=60,
        what="the job to run",
    )
    horse = int(job["worker"].rpartition(":")[2])
    for worker in workers:
        if horse in {p.pid for p in worker.descendants()}:
            return worker
    raise AssertionError(f"no worker runs {job['worker']}")


def test_a_killed_worker_is_found_lost_with_no_web_server(
    client: FlaskClient,
    settings: Settings,
    store: Store,
    start_worker: Callable[[], Proc],
) -> None:
    setup_admin(client)  # through the app in this process: no web server runs
    headers = api_token(client)
    project = client.post("/api/v1/projects", json={"name": "p"}, headers=headers).get_json()
    host = client.post(
        f"/api/v1/projects/{project['id']}/hosts",
        json={"name": "local", "address": "127.0.0.1", "connection": "local"},
        headers=headers,
    ).get_json()
    workers = [start_worker(), start_worker()]
    job = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={
            "playbook": "steps.yml",
            "host_ids": [host["id"]],
            "extra_vars": {"steps": 100, "step_delay": 0.3},
        },
        headers=headers,
    ).get_json()
    doomed = _running_on(workers, store, job["id"])
    doomed.kill_all()  # the worker, its reaper, its horse and ansible-playbook: a machine crash
    lost = wait_for(
        lambda: (j := store.jobs.find_one({"_id": job["id"]})) and j["status"] == "lost" and j,
        timeout=settings.lost_after + period(settings) + 30,
        every=0.2,
        what="the job to be marked lost",
        seen=lambda: store.jobs.find_one({"_id": job["id"]}, {"status": 1, "reason": 1}),
    )
    assert "heartbeats" in lost["reason"] and "lost:" in lost["reason"]
    survivor = next(w for w in workers if w is not doomed)
    assert survivor.alive()
