"""What a cluster's backups can be restored to: per replica set, the restorable windows and gaps.

Read from the store alone (snapshots' manifests, the oplog's chunks and slices, the gap and
unrestorable records: agent/docs/backup-storage.md). The stored oplog objects are cut into runs
that follow one another (each object's `prev` is the previous one's `last`); a window starts at
a base snapshot's oplog end that lies within a run (or at the snapshot alone, restorable to its
end only) and lasts until the run's last durable entry, or until the entry before one a replay
cannot reproduce (the next window then starts at the first snapshot that ends after it). Times
are oplog timestamps (with their UTC second), never a host's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson.timestamp import Timestamp

from wap_agent.backup import manifest as manifests
from wap_agent.backup.manifest import Layout, Manifest
from wap_agent.backup.slices import OplogStore, OpTime, Stored


@dataclass
class Run:
    """Stored objects that follow one another: entries after `prev` up to `last`."""

    prev: OpTime | None
    objects: list[Stored]

    @property
    def first(self) -> OpTime:
        return self.objects[0].first

    @property
    def last(self) -> OpTime:
        return self.objects[-1].last

    @property
    def begins(self) -> Timestamp:
        return (self.prev or self.first).ts


def runs(objects: list[Stored]) -> list[Run]:
    found: list[Run] = []
    for stored in objects:
        if found and stored.prev == found[-1].last:
            found[-1].objects.append(stored)
        else:
            found.append(Run(stored.prev, [stored]))
    return found


# Manifests already read, by version (bucket, key, ETag, time): one is written once, last
MANIFESTS: dict[tuple[str, str, Any, str], Manifest] = {}
MANIFESTS_MAX = 2_000


def _manifest(s3: Any, bucket: str, item: dict[str, Any]) -> Manifest:
    version = (bucket, item["Key"], item.get("ETag"), str(item.get("LastModified")))
    known = MANIFESTS.get(version)
    if known is None:
        known = manifests.read(s3, bucket, item["Key"])
        if len(MANIFESTS) >= MANIFESTS_MAX:
            MANIFESTS.pop(next(iter(MANIFESTS)), None)
        MANIFESTS[version] = known
    return known


def snapshots(s3: Any, bucket: str, layout: Layout) -> list[Manifest]:
    """The cluster's snapshots (those with a manifest), oldest first; a manifest is read once
    per version, so that reading a coverage again costs the listing."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{layout.root}/snapshots/"
    ):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/" + manifests.MANIFEST):
                found.append(_manifest(s3, bucket, item))
    return sorted(found, key=lambda m: m.snapshot_id)


def _end(snapshot: Manifest) -> Timestamp | None:
    end = snapshot.oplog_end
    return None if not end else Timestamp(int(end["t"]), int(end["i"]))


def _point(ts: Timestamp) -> dict[str, Any]:
    return OpTime(ts).to_dict() | {"term": None}


def windows(bases: list[Manifest], run_list: list[Run], marks: list[dict]) -> list[dict]:
    """Restorable windows of one replica set (pure: see the module's docstring), oldest first:
    `from` (the first base's end) to `until`, why it ends there (`ends`), and the base snapshots
    within it (`snapshots`, each with its `end`): a restore to T starts from the newest of them
    ending at or before T."""
    cuts = sorted((OpTime.from_dict(m["at"]), OpTime.from_dict(m["prev"]), m["reason"])
                  for m in marks)  # fmt: skip
    made: list[dict] = []
    for base in sorted((b for b in bases if _end(b) is not None), key=_end):  # type: ignore[arg-type]
        start = _end(base)
        assert start is not None
        mine = {"id": base.snapshot_id, "end": _point(start)}
        if made and timestamp_of(made[-1]["from"]) <= start <= timestamp_of(made[-1]["until"]):
            made[-1]["snapshots"].append(mine)  # a newer base within the same window
            continue
        run = next((r for r in run_list if r.begins <= start <= r.last.ts), None)
        until, because = (run.last.ts, "last durable entry") if run else (start, "snapshot only")
        for at, prev, reason in cuts:
            if at is not None and prev is not None and start < at.ts <= until:
                until, because = max(prev.ts, start), f"unrestorable: {reason}"
                break
        made.append({"snapshot_id": base.snapshot_id, "snapshots": [mine],
                     "from": _point(start), "until": _point(until), "ends": because})  # fmt: skip
    return made


def timestamp_of(point: dict) -> Timestamp:
    return Timestamp(int(point["t"]), int(point["i"]))


def replica_set_coverage(store: OplogStore, bases: list[Manifest]) -> dict[str, Any]:
    objects = store.objects()
    run_list = runs(objects)
    gaps = store.gaps()
    recorded = {(g["after"]["t"], g["after"]["i"]) for g in gaps}
    for before, after in zip(run_list, run_list[1:]):
        if (before.last.ts.time, before.last.ts.inc) not in recorded:
            gaps.append({"after": before.last.to_dict(), "resumed": after.first.to_dict(),
                         "reason": "stored objects do not follow one another (no gap record)",
                         "detected_at": None})  # fmt: skip
    marks = store.unrestorable()
    return {
        "windows": windows(bases, run_list, marks),
        "gaps": gaps,
        "unrestorable": marks,
        "last_durable": objects[-1].last.to_dict() if objects else None,
        "objects": len(objects),
        "checkpoint": store.checkpoint_record(),
    }


def oplog_sets(s3: Any, bucket: str, layout: Layout) -> list[str]:
    answer = s3.list_objects_v2(Bucket=bucket, Prefix=f"{layout.root}/oplog/", Delimiter="/")
    return [p["Prefix"].rstrip("/").rsplit("/", 1)[1] for p in answer.get("CommonPrefixes", [])]


def coverage(s3: Any, bucket: str, layout: Layout) -> dict[str, Any]:
    """Per replica set: `windows` ({snapshot_id, from, until, ends}), `gaps`, `unrestorable`,
    `last_durable` and the follower's `checkpoint` ({last, saved_at}); points as {t, i, utc}
    (oplog timestamps)."""
    bases = snapshots(s3, bucket, layout)
    names = set(oplog_sets(s3, bucket, layout))
    for base in bases:
        names.update(base.replica_sets or {f.replica_set for f in base.files if f.replica_set})
    answer = {}
    for name in sorted(names):
        mine = [b for b in bases if name in (b.replica_sets or {f.replica_set for f in b.files})]
        store = OplogStore(s3, bucket, layout, name)
        answer[name] = replica_set_coverage(store, mine)
    return {"replica_sets": answer}
