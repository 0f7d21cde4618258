"""build-tarball: MongoDB's tarball layout, self-contained binaries that run without pip."""

from __future__ import annotations

import pathlib
import subprocess
import tarfile

import pytest

BUILD = pathlib.Path(__file__).resolve().parent / "build-tarball"


def test_layout_matches_mongodb_tarballs(tarballs):
    """Same top-level folder and files as MongoDB's Linux tarballs.

    Source: https://www.mongodb.com/docs/manual/tutorial/install-mongodb-on-debian-tarball/
    (mongodb-linux-x86_64-debian12-<version>.tgz, binaries in bin/).
    """
    for version, top in tarballs.items():
        assert top.name == f"mongodb-linux-x86_64-debian12-{version}"
        names = sorted(p.relative_to(top).as_posix() for p in top.rglob("*"))
        assert names == [
            "LICENSE-Community.txt",
            "MPL-2",
            "README",
            "THIRD-PARTY-NOTICES",
            "bin",
            "bin/mongod",
            "bin/mongos",
        ]
        for binary in ("mongod", "mongos"):
            path = top / "bin" / binary
            assert path.stat().st_mode & 0o111
            assert path.read_bytes().startswith(b"#!/usr/bin/env python3\n")
        with tarfile.open(top.parent / f"{top.name}.tgz") as archive:
            assert {m.name.split("/")[0] for m in archive.getmembers()} == {top.name}


def test_binaries_print_their_baked_version_without_site_packages(launcher, tarballs):
    """bin/mongod --version and bin/mongos --version report the built version, run by a bare
    interpreter (-I -S: no site-packages, no PYTHONPATH).

    Source: https://www.mongodb.com/docs/manual/reference/program/mongod/#std-option-mongod.--version
    """
    for version, top in tarballs.items():
        mongod = launcher.run("--version", executable=str(top / "bin" / "mongod"))
        assert mongod.returncode == 0, mongod.stderr
        assert mongod.stdout.splitlines()[0] == f"db version v{version}"
        mongos = launcher.run("--version", executable=str(top / "bin" / "mongos"))
        assert mongos.stdout.splitlines()[0] == f"mongos version v{version}"


def test_built_mongod_serves_pymongo(launcher, tarballs):
    """The built bin/mongod (8.0) runs on a bare python3 and serves CRUD to pymongo.

    Source: https://www.mongodb.com/docs/manual/reference/command/hello/ (maxWireVersion 25).
    """
    node = launcher.start(executable=str(tarballs["8.0.4"] / "bin" / "mongod"))
    client = node.client()
    assert client.admin.command("hello")["maxWireVersion"] == 25
    client.test.c.insert_many([{"a": i} for i in range(3)])
    assert list(client.test.c.aggregate([{"$group": {"_id": None, "s": {"$sum": "$a"}}}])) == [
        {"_id": None, "s": 3}
    ]


@pytest.mark.parametrize("bad", ["7.0", "7.0.x", "5.0.1", "9.0.0", "v7.0.1"])
def test_build_tarball_rejects_other_versions(tmp_path, bad):
    """Only X.Y.Z of a supported series (6.0, 7.0, 8.0) is built.

    Source: the double's README (supported versions).
    """
    result = subprocess.run(
        [str(BUILD), bad, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "build-tarball:" in result.stderr
    assert list(tmp_path.iterdir()) == []
