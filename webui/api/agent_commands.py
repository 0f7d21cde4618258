"""Commands for hosts' agents: users ask (`POST /projects/{id}/hosts/{host_id}/commands`) and read
what became of them; agents, with their host's token, pull them (`GET /agent/commands`, a long
poll) and report progress and the result (`POST /agent/commands/{id}/progress`, `.../result`).

The agent's endpoints authenticate the agent token themselves (webui.security leaves them alone:
no session, no CSRF) and bound their body (`WAP_AGENT_MAX_BODY`, 413); a store that does not
answer is a 503 (the agent tries again), never a 500.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from flask import current_app, jsonify, request
from flask_smorest import Blueprint
from marshmallow import fields, validate
from pymongo.errors import PyMongoError
from redis import Redis
from werkzeug.wrappers import Response

from webui.api import PREFIX, _blueprint, error_response
from webui.api.agents import _body
from webui.api.schemas import Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import agent_commands, agents
from webui.services.agents import Malformed
from webui.services.errors import ServiceError

commands_bp = _blueprint("agent-commands", "Commands for a host's agent")
pull_bp = Blueprint(
    "agent-pull",
    __name__,
    url_prefix=PREFIX,
    description="What agents pull and report (authenticated by a host's agent token)",
)
# webui.security.OWN_CREDENTIAL_ENDPOINTS names pull_bp's endpoints: they check the agent token.

# A waiting poll holds a server thread. Past this many at once in this process, polls are
# answered at once (the agent then asks again after its poll_wait), so that agents never take
# every thread from the console: half of the 100 threads webui/README.md runs gunicorn with.
WAITING_POLLS = 50
_waiting_polls = threading.BoundedSemaphore(WAITING_POLLS)


class CommandIn(Strict):
    name = fields.String(
        required=True,
        validate=validate.OneOf(sorted(agent_commands.COMMANDS)),
        metadata={"description": "what the agent runs; it must also be on the agent's allow-list"},
    )
    args = fields.Dict(load_default=dict, metadata={"description": "the command's arguments"})
    ttl = fields.Float(
        load_default=agent_commands.DEFAULT_TTL,
        validate=validate.Range(min=1, max=agent_commands.MAX_TTL),
        metadata={"description": "seconds the command may wait for the agent before it expires"},
    )


class CommandOut(Strict):
    id = fields.String(attribute="_id")
    project_id = fields.String()
    host_id = fields.String()
    name = fields.String()
    args = fields.Dict()
    state = fields.String(
        metadata={"description": "queued, sent, running, succeeded, failed, refused, expired"}
    )
    reason = fields.String(metadata={"description": "why it failed, was refused or expired"})
    progress = fields.Dict(metadata={"description": "message, fraction (0 to 1), at"})
    result = fields.Dict(allow_none=True)
    created_at = fields.Float()
    created_by = fields.String()
    expires_at = fields.Float()
    sent_at = fields.Float()
    started_at = fields.Float()
    finished_at = fields.Float()


def _wake() -> Redis:
    """A Redis client of its own whose socket outlives a long poll (the app's times out in 5 s)."""
    client = current_app.extensions.get("wap.agent-commands.redis")
    if client is None:
        client = Redis.from_url(
            get_settings().redis_url or "", socket_timeout=agent_commands.MAX_POLL_WAIT + 10
        )
        current_app.extensions["wap.agent-commands.redis"] = client
    return client


def _wake_prefix() -> str:
    return f"wap:{get_settings().queue_name}:agent-commands"


@commands_bp.route("/projects/<project_id>/hosts/<host_id>/commands", methods=["POST"])
@commands_bp.arguments(CommandIn)
@commands_bp.response(201, CommandOut)
def ask(data: dict[str, Any], project_id: str, host_id: str) -> dict[str, Any]:
    """Ask the host's agent to run a command (operators and owners of the project). The agent
    takes it on its next poll, runs it if it is on its allow-list, and reports back."""
    command = agent_commands.enqueue(
        get_store(), current_actor(), project_id, host_id, data["name"], data["args"],
        data["ttl"], _wake(), _wake_prefix(),
    )  # fmt: skip
    return agent_commands.public(command)


@commands_bp.route("/projects/<project_id>/hosts/<host_id>/commands")
@commands_bp.response(200, CommandOut(many=True))
def list_commands(project_id: str, host_id: str) -> list[dict[str, Any]]:
    """The host's latest 50 commands, newest first."""
    found = agent_commands.list_for_host(get_store(), current_actor(), project_id, host_id)
    return [agent_commands.public(c) for c in found]


@commands_bp.route("/projects/<project_id>/hosts/<host_id>/commands/<command_id>")
@commands_bp.response(200, CommandOut)
def get_command(project_id: str, host_id: str, command_id: str) -> dict[str, Any]:
    """A command's state, progress and result."""
    command = agent_commands.get(get_store(), current_actor(), project_id, host_id, command_id)
    return agent_commands.public(command)


def _as_agent(view: Callable[..., Any]) -> Callable[..., Any]:
    """The agent behind the request's token, given to the view; refusals as JSON, and a store
    that does not answer as 503 with Retry-After."""

    @functools.wraps(view)
    def wrapped(**kwargs: Any) -> Any:
        try:
            agent = agents.authenticate(get_store(), request.headers.get("Authorization", ""))
            return view(agent, **kwargs)
        except ServiceError as error:
            return error_response(error)
        except PyMongoError:
            response = jsonify(
                {"code": 503, "status": "unavailable", "message": "the store does not answer"}
            )
            response.status_code = 503
            response.headers["Retry-After"] = "5"
            return response

    return wrapped


def _report() -> Any:
    """The body, bounded as the ingest's is (WAP_AGENT_MAX_BODY, 413) and parsed (400)."""
    return _body(get_settings().agent_max_body)


@pull_bp.route("/agent/commands")
@pull_bp.doc(security=[{"bearer": []}])
@_as_agent
def poll_commands(agent: agents.AgentIdentity) -> Response:
    """The commands queued for the agent's host (`wait`: seconds to wait for one, at most 60):
    `{"commands": [{"id", "name", "args", "created_at", "expires_at", "created_by"}]}`."""
    try:
        wait = float(request.args.get("wait", "0"))
    except ValueError:
        raise Malformed("wait must be a number of seconds") from None
    if not 0 <= wait <= agent_commands.MAX_POLL_WAIT:
        raise Malformed(f"wait must be 0 to {agent_commands.MAX_POLL_WAIT:.0f} seconds")
    held = wait > 0 and _waiting_polls.acquire(blocking=False)
    try:
        found = agent_commands.poll(
            get_store(), agent, wait if held else 0, _wake(), _wake_prefix()
        )
    finally:
        if held:
            _waiting_polls.release()
    commands = [{"id": c.pop("_id"), **c} for c in found]
    return jsonify({"commands": commands})


@pull_bp.route("/agent/commands/<command_id>/progress", methods=["POST"])
@pull_bp.doc(security=[{"bearer": []}])
@_as_agent
def command_progress(agent: agents.AgentIdentity, command_id: str) -> Response:
    """The command started, or how far it is: `{"message", "fraction"}`."""
    return jsonify(agent_commands.progress(get_store(), agent, command_id, _report()))


@pull_bp.route("/agent/commands/<command_id>/result", methods=["POST"])
@pull_bp.doc(security=[{"bearer": []}])
@_as_agent
def command_result(agent: agents.AgentIdentity, command_id: str) -> Response:
    """The outcome: `{"state": "succeeded"|"failed"|"refused", "result": {...}, "reason"}`."""
    return jsonify(agent_commands.result(get_store(), agent, command_id, _report()))


BLUEPRINTS = (commands_bp, pull_bp)
