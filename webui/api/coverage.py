"""Backup coverage API: what a cluster can be restored to, per replica set (restorable windows,
gaps, unrestorable entries) and as a whole (`restorable_until`), read from its policy's store by
webui.services.coverage. Points are oplog timestamps `{t, i}` with their UTC second."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from webui.api import _blueprint
from webui.api.schemas import Strict
from webui.security import current_actor, get_settings, get_store
from webui.services import coverage

bp = _blueprint("coverage-api", "What a cluster's backups can be restored to")

POINT = "an oplog timestamp: {t, i, utc}"


class CoverageOut(Strict):
    cluster_id = fields.String()
    read_at = fields.Float(metadata={"description": "when the store was read (epoch seconds)"})
    restorable_until = fields.Dict(
        allow_none=True,
        metadata={"description": f"the newest moment every replica set reaches: {POINT}"},
    )
    replica_sets = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={
            "description": "per replica set: windows [{snapshot_id, snapshots [{id, end}], from,"
            " until, ends}], gaps [{after, resumed, reason, detected_at}], unrestorable [{at,"
            " prev, reason}], last_durable; each point " + POINT
        },
    )


@bp.route("/clusters/<cluster_id>/backup-coverage")
@bp.response(200, CoverageOut)
def backup_coverage(cluster_id: str) -> dict[str, Any]:
    """The cluster's restorable windows and gaps, read now from its backup store."""
    return coverage.cluster_coverage(get_store(), get_settings(), current_actor(), cluster_id)


BLUEPRINTS = (bp,)
