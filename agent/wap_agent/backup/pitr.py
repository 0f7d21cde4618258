"""Point-in-time restore of one replica set: a base snapshot, then the followed oplog to a target.

The target is an oplog timestamp (restored up to and including that entry) or a UTC time
(every entry of that second or before: oplog timestamps count whole seconds). The restorable
window holding the target (coverage.windows) gives the base: the newest of its snapshots ending
at or before the target. The base is restored with its own oplog replayed, then the stored
chunks and slices after its end, through the same Restorer (restore.RestoreOptions.more_oplog)
with the limit just past the target. A target outside every window is refused, naming the
windows there are.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from bson.timestamp import Timestamp

from wap_agent.backup.coverage import replica_set_coverage, runs, snapshots, timestamp_of
from wap_agent.backup.manifest import Layout
from wap_agent.backup.restore import Progress, RestoreError, RestoreOptions, restore
from wap_agent.backup.s3 import S3Download, S3TransferError
from wap_agent.backup.slices import OplogStore


def limit_for(target: Timestamp | datetime.datetime) -> Timestamp:
    """The exclusive replay limit that restores up to and including `target`."""
    if isinstance(target, datetime.datetime):
        if target.tzinfo is None:
            raise RestoreError(f"{target.isoformat()}: give the target time in UTC (with its zone)")
        return Timestamp(int(target.timestamp()) + 1, 0)
    if target.inc == 0xFFFFFFFF:
        return Timestamp(target.time + 1, 0)
    return Timestamp(target.time, target.inc + 1)


def _shown(point: dict) -> str:
    return f"{point['utc']} ({point['t']}:{point['i']})"


def choose_base(windows: list[dict], limit: Timestamp, replica_set: str = "") -> dict:
    """The snapshot ({id, end}) a restore to just before `limit` starts from: the newest ending
    at or before the target, in the window that holds every entry up to the target."""
    for window in reversed(windows):
        if timestamp_of(window["from"]) < limit <= limit_for(timestamp_of(window["until"])):
            return [s for s in window["snapshots"] if timestamp_of(s["end"]) < limit][-1]
    shown = ", ".join(f"{_shown(w['from'])} to {_shown(w['until'])}" for w in windows)
    raise RestoreError(
        f"no restorable window of {replica_set or 'the replica set'} holds the target; "
        f"the windows (UTC, oplog time:increment): {shown or 'none'}"
    )


def followed(store: OplogStore, start: Timestamp, limit: Timestamp) -> Iterator[list[bytes]]:
    """The stored entries after `start` and before `limit`, object by object; an object
    compacted away while being read is found again in its slice."""
    after = start
    for _ in range(3):
        run = next((r for r in runs(store.objects()) if r.begins <= after <= r.last.ts), None)
        if run is None:
            break
        try:
            for stored in run.objects:
                if stored.last.ts <= after:
                    continue
                if stored.first.ts >= limit:
                    return
                yield [bytes(e.raw) for e in store.entries(stored) if e["ts"] > after]
                after = stored.last.ts
        except S3TransferError:
            continue  # compacted meanwhile: list again
        if limit_for(run.last.ts) >= limit:
            return
        break
    raise RestoreError(
        f"the stored oplog of {store.replica_set} no longer reaches the target from "
        f"{after.time}:{after.inc}: look at its coverage again"
    )


def restore_to(
    uri: str,
    s3: Any,
    bucket: str,
    layout: Layout,
    replica_set: str,
    target: Timestamp | datetime.datetime,
    *,
    drop: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Restore `replica_set`'s backups into `uri` as they were at `target`; the summary: the
    base snapshot, the restore's summary (with the oplog entries applied and the last one's
    timestamp) and the exclusive limit used."""
    limit = limit_for(target)
    bases = [b for b in snapshots(s3, bucket, layout)
             if replica_set in (b.replica_sets or {f.replica_set for f in b.files})]  # fmt: skip
    store = OplogStore(s3, bucket, layout, replica_set)
    chosen = choose_base(replica_set_coverage(store, bases)["windows"], limit, replica_set)
    base = next(b for b in bases if b.snapshot_id == chosen["id"])
    start = timestamp_of(chosen["end"])
    key = next(f.key for f in base.files if f.replica_set in ("", replica_set))
    options = RestoreOptions(oplog_replay=True, drop=drop, oplog_limit=limit, progress=progress,
                             more_oplog=followed(store, start, limit))  # fmt: skip
    with S3Download(s3, bucket, key) as source:
        summary = restore(uri, source, options=options)
    return {
        "snapshot_id": base.snapshot_id,
        "snapshot_end": chosen["end"],
        "summary": summary,
        "limit": {"t": limit.time, "i": limit.inc, "exclusive": True},
        "oplog_applied": summary["oplog"]["applied"],
        "last": summary["oplog"]["last"],
    }
