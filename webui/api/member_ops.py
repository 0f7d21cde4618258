"""A member's operations (webui.services.member_ops): plan (a job that reads the live set and
changes nothing), read the plan, then run it."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate, validates_schema
from marshmallow.exceptions import ValidationError

from webui.api import _blueprint
from webui.api.schemas import SHORT, JobOut, Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import jobs, member_ops

bp = _blueprint("member-ops-api", "Operations on a replica set's members")


class MemberOperationIn(Strict):
    """A plan (dry_run, the default: nothing changes), or the run of a plan that was not refused
    (dry_run false, with its job_id and the member's address typed as confirmation)."""

    dry_run = fields.Boolean(load_default=True)
    member = fields.String(validate=SHORT, metadata={"description": "host:port (add: the new)"})
    operation = fields.String(validate=validate.OneOf(list(member_ops.OPERATIONS)))
    priority = fields.Float(allow_none=True)
    votes = fields.Integer(allow_none=True, validate=validate.OneOf([0, 1]))
    hidden = fields.Boolean(allow_none=True)
    job_id = fields.String(validate=SHORT, metadata={"description": "the plan to run"})
    confirm = fields.String(validate=SHORT, metadata={"description": "the member's address"})

    @validates_schema
    def _complete(self, data: dict[str, Any], **_kwargs: Any) -> None:
        needed = ("member", "operation") if data["dry_run"] else ("job_id", "confirm")
        missing = {f: ["required"] for f in needed if not data.get(f)}
        if missing:
            raise ValidationError(missing)


class MemberPlanOut(Strict):
    job = fields.Nested(JobOut)
    status = fields.String(metadata={"description": "the plan job's status"})
    steps = fields.List(fields.String(), allow_none=True, metadata={"description": "in order"})
    reason = fields.String(allow_none=True, metadata={"description": "why it was refused"})
    run_job_id = fields.String(allow_none=True)


def _out(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "job": jobs.public_job(answer["job"])}


@bp.route("/clusters/<cluster_id>/member-operations", methods=["POST"])
@bp.arguments(MemberOperationIn)
@bp.response(202, MemberPlanOut)
def member_operation(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """With dry_run (the default), plan the operation on the live set (a job; read it with GET
    .../member-operations/{job_id}); with dry_run false, run the plan `job_id` once."""
    store, actor = get_store(), current_actor()
    if data["dry_run"]:
        job = member_ops.plan(store, get_settings(), actor, cluster_id, data)
        return _out(member_ops.planned(store, actor, cluster_id, job["_id"]))
    member_ops.run(store, get_settings(), actor, cluster_id, data["job_id"], data["confirm"])
    return _out(member_ops.planned(store, actor, cluster_id, data["job_id"]))


@bp.route("/clusters/<cluster_id>/member-operations/<job_id>")
@bp.response(200, MemberPlanOut)
def member_plan(cluster_id: str, job_id: str) -> dict[str, Any]:
    """A plan: its job, its steps once it ended, or why it was refused; the job that ran it."""
    return _out(member_ops.planned(get_store(), current_actor(), cluster_id, job_id))


class ManagedIn(Strict):
    member = fields.String(required=True, validate=SHORT, metadata={"description": "host:port"})
    managed = fields.Boolean(required=True, metadata={"description": "false: stop managing it"})


class ManagedOut(Strict):
    unmanaged = fields.List(fields.String(), metadata={"description": "members WAP leaves alone"})


@bp.route("/clusters/<cluster_id>/members/managed", methods=["POST"])
@bp.arguments(ManagedIn)
@bp.response(200, ManagedOut)
def member_managed(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """Stop managing a member (its process keeps running; no operation is planned on it) or
    manage it again."""
    cluster = member_ops.set_managed(get_store(), current_actor(), cluster_id, data["member"],
                                     data["managed"])  # fmt: skip
    return {"unmanaged": cluster.get("unmanaged") or []}


BLUEPRINTS = (bp,)
