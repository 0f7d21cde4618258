"""A cluster's topology now, from its agents' latest samples (webui.services.topology); the
cluster page polls it."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from webui.api import _blueprint
from webui.api.schemas import Strict
from webui.security import current_actor, get_store
from webui.services import topology

bp = _blueprint("topology-api", "Clusters' topology from their agents")


class TopologyMemberOut(Strict):
    address = fields.String(metadata={"description": "host:port, as the replica set names it"})
    host = fields.String(metadata={"description": "the registered host's name, when known"})
    host_id = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "PRIMARY, SECONDARY, ... or not reported"})
    health = fields.String(metadata={"description": "ok, down or unknown"})
    lag_seconds = fields.Float(allow_none=True)
    ping_seconds = fields.Float(allow_none=True)
    connections = fields.Float(allow_none=True)
    seen_at = fields.Float(allow_none=True)
    stale = fields.Boolean()


class TopologySetOut(Strict):
    name = fields.String()
    role = fields.String(metadata={"description": "replica set, config servers or shard"})
    primary = fields.String(allow_none=True)
    members = fields.List(fields.Nested(TopologyMemberOut))


class TopologyRouterOut(Strict):
    address = fields.String()
    host = fields.String()
    host_id = fields.String()
    up = fields.Boolean()
    state = fields.String(metadata={"description": "ROUTER, or unreachable"})
    version = fields.String(allow_none=True)
    connections = fields.Float(allow_none=True)
    seen_at = fields.Float()
    stale = fields.Boolean()


class HostAgentStateOut(Strict):
    state = fields.String(metadata={"description": "ok, errors, silent or no agent"})
    version = fields.String(allow_none=True)
    last_seen = fields.Float(allow_none=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


class HostAgentOut(Strict):
    host_id = fields.String()
    name = fields.String()
    agent = fields.Nested(HostAgentStateOut)


class TopologyOut(Strict):
    cluster_id = fields.String()
    name = fields.String()
    topology = fields.String()
    at = fields.Float(metadata={"description": "when the answer was made (seconds since epoch)"})
    sets = fields.List(fields.Nested(TopologySetOut))
    routers = fields.List(fields.Nested(TopologyRouterOut))
    hosts = fields.List(fields.Nested(HostAgentOut))


@bp.route("/clusters/<cluster_id>/topology")
@bp.response(200, TopologyOut)
def cluster_topology(cluster_id: str) -> dict[str, Any]:
    """The cluster's replica sets (config servers and shards) with each member's state, health,
    lag and connections, and its routers, as the agents on its hosts last reported them."""
    return topology.of_cluster(get_store(), current_actor(), cluster_id)


BLUEPRINTS = (bp,)
