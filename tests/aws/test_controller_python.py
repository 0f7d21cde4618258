"""The plays that run on the controller use the Python that runs Ansible, not the first python3
on PATH: with `-i localhost,` and a PATH that starts with a broken python3 (as pyenv's shims can
be), the teardown still reaches the cloud (moto's server here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.aws.cloud import REPO, TEARDOWN, VENV_BIN, offline_env, playbook_args, write_plan


def broken_pythons(directory: Path) -> Path:
    """python3 and python3.N that note they ran and fail, as a shim of a missing version does."""
    directory.mkdir()
    for name in ["python3", "python", *(f"python3.{minor}" for minor in range(6, 16))]:
        shim = directory / name
        shim.write_text(f"#!/bin/sh\necho {name} >> {directory}/ran\nexit 1\n")
        shim.chmod(0o755)
    return directory


def test_localhost_plays_run_with_ansibles_own_python(tmp_path: Path, moto: str, make_spec) -> None:
    shims = broken_pythons(tmp_path / "shims")
    env = offline_env({"PATH": f"{shims}:{VENV_BIN}:/usr/bin:/bin"})
    # What a play gets without it: localhost from the inventory finds the broken python3 first.
    control = subprocess.run(
        [str(VENV_BIN / "ansible"), "-i", "localhost,", "localhost", "-c", "local", "-m", "ping"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert control.returncode != 0 and (shims / "ran").exists(), control.stdout
    (shims / "ran").unlink()

    plan_file, _ = write_plan(tmp_path, "shimmed", make_spec())
    argv = playbook_args(
        TEARDOWN, plan_file, moto, "-i", "localhost,", "-e", "wap_teardown_confirm=yes"
    )
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert not (shims / "ran").exists(), (shims / "ran").read_text()
