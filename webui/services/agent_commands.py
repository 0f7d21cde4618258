"""Commands the platform asks a host's agent to run (ping, collect; backup, restore, explain as
their issues add them), and what became of each.

The agent pulls: it long-polls `GET /api/v1/agent/commands` with its host's token and is given the
commands queued for that host alone; it reports progress and then the result. A command's state:

    queued -> sent -> running -> succeeded | failed | refused
    queued | sent -> expired     (not started within its time to live)

`sent` commands are given again on the next poll until the agent reports on them (an answer lost
on the way loses no command; the agent knows a command by its id and runs it once). A result is
taken once: the same result again (an answer lost on the way back) is acknowledged, another one
is a conflict. Every command keeps who asked and when, and is audited when asked and when done.
The names a user may ask are checked here (`COMMANDS`); the agent checks them again against its
own allow-list and the arguments against the command's own rules, and refuses with the reason.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from webui.services import audit, projects
from webui.services.agents import AgentIdentity
from webui.services.audit import Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store, now

QUEUED, SENT, RUNNING = "queued", "sent", "running"
SUCCEEDED, FAILED, REFUSED, EXPIRED = "succeeded", "failed", "refused", "expired"
WAITING = (QUEUED, SENT)  # given to the agent on its next poll
OPEN = (QUEUED, SENT, RUNNING)
OUTCOMES = (SUCCEEDED, FAILED, REFUSED)  # what an agent may report
STATES = (*OPEN, *OUTCOMES, EXPIRED)

DEFAULT_TTL = 3600.0  # seconds a command may wait for its agent before it expires
MAX_TTL = 7 * 86400.0
MAX_ARGS_BYTES = 16 * 1024
MAX_MESSAGE = 2000
MAX_RESULT_BYTES = 512 * 1024
MAX_POLL_WAIT = 60.0
MAX_PER_POLL = 20
LOOK_EVERY = 10.0  # seconds: a waiting poll looks at the store at least this often


def _no_args(args: dict[str, Any]) -> None:
    if args:
        raise Invalid(
            f"this command takes no arguments; got {', '.join(sorted(args))}",
            {"args": ["must be empty"]},
        )


def _any_args(args: dict[str, Any]) -> None:
    """Checked by the agent's own command (its issue defines them)."""


# The commands a user may ask of an agent, each with its platform-side check of the arguments.
COMMANDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "ping": _no_args,
    "collect": _no_args,
    "backup": _any_args,
    "restore": _any_args,
    "oplog_follow": _any_args,
    "explain": _any_args,
}


def _wake_key(prefix: str, host_id: str) -> str:
    return f"{prefix}:{host_id}"


def _host(store: Store, project_id: str, host_id: str) -> dict[str, Any]:
    host = store.hosts.find_one({"_id": host_id, "project_id": project_id})
    if host is None:
        raise NotFound("no such host in this project")
    return host


def _check(name: str, args: Any) -> dict[str, Any]:
    if name not in COMMANDS:
        raise Invalid(
            f"{name!r} is not a command the platform asks agents to run; one of: "
            + ", ".join(sorted(COMMANDS)),
            {"name": ["unknown command"]},
        )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise Invalid("args must be a JSON object", {"args": ["not an object"]})
    if len(_encoded(args, "args")) > MAX_ARGS_BYTES:
        raise Invalid(
            f"args take more than {MAX_ARGS_BYTES} bytes as JSON", {"args": ["too large"]}
        )
    COMMANDS[name](args)
    return args


def _encoded(value: dict[str, Any], name: str) -> str:
    """Arguments and results are kept as JSON text: their keys are the commands' business (a
    '$' or a '.' in a key is no concern of the store's)."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        raise Invalid(f"{name} hold a number JSON cannot carry (NaN, Infinity)") from None


def _decoded(command: dict[str, Any]) -> dict[str, Any]:
    """The stored command with its arguments and result as objects again."""
    for key in ("args", "result"):
        if isinstance(command.get(key), str):
            command[key] = json.loads(command[key])
    return command


def expire(store: Store, query: dict[str, Any]) -> int:
    """Commands of `query` still waiting for their agent past their time to live: expired."""
    at = now()
    done = store.agent_commands.update_many(
        {**query, "state": {"$in": list(WAITING)}, "expires_at": {"$lt": at}},
        {
            "$set": {
                "state": EXPIRED,
                "finished_at": at,
                "reason": "the host's agent did not start it in time (is the agent running?)",
            }
        },
    )
    return done.modified_count


def enqueue(
    store: Store,
    actor: Actor,
    project_id: str,
    host_id: str,
    name: str,
    args: dict[str, Any] | None = None,
    ttl: float = DEFAULT_TTL,
    wake: Redis | None = None,
    wake_prefix: str = "",
) -> dict[str, Any]:
    """Queue `name` with `args` for the host's agent (operators and owners of its project); the
    command as stored. `wake` (Redis), when given, wakes the agent's waiting poll at once; else
    the poll finds it within LOOK_EVERY seconds. `args` are shown to the project's readers and
    kept in the agent's outbox: never a secret in them (name a stored credential instead)."""
    project = projects.require(store, actor, project_id, "operator")
    host = _host(store, project_id, host_id)
    target = f"{project['name']}/{host['name']}"
    try:
        args = _check(name, args)
    except Invalid as error:
        audit.record(store, actor, "agent.command", target, "refused", {"name": name[:64]})
        raise error from None
    if not 1 <= ttl <= MAX_TTL:
        raise Invalid(f"ttl must be 1 to {MAX_TTL:.0f} seconds", {"ttl": ["out of range"]})
    at = now()
    command = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        "host_id": host_id,
        "name": name,
        "args": _encoded(args, "args"),
        "state": QUEUED,
        "created_at": at,
        "created_by": actor.username,
        "created_by_id": actor.user_id,
        "expires_at": at + ttl,
    }
    store.agent_commands.insert_one(command)
    audit.record(
        store, actor, "agent.command", target, detail={"command_id": command["_id"], "name": name}
    )
    if wake is not None:
        with contextlib.suppress(RedisError):
            key = _wake_key(wake_prefix, host_id)
            pipe = wake.pipeline()
            pipe.rpush(key, command["_id"])
            pipe.expire(key, int(MAX_POLL_WAIT) * 2)
            pipe.execute()
    return _decoded(command)


def get(store: Store, actor: Actor, project_id: str, host_id: str, command_id: str) -> dict:
    """One command of the host, with its state, progress and result (read-only members too)."""
    projects.require(store, actor, project_id, "read-only")
    _host(store, project_id, host_id)
    expire(store, {"_id": command_id})
    command = store.agent_commands.find_one(
        {"_id": command_id, "project_id": project_id, "host_id": host_id}
    )
    if command is None:
        raise NotFound("no such command for this host")
    return _decoded(command)


def list_for_host(
    store: Store, actor: Actor, project_id: str, host_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    """The host's latest commands, newest first."""
    projects.require(store, actor, project_id, "read-only")
    _host(store, project_id, host_id)
    expire(store, {"host_id": host_id})
    cursor = store.agent_commands.find({"host_id": host_id}).sort("created_at", -1).limit(limit)
    return [_decoded(c) for c in cursor]


# -- the agent's side -------------------------------------------------------------------------


def _waiting(
    store: Store, agent: AgentIdentity, states: tuple[str, ...] = WAITING
) -> list[dict[str, Any]]:
    query = {"host_id": agent.host_id, "state": {"$in": list(states)}, "expires_at": {"$gt": now()}}
    cursor = store.agent_commands.find(query).sort("created_at", 1).limit(MAX_PER_POLL)
    return list(cursor)


def poll(
    store: Store,
    agent: AgentIdentity,
    wait: float = 0.0,
    wake: Redis | None = None,
    wake_prefix: str = "",
) -> list[dict[str, Any]]:
    """The commands waiting for this agent's host (for no other host), oldest first, now `sent`.
    With none, waits up to `wait` seconds for one to be queued: woken through Redis when it was
    queued with `wake`, else found by a look at the store every LOOK_EVERY seconds."""
    expire(store, {"host_id": agent.host_id})
    commands = _waiting(store, agent)
    deadline = time.monotonic() + min(wait, MAX_POLL_WAIT)
    key = _wake_key(wake_prefix, agent.host_id)
    if not commands and wait > 0 and wake is not None:
        with contextlib.suppress(RedisError):
            wake.delete(key)  # wakes for commands already given
        commands = _waiting(store, agent, (QUEUED,))  # one queued between the two looks
    while not commands and (left := deadline - time.monotonic()) > 0:
        # Woken at once through Redis by enqueue(wake=...); a command queued without a wake (or
        # while Redis is away) is found by the look that ends each slice.
        slice_ = min(left, LOOK_EVERY)
        try:
            if wake is None:
                raise RedisError("no Redis")
            wake.blpop([key], timeout=max(1, round(slice_)))
        except RedisError:
            time.sleep(slice_)
        commands = _waiting(store, agent, (QUEUED,))
    ids = [c["_id"] for c in commands if c["state"] == QUEUED]
    if ids:
        at = now()
        store.agent_commands.update_many(
            {"_id": {"$in": ids}, "state": QUEUED}, {"$set": {"state": SENT, "sent_at": at}}
        )
    given = ("_id", "name", "args", "created_at", "expires_at", "created_by")
    return [_decoded({k: c[k] for k in given}) for c in commands]


def _agent_actor(agent: AgentIdentity) -> Actor:
    return Actor(user_id=None, username=f"agent:{agent.host_name}", role="agent", source="agent")


def _mine(store: Store, agent: AgentIdentity, command_id: str) -> dict[str, Any]:
    command = store.agent_commands.find_one({"_id": command_id, "host_id": agent.host_id})
    if command is None:
        raise NotFound("no such command for this agent's host")
    return command


def _text(value: Any, name: str, limit: int = MAX_MESSAGE) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    return value[:limit]


def progress(store: Store, agent: AgentIdentity, command_id: str, report: Any) -> dict[str, Any]:
    """The agent has started the command, or tells how far it is: `message`, `fraction` (0 to
    1, optional). A command already finished takes no more progress (409)."""
    if not isinstance(report, dict):
        raise Invalid("send a JSON object: message, fraction")
    fraction = report.get("fraction")
    if fraction is not None and (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0 <= fraction <= 1
    ):
        raise Invalid("fraction must be a number from 0 to 1")
    command = _mine(store, agent, command_id)
    at = now()
    update: dict[str, Any] = {
        "state": RUNNING,
        "progress": {"message": _text(report.get("message"), "message"), "fraction": fraction,
                     "at": at},
    }  # fmt: skip
    if not command.get("started_at"):
        update["started_at"] = at
    done = store.agent_commands.update_one(
        {"_id": command_id, "host_id": agent.host_id, "state": {"$in": [*OPEN, EXPIRED]}},
        {"$set": update},
    )
    if done.matched_count == 0:
        raise Conflict(f"the command is {_mine(store, agent, command_id)['state']} already")
    return {"id": command_id, "state": RUNNING}


def result(store: Store, agent: AgentIdentity, command_id: str, report: Any) -> dict[str, Any]:
    """The command's outcome: `state` (succeeded, failed or refused), `result` (an object) when
    it succeeded, `reason` when not. Taken once; the same outcome again is acknowledged (an
    answer lost on the way), another is a conflict. A command that expired on the platform while
    its agent ran it takes the agent's outcome: what happened on the host wins."""
    if not isinstance(report, dict):
        raise Invalid("send a JSON object: state, result, reason")
    state = report.get("state")
    if state not in OUTCOMES:
        raise Invalid(f"state must be one of {', '.join(OUTCOMES)}")
    outcome = report.get("result")
    if outcome is not None and not isinstance(outcome, dict):
        raise Invalid("result must be a JSON object")
    encoded = None if outcome is None else _encoded(outcome, "result")
    if encoded is not None and len(encoded) > MAX_RESULT_BYTES:
        raise Invalid(f"result takes more than {MAX_RESULT_BYTES} bytes as JSON")
    reason = _text(report.get("reason"), "reason")
    command = _mine(store, agent, command_id)
    at = now()
    update = {"state": state, "result": encoded, "reason": reason, "finished_at": at}
    if not command.get("started_at") and state != REFUSED:
        update["started_at"] = at
    done = store.agent_commands.update_one(
        {"_id": command_id, "host_id": agent.host_id, "state": {"$in": [*OPEN, EXPIRED]}},
        {"$set": update},
    )
    if done.matched_count == 0:
        current = _mine(store, agent, command_id)["state"]
        if current == state:
            return {"id": command_id, "state": state}
        raise Conflict(f"the command is {current} already")
    project = store.projects.find_one({"_id": command["project_id"]}) or {}
    audit.record(
        store, _agent_actor(agent), f"agent.command.{state}",
        f"{project.get('name', command['project_id'])}/{agent.host_name}",
        "ok" if state == SUCCEEDED else state,
        {"command_id": command_id, "name": command["name"], "asked_by": command["created_by"]},
    )  # fmt: skip
    return {"id": command_id, "state": state}


def public(command: dict[str, Any]) -> dict[str, Any]:
    """What users see of a command: everything but the asker's user id."""
    return {k: v for k, v in command.items() if k != "created_by_id"}
