"""Point-in-time restore of one replica set: a base snapshot, then the followed oplog to a target.

The target is an oplog timestamp (restored up to and including that entry) or a UTC time
(every entry of that second or before: oplog timestamps count whole seconds). The restorable
window holding the target (coverage.windows) gives the base: the newest of its snapshots ending
at or before the target. The base is restored with its own oplog replayed, then the stored
chunks and slices after its end, through the same Restorer (restore.RestoreOptions.more_oplog)
with the limit just past the target. A target outside every window is refused, naming the
windows there are.

The agent's ``restore`` command restores to a moment with :class:`PointInTime` (its ``until``
argument: the last entry included, as the platform's coverage chose it): the command's snapshot
is the base, checked to lie in a window holding the target, and the followed oplog of its
replica set is found beside it in the store (the manifest's key gives the cluster's root). The
result says what was replayed and which collections the replay created; :func:`verification`
reports the copy against the manifest and those created collections as such.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

from wap_agent.backup import verify
from wap_agent.backup.coverage import replica_set_coverage, runs, snapshots, timestamp_of
from wap_agent.backup.manifest import Layout, Manifest
from wap_agent.backup.restore import Progress, RestoreError, RestoreOptions, restore
from wap_agent.backup.s3 import S3Download, S3TransferError
from wap_agent.backup.slices import OplogStore, utc


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


SERVER_DATABASES = ("admin", "config", "local")
CREATED = "created by the oplog replay, after the snapshot"


def _named(db: str, name: Any) -> list[str]:
    return [f"{db}.{name}"] if isinstance(name, str) and name else []


def namespaces_of(entry: Any) -> list[str]:
    """The user collections an oplog entry writes or creates (a command's, an applyOps' inner
    entries'), without the server's own databases and system collections (pure)."""
    ns, op = str(entry.get("ns") or ""), entry.get("op")
    db = ns.partition(".")[0]
    found: list[str] = []
    if op in ("i", "u", "d"):
        found = [ns]
    elif op == "c":
        body = entry.get("o") or {}
        for key in ("create", "createIndexes", "collMod", "drop"):
            found += _named(db, body.get(key))
        for key in ("renameCollection", "to"):
            value = body.get(key)
            found += [value] if isinstance(value, str) and value else []
        for inner in body.get("applyOps") or []:
            found += namespaces_of(inner)
    return [n for n in found if n.partition(".")[0] not in SERVER_DATABASES
            and not n.partition(".")[2].startswith("system.")]  # fmt: skip


def _stamp(ts: Timestamp) -> str:
    return f"Timestamp({ts.time}, {ts.inc})"


class PointInTime:
    """A restore of the snapshot `manifest` (at `manifest_key`) to `until`, the last oplog entry
    included (``{t, i}``; an increment of 0xFFFFFFFF: every entry of that second): what the
    Restorer is given (:meth:`options`), and what was replayed (:meth:`summary`). RestoreError
    when the snapshot cannot be the base of a restore to that moment."""

    def __init__(
        self, s3: Any, bucket: str, manifest_key: str, manifest: Manifest, until: dict[str, int],
        replica_set: str = "",
    ) -> None:  # fmt: skip
        self.until = Timestamp(int(until["t"]), int(until["i"]))
        self.limit = limit_for(self.until)
        root = manifest_key.rsplit("/snapshots/", 1)[0]
        names = sorted({f.replica_set for f in manifest.files if f.replica_set})
        self.replica_set = replica_set or (names[0] if len(names) == 1 else "")
        if not self.replica_set:
            raise RestoreError("the snapshot names no single replica set: its oplog is not known")
        self.store = OplogStore(s3, bucket, Layout(root, "", ""), self.replica_set)
        windows = replica_set_coverage(self.store, [manifest])["windows"]
        chosen = choose_base(windows, self.limit, self.replica_set)
        if chosen["id"] != manifest.snapshot_id:
            raise RestoreError(f"snapshot {manifest.snapshot_id} is not the base of this moment")
        self.start = timestamp_of(chosen["end"])
        self.read = 0
        self.touched: set[str] = set()

    def _batches(self) -> Iterator[list[bytes]]:
        for batch in followed(self.store, self.start, self.limit):
            for raw in batch:
                entry = RawBSONDocument(raw)
                if entry["ts"] < self.limit:
                    self.read += 1
                    self.touched.update(namespaces_of(entry))
            yield batch

    def options(self) -> dict[str, Any]:
        """The Restorer's options of a restore to the moment (beside oplog_replay)."""
        return {"oplog_limit": self.limit, "more_oplog": self._batches()}

    def created(self, client: Any, copied: set[str]) -> list[str]:
        """Collections the replay wrote that the snapshot did not hold, and that exist now."""
        wanted = sorted(self.touched - copied)
        names = {db: set(client[db].list_collection_names())
                 for db in {n.partition(".")[0] for n in wanted}}  # fmt: skip
        return [n for n in wanted if n.partition(".")[2] in names[n.partition(".")[0]]]

    def summary(self, restored: dict[str, Any], created: list[str]) -> dict[str, Any]:
        last = (restored.get("oplog") or {}).get("last")
        return {
            "until": {"t": self.until.time, "i": self.until.inc, "utc": utc(self.until)},
            "limit": {"t": self.limit.time, "i": self.limit.inc, "exclusive": True},
            "replica_set": self.replica_set,
            "base_end": {"t": self.start.time, "i": self.start.inc, "utc": utc(self.start)},
            "followed_entries": self.read,
            "applied": (restored.get("oplog") or {}).get("applied", 0),
            "last": {**last, "utc": utc(Timestamp(last["t"], last["i"]))} if last else None,
            "created": created,
        }


class ClusterPointInTime:
    """A sharded snapshot restored to `until` on every set (each shard and the config servers):
    each set's :class:`PointInTime`, so that every set is replayed to the same cluster time.
    RestoreError when a set's coverage does not hold the moment."""

    def __init__(
        self, s3: Any, bucket: str, manifest_key: str, manifest: Manifest, until: dict[str, int]
    ) -> None:
        self.sets = {s["name"]: PointInTime(s3, bucket, manifest_key, manifest, until, s["name"])
                     for s in manifest.sets}  # fmt: skip

    def options(self, name: str) -> dict[str, Any]:
        """The replay's options of set `name` (sharded.restore_cluster's `oplog`)."""
        return self.sets[name].options()

    def summary(self, result: dict[str, Any]) -> dict[str, Any]:
        """What was replayed: on the whole (the shards' entries applied, the newest applied) and
        per set (entries read from its followed oplog; a shard's entries applied and its last:
        the config servers' restore reports no count)."""
        shards = {r["shard"]: r.get("oplog") or {} for r in result.get("shards") or []}
        per_set, lasts = {}, []
        for name, moment in self.sets.items():
            replayed = moment.summary({"oplog": shards.get(name)}, [])
            per_set[name] = {k: replayed[k] for k in ("followed_entries", "applied", "last")}
            if replayed["last"]:
                lasts.append(replayed["last"])
        first = next(iter(self.sets.values())).summary({}, [])
        return {
            **{k: first[k] for k in ("until", "limit", "base_end")},
            "followed_entries": sum(s["followed_entries"] for s in per_set.values()),
            "applied": sum(s["applied"] or 0 for s in per_set.values()),
            "last": max(lasts, key=lambda p: (p["t"], p["i"])) if lasts else None,
            "created": [],
            "sets": per_set,
        }


def verification(manifest: Manifest, result: dict[str, Any]) -> dict[str, Any]:
    """The report of a restore to a moment (verify.verification's, for what the snapshot held):
    collections the replay created are listed as such, and the note says the moment and what
    was replayed."""
    moment = result.get("point_in_time") or {}
    created = set(moment.get("created") or [])
    held = [c for c in result.get("collections") or [] if c["ns"] not in created]
    report = verify.verification(manifest, {**result, "collections": held})
    for found in result.get("collections") or []:
        if found["ns"] in created:
            report["collections"].append({
                "ns": found["ns"], "source": found["ns"], "count": found.get("count"),
                "expected_count": None, "hash": found.get("hash"),
                "indexes": len(found.get("indexes") or []), "equal": True, "differences": [],
                "changed_by_replay": [CREATED]})  # fmt: skip
    report["collections"].sort(key=lambda r: str(r["ns"]))
    report["documents"] = sum(r.get("count") or 0 for r in report["collections"])
    report["equal"] = all(r["equal"] for r in report["collections"])
    last = moment.get("last")
    until = moment.get("until") or {}
    said = (
        f"restored to {until.get('utc', '?')} (up to {_stamp(timestamp_of(until))} included)"
        f" from snapshot {manifest.snapshot_id}: {moment.get('followed_entries', 0)} entries"
        f" read from the followed oplog, {moment.get('applied', 0)} oplog entries applied"
        + (f", the last {_stamp(timestamp_of(last))} ({last['utc']})" if last else "")
        if until
        else ""
    )
    if "shards" in result:  # verify's note names the snapshot's point, which was not the end
        report["note"] = ""
    report["note"] = "; ".join(n for n in (said, report["note"]) if n)
    report["point_in_time"] = moment
    return report
