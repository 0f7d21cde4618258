"""A restore checked against its snapshot's manifest: the verification report.

The restore reports per restored collection what it copied from the archive (count and content
hash) and what the target then holds (count, content hash and indexes, read back from the
server); :func:`verification` compares both with the manifest. The platform stores the report
with the restore (webui.services.backups); ``wap-agent restore --from`` prints it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from wap_agent.backup.manifest import Manifest


def _index_set(indexes: list[dict[str, Any]]) -> list[str]:
    """Indexes as comparable text: name and key in its order (a number of a key as a float: 1
    and 1.0 are one direction)."""

    def key(value: Any) -> list[list[Any]]:
        pairs = value.items() if isinstance(value, dict) else value
        return [[k, float(v) if isinstance(v, (int, float)) else v] for k, v in pairs]

    return sorted(json.dumps([i["name"], key(i["key"])]) for i in indexes)


def found(
    client: Any, namespaces: list[str], timeseries: frozenset[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    """What the server holds per namespace: count, content hash (a time series': of its buckets,
    as the dump reads it), indexes (name and key)."""
    from wap_agent.backup.hashing import collection_hash

    held = {}
    for ns in namespaces:
        db, _, name = ns.partition(".")
        collection = client[db][name]
        data = client[db][f"system.buckets.{name}"] if ns in timeseries else collection
        held[ns] = {
            **collection_hash(data),
            "indexes": sorted(
                (
                    {"name": i["name"], "key": [list(k) for k in i["key"].items()]}
                    for i in collection.list_indexes()
                ),
                key=lambda i: i["name"],
            ),
        }
    return held


def verification(
    manifest: Manifest, result: dict[str, Any], selected: bool = False
) -> dict[str, Any]:
    """The agent's report of a restore against the snapshot's manifest, per collection: what was
    copied from the archive (count and content hash) and what the target holds once restored
    (count, content hash, index set, read back from the server); `equal` when all agree.

    Entries of the snapshot's oplog replayed after the copy change what the target holds (the
    writes made while the dump ran): a collection the replay changed is equal when its copy
    equals the manifest, and the report says the replay changed it. Without a selection
    (`selected`), a collection of the manifest missing from the restore is a difference.

    A sharded snapshot's restore (`result["shards"]`) is verified shard by shard against the
    collections the manifest lists for that shard; its rows name the shard."""
    if manifest.topology == "sharded" and "shards" in result:
        return _sharded(manifest, result)
    expected = {c.ns: c for c in manifest.collections}
    replayed = int((result.get("oplog") or {}).get("applied") or 0)
    rows = []
    for found in result.get("collections") or []:
        wanted = expected.get(found.get("source", ""))
        row: dict[str, Any] = {"ns": found.get("ns"), "source": found.get("source")}
        if wanted is None:
            row.update(equal=False, differences=["not in the snapshot's manifest"])
            rows.append(row)
            continue
        digest = wanted.hash.rsplit(":", 1)[-1]
        copied = found.get("copied") or {}
        differences = []
        if copied and (copied.get("count"), copied.get("hash")) != (wanted.count, digest):
            differences.append(
                f"the copy: {copied.get('count')} documents, the manifest says {wanted.count}"
                + ("" if copied.get("hash") == digest else ", content hash differs")
            )
        held = []
        if wanted.count != found.get("count"):
            held.append(f"count {found.get('count')}, the manifest says {wanted.count}")
        if digest != found.get("hash"):
            held.append("content hash differs")
        if _index_set(wanted.indexes) != _index_set(found.get("indexes") or []):
            held.append("index set differs")
        changed = bool(held) and replayed > 0 and bool(copied)
        if not changed:
            differences.extend(held)
        row.update(count=found.get("count"), expected_count=wanted.count,
                   hash=found.get("hash"), indexes=len(found.get("indexes") or []),
                   equal=not differences, differences=differences,
                   changed_by_replay=held if changed else [])  # fmt: skip
        rows.append(row)
    if not selected:
        restored = {r["source"] for r in rows}
        for wanted in manifest.collections:
            if wanted.type == "view" or wanted.db in ("admin", "config", "local"):
                continue
            if wanted.ns not in restored:
                rows.append({"ns": wanted.ns, "source": wanted.ns, "equal": False,
                             "expected_count": wanted.count,
                             "differences": ["in the snapshot, not restored"]})  # fmt: skip
    changed = sum(1 for r in rows if r.get("changed_by_replay"))
    note = (
        f"{replayed} oplog entries were replayed after the copy"
        + (f", changing {changed} collection(s) since the dump read them" if changed else "")
        if replayed
        else ""
    )
    if selected and not rows:
        note = "the namespaces selected match no collection of the snapshot"
    return {
        # a whole restore of a snapshot without collections is equal; an empty selection is not
        "equal": all(r["equal"] for r in rows) and (bool(rows) or not selected),
        "collections": sorted(rows, key=lambda r: str(r["ns"])),
        "documents": sum(r.get("count") or 0 for r in rows),
        "oplog_applied": replayed,
        "note": note,
    }


def _sharded(manifest: Manifest, result: dict[str, Any]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    replayed = 0
    for shard in result.get("shards") or []:
        own = [c for c in manifest.collections if c.replica_set == shard.get("shard")]
        single = dataclasses.replace(manifest, topology="replicaset", collections=own)
        report = verification(single, shard)
        replayed += report["oplog_applied"]
        rows += [{**r, "shard": shard.get("shard"), "target_shard": shard.get("target")}
                 for r in report["collections"]]  # fmt: skip
    restored = {s.get("shard") for s in result.get("shards") or []}
    for wanted in manifest.sets:
        if wanted["role"] == "shard" and wanted["name"] not in restored:
            rows.append({"ns": "*", "source": "*", "shard": wanted["name"], "equal": False,
                         "differences": ["a shard of the snapshot, not restored"]})  # fmt: skip
    return {
        "equal": all(r["equal"] for r in rows),
        "collections": sorted(rows, key=lambda r: (str(r["ns"]), str(r.get("shard")))),
        "documents": sum(r.get("count") or 0 for r in rows),
        "oplog_applied": replayed,
        "note": f"{len(restored)} shards, each replayed to the snapshot's common point"
        + (f" ({replayed} oplog entries)" if replayed else ""),
    }
