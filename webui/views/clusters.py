"""Clusters: on registered hosts (a topology, version and security on project hosts, deployed
by webui.services.deployments, which the API calls too), or on a cloud (a spec, its plan shown
before anything exists, provision and delete as jobs)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from webui import security
from webui.api import PREFIX
from webui.security import login_required
from webui.services import cloud, credentials, deployments, jobs, projects, topology
from webui.services.errors import Invalid

bp = Blueprint("clusters", __name__)


@bp.get("/clusters")
@login_required
def index() -> str:
    store, actor = security.get_store(), security.current_actor()
    rows, operable = [], []
    for project in projects.list_projects(store, actor):
        rows += [
            (project, c, deployments.cluster_state(store, c))
            for c in projects.list_clusters(store, project["_id"])
        ]
        if projects.role_in(store, actor, project["_id"]) in ("operator", "owner"):
            operable.append(project)
    return render_template("clusters/index.html", rows=rows, operable=operable)


# The form's fields besides the hosts (checkboxes) and the security switches (checkboxes).
TEXT_FORM_FIELDS = ("name", "topology", "mongodb_version", "replica_set", "port", "shards",
                    "routers", "ssh_credential_id", "mongodb_credential_id")  # fmt: skip


def _new_form(project_id: str, values: dict, errors: dict, status: int = 200):
    store, actor, settings = security.get_store(), security.current_actor(), security.get_settings()
    project = projects.require(store, actor, project_id, "operator")
    _, hosts = jobs.choices(settings, actor, projects.list_hosts(store, project_id))
    creds = credentials.list_public(store, project_id)
    return render_template(
        "clusters/new.html", project=project, hosts=hosts, values=values, errors=errors,
        packages=sorted(deployments.packages(settings)),
        by_kind={k: [c for c in creds if c["kind"] == k] for k in ("ssh_key", "mongodb")},
    ), status  # fmt: skip


@bp.get("/projects/<project_id>/clusters/new")
@login_required
def new(project_id: str):
    values = {**deployments.DEFAULTS, "host_ids": []}
    store = security.get_store()
    creds = credentials.list_public(store, project_id)
    for field, kind in (("ssh_credential_id", "ssh_key"), ("mongodb_credential_id", "mongodb")):
        first = next((c for c in creds if c["kind"] == kind), None)
        values[field] = first["_id"] if first else ""
    return _new_form(project_id, values, {})


@bp.post("/projects/<project_id>/clusters")
@login_required
def create(project_id: str):
    """The form's fields to the service that the API calls too; on a wrong field, the form again
    with everything chosen and the message beside the field."""
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    form = request.form
    data = {name: form.get(name, "").strip() for name in TEXT_FORM_FIELDS}
    data.update(host_ids=form.getlist("host_ids"), auth=bool(form.get("auth")),
                tls=bool(form.get("tls")))  # fmt: skip
    try:
        cluster, job = deployments.create(store, settings, actor, project_id, data)
    except Invalid as exc:
        flash(exc.message, "error")
        return _new_form(project_id, data, exc.fields, 422)
    flash(f"Cluster {cluster['name']} created; its deployment is this job.", "ok")
    return redirect(url_for("jobs.show", job_id=job["_id"]))


@bp.post("/clusters/<cluster_id>/deploy")
@login_required
def deploy(cluster_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    job = deployments.redeploy(store, settings, actor, cluster_id)
    return redirect(url_for("jobs.show", job_id=job["_id"]))


# The spec's fields as the cloud cluster form names them (volume fields flattened).
INT_FIELDS = ("zones", "members", "shards", "mongos")
TEXT_FIELDS = ("region", "topology", "mongodb_version", "instance_type", "image", "ssh_user",
               "vpc_cidr", "platform_cidr")  # fmt: skip
VOLUME_FIELDS = ("type", "size_gb", "iops", "throughput")
FORM_DEFAULTS = {
    "region": "us-east-1", "zones": "3", "topology": "replicaset", "members": "3", "shards": "2",
    "mongos": "2", "mongodb_version": "7.0.14", "instance_type": "m6i.large",
    "volume_type": "gp3", "volume_size_gb": "100", "volume_iops": "3000",
    "vpc_cidr": "10.0.0.0/16",
}  # fmt: skip


def _number(text: str) -> int | str:
    """A whole number as such; anything else as typed, for the spec to name what is wrong."""
    return int(text) if text.isascii() and text.isdigit() else text


def spec_from_form(form: MultiDict) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if form.get(name, "").strip():
            spec[name] = form[name].strip()
    topology = spec.get("topology", "replicaset")
    for name in INT_FIELDS:
        wanted = name == "zones" or (name == "members") == (topology == "replicaset")
        if wanted and form.get(name, "").strip():
            spec[name] = _number(form[name].strip())
    volume = {
        name: form[f"volume_{name}"].strip()
        for name in VOLUME_FIELDS
        if form.get(f"volume_{name}", "").strip()
    }
    spec["volume"] = {k: v if k == "type" else _number(v) for k, v in volume.items()}
    if volume.get("type") == "gp2":
        spec["volume"].pop("iops", None)  # gp2 has no IOPS setting; the form shows one
    apps = form.get("app_cidrs", "").replace(",", " ").split()
    if apps:
        spec["app_cidrs"] = apps
    if form.get("public"):
        spec["public"] = True
    return spec


def _cloud_form(project_id: str, values: MultiDict | dict, errors: dict, status: int = 200):
    store, actor = security.get_store(), security.current_actor()
    project = projects.require(store, actor, project_id, "operator")
    creds = credentials.list_public(store, project_id)
    return render_template(
        "clusters/new_cloud.html", project=project, values=values, errors=errors,
        by_kind={k: [c for c in creds if c["kind"] == k] for k in ("aws", "ssh_key", "mongodb")},
    ), status  # fmt: skip


@bp.get("/projects/<project_id>/clusters/new-aws")
@login_required
def new_cloud(project_id: str):
    return _cloud_form(project_id, FORM_DEFAULTS, {})


@bp.post("/projects/<project_id>/clusters/new-aws")
@login_required
def plan_cloud(project_id: str):
    """Plan the spec and show the plan; on a bad field, the form again with everything typed and
    the message next to the field."""
    store, actor, form = security.get_store(), security.current_actor(), request.form
    settings = security.get_settings()
    try:
        data = {
            "name": form.get("name", "").strip(),
            "spec": spec_from_form(form),
            "cloud_credential_id": form.get("cloud_credential_id"),
            "ssh_credential_id": form.get("ssh_credential_id"),
            "mongodb_credential_id": form.get("mongodb_credential_id") or None,
            "deploy_vars": jobs.parse_extra_vars(form.get("deploy_vars", ""), "deploy_vars"),
        }
        cluster = cloud.plan_cluster(store, settings, actor, project_id, data)
    except Invalid as exc:
        errors = {_form_field(k): v for k, v in exc.fields.items()}
        flash(exc.message, "error")
        return _cloud_form(project_id, form, errors, 422)
    flash(f"Cluster {cluster['name']} planned: nothing exists yet. Check the plan, then "
          "provision it.", "ok")  # fmt: skip
    return redirect(url_for("clusters.show", cluster_id=cluster["_id"]))


def _form_field(field: str) -> str:
    """spec.volume.size_gb -> volume_size_gb; spec.app_cidrs[1] -> app_cidrs."""
    name = field.removeprefix("spec.").split("[")[0]
    return name.replace(".", "_")


@bp.get("/clusters/<cluster_id>")
@login_required
def show(cluster_id: str) -> str:
    store, actor = security.get_store(), security.current_actor()
    cluster, project = cloud.get_cluster(store, actor, cluster_id)
    role = projects.role_in(store, actor, project["_id"])
    cluster_jobs = deployments.jobs_of(store, cluster_id)
    hosts = {h["_id"]: h for h in projects.list_hosts(store, project["_id"])}
    creds = {c["_id"]: c for c in credentials.list_public(store, project["_id"])}
    machines, members, report, routers, drawn = [], [], None, [], None
    if cluster.get("plan"):
        machines = cloud.instances(store, cluster)
        uri = cloud.connection_string(cluster["plan"], machines)
    else:
        members, report = deployments.members(store, cluster)
        routers = deployments.routers(store, cluster)
        uri = deployments.connection_string(store, cluster)
        drawn = topology.of_cluster(store, actor, cluster_id)
    return render_template(
        "clusters/show.html", cluster=cluster, project=project,
        state=deployments.cluster_state(store, cluster),
        can_operate=role in ("operator", "owner"), jobs=cluster_jobs, names=None,
        hosts=[hosts[h] for h in cluster.get("host_ids", []) if h in hosts],
        credentials=[creds[c] for c in cluster.get("credential_ids", []) if c in creds],
        instances=machines, members=members, report=report, routers=routers, uri=uri,
        topology=drawn, processes=topology.processes(drawn) if drawn else [],
        metrics_api=f"{PREFIX}/projects/{project['_id']}/metrics",
    )  # fmt: skip


@bp.post("/clusters/<cluster_id>/provision")
@login_required
def provision(cluster_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    job = cloud.provision(store, settings, actor, cluster_id)
    return redirect(url_for("jobs.show", job_id=job["_id"]))


@bp.post("/clusters/<cluster_id>/delete")
@login_required
def delete(cluster_id: str) -> Response:
    store, settings, actor = security.get_store(), security.get_settings(), security.current_actor()
    confirm = request.form.get("confirm", "").strip()
    cluster, job = cloud.delete(store, settings, actor, cluster_id, confirm)
    if job is None:
        flash(f"Cluster {cluster['name']} deleted (nothing had been provisioned).", "ok")
        return redirect(url_for("projects.show", project_id=cluster["project_id"]))
    flash(f"Deleting {cluster['name']}: its resources are torn down by this job.", "ok")
    return redirect(url_for("jobs.show", job_id=job["_id"]))
