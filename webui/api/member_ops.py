"""A member's operations (webui.services.member_ops): plan (a job that reads the live set and
changes nothing), read the plan, then run it; a rolling restart of the whole cluster, with a
change of mongod options if asked, the same way."""

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
    delay = fields.Integer(allow_none=True, metadata={"description": "secondaryDelaySecs (add, "
                           "change): a delayed member gets priority 0 and is hidden"})  # fmt: skip
    arbiter = fields.Boolean(load_default=False, metadata={"description": "add: as an "
                             "arbiter"})  # fmt: skip
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


class _WholeIn(Strict):
    """A plan (dry_run, the default: nothing changes, the plan read from the live deployment),
    or the run of a plan that was not refused (dry_run false, with its job_id and the cluster's
    name typed as confirmation)."""

    dry_run = fields.Boolean(load_default=True)
    job_id = fields.String(validate=SHORT, metadata={"description": "the plan to run"})
    confirm = fields.String(validate=SHORT, metadata={"description": "the cluster's name"})

    @validates_schema
    def _complete(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data["dry_run"]:
            missing = {f: ["required"] for f in ("job_id", "confirm") if not data.get(f)}
            if missing:
                raise ValidationError(missing)


class RollingRestartIn(_WholeIn):
    set_parameters = fields.Dict(
        keys=fields.String(), load_default=dict,
        metadata={"description": "setParameter entries to write into every mongod's file"},
    )  # fmt: skip
    config = fields.Dict(
        keys=fields.String(), load_default=dict,
        metadata={"description": "configuration keys as a mapping, merged into every file"},
    )  # fmt: skip


class UpgradeIn(_WholeIn):
    version = fields.String(validate=SHORT, metadata={"description": "the release to reach"})
    fcv = fields.String(
        load_default="now", validate=validate.OneOf(["now", "finalize"]),
        metadata={"description": "raise the FCV at the end, or leave it for a later run"},
    )  # fmt: skip


class WholePlanOut(Strict):
    job = fields.Nested(JobOut)
    status = fields.String(metadata={"description": "the plan job's status"})
    title = fields.String(allow_none=True, metadata={"description": "what the plan does"})
    steps = fields.List(fields.String(), allow_none=True, metadata={"description": "in order"})
    notes = fields.List(fields.String())
    reason = fields.String(allow_none=True, metadata={"description": "why it was refused"})
    run_job_id = fields.String(allow_none=True)
    set_parameters = fields.Dict(keys=fields.String())
    config = fields.Dict(keys=fields.String())
    version = fields.String(allow_none=True)
    fcv = fields.String(allow_none=True)


def _whole(kind: str, data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    store, actor = get_store(), current_actor()
    if data["dry_run"]:
        job = member_ops.whole_plan(store, get_settings(), actor, cluster_id, kind, data)
        return _out(member_ops.whole_planned(store, actor, cluster_id, kind, job["_id"]))
    member_ops.whole_run(store, get_settings(), actor, cluster_id, kind, data["job_id"],
                         data["confirm"])  # fmt: skip
    return _out(member_ops.whole_planned(store, actor, cluster_id, kind, data["job_id"]))


@bp.route("/clusters/<cluster_id>/rolling-restarts", methods=["POST"])
@bp.arguments(RollingRestartIn)
@bp.response(202, WholePlanOut)
def rolling_restart(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """With dry_run (the default), plan a rolling restart of the cluster, with a change of mongod
    options if given (a job; read it with GET .../rolling-restarts/{job_id}); with dry_run false,
    run the plan `job_id` once."""
    return _whole("rolling", data, cluster_id)


@bp.route("/clusters/<cluster_id>/rolling-restarts/<job_id>")
@bp.response(200, WholePlanOut)
def rolling_plan(cluster_id: str, job_id: str) -> dict[str, Any]:
    """A rolling restart's plan: its job and change, the order once it ended, or why it was
    refused; the job that ran it."""
    return _out(member_ops.whole_planned(get_store(), current_actor(), cluster_id, "rolling",
                                         job_id))  # fmt: skip


@bp.route("/clusters/<cluster_id>/upgrades", methods=["POST"])
@bp.arguments(UpgradeIn)
@bp.response(202, WholePlanOut)
def upgrade(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """With dry_run (the default), plan the cluster's upgrade to `version` as MongoDB allows it
    (a job; read it with GET .../upgrades/{job_id}); with dry_run false, run the plan once."""
    return _whole("upgrade", data, cluster_id)


@bp.route("/clusters/<cluster_id>/upgrades/<job_id>")
@bp.response(200, WholePlanOut)
def upgrade_plan(cluster_id: str, job_id: str) -> dict[str, Any]:
    """An upgrade's plan: its job, the steps once it ended, or why it was refused; the job that
    ran it."""
    return _out(member_ops.whole_planned(get_store(), current_actor(), cluster_id, "upgrade",
                                         job_id))  # fmt: skip


BLUEPRINTS = (bp,)


# Shards added, drained and removed, and a replica set converted to a sharded cluster
# (webui.services.member_ops' shapes): planned first, run once the cluster's name is typed.
class ShardAddIn(_WholeIn):
    name = fields.String(
        validate=SHORT, load_default="",
        metadata={"description": "the new set's name (default: the first free shardN)"},
    )  # fmt: skip


class ShardRemoveIn(_WholeIn):
    shard = fields.String(validate=SHORT, load_default="",
                          metadata={"description": "the shard to drain and remove"})  # fmt: skip
    move_primary_to = fields.String(
        validate=SHORT, load_default="",
        metadata={"description": "where its databases go (default: the first shard that stays)"},
    )  # fmt: skip


class ConvertIn(_WholeIn):
    routers = fields.Integer(
        load_default=None, validate=validate.Range(min=1, max=7),
        metadata={"description": "mongos routers, on the first hosts (default 2, or 1 host)"},
    )  # fmt: skip


class ShapePlanOut(Strict):
    job = fields.Nested(JobOut)
    status = fields.String(metadata={"description": "the plan job's status"})
    title = fields.String(allow_none=True, metadata={"description": "what the plan does"})
    steps = fields.List(fields.String(), allow_none=True, metadata={"description": "in order"})
    notes = fields.List(fields.String())
    reason = fields.String(allow_none=True, metadata={"description": "why it was refused"})
    run_job_id = fields.String(allow_none=True)
    run_status = fields.String(allow_none=True, metadata={"description": "that job's status"})
    shard = fields.String(allow_none=True, metadata={"description": "the shard added or removed"})
    routers = fields.List(fields.String(), metadata={"description": "a conversion's routers"})


def _shape(kind: str, data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    store, actor = get_store(), current_actor()
    if data["dry_run"]:
        job = member_ops.shape_plan(store, get_settings(), actor, cluster_id, kind, data)
        return _out(member_ops.shape_planned(store, actor, cluster_id, kind, job["_id"]))
    member_ops.shape_run(store, get_settings(), actor, cluster_id, kind, data["job_id"],
                         data["confirm"])  # fmt: skip
    return _out(member_ops.shape_planned(store, actor, cluster_id, kind, data["job_id"]))


@bp.route("/clusters/<cluster_id>/shards", methods=["POST"])
@bp.arguments(ShardAddIn)
@bp.response(202, ShapePlanOut)
def shard_add(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """With dry_run (the default), plan a new shard (a replica set with a member on each of the
    cluster's hosts, secured as the cluster is, then addShard): a job, read with GET
    .../shards/{job_id}; with dry_run false, run the plan `job_id` once."""
    return _shape("shard-add", data, cluster_id)


@bp.route("/clusters/<cluster_id>/shards/<job_id>")
@bp.response(200, ShapePlanOut)
def shard_add_plan(cluster_id: str, job_id: str) -> dict[str, Any]:
    """A new shard's plan: its steps once it ended, or why it was refused; the job that ran it."""
    return _out(member_ops.shape_planned(get_store(), current_actor(), cluster_id, "shard-add",
                                         job_id))  # fmt: skip


@bp.route("/clusters/<cluster_id>/shard-removals", methods=["POST"])
@bp.arguments(ShardRemoveIn)
@bp.response(202, ShapePlanOut)
def shard_remove(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """With dry_run (the default), plan a shard's removal (what it drains, the databases moved;
    the last shard refused): a job, read with GET .../shard-removals/{job_id}; with dry_run
    false, run it once (its job's log shows what is left, round by round)."""
    return _shape("shard-remove", data, cluster_id)


@bp.route("/clusters/<cluster_id>/shard-removals/<job_id>")
@bp.response(200, ShapePlanOut)
def shard_remove_plan(cluster_id: str, job_id: str) -> dict[str, Any]:
    """A removal's plan: its steps once it ended, or why it was refused; the job that ran it."""
    return _out(member_ops.shape_planned(get_store(), current_actor(), cluster_id, "shard-remove",
                                         job_id))  # fmt: skip


@bp.route("/clusters/<cluster_id>/conversions", methods=["POST"])
@bp.arguments(ConvertIn)
@bp.response(202, ShapePlanOut)
def convert(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """With dry_run (the default), plan the replica set's conversion to a sharded cluster
    (config servers and routers added, the set its first shard, restarted primary last): a job,
    read with GET .../conversions/{job_id}; with dry_run false, run it once."""
    return _shape("convert", data, cluster_id)


@bp.route("/clusters/<cluster_id>/conversions/<job_id>")
@bp.response(200, ShapePlanOut)
def convert_plan(cluster_id: str, job_id: str) -> dict[str, Any]:
    """A conversion's plan: its steps once it ended, or why it was refused; the job that ran it."""
    return _out(member_ops.shape_planned(get_store(), current_actor(), cluster_id, "convert",
                                         job_id))  # fmt: skip


# Access control and TLS enabled on a running cluster (webui.services.member_ops' secure_*):
# planned first from what every process runs, run once the cluster's name is typed.
class SecurityIn(_WholeIn):
    what = fields.List(
        fields.String(validate=validate.OneOf(list(member_ops.SECURE_OFFERS))), load_default=list,
        metadata={"description": "auth (access control with a keyFile), tls (requireTLS), or both"},
    )  # fmt: skip


class SecurityPlanOut(Strict):
    job = fields.Nested(JobOut)
    status = fields.String(metadata={"description": "the plan job's status"})
    title = fields.String(allow_none=True, metadata={"description": "what the plan does"})
    steps = fields.List(fields.String(), allow_none=True, metadata={"description": "the passes"})
    processes = fields.List(fields.Dict(), metadata={"description": "what each runs now"})
    reason = fields.String(allow_none=True, metadata={"description": "why it was refused"})
    run_job_id = fields.String(allow_none=True)
    what = fields.List(fields.String(), metadata={"description": "what was asked"})


@bp.route("/clusters/<cluster_id>/security-changes", methods=["POST"])
@bp.arguments(SecurityIn)
@bp.response(202, SecurityPlanOut)
def security_change(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """With dry_run (the default), plan enabling access control and/or TLS on the running
    cluster, pass by pass without downtime (a job; read it with GET .../security-changes/{job_id});
    with dry_run false, run the plan `job_id` once (audited as cluster.secure)."""
    store, actor = get_store(), current_actor()
    if data["dry_run"]:
        job = member_ops.secure_plan(store, get_settings(), actor, cluster_id, data)
        return _out(member_ops.secure_planned(store, actor, cluster_id, job["_id"]))
    member_ops.secure_run(store, get_settings(), actor, cluster_id, data["job_id"],
                          data["confirm"])  # fmt: skip
    return _out(member_ops.secure_planned(store, actor, cluster_id, data["job_id"]))


@bp.route("/clusters/<cluster_id>/security-changes/<job_id>")
@bp.response(200, SecurityPlanOut)
def security_plan(cluster_id: str, job_id: str) -> dict[str, Any]:
    """A plan to enable access control or TLS: its job and what was asked, the passes and each
    process's settings once it ended, or why it was refused; the job that ran it."""
    return _out(member_ops.secure_planned(get_store(), current_actor(), cluster_id, job_id))
