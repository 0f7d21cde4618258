"""Taking over a deployment WAP did not create (webui.services.takeover): discover it from one
address (a job; nothing is registered), read what was found, then register it."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validates_schema
from marshmallow.exceptions import ValidationError

from webui.api import _blueprint
from webui.api.schemas import NAME, SHORT, ClusterDetailOut, JobOut, Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import jobs, takeover

bp = _blueprint("takeover-api", "Taking over existing deployments")


class TakeoverIn(Strict):
    """A discovery (dry_run, the default: nothing is registered), or the registration of what a
    finished discovery found (dry_run false, with its job_id and the cluster's name)."""

    dry_run = fields.Boolean(load_default=True)
    address = fields.String(validate=SHORT, metadata={"description": "host:port of a member "
                            "or a mongos"})  # fmt: skip
    mongodb_credential_id = fields.String(validate=SHORT, metadata={"description": "a MongoDB "
                                          "credential holding clusterMonitor"})  # fmt: skip
    ssh_credential_id = fields.String(validate=SHORT, metadata={"description": "the hosts' SSH"
                                      " key, kept on the cluster for its later jobs"})  # fmt: skip
    tls = fields.Boolean(load_default=False)
    job_id = fields.String(validate=SHORT, metadata={"description": "the discovery to register"})
    name = fields.String(validate=NAME, metadata={"description": "the cluster's name"})

    @validates_schema
    def _complete(self, data: dict[str, Any], **_kwargs: Any) -> None:
        needed = ("address",) if data["dry_run"] else ("job_id", "name")
        missing = {f: ["required"] for f in needed if not data.get(f)}
        if missing:
            raise ValidationError(missing)


class TakeoverOut(Strict):
    job = fields.Nested(JobOut)
    status = fields.String(metadata={"description": "the discovery job's status"})
    deployment = fields.Dict(allow_none=True, metadata={"description": "what was found: "
                             "topology, name, fcv, security, sets, routers, hosts"})  # fmt: skip
    reason = fields.String(allow_none=True, metadata={"description": "why nothing was found"})
    known_hosts = fields.List(fields.String(), metadata={"description": "found hosts the "
                              "project has already"})  # fmt: skip
    cluster_id = fields.String(allow_none=True)
    cluster = fields.Nested(ClusterDetailOut, allow_none=True)
    agents_job = fields.Nested(JobOut, allow_none=True, metadata={"description": "on "
                               "registration: the job deploying the agents on the cluster's "
                               "hosts"})  # fmt: skip
    agents_reason = fields.String(allow_none=True, metadata={"description": "on registration "
                                  "without an agents job: why none"})  # fmt: skip


def _out(answer: dict[str, Any], cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {**answer, "job": jobs.public_job(answer["job"]), "cluster": cluster}
    if cluster is not None:
        agents = cluster.pop("agents")
        out["agents_job"] = jobs.public_job(agents["job"]) if agents["job"] else None
        out["agents_reason"] = agents["reason"] or None
    return out


@bp.route("/projects/<project_id>/takeover", methods=["POST"])
@bp.arguments(TakeoverIn)
@bp.response(201, TakeoverOut)
def take_over(data: dict[str, Any], project_id: str) -> Any:
    """With dry_run (the default), start discovering the deployment behind `address`: the answer
    holds the discovery job; read the preview with GET .../takeover/{job_id} once it ended. With
    dry_run false, register the hosts and the cluster a finished discovery found."""
    store, actor = get_store(), current_actor()
    if data["dry_run"]:
        job = takeover.discover(store, get_settings(), actor, project_id, data)
        return _out(takeover.found(store, actor, project_id, job["_id"])), 202
    cluster = takeover.register(
        store, get_settings(), actor, project_id, data["job_id"], data["name"]
    )
    answer = takeover.found(store, actor, project_id, data["job_id"])
    return _out(answer, {**cluster, "state": "registered",
                         "members": cluster["taken_over"]["members"]})  # fmt: skip


@bp.route("/projects/<project_id>/takeover/<job_id>")
@bp.response(200, TakeoverOut)
def discovery(project_id: str, job_id: str) -> dict[str, Any]:
    """A discovery: its job, and once it ended, the deployment found or why not."""
    return _out(takeover.found(get_store(), current_actor(), project_id, job_id))


BLUEPRINTS = (bp,)
