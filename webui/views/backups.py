"""Backups: every cluster's protection at a glance, and per cluster its snapshots (a timeline of
when each ran and its size, then the list with each one's last verification), its policy form and
"back up now". A snapshot's page holds its restores with their verification reports, a download
link and the restore wizard (into another cluster, the same one by typing its name, or a new one
deployed first; some namespaces, renamed); a restore's page follows it live. Policies and restores
are checked by webui.services.backups, as for the API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import backups, cloud, credentials, deployments, jobs, projects
from webui.services.errors import Conflict, Invalid
from webui.store import now

bp = Blueprint("backups", __name__)
POLICY_FIELDS = ("schedule", "keep_last", "max_age_days", "compression", "bucket", "prefix",
                 "region", "credential_id", "member", "drill_schedule",
                 "drill_cluster_id", "drill_confirm")  # fmt: skip
DEFAULTS = {"schedule": "0 2 * * *", "keep_last": "7", "max_age_days": "", "compression": "gzip",
            "prefix": "wap-backups", "enabled": True}  # fmt: skip


@bp.get("/backups")
@login_required
def index() -> str:
    store, actor = security.get_store(), security.current_actor()
    rows = []
    for project in projects.list_projects(store, actor):
        for cluster in projects.list_clusters(store, project["_id"]):
            entries = backups.list_snapshots(store, actor, cluster["_id"], limit=50)
            last_done = next((e for e in entries if e["status"] == backups.DONE), None)
            policy = backups.get_policy(store, actor, cluster["_id"])
            rows.append((project, cluster, policy, entries[0] if entries else None, last_done))
    return render_template("backups/index.html", rows=rows)


def _values(policy: dict[str, Any] | None) -> dict[str, Any]:
    if policy is None:
        return dict(DEFAULTS)
    values = {k: policy.get(k) for k in POLICY_FIELDS if k in policy}
    values.update({k: policy["store"].get(k, "") for k in ("bucket", "prefix", "region",
                                                            "credential_id")})  # fmt: skip
    values["max_age_days"] = policy.get("max_age_days") or ""
    values["enabled"] = policy.get("enabled", True)
    values["users_and_roles"] = policy.get("users_and_roles", False)
    return values


def _page(cluster_id: str, values: dict[str, Any] | None, errors: dict[str, list[str]],
          status: int = 200):  # fmt: skip
    store, actor = security.get_store(), security.current_actor()
    cluster, project = cloud.get_cluster(store, actor, cluster_id)
    entries = backups.list_snapshots(store, actor, cluster_id)
    policy = backups.get_policy(store, actor, cluster_id)
    role = projects.role_in(store, actor, project["_id"])
    aws = [c for c in credentials.list_public(store, project["_id"]) if c["kind"] == "aws"]
    at = now()
    return render_template(
        "backups/cluster.html", project=project, cluster=cluster, policy=policy,
        snapshots=[backups.public_snapshot(e) for e in entries],
        verified=backups.latest_restores(store, cluster_id),
        timeline=backups.timeline(entries, at), operable=role in ("operator", "owner"),
        aws=aws, values=values if values is not None else _values(policy), errors=errors,
        drill=backups.public_drill(backups.latest_drill(store, cluster_id)),
        scratch=[c for c in projects.list_clusters(store, project["_id"])
                 if c["_id"] != cluster_id],
    ), status  # fmt: skip


@bp.get("/clusters/<cluster_id>/backups")
@login_required
def cluster(cluster_id: str):
    return _page(cluster_id, None, {})


@bp.post("/clusters/<cluster_id>/backups/policy")
@login_required
def save_policy(cluster_id: str):
    form = request.form
    data: dict[str, Any] = {k: form.get(k, "").strip() for k in POLICY_FIELDS}
    data["enabled"] = form.get("enabled") == "on"
    data["users_and_roles"] = form.get("users_and_roles") == "on"
    try:
        backups.save_policy(
            security.get_store(),
            security.get_settings(),
            security.current_actor(),
            cluster_id,
            data,
        )
    except Invalid as exc:
        flash(exc.message, "error")
        return _page(cluster_id, data, exc.fields, 422)
    flash("Backup policy saved.", "ok")
    return redirect(url_for("backups.cluster", cluster_id=cluster_id))


@bp.post("/clusters/<cluster_id>/backups/now")
@login_required
def back_up_now(cluster_id: str) -> Response:
    entry = backups.start_backup(
        security.get_store(), security.get_settings(), security.current_actor(), cluster_id
    )
    flash(f"Backup {entry['_id']} started (through the {entry['via']}).", "ok")
    return redirect(url_for("backups.cluster", cluster_id=cluster_id))


@bp.post("/snapshots/<snapshot_id>/delete")
@login_required
def delete(snapshot_id: str) -> Response:
    store, actor = security.get_store(), security.current_actor()
    entry = backups.get_snapshot(store, actor, snapshot_id)
    backups.delete_snapshot(
        store, security.get_settings(), actor, snapshot_id, request.form.get("confirm", "").strip()
    )
    flash(f"Snapshot {snapshot_id} deleted, with its objects in the store.", "ok")
    return redirect(url_for("backups.cluster", cluster_id=entry["cluster_id"]))


RESTORE_FIELDS = ("target", "cluster_id", "confirm", "include", "renames", "at", "drop_confirm")
# The new cluster's fields, named new_<field> in the form (a replica set's snapshot restores into
# a set; a sharded one's into a sharded cluster with its shard count, new_topology and
# new_shards fixed by the form); its hosts are checkboxes, its flags checkboxes too.
NEW_FIELDS = ("name", "mongodb_version", "replica_set", "port", "mongodb_credential_id",
              "ssh_credential_id", "shards", "routers")  # fmt: skip


def _snapshot_page(
    snapshot_id: str, values: dict[str, Any], errors: dict[str, list[str]], status: int = 200,
    download: dict[str, Any] | None = None,
):  # fmt: skip
    store, actor, settings = security.get_store(), security.current_actor(), security.get_settings()
    entry = backups.get_snapshot(store, actor, snapshot_id)
    project = projects.require(store, actor, entry["project_id"], "read-only")
    role = projects.role_in(store, actor, project["_id"])
    clusters = [c for c in projects.list_clusters(store, project["_id"])
                if c["_id"] != entry["cluster_id"]]  # fmt: skip
    _, hosts = jobs.choices(settings, actor, projects.list_hosts(store, project["_id"]))
    creds = credentials.list_public(store, project["_id"])
    return render_template(
        "backups/snapshot.html", project=project, snapshot=backups.public_snapshot(entry),
        restores=backups.list_restores(store, actor, snapshot_id), clusters=clusters,
        hosts=hosts, packages=sorted(deployments.packages(settings)),
        by_kind={k: [c for c in creds if c["kind"] == k] for k in ("ssh_key", "mongodb")},
        operable=role in ("operator", "owner"), values=values, errors=errors, download=download,
        shards=backups.shard_count(entry),
    ), status  # fmt: skip


@bp.get("/snapshots/<snapshot_id>")
@login_required
def snapshot(snapshot_id: str):
    values: dict[str, Any] = {f"new_{k}": v for k, v in deployments.DEFAULTS.items()}
    # a moment picked on the coverage timeline comes with it (?at=)
    values.update(target="cluster", new_host_ids=[], at=request.args.get("at", "")[:100])
    return _snapshot_page(snapshot_id, values, {})


def _restore_request(form: Any) -> dict[str, Any]:
    """The wizard's fields as the API's request (one schema: webui.services.backups)."""
    data: dict[str, Any] = {k: form.get(k, "").strip() for k in RESTORE_FIELDS}
    data["drop"] = form.get("drop") == "on"
    data["users_and_roles"] = form.get("users_and_roles") == "on"
    if data["target"] == "new":
        data["deployment"] = {
            **{k: form.get(f"new_{k}", "").strip() for k in NEW_FIELDS},
            # a sharded snapshot's form asks for a sharded cluster with its shard count
            "topology": form.get("new_topology") or "replicaset",
            "host_ids": form.getlist("new_host_ids"),
            "auth": bool(form.get("new_auth")),
            "tls": bool(form.get("new_tls")),
        }
    return data


@bp.post("/snapshots/<snapshot_id>/restore")
@login_required
def restore(snapshot_id: str):
    """Start the restore; a refusal shows the wizard again with what was typed and the reasons
    beside their fields (the new cluster's under its own)."""
    data = _restore_request(request.form)
    try:
        entry = backups.start_restore(
            security.get_store(), security.get_settings(), security.current_actor(), snapshot_id,
            data,
        )  # fmt: skip
    except (Invalid, Conflict) as exc:
        flash(exc.message, "error")
        fields = exc.fields if isinstance(exc, Invalid) else {}
        errors = {(k if k in (*RESTORE_FIELDS, "drop", "deployment") else f"new_{k}"): v
                  for k, v in fields.items()}  # fmt: skip
        values = {**request.form.to_dict(), "new_host_ids": request.form.getlist("new_host_ids")}
        return _snapshot_page(snapshot_id, values, errors, 422 if fields else 409)
    flash(f"Restore into {entry['cluster_name']} started.", "ok")
    return redirect(url_for("backups.restore_page", restore_id=entry["_id"]))


@bp.get("/restores/<restore_id>")
@login_required
def restore_page(restore_id: str, values: dict[str, Any] | None = None,
                 errors: dict[str, list[str]] | None = None, status: int = 200):  # fmt: skip
    store, actor = security.get_store(), security.current_actor()
    entry = backups.get_restore(store, actor, restore_id)
    project = projects.require(store, actor, entry["project_id"], "read-only")
    operable = projects.role_in(store, actor, project["_id"]) in ("operator", "owner")
    return render_template("backups/restore.html", restore=entry, project=project,
                           operable=operable, values=values or {},
                           errors=errors or {}), status  # fmt: skip


@bp.post("/restores/<restore_id>/again")
@login_required
def restore_again(restore_id: str):
    """A failed restore's way out: the same restore with drop, once the target's name is typed;
    a refusal shows the page again with what was typed and why."""
    confirm = request.form.get("confirm", "").strip()
    try:
        entry = backups.restore_again(security.get_store(), security.get_settings(),
                                      security.current_actor(), restore_id, confirm)  # fmt: skip
    except (Invalid, Conflict) as exc:
        flash(exc.message, "error")
        fields = exc.fields if isinstance(exc, Invalid) else {}
        return restore_page(restore_id, {"confirm": confirm}, fields, 422 if fields else 409)
    flash(f"Restore into {entry['cluster_name']} started again, with drop.", "ok")
    return redirect(url_for("backups.restore_page", restore_id=entry["_id"]))


@bp.post("/snapshots/<snapshot_id>/download")
@login_required
def download(snapshot_id: str):
    """Links shown once, on the snapshot's page (they are a bearer's right until they expire)."""
    links = backups.download_link(
        security.get_store(), security.get_settings(), security.current_actor(), snapshot_id
    )
    return _snapshot_page(snapshot_id, {"target": "cluster"}, {}, download=links)
