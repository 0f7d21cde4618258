"""Fixtures shared by every test folder: lab hosts on this machine."""

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.labhosts import LabHosts, free_subnet
from wap.lab import Lab, LabError


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., LabHosts]]:
    """Start labs of N hosts; every lab started is torn down at the end, even on failure."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, mounts, cgroups)")
    started: list[Lab] = []

    def start(hosts: int = 3, name: str | None = None) -> LabHosts:
        name = name or f"t{os.getpid() % 100000}{len(started)}"
        lab = Lab(name)
        started.append(lab)
        with contextlib.suppress(LabError):
            lab.down(progress=lambda _msg: None)  # leftovers of a killed earlier run
        for attempt in range(5):  # another test run may take the same free subnet first
            try:
                state = lab.up(hosts, free_subnet(skip=100 + attempt), progress=lambda _m: None)
                break
            except LabError as exc:
                if "overlaps" not in str(exc) or attempt == 4:
                    raise
        inventory = tmp_path / f"{name}-inventory.yml"
        inventory.write_text(lab.inventory())
        return LabHosts(lab, inventory, {h.name: h.ip for h in state.hosts.values()})

    yield start
    for lab in started:
        lab.down(progress=lambda _msg: None)


@pytest.fixture
def lab3(make_lab: Callable[..., LabHosts]) -> LabHosts:
    """Three lab hosts, lab1..lab3."""
    return make_lab(3)
