"""Jobs end to end below the browser: real redis-server, real `wap worker` processes, real
ansible-runner running real playbooks on local hosts."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from redis import Redis

from tests.webui.helpers import Api, Proc, wait_for
from webui.config import Settings
from webui.store import Store

FINISHED = ("successful", "failed", "canceled", "lost")


def project_with_host(api: Api, name: str = "p1", hosts: int = 1) -> tuple[str, list[str]]:
    project = api.call("POST", "/projects", json={"name": name}).json()
    host_ids = []
    for number in range(hosts):
        body = {"name": f"local{number}", "address": "127.0.0.1", "connection": "local"}
        host_ids.append(
            api.call("POST", f"/projects/{project['id']}/hosts", json=body).json()["id"]
        )
    return project["id"], host_ids


def start_job(
    api: Api, project_id: str, host_ids: list[str], playbook: str = "steps.yml", **extra: Any
) -> str:
    response = api.call(
        "POST",
        f"/projects/{project_id}/jobs",
        json={"playbook": playbook, "host_ids": host_ids, **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_job(
    api: Api, job_id: str, statuses: tuple[str, ...] = FINISHED, timeout: float = 60
) -> dict[str, Any]:
    return wait_for(
        lambda: (job := api.call("GET", f"/jobs/{job_id}").json())["status"] in statuses and job,
        timeout=timeout,
        every=0.2,
        what=f"job {job_id} to be {'/'.join(statuses)}",
        seen=lambda: {
            k: v
            for k, v in api.call("GET", f"/jobs/{job_id}").json().items()
            if k in ("status", "reason", "worker", "last_counter")
        },
    )


def events(api: Api, job_id: str) -> list[dict[str, Any]]:
    return api.call("GET", f"/jobs/{job_id}/events", params={"after": 0}).json()


def test_a_job_runs_and_its_events_are_stored_in_order(
    admin_api: Api, start_worker: Callable[[], Proc], settings: Settings
) -> None:
    start_worker()
    project_id, host_ids = project_with_host(admin_api, hosts=2)
    job_id = start_job(admin_api, project_id, host_ids, extra_vars={"steps": 3, "step_delay": 0})
    job = wait_job(admin_api, job_id)
    assert job["status"] == "successful", job
    assert job["stats"]["ok"] == {"local0": 2, "local1": 2}
    stored = events(admin_api, job_id)
    counters = [e["counter"] for e in stored]
    assert counters == sorted(set(counters)) and counters[0] == 1
    text = "".join(e["stdout"] for e in stored)
    assert "item=step 3" in text and "PLAY RECAP" in text
    assert job["last_counter"] == counters[-1]
    assert list(settings.runtime_dir.iterdir()) == []  # the private data dir is gone

    failed = wait_job(
        admin_api, start_job(admin_api, project_id, host_ids[:1], playbook="fail.yml")
    )
    assert failed["status"] == "failed" and "rc 2" in failed["reason"]


def test_cancel_is_cooperative(admin_api: Api, start_worker: Callable[[], Proc]) -> None:
    start_worker()
    project_id, host_ids = project_with_host(admin_api)
    job_id = start_job(admin_api, project_id, host_ids, extra_vars={"steps": 40, "step_delay": 0.3})
    wait_for(
        lambda: any("step 2" in e["stdout"] for e in events(admin_api, job_id)),
        timeout=30,
        what="step 2",
    )
    assert admin_api.call("POST", f"/jobs/{job_id}/cancel").status_code == 202
    job = wait_job(admin_api, job_id, timeout=20)
    assert job["status"] == "canceled" and "admin" in job["reason"]

    def playbooks_of_the_job() -> list[str]:
        return [
            " ".join(p.info["cmdline"])
            for p in psutil.process_iter(["cmdline"])
            if "ansible-playbook" in " ".join(p.info["cmdline"] or [])
            and job_id in " ".join(p.info["cmdline"] or [])
        ]

    wait_for(
        lambda: not playbooks_of_the_job(),
        timeout=10,
        what="the job's ansible-playbook to be gone",
        seen=playbooks_of_the_job,
    )
    assert admin_api.call("POST", f"/jobs/{job_id}/cancel").status_code == 409


def test_a_killed_worker_leaves_the_job_lost_with_its_lines(
    admin_api: Api, start_worker: Callable[[], Proc], settings: Settings
) -> None:
    worker = start_worker()
    project_id, host_ids = project_with_host(admin_api)
    job_id = start_job(admin_api, project_id, host_ids, extra_vars={"steps": 60, "step_delay": 0.3})
    wait_for(
        lambda: any("step 3" in e["stdout"] for e in events(admin_api, job_id)),
        timeout=30,
        what="step 3",
    )
    worker.kill_all()  # the worker, its work horse and ansible-playbook, as a crash would
    before = len(events(admin_api, job_id))
    job = wait_job(admin_api, job_id, timeout=settings.lost_after * 4 + 30)
    assert job["status"] == "lost" and "heartbeat" in job["reason"]
    assert len(events(admin_api, job_id)) == before >= 3


def test_jobs_on_one_cluster_never_overlap(
    admin_api: Api, start_worker: Callable[[], Proc], store: Store
) -> None:
    start_worker()
    start_worker()
    project_id, host_ids = project_with_host(admin_api)
    # a cluster whose jobs are this test's playbook (the API's clusters deploy MongoDB at once)
    cluster = {"id": "c" * 32}
    store.clusters.insert_one({"_id": cluster["id"], "project_id": project_id, "name": "c1",
                               "host_ids": host_ids, "playbook": "steps.yml"})  # fmt: skip
    extra = {"steps": 2, "step_delay": 0.3}
    first = start_job(admin_api, project_id, [], cluster_id=cluster["id"], extra_vars=extra)
    second = start_job(admin_api, project_id, [], cluster_id=cluster["id"], extra_vars=extra)
    other = start_job(admin_api, project_id, host_ids, extra_vars=extra)  # no cluster: no lock
    jobs = {j: wait_job(admin_api, j) for j in (first, second, other)}
    assert all(j["status"] == "successful" for j in jobs.values()), jobs
    a, b = sorted((jobs[first], jobs[second]), key=lambda j: j["started_at"])
    assert b["started_at"] >= a["finished_at"] - 0.5


def _all_redis_values(redis: Redis) -> str:
    out = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key).decode()
        if kind == "string":
            out.append(repr(redis.get(key)))
        elif kind == "hash":
            out.append(repr(redis.hgetall(key)))
        elif kind == "list":
            out.append(repr(redis.lrange(key, 0, -1)))
        elif kind == "set":
            out.append(repr(redis.smembers(key)))
        elif kind == "zset":
            out.append(repr(redis.zrange(key, 0, -1)))
        elif kind == "stream":
            out.append(repr(redis.xrange(key)))
    return "\n".join(out)


def _files_containing(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def test_a_canary_secret_is_nowhere(
    admin_api: Api,
    start_worker: Callable[[], Proc],
    settings: Settings,
    store_server: str,
    tmp_path: Path,
) -> None:
    canary = "canary-" + os.urandom(6).hex()
    worker = start_worker()
    project_id, host_ids = project_with_host(admin_api)
    credential = admin_api.call(
        "POST",
        f"/projects/{project_id}/credentials",
        json={"name": "db", "kind": "mongodb", "fields": {"username": "app", "password": canary}},
    ).json()
    job_id = start_job(
        admin_api,
        project_id,
        host_ids,
        playbook="secret_user.yml",
        credential_ids=[credential["id"]],
    )
    wait_for(
        lambda: any(
            "sleep" in e.get("task", "") or "Slow" in e.get("task", "")
            for e in events(admin_api, job_id)
        ),
        timeout=30,
        what="the slow task",
    )
    during = _files_containing(settings.runtime_dir, canary.encode())
    job = wait_job(admin_api, job_id)
    assert job["status"] == "successful", job
    stored = events(admin_api, job_id)
    text = "".join(e["stdout"] for e in stored)
    assert "the job has a password" in text
    assert "password is ********" in text  # the careless debug, masked
    assert "admin app has ********" in text  # through the role variables, masked
    assert during == [], "secrets on disk while the job ran"
    assert _files_containing(settings.runtime_dir, canary.encode()) == []
    store = Store(settings.mongodb_uri or "")
    try:
        for name in store.db.list_collection_names():
            assert canary not in json.dumps(list(store.db[name].find()), default=str), name
    finally:
        store.close()
    assert canary not in _all_redis_values(Redis.from_url(settings.redis_url or ""))
    assert canary not in worker.output()
    assert (
        _files_containing(tmp_path, canary.encode()) == []
    )  # data dir, logs, job dirs, the store's files
    for path in (f"/jobs/{job_id}", f"/projects/{project_id}"):
        assert canary not in admin_api.http.get(admin_api.base + path).text
    for path in (
        f"/jobs/{job_id}",
        f"/jobs/{job_id}/events",
        f"/projects/{project_id}/credentials",
        "/audit",
    ):
        assert canary not in admin_api.call("GET", path).text


@pytest.mark.parametrize("passphrase", ["", "wap-test-PASSPHRASE-canary"])
def test_an_ssh_key_travels_through_the_agent_and_never_lands_on_disk(
    admin_api: Api, start_worker: Callable[[], Proc], settings: Settings, passphrase: str
) -> None:
    """With a passphrase too: ssh-add gets it as the answer to its prompt, from memory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    ).decode()
    start_worker()
    project_id, host_ids = project_with_host(admin_api)
    fields = {"username": "ops", "private_key": pem}
    if passphrase:
        fields["passphrase"] = passphrase
    credential = admin_api.call(
        "POST",
        f"/projects/{project_id}/credentials",
        json={"name": "ssh", "kind": "ssh_key", "fields": fields},
    ).json()
    job_id = start_job(
        admin_api, project_id, host_ids, playbook="ssh_agent.yml", credential_ids=[credential["id"]]
    )
    job = wait_job(admin_api, job_id)
    assert job["status"] == "successful", job
    text = "".join(e["stdout"] for e in events(admin_api, job_id))
    assert "agent holds 1 key(s)" in text and "ED25519" in text
    body = pem.split("\n")[2].encode()  # a line of the key's body
    assert _files_containing(settings.runtime_dir, body) == []
    assert _files_containing(settings.data_dir, body) == []
    if passphrase:
        assert passphrase not in text
        assert _files_containing(settings.runtime_dir, passphrase.encode()) == []


def test_a_job_given_up_as_lost_is_stopped_by_its_worker(
    admin_api: Api, start_worker: Callable[[], Proc], settings: Settings
) -> None:
    """If the reaper wrongly gave up on a live worker (a store outage hid its heartbeats), the
    worker stops its run instead of carrying on beside a possible retry."""
    start_worker()
    project_id, host_ids = project_with_host(admin_api)
    job_id = start_job(admin_api, project_id, host_ids, extra_vars={"steps": 60, "step_delay": 0.3})
    wait_for(lambda: any("step 2" in e["stdout"] for e in events(admin_api, job_id)), timeout=30)
    store = Store(settings.mongodb_uri or "")
    try:
        store.jobs.update_one({"_id": job_id}, {"$set": {"status": "lost", "reason": "lost: test"}})
    finally:
        store.close()
    wait_for(
        lambda: "stopped the run" in admin_api.call("GET", f"/jobs/{job_id}").json()["reason"],
        timeout=30, what="the worker to stop the run",
    )  # fmt: skip
    job = admin_api.call("GET", f"/jobs/{job_id}").json()
    assert job["status"] == "lost" and job["reason"].startswith("lost: test")


def test_a_queued_job_the_queue_lost_is_failed_with_its_reason(
    admin_api: Api, settings: Settings
) -> None:
    from rq.job import Job

    project_id, host_ids = project_with_host(admin_api)
    job_id = start_job(admin_api, project_id, host_ids)  # no worker runs: it stays queued
    redis = Redis.from_url(settings.redis_url or "")
    Job.fetch(job_id, connection=redis).delete()  # as if Redis had lost it
    store = Store(settings.mongodb_uri or "")
    try:  # old enough for the reaper to look at it
        store.jobs.update_one({"_id": job_id}, {"$set": {"created_at": time.time() - 60}})
    finally:
        store.close()
    job = wait_job(admin_api, job_id, timeout=settings.lost_after * 3 + 10)
    assert job["status"] == "failed" and "queue no longer holds" in job["reason"]
