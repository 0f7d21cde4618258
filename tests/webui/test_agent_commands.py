"""Commands for agents, through the app: a user asks a host's agent to run a command; only that
host's agent is given it (a long poll woken when it is asked), it reports progress and the result
once, and the user reads state, progress and result; names the platform does not ask are refused
with the reason, and so are readers; a refusal by the agent shows its reason; a command no agent
took expires (time made controllable); every command is audited with who asked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.waiting import wait_until
from tests.webui.helpers import PASSWORD
from tests.webui.test_agent_ingest import Platform
from webui import create_app
from webui.api import agent_commands as agent_commands_api
from webui.config import Settings
from webui.services import accounts, agent_commands, audit, projects
from webui.services.audit import Actor


class Commands(Platform):
    """The ingest test's platform (admin, project, host db1 and its agent token) with a second
    host db2 and its own token, and the commands API of both sides."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        other = {"name": "db2", "address": "10.0.0.2"}
        self.other = self.api("POST", f"/projects/{self.project['id']}/hosts", json=other)
        self.other = self.other.get_json()
        path = f"/projects/{self.project['id']}/hosts/{self.other['id']}/agent-token"
        self.other_token = self.api("POST", path).get_json()["token"]

    def ask(self, name: str, args: Any = None, token: str | None = None, **more: Any) -> Any:
        body = {"name": name, **({"args": args} if args is not None else {}), **more}
        path = f"/projects/{self.project['id']}/hosts/{self.host['id']}/commands"
        return self.api("POST", path, json=body, token=token)

    def command(self, command_id: str, host: str | None = None) -> dict[str, Any]:
        path = f"/projects/{self.project['id']}/hosts/{host or self.host['id']}/commands"
        answer = self.api("GET", f"{path}/{command_id}")
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def poll(self, token: str | None = None, wait: float = 0) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.client.get(f"/api/v1/agent/commands?wait={wait}", headers=headers)

    def report(self, command_id: str, kind: str, body: Any, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.client.post(
            f"/api/v1/agent/commands/{command_id}/{kind}", json=body, headers=headers
        )


@pytest.fixture
def platform(settings: Settings) -> Iterator[Commands]:
    app = create_app({"WAP_SETTINGS": settings, "TESTING": True})
    yield Commands(app)
    app.extensions["wap.store"].close()


def test_a_command_reaches_its_host_agent_alone_and_its_result_comes_back(
    platform: Commands,
) -> None:
    asked = platform.ask("ping")
    assert asked.status_code == 201, asked.get_json()
    command = asked.get_json()
    assert command["state"] == "queued" and command["created_by"] == "admin"
    assert command["name"] == "ping" and command["args"] == {}

    assert platform.poll(platform.other_token).get_json() == {"commands": []}  # another host's
    given = platform.poll().get_json()["commands"]
    assert [(c["id"], c["name"], c["args"]) for c in given] == [(command["id"], "ping", {})]
    assert platform.command(command["id"])["state"] == "sent"
    # given again until the agent reports on it (an answer lost on the way loses nothing)
    assert [c["id"] for c in platform.poll().get_json()["commands"]] == [command["id"]]

    # another host's agent can neither see it nor report on it
    stranger = platform.report(command["id"], "result", {"state": "succeeded"},
                               platform.other_token)  # fmt: skip
    assert stranger.status_code == 404
    other_path = f"/projects/{platform.project['id']}/hosts/{platform.other['id']}/commands"
    assert platform.api("GET", f"{other_path}/{command['id']}").status_code == 404

    going = platform.report(command["id"], "progress", {"message": "asking", "fraction": 0.5})
    assert going.status_code == 200, going.get_json()
    seen = platform.command(command["id"])
    assert seen["state"] == "running" and seen["progress"]["message"] == "asking"
    assert seen["progress"]["fraction"] == 0.5 and seen["started_at"] >= seen["created_at"]
    assert platform.poll().get_json() == {"commands": []}  # running: not given again

    outcome = {"state": "succeeded", "result": {"version": "0.1.0", "uptime_seconds": 12.5}}
    done = platform.report(command["id"], "result", outcome)
    assert done.status_code == 200, done.get_json()
    seen = platform.command(command["id"])
    assert seen["state"] == "succeeded" and seen["result"] == outcome["result"]
    assert seen["finished_at"] >= seen["started_at"]
    # the same result again (the answer was lost) is acknowledged; another is a conflict
    assert platform.report(command["id"], "result", outcome).status_code == 200
    failed = platform.report(command["id"], "result", {"state": "failed", "reason": "x"})
    assert failed.status_code == 409 and "succeeded already" in failed.get_json()["message"]
    assert platform.report(command["id"], "progress", {"message": "late"}).status_code == 409
    assert platform.command(command["id"])["result"] == outcome["result"]

    listed = platform.api("GET", f"/projects/{platform.project['id']}/hosts/"
                          f"{platform.host['id']}/commands").get_json()  # fmt: skip
    assert [c["id"] for c in listed] == [command["id"]]
    entries = audit.search(platform.store, action="agent.command")
    asked_entry = next(e for e in entries if e["action"] == "agent.command")
    assert asked_entry["actor"] == "admin" and asked_entry["target"] == "p1/db1"
    assert asked_entry["detail"] == {"command_id": command["id"], "name": "ping"}
    finished = next(e for e in entries if e["action"] == "agent.command.succeeded")
    assert finished["actor"] == "agent:db1" and finished["detail"]["asked_by"] == "admin"


def test_a_waiting_poll_is_woken_by_the_command(platform: Commands) -> None:
    answers: list[Any] = []
    poller = threading.Thread(target=lambda: answers.append(platform.poll(wait=30)))
    poller.start()

    # the poll is waiting (its wake-up key is watched) before the command is asked
    def waiting() -> bool:
        redis = platform.app.extensions["wap.agent-commands.redis"]
        return any(c["cmd"] == "blpop" for c in redis.client_list())

    wait_until(waiting, timeout=30, what="the agent's poll waiting", retry=KeyError)
    command = platform.ask("collect").get_json()
    poller.join(40)
    assert not poller.is_alive()
    assert [c["id"] for c in answers[0].get_json()["commands"]] == [command["id"]]


def test_past_the_waiting_polls_bound_a_poll_is_answered_at_once(
    platform: Commands, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_commands_api, "_waiting_polls", threading.BoundedSemaphore(1))
    answers: list[Any] = []
    waiting = threading.Thread(target=lambda: answers.append(platform.poll(wait=30)))
    waiting.start()
    wait_until(
        lambda: agent_commands_api._waiting_polls._value == 0, timeout=30,
        what="the first poll holding the one slot",
    )  # fmt: skip
    # another agent's poll gets no thread to wait in: answered without waiting, nothing lost
    other = platform.poll(token=platform.other_token, wait=30)
    assert other.get_json() == {"commands": []} and waiting.is_alive()
    command = platform.ask("ping").get_json()
    waiting.join(40)
    assert [c["id"] for c in answers[0].get_json()["commands"]] == [command["id"]]


def test_a_command_queued_by_a_service_without_a_wake_reaches_a_waiting_poll(
    platform: Commands,
) -> None:
    answers: list[Any] = []
    poller = threading.Thread(target=lambda: answers.append(platform.poll(wait=30)))
    poller.start()
    admin = Actor(None, "admin", "admin", "tests")
    args = {"$where": "x", "a.b": [1, {"$c": None}]}  # keys are the command's business
    command = agent_commands.enqueue(
        platform.store, admin, platform.project["id"], platform.host["id"], "backup", args
    )
    poller.join(40)
    assert not poller.is_alive()
    given = answers[0].get_json()["commands"]
    assert [(c["id"], c["args"]) for c in given] == [(command["_id"], args)]
    result = {"files": {"a.b": 1, "$size": 2}}
    done = platform.report(command["_id"], "result", {"state": "succeeded", "result": result})
    assert done.status_code == 200, done.get_json()
    assert platform.command(command["_id"])["result"] == result


def test_names_and_arguments_the_platform_does_not_ask_are_refused(platform: Commands) -> None:
    for name in ("shell", "sh -c id", ""):
        refused = platform.ask(name)
        assert refused.status_code == 422, refused.get_json()
        assert "name" in refused.get_json()["errors"]["json"]
    refused = platform.ask("ping", {"host": "elsewhere"})
    assert refused.status_code == 422 and "no arguments" in refused.get_json()["message"]
    assert platform.ask("backup", "not an object").status_code == 422
    nan = platform.api(
        "POST", f"/projects/{platform.project['id']}/hosts/{platform.host['id']}/commands",
        data='{"name": "backup", "args": {"x": NaN}}', content_type="application/json",
    )  # fmt: skip
    assert nan.status_code == 422, nan.get_json()
    assert platform.ask("ping", ttl=0).status_code == 422
    assert platform.poll().get_json() == {"commands": []}
    refusals = audit.search(platform.store, action="agent.command", outcome="refused")
    # past the schema, refused here
    assert sorted(e["detail"]["name"] for e in refusals) == ["backup", "ping"]
    missing = f"/projects/{platform.project['id']}/hosts/nohost/commands"
    assert platform.api("POST", missing, json={"name": "ping"}).status_code == 404


def test_readers_may_read_commands_but_not_ask(platform: Commands) -> None:
    store, admin = platform.store, Actor(None, "admin", "admin", "tests")
    command = platform.ask("ping").get_json()
    reader = accounts.create_user(store, admin, "reader", PASSWORD, "user")
    projects.set_member(store, admin, platform.project["id"], "reader", "read-only")
    token, _ = accounts.create_token(store, Actor(reader["_id"], "reader", "user", "t"), "t")
    assert platform.ask("ping", token=token).status_code == 403
    path = f"/projects/{platform.project['id']}/hosts/{platform.host['id']}/commands"
    seen = platform.api("GET", f"{path}/{command['id']}", token=token)
    assert seen.status_code == 200 and seen.get_json()["state"] == "queued"
    # agents' endpoints take agent tokens only
    assert platform.poll(token=platform.admin_token).status_code == 401
    assert platform.poll(token="wapa_wrong").status_code == 401


def test_a_refusal_by_the_agent_shows_its_reason(platform: Commands) -> None:
    command = platform.ask("backup", {"database": "shop"}).get_json()
    platform.poll()
    reason = "'backup' is not on this agent's allow-list ([commands] allow = ping, collect)"
    done = platform.report(command["id"], "result", {"state": "refused", "reason": reason})
    assert done.status_code == 200
    seen = platform.command(command["id"])
    assert seen["state"] == "refused" and seen["reason"] == reason and "started_at" not in seen
    for bad in ({"state": "done"}, {"state": "failed", "result": [1]}, [], {"fraction": 2}):
        answer = platform.report(command["id"], "result", bad)
        assert answer.status_code in (409, 422), answer.get_json()
    assert platform.report(command["id"], "progress", {"fraction": 2}).status_code == 422
    raw = platform.client.post(
        f"/api/v1/agent/commands/{command['id']}/result", data=b"{not json",
        headers={"Authorization": f"Bearer {platform.token}"}, content_type="application/json",
    )  # fmt: skip
    assert raw.status_code == 400


def test_a_command_no_agent_takes_expires(
    platform: Commands, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = platform.ask("ping", ttl=60).get_json()
    later = command["expires_at"] + 1
    monkeypatch.setattr(agent_commands, "now", lambda: later)
    seen = platform.command(command["id"])
    assert seen["state"] == "expired" and "did not start it" in seen["reason"]
    assert platform.poll().get_json() == {"commands": []}
    # an agent that ran it all the same: what happened on the host wins
    done = platform.report(command["id"], "result", {"state": "succeeded", "result": {}})
    assert done.status_code == 200
    assert platform.command(command["id"])["state"] == "succeeded"
