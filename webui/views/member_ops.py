"""A member's operations from the cluster's page (webui.services.member_ops, which the API calls
too): the form on the page, the plan's page (the steps from the live set, or why it is refused),
then the job once the operator confirms by typing the member's address. A rolling restart of the
whole cluster (with a change of mongod options if asked) and an upgrade the same way: the form,
the plan's page, then the job once the cluster's name is typed."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from webui import security
from webui.security import login_required
from webui.services import cloud, deployments, member_ops, projects
from webui.services.errors import Invalid

bp = Blueprint("member_ops", __name__)
FIELDS = ("member", "new_member", "operation", "priority", "votes", "hidden", "delay", "arbiter")


@bp.app_context_processor
def operations() -> dict:
    """The operations the cluster page's forms offer (templates/member_ops/), and the releases
    the platform offers for an upgrade."""
    return {
        "member_operations": member_ops.OPERATIONS,
        "upgrade_releases": lambda: sorted(deployments.packages(security.get_settings())),
    }


@bp.post("/clusters/<cluster_id>/members/plan")
@login_required
def plan(cluster_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    data = {name: request.form.get(name, "").strip() for name in FIELDS}
    if data["operation"] == "add":
        data["member"] = data["new_member"]
    try:
        job = member_ops.plan(store, settings, actor, cluster_id, data)
    except Invalid as exc:
        flash(f"{exc.message}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.fields.items()),
              "error")  # fmt: skip
        return redirect(url_for("clusters.show", cluster_id=cluster_id) + "#member-ops")
    return redirect(url_for("member_ops.show", cluster_id=cluster_id, job_id=job["_id"]))


@bp.get("/clusters/<cluster_id>/members/plan/<job_id>")
@login_required
def show(cluster_id: str, job_id: str) -> str:
    store, actor = security.get_store(), security.current_actor()
    answer = member_ops.planned(store, actor, cluster_id, job_id)
    cluster, _project = cloud.get_cluster(store, actor, cluster_id)
    role = projects.role_in(store, actor, cluster["project_id"])
    return render_template(
        "member_ops/show.html", cluster=cluster, answer=answer, job=answer["job"],
        variables=answer["job"]["extra_vars"], labels=member_ops.OPERATIONS,
        can_operate=role in ("operator", "owner"),
    )  # fmt: skip


@bp.post("/clusters/<cluster_id>/members/plan/<job_id>")
@login_required
def run(cluster_id: str, job_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    try:
        job = member_ops.run(store, settings, actor, cluster_id, job_id,
                             request.form.get("confirm", ""))  # fmt: skip
    except Invalid as exc:
        flash(exc.message, "error")
        return redirect(url_for("member_ops.show", cluster_id=cluster_id, job_id=job_id))
    return redirect(url_for("jobs.show", job_id=job["_id"]))


@bp.post("/clusters/<cluster_id>/members/managed")
@login_required
def managed(cluster_id: str) -> Response:
    """Stop managing a member (its mongod keeps running) or manage it again."""
    store, actor = security.get_store(), security.current_actor()
    member = request.form.get("member", "").strip()
    again = request.form.get("managed") == "1"
    member_ops.set_managed(store, actor, cluster_id, member, again)
    flash(f"WAP manages {member} again." if again else f"WAP no longer manages {member}; its "
          "mongod keeps running as it is.", "ok")  # fmt: skip
    return redirect(url_for("clusters.show", cluster_id=cluster_id) + "#member-ops")


@bp.post("/clusters/<cluster_id>/<any(rolling, upgrade):kind>/plan")
@login_required
def whole_plan(cluster_id: str, kind: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    data = {name: request.form.get(name, "") for name in ("set_parameters", "config", "version",
                                                          "fcv")}  # fmt: skip
    try:
        job = member_ops.whole_plan(store, settings, actor, cluster_id, kind, data)
    except Invalid as exc:
        flash(f"{exc.message}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.fields.items()),
              "error")  # fmt: skip
        return redirect(url_for("clusters.show", cluster_id=cluster_id) + f"#{kind}-form")
    return redirect(url_for("member_ops.whole_show", cluster_id=cluster_id, kind=kind,
                            job_id=job["_id"]))  # fmt: skip


@bp.get("/clusters/<cluster_id>/<any(rolling, upgrade):kind>/<job_id>")
@login_required
def whole_show(cluster_id: str, kind: str, job_id: str) -> str:
    store, actor = security.get_store(), security.current_actor()
    answer = member_ops.whole_planned(store, actor, cluster_id, kind, job_id)
    cluster, _project = cloud.get_cluster(store, actor, cluster_id)
    role = projects.role_in(store, actor, cluster["project_id"])
    return render_template(
        "member_ops/whole.html", cluster=cluster, answer=answer, job=answer["job"], kind=kind,
        can_operate=role in ("operator", "owner"),
    )  # fmt: skip


@bp.post("/clusters/<cluster_id>/<any(rolling, upgrade):kind>/<job_id>")
@login_required
def whole_run(cluster_id: str, kind: str, job_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    try:
        job = member_ops.whole_run(store, settings, actor, cluster_id, kind, job_id,
                                   request.form.get("confirm", ""))  # fmt: skip
    except Invalid as exc:
        flash(exc.message, "error")
        return redirect(url_for("member_ops.whole_show", cluster_id=cluster_id, kind=kind,
                                job_id=job_id))  # fmt: skip
    return redirect(url_for("jobs.show", job_id=job["_id"]))


# Shards added, drained and removed, and a replica set converted (member_ops' shapes): the
# forms on the cluster's page (member_ops/_shards.html), the plan's page, then the job once the
# cluster's name is typed.
SHAPE_FIELDS = ("name", "shard", "move_primary_to", "routers")


@bp.post("/clusters/<cluster_id>/<any('shard-add', 'shard-remove', convert):kind>/plan")
@login_required
def shape_plan(cluster_id: str, kind: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    data = {name: request.form.get(name, "").strip() for name in SHAPE_FIELDS}
    try:
        job = member_ops.shape_plan(store, settings, actor, cluster_id, kind, data)
    except Invalid as exc:
        flash(f"{exc.message}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.fields.items()),
              "error")  # fmt: skip
        return redirect(url_for("clusters.show", cluster_id=cluster_id) + f"#{kind}-form")
    return redirect(url_for("member_ops.shape_show", cluster_id=cluster_id, kind=kind,
                            job_id=job["_id"]))  # fmt: skip


@bp.get("/clusters/<cluster_id>/<any('shard-add', 'shard-remove', convert):kind>/<job_id>")
@login_required
def shape_show(cluster_id: str, kind: str, job_id: str) -> str:
    store, actor = security.get_store(), security.current_actor()
    answer = member_ops.shape_planned(store, actor, cluster_id, kind, job_id)
    cluster, _project = cloud.get_cluster(store, actor, cluster_id)
    role = projects.role_in(store, actor, cluster["project_id"])
    return render_template(
        "member_ops/shape.html", cluster=cluster, answer=answer, job=answer["job"], kind=kind,
        label=member_ops.SHAPES[kind]["label"], can_operate=role in ("operator", "owner"),
    )  # fmt: skip


@bp.post("/clusters/<cluster_id>/<any('shard-add', 'shard-remove', convert):kind>/<job_id>")
@login_required
def shape_run(cluster_id: str, kind: str, job_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    try:
        job = member_ops.shape_run(store, settings, actor, cluster_id, kind, job_id,
                                   request.form.get("confirm", ""))  # fmt: skip
    except Invalid as exc:
        flash(exc.message, "error")
        return redirect(url_for("member_ops.shape_show", cluster_id=cluster_id, kind=kind,
                                job_id=job_id))  # fmt: skip
    return redirect(url_for("jobs.show", job_id=job["_id"]))


# Access control and TLS enabled on a running cluster: the form (where the cluster's recorded
# settings say they are off), the plan's page (the passes and what each process runs now), then
# the job once the cluster's name is typed.
@bp.app_context_processor
def security_offers() -> dict:
    """What the cluster page's form offers to enable (templates/member_ops/_secure.html)."""
    return {"security_offers": member_ops.security_offers}


@bp.post("/clusters/<cluster_id>/secure/plan")
@login_required
def secure_plan(cluster_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    try:
        job = member_ops.secure_plan(store, settings, actor, cluster_id,
                                     {"what": request.form.getlist("what")})  # fmt: skip
    except Invalid as exc:
        flash(f"{exc.message}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.fields.items()),
              "error")  # fmt: skip
        return redirect(url_for("clusters.show", cluster_id=cluster_id) + "#secure-form")
    return redirect(url_for("member_ops.secure_show", cluster_id=cluster_id, job_id=job["_id"]))


@bp.get("/clusters/<cluster_id>/secure/<job_id>")
@login_required
def secure_show(cluster_id: str, job_id: str) -> str:
    store, actor = security.get_store(), security.current_actor()
    answer = member_ops.secure_planned(store, actor, cluster_id, job_id)
    cluster, _project = cloud.get_cluster(store, actor, cluster_id)
    role = projects.role_in(store, actor, cluster["project_id"])
    return render_template(
        "member_ops/secure.html", cluster=cluster, answer=answer, job=answer["job"],
        offers=member_ops.SECURE_OFFERS, can_operate=role in ("operator", "owner"),
    )  # fmt: skip


@bp.post("/clusters/<cluster_id>/secure/<job_id>")
@login_required
def secure_run(cluster_id: str, job_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    try:
        job = member_ops.secure_run(store, settings, actor, cluster_id, job_id,
                                    request.form.get("confirm", ""))  # fmt: skip
    except Invalid as exc:
        flash(exc.message, "error")
        return redirect(url_for("member_ops.secure_show", cluster_id=cluster_id, job_id=job_id))
    return redirect(url_for("jobs.show", job_id=job["_id"]))
