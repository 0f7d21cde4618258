"""Agents' API: a host's agent token (users), and the ingest of samples (agents, with that token).

`POST /api/v1/agent/samples` takes an agent token, never a user's: the endpoint authenticates it
itself (webui.security leaves it alone: no session, no CSRF), bounds the body
(`WAP_AGENT_MAX_BODY`, 413), counts requests per agent (`WAP_AGENT_REQUESTS_PER_MINUTE`, 429 with
Retry-After), checks the whole request (400 with the reason) and answers 200 with the sequence
numbers the platform now holds; refusals are counted, and a store that does not answer is a 503
(send again), never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, jsonify, request
from flask_smorest import Blueprint
from marshmallow import fields
from pymongo.errors import PyMongoError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from webui.api import PREFIX, _blueprint, error_response
from webui.api.schemas import Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import agents, metrics
from webui.services.agents import Malformed, TooLarge, TooManyRequests
from webui.services.errors import ServiceError

tokens_bp = _blueprint("agent-tokens", "Agent tokens of registered hosts")
ingest_bp = Blueprint(
    "agent-ingest",
    __name__,
    url_prefix=PREFIX,
    description="What agents send (authenticated by a host's agent token)",
)


class AgentTokenCreated(Strict):
    id = fields.String(attribute="_id")
    host_id = fields.String()
    project_id = fields.String()
    created_at = fields.Float()
    created_by = fields.String()
    token = fields.String(
        metadata={"description": "shown this once; only its hash is kept; put it in the "
                  "agent's token_file"}
    )  # fmt: skip


class IngestAnswer(Strict):
    acknowledged = fields.List(fields.Integer(), metadata={"description": "sequence numbers held"})
    stored = fields.Integer()
    duplicates = fields.Integer()


@tokens_bp.route("/projects/<project_id>/hosts/<host_id>/agent-token", methods=["POST"])
@tokens_bp.response(201, AgentTokenCreated)
def create_agent_token(project_id: str, host_id: str) -> dict[str, Any]:
    """A new agent token for the host (operators and owners of its project): it replaces any
    earlier one, and is shown this once."""
    token, record = agents.create_token(get_store(), current_actor(), project_id, host_id)
    return {**record, "token": token}


def _limiter() -> agents.IngestLimiter:
    settings = get_settings()
    return agents.IngestLimiter(
        current_app.extensions["wap.redis"],
        settings.agent_requests_per_minute,
        prefix=f"wap:{settings.queue_name}:agent-ingest",
    )


def _refused(error: ServiceError) -> Response:
    response = error_response(error)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _body(limit: int) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(
            f"the request has {request.content_length} bytes, more than the {limit} accepted: "
            "send fewer batches per request"
        )
    request.max_content_length = limit
    try:
        return json.loads(request.get_data())
    except RequestEntityTooLarge:
        raise TooLarge(f"the request is larger than the {limit} bytes accepted") from None
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"the body is not JSON: {str(exc)[:200]}") from None


@ingest_bp.route("/agent/samples", methods=["POST"])
@ingest_bp.response(200, IngestAnswer)
@ingest_bp.doc(security=[{"bearer": []}])
def ingest_samples() -> Any:
    """Batches of samples from a host's agent (`Authorization: Bearer <agent token>`); a batch
    already held (same stream and sequence number) is acknowledged and not stored again."""
    store, limiter = get_store(), _limiter()
    try:
        agent = agents.authenticate_ingest(store, request.headers.get("Authorization", ""))
    except ServiceError as error:
        limiter.count_rejected(error.status)
        return _refused(error)
    try:
        limiter.check(agent.host_id)
        about, batches = metrics.check_request(_body(get_settings().agent_max_body))
        held, duplicates = metrics.store_batches(store, agent, batches)
        agents.record_report(store, agent, about, batches[-1], len(held) - duplicates, duplicates)
    except ServiceError as error:
        limiter.count_rejected(error.status)
        if not isinstance(error, TooManyRequests):
            agents.record_rejection(store, agent, error.status, error.message)
        return _refused(error)
    except PyMongoError:
        response = jsonify(
            {"code": 503, "status": "unavailable", "message": "the store does not answer: "
             "send the batches again later"}
        )  # fmt: skip
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return {"acknowledged": held, "stored": len(held) - duplicates, "duplicates": duplicates}


BLUEPRINTS = (tokens_bp, ingest_bp)
