"""Commands the platform asks of an agent, against a running platform (`wap web`, a real process):
`wap-agent run` takes a ping and a collect asked through the API for its host (and not another
host's), runs them and the results come back; what is not on its allow-list, or unknown to it, is
refused and the platform shows why. The agent in this process, with commands of the test's
whose end it controls: a long command holds up neither collection nor a ping, one that raises
is reported failed and the agent goes on, and a platform stopped and started while a command runs
loses nothing (its result arrives once the platform is back, the command run once); an agent
stopped while a command ran reports it failed on its next start."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_shipping import (  # noqa: F401 (fixtures, found by pytest)
    Agent,
    Platform,
    agents,
    platform,
)
from tests.webui.conftest import (  # noqa: F401 (fixtures, found by pytest)
    allowed_endpoints,
    processes,
    redis_url,
    settings,
    start_web,
    store_server,
)
from tests.webui.helpers import Api, Proc, wait_for
from wap_agent.collectors import Registry
from wap_agent.commands import (
    BadArguments,
    CommandRegistry,
    Context,
    Refused,
    builtin,
    no_arguments,
)
from wap_agent.commands.collect import Collect
from wap_agent.commands.ping import Ping
from wap_agent.commands.runner import CommandRunner
from wap_agent.config import AgentConfig, ConfigError, load
from wap_agent.run import Agent as AgentLoop

FINAL = ("succeeded", "failed", "refused", "expired")


class Asker:
    """A user of the platform's API asking commands of the project's hosts."""

    def __init__(self, web: Platform) -> None:
        self.api = Api(web.url)
        assert self.api.login("admin").ok
        self.api.use_token("commands")
        self.project = self.api.call("GET", "/projects").json()[0]["id"]
        self.host = web.host_id

    def ask(self, name: str, host: str | None = None, **args: Any) -> str:
        path = f"/projects/{self.project}/hosts/{host or self.host}/commands"
        answer = self.api.call("POST", path, json={"name": name, "args": args})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def command(self, command_id: str, host: str | None = None) -> dict[str, Any]:
        path = f"/projects/{self.project}/hosts/{host or self.host}/commands/{command_id}"
        answer = self.api.call("GET", path)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def outcome(self, command_id: str, seen: Callable[[], Any] = lambda: "") -> dict[str, Any]:
        return wait_for(
            lambda: (c := self.command(command_id))["state"] in FINAL and c,
            timeout=60, what=f"command {command_id} finished",
            seen=lambda: f"{self.command(command_id)}\n{seen()}",
        )  # fmt: skip


@pytest.fixture
def asker(platform: Platform) -> Asker:  # noqa: F811
    return Asker(platform)


def test_wap_agent_run_takes_its_host_commands_and_refuses_what_it_does_not_allow(
    platform: Platform,  # noqa: F811
    agents: Callable[..., Agent],  # noqa: F811
    asker: Asker,
) -> None:
    other = asker.api.call("POST", f"/projects/{asker.project}/hosts",
                           json={"name": "db2", "address": "127.0.0.2"}).json()  # fmt: skip
    agent = agents(platform.url, platform.token, agent__interval=5, commands__poll_wait=2)
    agent.start()
    not_mine = asker.ask("ping", host=other["id"])

    ping = asker.outcome(asker.ask("ping"), agent.log)
    assert ping["state"] == "succeeded", ping
    assert ping["result"]["version"] and ping["result"]["uptime_seconds"] >= 0
    assert ping["created_by"] == "admin" and ping["progress"]["message"] == "started"

    collect = asker.outcome(asker.ask("collect"), agent.log)
    assert collect["state"] == "succeeded", collect
    names = {s["name"] for s in collect["result"]["samples"]}
    assert {"host_cpu_seconds_total", "host_memory_total_bytes"} <= names

    # another host's command is not this agent's: still waiting for its own
    assert asker.command(not_mine, host=other["id"])["state"] == "queued"
    assert not_mine not in agent.log()
    assert agent.stop() == 0

    # an agent whose allow-list is ping alone
    strict = agents(platform.url, platform.token, agent__interval=5, commands__poll_wait=2,
                    commands__allow="ping")  # fmt: skip
    strict.start()
    refused = asker.outcome(asker.ask("collect"), strict.log)
    assert refused["state"] == "refused", refused
    allowed = "'collect' is not on this agent's allow-list ([commands] allow = ping)"
    assert refused["reason"] == allowed
    assert "result" not in refused or refused["result"] is None
    unknown = asker.outcome(asker.ask("explain", database="shop"), strict.log)
    assert unknown["state"] == "refused" and "explain" in unknown["reason"], unknown
    assert asker.outcome(asker.ask("ping"), strict.log)["state"] == "succeeded"


class Hold:
    """A long command (a backup's stand-in) that runs until the test lets it end."""

    name = "backup"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.runs = 0

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        if set(args) - {"database"}:
            raise BadArguments(f"unknown: {', '.join(sorted(set(args) - {'database'}))}")
        return args

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        self.runs += 1
        context.progress("holding", 0.5)
        assert self.release.wait(120), "never released"
        return {"database": args.get("database"), "runs": self.runs}


class Boom:
    name = "restore"

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        return no_arguments(args)

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        raise RuntimeError("the archive is not there")


@pytest.fixture
def config(platform: Platform, tmp_path: Path) -> AgentConfig:  # noqa: F811
    token = tmp_path / "token"
    token.write_text(platform.token)
    return AgentConfig(
        url=platform.url, token_file=token, queue_dir=tmp_path / "queue", interval=0.5,
        backoff_min=0.05, backoff_max=0.3, request_timeout=5, poll_wait=1,
        commands_allow=("ping", "backup", "restore"),
    )  # fmt: skip


@pytest.fixture
def runner_for(config: AgentConfig) -> Iterator[Callable[[CommandRegistry], CommandRunner]]:
    """The command runner alone (no collecting loop), with the test's commands."""
    stops: list[threading.Event] = []

    def make(registry: CommandRegistry) -> CommandRunner:
        stops.append(threading.Event())
        runner = CommandRunner(config, registry, stops[-1])
        runner.start()
        return runner

    yield make
    for stop in stops:
        stop.set()


@pytest.fixture
def running_agent(config: AgentConfig) -> Iterator[tuple[AgentLoop, threading.Thread]]:
    """`wap-agent run`'s Agent in this process, collecting every 0.5 s and taking commands."""
    agent = AgentLoop(config)
    loop = threading.Thread(target=agent.run, daemon=True)
    yield agent, loop
    agent.stop.set()
    if loop.is_alive():
        loop.join(30)


def test_a_platform_restart_mid_command_loses_nothing(
    platform: Platform,  # noqa: F811
    asker: Asker,
    running_agent: tuple[AgentLoop, threading.Thread],
    start_web: Callable[[], str],  # noqa: F811
    processes: list[Proc],  # noqa: F811
) -> None:
    hold = Hold()
    agent, loop = running_agent
    # the test's stand-ins for a backup and a restore, in place of the agent's own
    agent.commands.registry = CommandRegistry([Ping(time.monotonic()), hold, Boom()])
    loop.start()
    runner = agent.commands
    long = asker.ask("backup", database="shop")
    wait_for(
        lambda: (c := asker.command(long))["state"] == "running"
        and c["progress"]["message"] == "holding",
        timeout=30, what="the long command running", seen=lambda: asker.command(long),
    )  # fmt: skip
    # collection goes on meanwhile
    collected = max(platform.seqs() or [0])
    wait_for(lambda: max(platform.seqs() or [0]) >= collected + 2, timeout=30,
             what="rounds collected while the command runs")  # fmt: skip
    # while it runs and says nothing new, its agent is still heard from (the heartbeat)
    runner.heartbeat = 0.2
    first_word = asker.command(long)["progress"]["at"]
    wait_for(lambda: asker.command(long)["progress"]["at"] > first_word, timeout=30,
             what="the running command's progress sent again")  # fmt: skip
    assert asker.command(long)["progress"]["message"] == "holding"
    runner.heartbeat = 60
    # it holds up neither a ping nor anything else; a command that raises fails, said why
    assert asker.outcome(asker.ask("ping"))["state"] == "succeeded"
    boom = asker.outcome(asker.ask("restore"))
    assert boom["state"] == "failed" and boom["reason"] == "RuntimeError: the archive is not there"
    bad = asker.outcome(asker.ask("backup", collection="x"))
    assert bad["state"] == "refused"
    assert bad["reason"] == "bad arguments for backup: unknown: collection"
    assert asker.command(long)["state"] == "running"

    # the platform goes away while it runs; the command ends meanwhile; its result waits on disk
    platform.web.stop()
    hold.release.set()
    outbox = runner.outbox.directory
    wait_for(
        lambda: runner.pending() == 1 and (outbox / f"{long}.json").exists(),
        timeout=30, what="the result waiting for the platform",
    )  # fmt: skip
    start_web()
    platform.web = processes[-1]
    done = asker.outcome(long)
    assert done["state"] == "succeeded" and done["result"] == {"database": "shop", "runs": 1}
    wait_for(lambda: runner.pending() == 0, timeout=30, what="the result acknowledged")
    assert not list(outbox.glob("*.json")) and hold.runs == 1


def test_an_agent_stopped_mid_command_says_so_on_its_next_start(
    platform: Platform,  # noqa: F811
    asker: Asker,
    runner_for: Callable[[CommandRegistry], CommandRunner],
) -> None:
    hold = Hold()
    first = runner_for(CommandRegistry([hold]))
    long = asker.ask("backup")
    wait_for(lambda: asker.command(long)["state"] == "running", timeout=30,
             what="the command running")  # fmt: skip
    first.stop.set()  # the agent stops; the command's thread is not resumed
    second = runner_for(CommandRegistry([Hold()]))
    done = asker.outcome(long)
    assert done["state"] == "failed" and "the agent stopped while" in done["reason"], done
    wait_for(lambda: second.pending() == 0, timeout=30, what="the report acknowledged")
    hold.release.set()


def test_the_registry_refuses_with_the_reason() -> None:
    assert {"collect", "ping"} <= set(builtin(Registry, time.monotonic()).names)
    commands = CommandRegistry([Ping(time.monotonic()), Collect(Registry)])
    for name, args, allow, reason in (
        ("sh", {}, ["ping"], "this agent has no command 'sh' (it has: collect, ping)"),
        (["ping"], {}, ["ping"], "this agent has no command"),
        ("collect", {}, [], "'collect' is not on this agent's allow-list ([commands] allow = "
         "nothing)"),
        ("ping", {"host": "x"}, ["ping"], "bad arguments for ping: takes no arguments; got host"),
        ("ping", [1], ["ping"], "bad arguments for ping: a JSON object is expected"),
    ):  # fmt: skip
        with pytest.raises(Refused) as refused:
            commands.prepare(name, args, allow)
        assert refused.value.reason.startswith(reason), refused.value.reason
    command, args = commands.prepare("ping", None, ["ping"])
    assert command.name == "ping" and args == {}


def test_the_allow_list_in_the_config(tmp_path: Path) -> None:
    base = "[platform]\nurl = http://127.0.0.1:1\ntoken_file = t\n[queue]\ndir = q\n"
    path = tmp_path / "agent.ini"
    path.write_text(base)
    assert load(path).commands_allow == ("ping", "collect")
    path.write_text(base + "[commands]\nallow = ping,  backup\n   restore\nworkers = 2\n")
    config = load(path)
    assert config.commands_allow == ("ping", "backup", "restore") and config.command_workers == 2
    path.write_text(base + "[commands]\nallow =\n")
    assert load(path).commands_allow == ()
    path.write_text(base + "[commands]\nallow = ping; rm -rf /\n")
    with pytest.raises(ConfigError, match=r"\[commands\] allow: 'ping;' is not a command's name"):
        load(path)
