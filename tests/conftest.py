"""Fixtures shared by every test folder (lab hosts on this machine), and how the suite runs in
parallel (scripts/test runs it with pytest-xdist, `--dist loadgroup`)."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.labhosts import LabHosts, start_lab
from wap.lab import Lab

# Fixtures that make a test slow: lab hosts, a browser. Such tests are handed out to the workers
# first, so that the run does not end waiting on one of them started last.
SLOW_FIXTURES = {"make_lab", "lab3", "module_lab", "stand_in", "rs", "browser"}
SHARED_SCOPES = ("module", "class", "package")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that share a module's fixture (a lab, a deployment, a scenario in order)
    on one worker, in their order; then put the slow tests first (a stable sort)."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = fixtures.name2fixturedefs if fixtures else {}
        shared = any(d and d[-1].scope in SHARED_SCOPES for d in defs.values())
        if shared and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items.sort(key=lambda item: not (SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))))


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., LabHosts]]:
    """Start labs of N hosts; every lab started is torn down at the end, even on failure."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, mounts, cgroups)")
    started: list[Lab] = []

    def start(hosts: int = 3, name: str | None = None) -> LabHosts:
        name = name or f"t{os.getpid() % 100000}{len(started)}"
        started.append(Lab(name))
        return start_lab(name, hosts, tmp_path)

    yield start
    for lab in started:
        lab.down(progress=lambda _msg: None)


@pytest.fixture
def lab3(make_lab: Callable[..., LabHosts]) -> LabHosts:
    """Three lab hosts, lab1..lab3."""
    return make_lab(3)
