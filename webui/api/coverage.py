"""Backup coverage API: what a cluster can be restored to, per replica set (restorable windows,
gaps, unrestorable entries) and as a whole (`restorable_until`), read from its policy's store by
webui.services.coverage. Points are oplog timestamps `{t, i}` with their UTC second."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from webui.api import _blueprint
from webui.api.backups import RestoreIn, RestoreOut
from webui.api.schemas import Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import coverage
from webui.services.errors import Invalid

bp = _blueprint("coverage-api", "What a cluster's backups can be restored to")

POINT = "an oplog timestamp: {t, i, utc}"


class CoverageOut(Strict):
    cluster_id = fields.String()
    read_at = fields.Float(metadata={"description": "when the store was read (epoch seconds)"})
    restorable_until = fields.Dict(
        allow_none=True,
        metadata={"description": f"the newest moment every replica set reaches: {POINT}"},
    )
    windows = fields.List(
        fields.Dict(),
        metadata={"description": "the cluster's restorable windows, the intersection of its"
                  f" sets' (a sharded cluster restores to one moment on all): [{{from, until}}],"
                  f" each {POINT}"},
    )  # fmt: skip
    replica_sets = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={
            "description": "per replica set: windows [{snapshot_id, snapshots [{id, end}], from,"
            " until, ends, closes_gap}], gaps [{after, resumed, reason, detected_at, closed_by}],"
            " unrestorable [{at, prev, reason}], last_durable, follower {last_durable,"
            " reported_at, silent, silent_for} (null: never followed); each point " + POINT
        },
    )


@bp.route("/clusters/<cluster_id>/backup-coverage")
@bp.response(200, CoverageOut)
def backup_coverage(cluster_id: str) -> dict[str, Any]:
    """The cluster's restorable windows and gaps, read now from its backup store."""
    return coverage.cluster_coverage(get_store(), get_settings(), current_actor(), cluster_id)


class TargetQuery(Strict):
    at = fields.String(
        required=True, metadata={"description": f"the moment: {coverage.TARGET_FORMS}"}
    )


class TargetOut(Strict):
    target = fields.String(metadata={"description": "the moment as given"})
    last_entry = fields.Dict(
        metadata={"description": "the last oplog entry a restore includes: " + POINT}
    )
    explained = fields.String(metadata={"description": "how the moment maps to the oplog"})
    replica_sets = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={"description": "per replica set, the base snapshot: {snapshot_id, snapshot_end}"},
    )


@bp.route("/clusters/<cluster_id>/backup-coverage/target")
@bp.arguments(TargetQuery, location="query")
@bp.response(200, TargetOut)
def restore_target(query: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """Where a point-in-time restore to a moment starts (each set's base snapshot) and stops (the
    last oplog entry replayed), explained; 422 naming the windows when it is outside them."""
    return coverage.restore_target(
        get_store(), get_settings(), current_actor(), cluster_id, query["at"]
    )


class FollowIn(Strict):
    action = fields.String(
        required=True,
        validate=validate.OneOf(coverage.FOLLOW_ACTIONS),
        metadata={"description": "start (from the newest done snapshot's end) or stop"},
    )


class FollowOut(Strict):
    action = fields.String()
    host = fields.String(metadata={"description": "the host whose agent was asked"})
    host_id = fields.String()
    command_id = fields.String(metadata={"description": "the agent command oplog_follow"})
    start = fields.Dict(metadata={"description": "start: the oplog timestamp followed from"})
    sets = fields.List(
        fields.Dict(),
        metadata={"description": "a sharded cluster: per set (each shard and the config servers)"
                  " the agent asked, {replica_set, host, command_id}"},
    )  # fmt: skip


@bp.route("/clusters/<cluster_id>/continuous-backup", methods=["POST"])
@bp.arguments(FollowIn)
@bp.response(202, FollowOut)
def continuous_backup(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """Turn a cluster's continuous backup on or off: its agent is asked to follow the oplog into
    the policy's store (and keeps doing so across its restarts) or to stop; a sharded cluster's
    every set, each by an agent of its hosts through its first router."""
    return coverage.follow(get_store(), current_actor(), cluster_id, data["action"])


@bp.route("/clusters/<cluster_id>/point-in-time-restores", methods=["POST"])
@bp.arguments(RestoreIn)
@bp.response(202, RestoreOut)
def point_in_time_restore(data: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """Restore the cluster as it was at a moment (`at`, required; operators), into a target as a
    snapshot's restore takes: checked against the coverage first (422 naming the windows outside
    them), then the base snapshot the moment maps to, with the followed oplog replayed up to and
    including the moment's last entry; verified as every restore."""
    if not data["at"].strip():
        raise Invalid("at: the moment to restore to", {"at": [f"give {coverage.TARGET_FORMS}"]})
    return coverage.start_point_in_time_restore(
        get_store(), get_settings(), current_actor(), cluster_id, data
    )


BLUEPRINTS = (bp,)
