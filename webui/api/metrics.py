"""Metrics API: chart queries and the newest samples of a project's hosts (members may read).

`GET /api/v1/projects/{id}/metrics?name=..&name=..&host=..&label=key:value&from=..&to=..&points=..`
answers columns for a chart (times in seconds since the epoch): the tier read (raw, 1m or 1h),
the step, and per series its name, labels, host and `t`, `mean`, `min`, `max`, `last`.
`GET /api/v1/projects/{id}/metrics/latest?host=..&name=..` answers each host's newest value of
every series, and `GET /api/v1/projects/{id}/prometheus` the same in Prometheus's text format
(webui.services.prometheus), for a scrape with an API token. `GET /metrics` is the platform's own
health for Prometheus.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import ValidationError, fields, validate, validates

from webui.api import _blueprint
from webui.api.schemas import Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import agents, metrics, projects, prometheus
from webui.services.rollups import Retention
from webui.store import now

metrics_bp = _blueprint("metrics", "Metrics of the project's hosts: charts and latest values")

NAMES = fields.List(
    fields.String(validate=validate.Regexp(metrics.NAME_RE)),
    validate=validate.Length(min=1, max=metrics.MAX_NAMES),
)


class ChartQuery(Strict):
    name = NAMES
    host = fields.String(validate=validate.Length(min=1, max=64))
    label = fields.List(
        fields.String(validate=validate.Regexp(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}:.{0,1024}$")),
        metadata={"description": "key:value, the series' label to match (repeatable)"},
    )
    from_ = fields.Float(data_key="from", metadata={"description": "default: an hour before to"})
    to = fields.Float(metadata={"description": "seconds since the epoch; default: now"})
    points = fields.Integer(
        load_default=600, validate=validate.Range(min=1, max=metrics.MAX_POINTS)
    )

    @validates("name")
    def _names(self, value: list[str], **_: Any) -> None:
        if not value:
            raise ValidationError("one series name at least")


class LatestQuery(Strict):
    host = fields.List(fields.String(validate=validate.Length(min=1, max=64)))
    name = fields.List(fields.String(validate=validate.Regexp(metrics.NAME_RE)))


class SeriesOut(Strict):
    name = fields.String()
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    host_id = fields.String()
    t = fields.List(fields.Float())
    mean = fields.List(fields.Float())
    min = fields.List(fields.Float())
    max = fields.List(fields.Float())
    last = fields.List(fields.Float())


class ChartOut(Strict):
    tier = fields.String(metadata={"description": "raw, 1m or 1h"})
    step = fields.Float(metadata={"description": "seconds between points"})
    series = fields.List(fields.Nested(SeriesOut))


class SampleOut(Strict):
    name = fields.String()
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    value = fields.Float()
    kind = fields.String()
    t = fields.Float()


class LatestOut(Strict):
    host_id = fields.String()
    t = fields.Float()
    last_seen = fields.Float()
    samples = fields.List(fields.Nested(SampleOut))


@metrics_bp.route("/projects/<project_id>/metrics")
@metrics_bp.arguments(ChartQuery, location="query")
@metrics_bp.response(200, ChartOut)
def chart(query: dict[str, Any], project_id: str) -> dict[str, Any]:
    """Series over a time range, from the tier the range needs (raw samples for up to a few
    hours of the last day, 1-minute rollups up to 14 days back, 1-hour rollups beyond)."""
    store = get_store()
    projects.require(store, current_actor(), project_id, "read-only")
    end = query.get("to") or now()
    start = query.get("from_") or end - 3600
    labels = dict(item.split(":", 1) for item in query.get("label", []))
    return metrics.query(
        store, project_id, names=query.get("name", []), host_id=query.get("host"),
        labels=labels, start=start, end=end, max_points=query["points"],
        retention=Retention.of(get_settings()),
    )  # fmt: skip


@metrics_bp.route("/projects/<project_id>/metrics/latest")
@metrics_bp.arguments(LatestQuery, location="query")
@metrics_bp.response(200, LatestOut(many=True))
def latest(query: dict[str, Any], project_id: str) -> list[dict[str, Any]]:
    """Each host's newest value of each series (of the hosts and names given, else all)."""
    store = get_store()
    projects.require(store, current_actor(), project_id, "read-only")
    return metrics.latest(store, project_id, query.get("host"), query.get("name"))


@metrics_bp.route("/projects/<project_id>/prometheus")
@metrics_bp.response(200, content_type=prometheus.CONTENT_TYPE)
@metrics_bp.doc(security=[{"bearer": []}])
def prometheus_samples(project_id: str) -> Response:
    """The newest sample of every series of the project's hosts in Prometheus's text format,
    labelled with project, host, cluster, replica set and member state (scrape it with an API
    token as the bearer credential)."""
    store = get_store()
    project = projects.require(store, current_actor(), project_id, "read-only")
    return Response(
        prometheus.project_samples(store, project), content_type=prometheus.CONTENT_TYPE
    )


health_bp = Blueprint("platform-metrics", __name__, description="The platform's own health")


@health_bp.route("/metrics")
@health_bp.response(200, content_type=prometheus.CONTENT_TYPE)
def platform_metrics() -> Response:
    """The platform's health in Prometheus's text format: jobs by state, queue depth, ingest
    rate and lag, agents seen, refused ingest requests, rollup lag."""
    settings = get_settings()
    redis = current_app.extensions["wap.redis"]
    rejected = agents.IngestLimiter(
        redis, settings.agent_requests_per_minute,
        prefix=f"wap:{settings.queue_name}:agent-ingest",
    ).rejected()  # fmt: skip
    body = prometheus.platform_health(get_store(), redis, settings.queue_name, rejected)
    return Response(body, content_type=prometheus.CONTENT_TYPE)


BLUEPRINTS = (metrics_bp, health_bp)
