"""Fixtures shared by every test folder (lab hosts on this machine), and the order the suite runs
in: scripts/test runs it in parallel with pytest-xdist, `--dist loadscope`, so that each module
runs on one worker, in order, with its module-scoped lab, deployment or scenario."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.labhosts import LabHosts, start_lab
from wap.lab import Lab

# Fixtures that make a test slow: lab hosts, a browser. Modules that use them are handed out to
# the workers first, so that the run does not end waiting on one of them started last.
SLOW_FIXTURES = {"make_lab", "lab3", "module_lab", "stand_in", "rs", "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow modules first; a module's own tests keep their order (a stable sort)."""
    slow = {item.path for item in items if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))}
    items.sort(key=lambda item: item.path not in slow)


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
