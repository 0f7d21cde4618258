"""Fixtures shared by every test folder (lab hosts on this machine), and how the suite runs in
parallel: scripts/test runs it with pytest-xdist, `--dist loadgroup`, where tests that share a
module's fixture (a lab, a deployment, a scenario in order) run on one worker, in order, and the
other tests of the suite go wherever a worker is free."""

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

from tests.labhosts import LabHosts, start_lab
from wap.lab import Lab

# The suite's passwords are throwaway: argon2-cffi's cheapest parameters (webui/services/
# accounts.py), before anything imports it; the processes the tests start inherit it. One test
# (tests/webui/test_accounts.py) checks that a platform without it hashes as RFC 9106 says.
os.environ["WAP_INSECURE_FAST_PASSWORD_HASHING"] = "1"

# Fixtures that make a test slow: lab hosts, a browser. Modules that use them are handed out to
# the workers first, so that the run does not end waiting on one of them started last.
SLOW_FIXTURES = {"make_lab", "lab3", "module_lab", "stand_in", "rs", "browser"}
SHARED_SCOPES = ("module", "class", "package")
GROUPS_DIR = "WAP_TEST_GROUPS_DIR"  # where workers tell the scheduler each test's group


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER") and config.getoption("dist", "no") != "no":
        os.environ[GROUPS_DIR] = tempfile.mkdtemp(prefix="wap-test-groups-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER") and GROUPS_DIR in os.environ:
        shutil.rmtree(os.environ.pop(GROUPS_DIR), ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow modules first, a module's own tests in their order (a stable sort); on an xdist
    worker, write down which tests must share a worker: those of a module that share a fixture
    of module (or class) scope, and those marked xdist_group."""
    slow = {item.path for item in items if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))}
    items.sort(key=lambda item: item.path not in slow)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and GROUPS_DIR in os.environ:
        groups = {item.nodeid: group for item in items if (group := _group(item))}
        path = Path(os.environ[GROUPS_DIR]) / f"{worker}.json"
        path.with_suffix(".tmp").write_text(json.dumps(groups))
        path.with_suffix(".tmp").rename(path)


def _group(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    if marker:
        return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
    fixtures = getattr(item, "_fixtureinfo", None)
    defs = fixtures.name2fixturedefs if fixtures else {}
    if any(d and d[-1].scope in SHARED_SCOPES for d in defs.values()):
        return item.nodeid.split("::")[0]
    return None


class GroupScheduling(LoadScopeScheduling):
    """pytest-xdist's loadgroup, with the groups read from what the workers wrote: under pytest
    9.2 xdist's own loadgroup cannot tag a test's id with its group (pytest-xdist issue 1386) and
    silently spreads a group over workers. A test in no group is a unit of its own."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:  # first asked once every worker has collected
            self._groups = {}
            for path in sorted(Path(os.environ[GROUPS_DIR]).glob("*.json")):
                self._groups.update(json.loads(path.read_text()))
        group = self._groups.get(nodeid)
        return f"group {group}" if group else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadScopeScheduling | None:
    if config.getoption("dist") == "loadgroup" and GROUPS_DIR in os.environ:
        return GroupScheduling(config, log)
    return None


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
