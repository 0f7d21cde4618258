"""Fixtures of the deployment tests: the MongoDB tarball, built once, and labs kept per module."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploy.deployment import Deployment, build_double_tarball
from tests.labhosts import LabHosts, start_lab
from wap.lab import Lab

_LAB_NUMBERS = itertools.count()


@pytest.fixture(scope="session")
def mongodb_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mongod double as MongoDB's tarball, built once per session.

    WAP_TEST_MONGODB_TARBALL names another tarball in MongoDB's layout instead (a real
    MongoDB one, to run these tests against mongod itself).
    """
    given = os.environ.get("WAP_TEST_MONGODB_TARBALL")
    if given:
        return Path(given)
    return build_double_tarball(tmp_path_factory.mktemp("double"))


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LabHosts]]:
    """make_lab for a whole module: a deployment is shared by the tests of a module, and every
    lab started is torn down at the end of the module, even when a test failed."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, mounts, cgroups)")
    started: list[Lab] = []
    tmp = tmp_path_factory.mktemp("lab")

    def start(hosts: int = 3) -> LabHosts:
        name = f"d{os.getpid() % 100000}{next(_LAB_NUMBERS)}"
        started.append(Lab(name))
        return start_lab(name, hosts, tmp, skip=120)

    try:
        yield start
    finally:
        for lab in started:
            lab.down(progress=lambda _msg: None)


@pytest.fixture(scope="module")
def deployment_factory(
    module_lab: Callable[..., LabHosts], mongodb_tarball: Path, tmp_path_factory
) -> Callable[[int], Deployment]:
    def make(hosts: int) -> Deployment:
        secrets = tmp_path_factory.mktemp("secrets") / "cluster"
        return Deployment(module_lab(hosts), mongodb_tarball, secrets)

    return make
