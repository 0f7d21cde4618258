"""Fixtures shared by every test folder: lab hosts on this machine."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.labhosts import LabHosts, start_lab
from wap.lab import Lab


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
