"""What a cluster's backups can be restored to: its continuous backup's coverage, read from the
snapshot store of its backup policy.

Per replica set (each shard and the config servers of a sharded cluster), the restorable windows
(from a base snapshot's end to the last durable oplog entry, or to the entry before one a replay
cannot reproduce), the gaps with their bounds, the unrestorable entries and the last durable
entry, as wap_agent.backup.coverage reads them from the layout (agent/docs/backup-storage.md).
Every point is an oplog timestamp `{t, i}` with its UTC second (`utc`): the moment a restore
picks, never a host's clock.

`restorable_until` is the newest point the whole cluster can be restored to: the earliest of
the replica sets' newest window ends (a sharded cluster is restored to one cluster time on every
shard), or None while a set has no window. The store is read with the policy's credential,
revealed for the read and never kept or returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wap_agent.backup import coverage as oplog_coverage
from wap_agent.backup import manifest as snapshots
from webui.config import Settings
from webui.services import backups
from webui.services.audit import Actor
from webui.services.errors import Conflict, NotFound
from webui.store import Store, now

S3Factory = Callable[[Store, Settings, dict[str, Any]], Any]


def restorable_until(replica_sets: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The earliest of the sets' newest window ends; None when a set has none (pure)."""
    ends = []
    for covered in replica_sets.values():
        if not covered["windows"]:
            return None
        newest = max(covered["windows"], key=lambda w: (w["until"]["t"], w["until"]["i"]))
        ends.append(newest["until"])
    return min(ends, key=lambda p: (p["t"], p["i"])) if ends else None


def cluster_coverage(
    store: Store,
    settings: Settings,
    actor: Actor,
    cluster_id: str,
    s3: S3Factory = backups.s3_client,
) -> dict[str, Any]:
    """The cluster's coverage (project readers), read now from its policy's store."""
    policy = backups.get_policy(store, actor, cluster_id)
    if policy is None:
        raise NotFound(
            "this cluster has no backup policy, so no store to read its coverage from: "
            "set one (PUT /api/v1/clusters/{id}/backup-policy or the Backups page)"
        )
    bucket = policy["store"]["bucket"]
    layout = snapshots.Layout(policy["store"]["prefix"], policy["project_id"], cluster_id)
    try:
        found = oplog_coverage.coverage(s3(store, settings, policy["store"]), bucket, layout)
    except Exception as exc:
        from wap_agent.backup.s3 import failure_reason

        raise Conflict(
            f"the snapshot store s3://{bucket}/{layout.root}/ could not be read "
            f"({failure_reason(exc)}): check the policy's bucket, region and credential"
        ) from None
    sets = found["replica_sets"]
    return {
        "cluster_id": cluster_id,
        "read_at": now(),
        "restorable_until": restorable_until(sets),
        "replica_sets": sets,
    }
