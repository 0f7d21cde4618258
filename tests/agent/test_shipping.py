"""`wap-agent run` against a running platform (`wap web`, a real process): a round's samples arrive
and are stored; the platform stopped and started again (the agent restarted meanwhile) and every
sequence number arrives once, in order, with no hole; a wrong token is refused and nothing is
stored until the token is right; the queue's bound drops the oldest batches and the platform
learns how many; HTTPS with the platform's CA pinned, and a CA that is not the platform's refused.
Outages last as long as it takes for batches to queue up: every wait is for a condition."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.webui.conftest import (  # noqa: F401 (fixtures, found by pytest)
    allowed_endpoints,
    processes,
    redis_url,
    settings,
    start_web,
    store_server,
)
from tests.webui.helpers import Api, Proc, env_for, free_port, wait_for
from webui.config import Settings
from webui.services import metrics
from webui.store import Store
from webui.tls import ensure_auto

AGENT = [sys.executable, "-m", "wap_agent", "run", "--config"]


@dataclass
class Platform:
    url: str
    settings: Settings
    store: Store
    host_id: str
    token: str
    web: Proc

    def stored(self) -> list[dict[str, Any]]:
        return metrics.host_batches(self.store, self.host_id)

    def seqs(self) -> list[int]:
        return [b["seq"] for b in self.stored()]

    def agent(self) -> dict[str, Any]:
        host = self.store.hosts.find_one({"_id": self.host_id})
        return (host or {}).get("agent") or {}


def register_host(api: Api, config: Settings, web: Proc) -> Platform:
    assert api.setup().ok
    api.use_token("admin-tests")
    project = api.call("POST", "/projects", json={"name": "p1"}).json()
    host = {"name": "db1", "address": "127.0.0.1"}
    host = api.call("POST", f"/projects/{project['id']}/hosts", json=host).json()
    answer = api.call("POST", f"/projects/{project['id']}/hosts/{host['id']}/agent-token")
    assert answer.status_code == 201, answer.text
    store = Store(config.mongodb_uri or "")
    return Platform(api.base, config, store, host["id"], answer.json()["token"], web)


@pytest.fixture
def platform(
    settings: Settings,  # noqa: F811
    start_web: Callable[[], str],  # noqa: F811
    processes: list[Proc],  # noqa: F811
) -> Iterator[Platform]:
    base = start_web()
    platform = register_host(Api(base), settings, processes[-1])
    yield platform
    platform.store.close()


class Agent:
    """`wap-agent run` with a config of the test's, as a child process (stopped by SIGTERM)."""

    def __init__(self, directory: Path, url: str, token: str, **options: Any) -> None:
        self.directory = directory
        self.queue = directory / "queue"
        self.token_file = directory / "token"
        self.token_file.write_text(token + "\n")
        self.config = directory / "agent.ini"
        sections: dict[str, dict[str, Any]] = {
            "platform": {"url": url, "token_file": self.token_file},
            "agent": {"interval": 0.3, "log_level": "DEBUG"},
            "queue": {"dir": self.queue},
            "sender": {"backoff_min": 0.05, "backoff_max": 0.3, "batches_per_request": 10},
        }
        for key, value in options.items():
            section, _, name = key.partition("__")
            sections.setdefault(section, {})[name] = value
        self.sections = sections
        self.config.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                for section, values in sections.items()
            )
        )
        self.runs: list[Proc] = []

    def start(self) -> Proc:
        log = self.directory / f"agent-{len(self.runs)}.log"
        proc = Proc([*AGENT, str(self.config)], log, env=dict(os.environ))
        self.runs.append(proc)

        def started() -> bool:
            assert proc.alive(), proc.output()
            return (self.queue / "state.json").exists()

        wait_for(started, timeout=30, what="the agent's queue")
        return proc

    def stop(self) -> int:
        proc = self.runs[-1]
        proc.stop(timeout=30)
        return proc.popen.returncode

    def log(self) -> str:
        return "\n".join(proc.output() for proc in self.runs)

    def queued(self) -> int:
        return len(list((self.queue / "batches").glob("*.json")))

    def last_seq(self) -> int:
        return json.loads((self.queue / "state.json").read_text())["last_seq"]

    def stream(self) -> str:
        return json.loads((self.queue / "state.json").read_text())["stream"]

    def close(self) -> None:
        for proc in self.runs:
            proc.stop()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []

    def make(url: str, token: str, **options: Any) -> Agent:
        directory = tmp_path / f"agent{len(made)}"
        directory.mkdir()
        made.append(Agent(directory, url, token, **options))
        return made[-1]

    yield make
    for agent in made:
        agent.close()


def no_hole(platform: Platform, agent: Agent, after: int) -> list[int]:
    """Wait until every batch up to the agent's number at the time of the call plus `after`
    is on the platform; return the sequence numbers in the order they arrived."""
    target = agent.last_seq() + after
    wait_for(
        lambda: agent.last_seq() >= target and max(platform.seqs() or [0]) >= target,
        timeout=60, what=f"batch {target} on the platform",
        seen=lambda: f"stored up to {max(platform.seqs() or [0])}, agent at {agent.last_seq()},"
        f" {agent.queued()} queued\n{agent.log()[-3000:]}",
    )  # fmt: skip
    return platform.seqs()


def test_samples_arrive_through_an_outage_and_an_agent_restart(
    platform: Platform,
    agents: Callable[..., Agent],
    start_web: Callable[[], str],  # noqa: F811
    processes: list[Proc],  # noqa: F811
) -> None:
    agent = agents(platform.url, platform.token)
    agent.start()
    arrived = no_hole(platform, agent, 3)
    assert arrived[:3] == [1, 2, 3]
    assert "UNENCRYPTED" in agent.log()  # the URL is http: the agent says so
    first = platform.store.samples.find_one({"host_id": platform.host_id, "seq": 1})
    names = {s["n"] for s in first["samples"]}
    assert {"host_cpu_seconds_total", "host_memory_total_bytes", "host_load1"} <= names
    second = platform.store.samples.find_one({"host_id": platform.host_id, "seq": 2})
    assert "host_cpu_seconds_per_second" in {s["n"] for s in second["samples"]}  # rates.py's
    seen = platform.agent()
    assert seen["version"] and seen["state"] == "ok" and seen["stream"] == agent.stream()

    # The platform goes away; batches queue up on disk.
    platform.web.stop()
    before = agent.last_seq()
    wait_for(lambda: agent.queued() >= 3, timeout=30, what="batches queued during the outage")
    # The agent is stopped (SIGTERM: a clean exit) and started again during the outage.
    assert agent.stop() == 0
    assert "batches queued for the next start" in agent.log()
    queued = agent.queued()
    assert queued >= 3
    agent.start()
    wait_for(lambda: agent.queued() > queued, timeout=30, what="the restarted agent queuing")
    # The platform comes back: everything arrives, once, in order.
    start_web()
    platform.web = processes[-1]
    arrived = no_hole(platform, agent, 3)
    assert arrived == list(range(1, len(arrived) + 1)), arrived
    assert len(arrived) > before + queued
    assert {b["stream"] for b in platform.stored()} == {agent.stream()}
    assert "platform reachable again" in agent.log()
    seen = platform.agent()
    assert seen["dropped_batches"] == 0 and seen["duplicates"] >= 0
    assert agent.stop() == 0


def test_a_wrong_token_stores_nothing_until_the_right_one(
    platform: Platform, agents: Callable[..., Agent]
) -> None:
    # and a mongod that is not there: the agent keeps going and says so in its host's state
    free = free_port()
    agent = agents(
        platform.url, "wapa_" + "x" * 43,
        mongodb__uris=f"mongodb://127.0.0.1:{free}", mongodb__timeout_ms=200,
    )  # fmt: skip
    agent.start()
    wait_for(
        lambda: "answered 401" in agent.log() and agent.queued() >= 2,
        timeout=30, what="the platform refusing the token", seen=lambda: agent.log()[-2000:],
    )  # fmt: skip
    assert platform.stored() == []
    direct = requests.post(
        platform.url + "/api/v1/agent/samples",
        headers={"Authorization": "Bearer wapa_wrong"},
        json={"batches": []},
        timeout=10,
    )
    assert direct.status_code == 401
    agent.token_file.write_text(platform.token)  # read at every request: no restart needed
    arrived = no_hole(platform, agent, 1)
    assert arrived == list(range(1, len(arrived) + 1))
    seen = platform.agent()
    assert seen["state"] == "errors" and f"mongodb 127.0.0.1:{free}" in seen["errors"], seen
    down = platform.store.samples.find_one({"host_id": platform.host_id, "seq": 1})["samples"]
    assert {"n": "mongodb_up", "v": 0} in [{"n": s["n"], "v": s["v"]} for s in down]


def test_the_queue_bound_drops_the_oldest_and_the_platform_learns_it(
    platform: Platform,
    agents: Callable[..., Agent],
    start_web: Callable[[], str],  # noqa: F811
    processes: list[Proc],  # noqa: F811
) -> None:
    agent = agents(platform.url, platform.token, queue__max_bytes="100K")
    agent.start()
    delivered = no_hole(platform, agent, 1)
    platform.web.stop()
    wait_for(
        lambda: "queue past its bounds" in agent.log(), timeout=60, what="the queue full",
        seen=lambda: f"{agent.queued()} queued",
    )  # fmt: skip
    dropped_from = max(delivered) + 1
    start_web()
    platform.web = processes[-1]
    wait_for(lambda: agent.queued() <= 1, timeout=60, what="the queue drained")
    arrived = no_hole(platform, agent, 2)  # the newest batch was made after every drop
    last = platform.store.samples.find_one({"host_id": platform.host_id, "seq": max(arrived)})
    missing = sorted(set(range(1, last["seq"])) - set(arrived))
    # the oldest of the outage went: one run from a batch not delivered before it
    assert missing and missing == list(range(missing[0], missing[0] + len(missing))), arrived
    assert missing[0] >= dropped_from
    # Every batch the platform lacks is counted as dropped. The count may also hold the batches of
    # the one request whose answer the stop cut off (stored, never acknowledged, then the oldest
    # in the queue): the agent cannot tell those from batches never sent.
    counted = last["dropped"]["batches"]
    in_flight = int(agent.sections["sender"]["batches_per_request"])
    assert len(missing) <= counted <= len(missing) + in_flight, (counted, missing)
    assert last["dropped"]["samples"] > 0
    wait_for(
        lambda: platform.agent().get("dropped_batches", 0) >= counted,
        timeout=30, what="the drop on the host", seen=platform.agent,
    )  # fmt: skip
    assert platform.agent()["dropped_batches"] == counted


def start_web_with(
    config: Settings,
    started: list[Proc],
    tmp_path: Path,
    **env: str,
) -> Proc:
    """`wap web` with more settings in its environment, answering /healthz."""
    web = Proc(
        [sys.executable, "-m", "wap.cli", "web"],
        tmp_path / f"web-{len(started)}.log",
        {**env_for(config), **env},
    )
    started.append(web)
    tls = env.get("WAP_TLS") == "auto"
    url = f"{'https' if tls else 'http'}://{config.bind}"
    verify: Any = str(config.data_dir / "tls" / "ca.pem") if tls else True

    def up() -> bool:
        assert web.alive(), web.output()
        try:
            return requests.get(url + "/healthz", verify=verify, timeout=2).ok
        except (requests.RequestException, OSError):
            return False

    wait_for(up, timeout=60, what=f"wap web at {url}")
    return web


def test_requests_too_large_are_split_until_they_fit(
    settings: Settings,  # noqa: F811
    processes: list[Proc],  # noqa: F811
    agents: Callable[..., Agent],
    tmp_path: Path,
) -> None:
    body_limit = 100_000  # a batch or two of this host's; ten are refused (413)
    web = start_web_with(settings, processes, tmp_path, WAP_AGENT_MAX_BODY=str(body_limit))
    platform = register_host(Api(f"http://{settings.bind}"), settings, web)
    try:
        agent = agents(platform.url, platform.token, sender__batches_per_request=10)
        agent.start()
        platform.web.stop()  # a backlog, so that requests carry several batches
        wait_for(lambda: agent.queued() >= 12, timeout=60, what="a backlog of batches")
        platform.web = start_web_with(
            settings, processes, tmp_path, WAP_AGENT_MAX_BODY=str(body_limit)
        )
        arrived = no_hole(platform, agent, 2)
        assert arrived == list(range(1, len(arrived) + 1))
        seen = platform.agent()
        assert seen["rejected"] >= 1 and seen["last_rejection"]["status"] == 413
        assert seen["dropped_batches"] == 0
    finally:
        platform.store.close()


def test_https_with_the_platform_ca_pinned(
    settings: Settings,  # noqa: F811
    processes: list[Proc],  # noqa: F811
    agents: Callable[..., Agent],
    tmp_path: Path,
) -> None:
    web = start_web_with(settings, processes, tmp_path, WAP_TLS="auto")
    url = f"https://{settings.bind}"
    ca = settings.data_dir / "tls" / "ca.pem"
    api = Api(url)
    api.http.verify, api.http.trust_env = str(ca), False
    platform = register_host(api, settings, web)
    try:
        ensure_auto(tmp_path / "other-ca", ["127.0.0.1"])
        wrong = agents(url, platform.token, platform__ca_file=tmp_path / "other-ca" / "ca.pem")
        wrong.start()
        wait_for(
            lambda: "CERTIFICATE_VERIFY_FAILED" in wrong.log(), timeout=30,
            what="a CA that is not the platform's refused", seen=lambda: wrong.log()[-2000:],
        )  # fmt: skip
        assert platform.stored() == []
        wrong.stop()

        agent = agents(url, platform.token, platform__ca_file=ca)
        agent.start()
        arrived = no_hole(platform, agent, 3)
        assert arrived[:3] == [1, 2, 3] and "UNENCRYPTED" not in agent.log()
    finally:
        platform.store.close()
