"""Secrets cannot leave through a job: a canary password is looked for everywhere (store, Redis,
files, the worker's output, API answers and pages) as it is and encoded (base64 at any alignment,
hex, URL-encoded), after a careless playbook printed it in those forms and after an operator tried
to make every field they control print it (a real worker, real ansible-runner, a local host)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

from redis import Redis

from tests.webui.helpers import PASSWORD, Api, Proc
from tests.webui.test_jobs import _all_redis_values, events, project_with_host, start_job, wait_job
from webui.config import Settings
from webui.store import Store

EXFILTRATE = "{{ lookup('ansible.builtin.env', 'WAP_MONGODB_PASSWORD') | b64encode }}"


def encoded_forms(secret: str) -> list[str]:
    """Needles for the secret in any encoding a leak could use. Base64 depends on where in a
    longer text the secret starts: the part that does not, for each of the three alignments."""
    raw = secret.encode()
    needles = {secret, raw.hex(), raw.hex().upper(), quote(secret), quote(secret, safe=""),
               quote_plus(secret)}  # fmt: skip
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw).decode()
            needles.add(text[4 if pad else 0 : len(text) - 4])
    return sorted(needles)


def leaks(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n in text]


def files_with(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                text = path.read_bytes().decode("latin-1")
            except OSError:
                continue
            found += [f"{path}: {n}" for n in leaks(text, needles)]
    return found


def test_a_canary_secret_is_nowhere_in_any_encoding(
    admin_api: Api, start_worker: Callable[[], Proc], settings: Settings, tmp_path: Path
) -> None:
    canary = f"Canary/+=&?{os.urandom(8).hex()}"
    needles = encoded_forms(canary)
    worker = start_worker()
    project_id, host_ids = project_with_host(admin_api)
    credential = admin_api.call(
        "POST", f"/projects/{project_id}/credentials",
        json={"name": "db", "kind": "mongodb",
              "fields": {"username": "{{ lookup('ansible.builtin.pipe', 'id') }}",
                         "password": canary}},
    ).json()  # fmt: skip

    # An operator tries every field they control: each is refused before anything runs.
    assert admin_api.call("POST", "/users", json={"username": "oper", "password": PASSWORD}).ok
    admin_api.call("PUT", f"/projects/{project_id}/members",
                   json={"username": "oper", "role": "operator"})  # fmt: skip
    operator = Api(admin_api.base)
    assert operator.login("oper").ok
    operator.use_token("oper")
    ssh_host = operator.call("POST", f"/projects/{project_id}/hosts",
                             json={"name": "db1", "address": "10.0.0.1"}).json()  # fmt: skip
    attempts = {
        "job extra_vars": operator.call("POST", f"/projects/{project_id}/jobs", json={
            "playbook": "steps.yml", "host_ids": [ssh_host["id"]],
            "credential_ids": [credential["id"]], "extra_vars": {"steps": EXFILTRATE}}),
        "host name": operator.call("POST", f"/projects/{project_id}/hosts",
                                   json={"name": EXFILTRATE, "address": "10.0.0.2"}),
        "host address": operator.call("POST", f"/projects/{project_id}/hosts",
                                      json={"name": "h2", "address": EXFILTRATE}),
        "host user": operator.call("POST", f"/projects/{project_id}/hosts",
                                   json={"name": "h3", "address": "10.0.0.3", "user": EXFILTRATE}),
        "cluster name": operator.call("POST", f"/projects/{project_id}/clusters", json={
            "name": EXFILTRATE, "host_ids": [ssh_host["id"]], "auth": False}),
    }  # fmt: skip
    assert {k: r.status_code for k, r in attempts.items()} == dict.fromkeys(attempts, 422)
    assert "values are data" in attempts["job extra_vars"].text

    # The admin's job with a careless playbook that prints the password in encoded forms.
    job_id = start_job(admin_api, project_id, host_ids, playbook="secret_encoded.yml",
                       credential_ids=[credential["id"]])  # fmt: skip
    job = wait_job(admin_api, job_id)
    assert job["status"] == "successful", job
    text = "".join(e["stdout"] for e in events(admin_api, job_id))
    assert all(f"{form} ********" in text for form in ("b64", "url", "hex")), text
    # the credential's username is data too: shown as typed, never run
    assert "admin is {{ lookup('ansible.builtin.pipe', 'id') }}" in text and "uid=" not in text

    store = Store(settings.mongodb_uri or "")
    try:
        for name in store.db.list_collection_names():
            stored = json.dumps(list(store.db[name].find()), default=str)
            assert leaks(stored, needles) == [], name
    finally:
        store.close()
    assert leaks(_all_redis_values(Redis.from_url(settings.redis_url or "")), needles) == []
    assert leaks(worker.output(), needles) == []
    assert files_with(tmp_path, needles) == []  # data dir, logs, job dirs, the store's files
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/events", f"/projects/{project_id}/credentials",
                 "/audit"):  # fmt: skip
        assert leaks(admin_api.call("GET", path).text, needles) == [], path
    for path in (f"/jobs/{job_id}", f"/projects/{project_id}"):
        assert leaks(admin_api.http.get(admin_api.base + path).text, needles) == [], path
