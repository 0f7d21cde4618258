"""schemathesis against the OpenAPI document of a running server: no input gives a 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.webui.helpers import Api


def test_no_input_makes_the_api_fail(admin_api: Api, tmp_path: Path) -> None:
    project = admin_api.call("POST", "/projects", json={"name": "fuzz"}).json()
    host = admin_api.call(
        "POST", f"/projects/{project['id']}/hosts",
        json={"name": "h", "address": "127.0.0.1", "connection": "local"},
    ).json()  # fmt: skip
    job = admin_api.call(
        "POST",
        f"/projects/{project['id']}/jobs",
        json={"playbook": "steps.yml", "host_ids": [host["id"]]},
    ).json()  # no worker: it stays queued
    # real ids, so that the generated requests get past the 404s to the validation and services
    (tmp_path / "schemathesis.toml").write_text(
        "[parameters]\n"
        + "".join(
            f'"path.{name}_id" = "{value["id"]}"\n'
            for name, value in (("project", project), ("host", host), ("job", job))
        )
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"), "run",
            f"{admin_api.base}/api/v1/openapi.json",
            "--url", f"{admin_api.base}/api/v1",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {admin_api.token}",
            "--max-examples", "15", "--seed", "1", "--workers", "2",
            "--request-timeout", "10", "--no-color",
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    fuzzed = re.search(r"Fuzzing.*?(\d+) passed", result.stdout, re.S)
    assert fuzzed and int(fuzzed.group(1)) >= 20, result.stdout[-3000:]
