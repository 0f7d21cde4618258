"""The collection builds with ansible-galaxy and installs offline from its tarball."""

import json
import subprocess
import tarfile
from pathlib import Path

import yaml

from tests.labhosts import REPO, VENV_BIN, ansible_env

COLLECTIONS = REPO / "collections" / "ansible_collections"
SOURCE = COLLECTIONS / "whaleal" / "wap"


def galaxy(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_collection_builds_and_installs_offline(tmp_path: Path) -> None:
    version = yaml.safe_load((SOURCE / "galaxy.yml").read_text())["version"]
    env = ansible_env()
    built = galaxy("collection", "build", str(SOURCE), "--output-path", str(tmp_path), env=env,
                   cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    tarball = tmp_path / f"whaleal-wap-{version}.tar.gz"
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["dependencies"].keys() >= {"amazon.aws"}
    assert not [n for n in names if n.startswith("tests/output")]
    assert "meta/runtime.yml" in names

    # The dependencies as Galaxy would have installed them, beside (not inside) the target path.
    deps = tmp_path / "deps" / "ansible_collections"
    for namespace in COLLECTIONS.iterdir():
        if namespace.is_dir() and namespace.name != "whaleal":
            (deps / namespace.name).mkdir(parents=True)
            for collection in namespace.iterdir():
                (deps / namespace.name / collection.name).symlink_to(collection)
    target = tmp_path / "installed"
    env["ANSIBLE_COLLECTIONS_PATH"] = f"{target}:{deps.parent}"
    installed = galaxy("collection", "install", "--offline", str(tarball), "-p", str(target),
                       env=env, cwd=tmp_path)  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = galaxy("collection", "list", "whaleal.wap", "--format", "json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert found == {str(target / "ansible_collections"): {"whaleal.wap": {"version": version}}}
    assert (target / "ansible_collections/whaleal/wap/meta/runtime.yml").exists()
