"""Backups API: a cluster's backup policy, its snapshot catalogue, "back up now", and deleting a
snapshot. The policy is checked by webui.services.backups alone (the console's form sends the same
fields), so the two cannot differ; answers never hold a credential's secret."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from webui.api import _blueprint
from webui.api.schemas import SHORT, Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import backups

bp = _blueprint("backups-api", "Backup policies and snapshots of clusters")


class StoreOut(Strict):
    bucket = fields.String()
    prefix = fields.String()
    region = fields.String()
    endpoint_url = fields.String()
    credential_id = fields.String()
    credential_name = fields.String()


class PolicyIn(Strict):
    schedule = fields.String(
        required=True, metadata={"description": "cron, UTC, five fields: '0 2 * * *'"}
    )
    keep_last = fields.Raw(required=True, metadata={"description": "snapshots kept, 1-1000"})
    max_age_days = fields.Raw(
        allow_none=True, metadata={"description": "also keep any younger than this (days)"}
    )
    compression = fields.String(load_default="gzip")
    bucket = fields.String(required=True)
    prefix = fields.String(load_default="")
    region = fields.String(load_default="")
    credential_id = fields.String(required=True, metadata={"description": "an AWS credential"})
    member = fields.String(load_default="", metadata={"description": "host:port, or a secondary"})
    users_and_roles = fields.Boolean(
        load_default=False, metadata={"description": "also admin.system.users and roles"}
    )
    enabled = fields.Boolean(load_default=True)
    drill_schedule = fields.String(
        load_default="", metadata={"description": "restore drills, cron (UTC); empty: none"}
    )
    drill_cluster_id = fields.String(
        load_default="", metadata={"description": "the scratch cluster each drill restores into"}
    )
    drill_confirm = fields.String(
        load_default="",
        validate=validate.Length(max=200),
        metadata={"description": "the scratch cluster's name, typed when it is set or changed:"
                  " each drill replaces its collections of the snapshot's names"},
    )  # fmt: skip


class PolicyOut(Strict):
    cluster_id = fields.String()
    project_id = fields.String()
    schedule = fields.String()
    keep_last = fields.Integer()
    max_age_days = fields.Integer(allow_none=True)
    compression = fields.String()
    member = fields.String()
    users_and_roles = fields.Boolean()
    enabled = fields.Boolean()
    store = fields.Nested(StoreOut)
    next_run_at = fields.Float(allow_none=True)
    last_run_at = fields.Float(allow_none=True)
    drill_schedule = fields.String()
    drill_cluster_id = fields.String()
    drill_cluster_name = fields.String()
    drill_next_at = fields.Float(allow_none=True)
    updated_at = fields.Float()
    updated_by = fields.String()


class SnapshotOut(Strict):
    id = fields.String(attribute="_id")
    project_id = fields.String()
    cluster_id = fields.String()
    cluster_name = fields.String()
    status = fields.String(metadata={"description": "running, done or failed"})
    trigger = fields.String(metadata={"description": "manual or schedule"})
    via = fields.String(metadata={"description": "agent or job"})
    host_id = fields.String()
    command_id = fields.String()
    job_id = fields.String(metadata={"description": "via job: backup_cluster.yml's job"})
    started_at = fields.Float()
    finished_at = fields.Float(allow_none=True)
    duration = fields.Float(allow_none=True)
    size = fields.Integer(allow_none=True, metadata={"description": "bytes stored"})
    data_size = fields.Integer(allow_none=True, metadata={"description": "BSON bytes dumped"})
    documents = fields.Integer(allow_none=True)
    collections = fields.Integer(allow_none=True)
    mongodb_version = fields.String()
    compression = fields.String(allow_none=True)
    oplog = fields.Dict(metadata={"description": "{start, end}: BSON timestamps as {t, i}"})
    topology = fields.String(metadata={"description": "replicaset or sharded"})
    sets = fields.List(
        fields.Dict(),
        metadata={"description": "a sharded snapshot's replica sets: {name, role, documents}"},
    )
    store = fields.Nested(StoreOut)
    prefix = fields.String()
    manifest_key = fields.String()
    reason = fields.String()
    created_by = fields.String()


class CatalogueOut(Strict):
    policy = fields.Nested(PolicyOut, allow_none=True)
    snapshots = fields.List(fields.Nested(SnapshotOut))
    drill = fields.Dict(
        allow_none=True,
        metadata={"description": "the latest restore drill: id, status, snapshot_id, scratch"
                  " cluster_name, started_at, finished_at, equal, reason"},
    )  # fmt: skip


class SnapshotDeleteIn(Strict):
    confirm = fields.String(required=True, validate=SHORT, metadata={"description": "its id"})


class CatalogueQuery(Strict):
    limit = fields.Integer(load_default=200, validate=validate.Range(1, 1000))


@bp.route("/clusters/<cluster_id>/backups")
@bp.arguments(CatalogueQuery, location="query")
@bp.response(200, CatalogueOut)
def catalogue(query: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """The cluster's policy and its snapshots, newest first."""
    store, actor = get_store(), current_actor()
    entries = backups.list_snapshots(store, actor, cluster_id, query["limit"])
    policy = backups.get_policy(store, actor, cluster_id)
    return {
        "policy": backups.public_policy(policy),
        "snapshots": [backups.public_snapshot(e) for e in entries],
        "drill": backups.public_drill(backups.latest_drill(store, cluster_id)),
    }


@bp.route("/clusters/<cluster_id>/backup-policy", methods=["PUT"])
@bp.arguments(PolicyIn)
@bp.response(200, PolicyOut)
def save_policy(data: dict[str, Any], cluster_id: str) -> dict[str, Any] | None:
    """Create or replace the cluster's backup policy (operators): schedule, retention, store."""
    policy = backups.save_policy(get_store(), get_settings(), current_actor(), cluster_id, data)
    return backups.public_policy(policy)


@bp.route("/clusters/<cluster_id>/backups", methods=["POST"])
@bp.response(202, SnapshotOut)
def back_up_now(cluster_id: str) -> dict[str, Any]:
    """Back the cluster up now, to its policy's store: the snapshot, `running`."""
    entry = backups.start_backup(get_store(), get_settings(), current_actor(), cluster_id)
    return backups.public_snapshot(entry)


@bp.route("/snapshots/<snapshot_id>")
@bp.response(200, SnapshotOut)
def get_snapshot(snapshot_id: str) -> dict[str, Any]:
    return backups.public_snapshot(backups.get_snapshot(get_store(), current_actor(), snapshot_id))


@bp.route("/snapshots/<snapshot_id>/delete", methods=["POST"])
@bp.arguments(SnapshotDeleteIn)
@bp.response(204)
def delete_snapshot(data: dict[str, Any], snapshot_id: str) -> None:
    """Delete a snapshot, its objects in the store and its entry (operators; type its id)."""
    backups.delete_snapshot(
        get_store(), get_settings(), current_actor(), snapshot_id, data["confirm"]
    )


class RestoreIn(Strict):
    target = fields.String(
        required=True, validate=validate.OneOf(backups.RESTORE_TARGETS),
        metadata={"description": "cluster (another of the project's), same, or new"},
    )  # fmt: skip
    cluster_id = fields.String(load_default="", metadata={"description": "target: cluster"})
    confirm = fields.String(load_default="", metadata={"description": "target same: its name"})
    include = fields.List(fields.String(), load_default=list,
                          metadata={"description": "namespace patterns: shop.*"})  # fmt: skip
    renames = fields.List(fields.String(), load_default=list,
                          metadata={"description": "from=to: shop.*=shop_copy.*"})  # fmt: skip
    drop = fields.Boolean(load_default=False, metadata={"description": "drop what exists"})
    drop_confirm = fields.String(
        load_default="", validate=validate.Length(max=200),
        metadata={"description": "target cluster with drop: its name, typed"},
    )  # fmt: skip
    users_and_roles = fields.Boolean(
        load_default=False, metadata={"description": "the snapshot's users and roles too"}
    )
    deployment = fields.Dict(
        load_default=dict, metadata={"description": "target new: the cluster to deploy, as for"
                                     " POST /projects/{id}/clusters"},
    )  # fmt: skip
    at = fields.String(
        load_default="", metadata={"description": "a moment to restore to (point in time): a UTC"
                                   " time or an oplog timestamp, within the continuous backup's"
                                   " coverage; the base snapshot is the one it maps to"},
    )  # fmt: skip


class RestoreOut(Strict):
    id = fields.String(attribute="_id")
    project_id = fields.String()
    snapshot_id = fields.String()
    source_cluster_id = fields.String()
    source_cluster_name = fields.String()
    cluster_id = fields.String()
    cluster_name = fields.String()
    target = fields.String()
    include = fields.List(fields.String())
    rename_from = fields.List(fields.String())
    rename_to = fields.List(fields.String())
    drop = fields.Boolean()
    users_and_roles = fields.Boolean()
    status = fields.String(metadata={"description": "waiting, running, done or failed"})
    deploy_job_id = fields.String(allow_none=True)
    via = fields.String(metadata={"description": "agent (its restore command) or job"})
    host_id = fields.String()
    command_id = fields.String()
    job_id = fields.String(metadata={"description": "via job: restore_cluster.yml's job"})
    progress = fields.Dict(allow_none=True, metadata={"description": "{message, fraction, at}"})
    started_at = fields.Float()
    finished_at = fields.Float(allow_none=True)
    documents = fields.Integer(allow_none=True)
    bytes = fields.Integer(allow_none=True)
    duration_seconds = fields.Float(allow_none=True)
    verification = fields.Dict(
        allow_none=True,
        metadata={"description": "equal, and per collection: count, hash, indexes against the"
                  " manifest"},
    )  # fmt: skip
    reason = fields.String()
    created_by = fields.String()
    drill = fields.Boolean(metadata={"description": "a scheduled restore drill of the policy"})
    again_of = fields.String(metadata={"description": "the failed restore this one replaces"})
    point_in_time = fields.Dict(
        allow_none=True, metadata={"description": "a restore to a moment: at (as asked), until"
                                   " and last_entry (the last oplog entry replayed), explained"},
    )  # fmt: skip


class DownloadOut(Strict):
    expires_at = fields.Float()
    links = fields.List(fields.Dict(), metadata={"description": "key, name, size, url"})
    command = fields.String(metadata={"description": "a mongorestore command for the archive"})


@bp.route("/snapshots/<snapshot_id>/restores", methods=["POST"])
@bp.arguments(RestoreIn)
@bp.response(202, RestoreOut)
def restore(data: dict[str, Any], snapshot_id: str) -> dict[str, Any]:
    """Restore the snapshot (operators): into another cluster, the same (typing its name) or a new
    one deployed first; optionally only some namespaces, renamed. Ends verified."""
    return backups.start_restore(get_store(), get_settings(), current_actor(), snapshot_id, data)


@bp.route("/snapshots/<snapshot_id>/restores")
@bp.response(200, RestoreOut(many=True))
def restores(snapshot_id: str) -> list[dict[str, Any]]:
    """The snapshot's restores, newest first, with their verification reports."""
    return backups.list_restores(get_store(), current_actor(), snapshot_id)


@bp.route("/restores/<restore_id>")
@bp.response(200, RestoreOut)
def get_restore(restore_id: str) -> dict[str, Any]:
    """A restore: its progress while it runs, its verification report once done."""
    return backups.get_restore(get_store(), current_actor(), restore_id)


class RestoreAgainIn(Strict):
    confirm = fields.String(
        required=True, validate=SHORT, metadata={"description": "the target cluster's name"}
    )


@bp.route("/restores/<restore_id>/again", methods=["POST"])
@bp.arguments(RestoreAgainIn)
@bp.response(202, RestoreOut)
def restore_again(data: dict[str, Any], restore_id: str) -> dict[str, Any]:
    """Restore a failed restore's snapshot into its target again, with drop: what the failed one
    left (its reason names the collections complete) is replaced. Type the target's name."""
    return backups.restore_again(
        get_store(), get_settings(), current_actor(), restore_id, data["confirm"]
    )


@bp.route("/snapshots/<snapshot_id>/download", methods=["POST"])
@bp.response(200, DownloadOut)
def download(snapshot_id: str) -> dict[str, Any]:
    """Time-limited links (an hour) to the snapshot's objects, for a manual mongorestore."""
    return backups.download_link(get_store(), get_settings(), current_actor(), snapshot_id)


BLUEPRINTS = (bp,)
