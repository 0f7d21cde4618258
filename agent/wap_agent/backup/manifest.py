"""A snapshot's manifest, and where a snapshot's objects live in its store.

The manifest is one JSON document beside the snapshot's data (`manifest.json`), written last: a
snapshot without its manifest is not a snapshot (an upload cut short leaves no manifest, and the
catalogue and restores look for manifests only). It says what the snapshot holds and how to check
a restore of it: the cluster and its topology, MongoDB's version and FCV, start and end, the oplog
window the snapshot is consistent over, each collection's count, size, content hash and indexes,
the files with their sizes and SHA-256, the format, compression and the engine's version.

The layout, under a store's prefix (agent/docs/backup-storage.md):

    <prefix>/<project_id>/<cluster_id>/snapshots/<snapshot_id>/<replica set>.archive[.gz|.zst]
    <prefix>/<project_id>/<cluster_id>/snapshots/<snapshot_id>/manifest.json
    <prefix>/<project_id>/<cluster_id>/oplog/<replica set>/<YYYYMMDD>/<start>.<end>.oplog[.gz|.zst]

Snapshot ids start with their UTC start time, so a listing is in time order, and continuous oplog
slices (the next issue) sit beside the snapshots of the same cluster, named by the timestamps they
cover.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, Callable

from wap_agent import __version__

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FORMATS = ("archive", "directory")
COMPRESSIONS = (None, "gzip", "zstd")
SUFFIX = {None: "", "gzip": ".gz", "zstd": ".zst"}
TOPOLOGIES = ("replicaset", "sharded")
# The content hash of wap_agent.backup.hashing: the sum mod 2**64 of each document's 64-bit
# BLAKE2b, so that a restore inserting in another order hashes the same.
HASH = "blake2b64-sum"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the field and what was expected."""


def utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def seconds(text: str) -> float:
    try:
        moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError):
        raise ManifestError(f"{text!r} is not a UTC time as YYYY-MM-DDTHH:MM:SS.ffffffZ") from None
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def snapshot_id(started: float, nonce: str | None = None) -> str:
    """`YYYYMMDDTHHMMSSZ-<6 hex>`: sorts by start time; the nonce keeps two of a second apart."""
    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    return stamp.strftime("%Y%m%dT%H%M%SZ") + "-" + (nonce or os.urandom(3).hex())


@dataclass(frozen=True)
class Layout:
    """Keys of one cluster's backups in a store (bucket and prefix)."""

    prefix: str
    project_id: str
    cluster_id: str

    @property
    def root(self) -> str:
        parts = [p.strip("/") for p in (self.prefix, self.project_id, self.cluster_id)]
        return "/".join(p for p in parts if p)

    def snapshot(self, snapshot_id: str) -> str:
        return f"{self.root}/snapshots/{snapshot_id}"

    def manifest(self, snapshot_id: str) -> str:
        return f"{self.snapshot(snapshot_id)}/{MANIFEST}"

    def archive(self, snapshot_id: str, replica_set: str, compression: str | None) -> str:
        return f"{self.snapshot(snapshot_id)}/{replica_set}.archive{SUFFIX[compression]}"

    def oplog_slice(
        self,
        replica_set: str,
        start: tuple[int, int],
        end: tuple[int, int],
        compression: str | None,
    ) -> str:
        """A continuous oplog slice from `start` to `end` (BSON timestamps: seconds, increment)."""

        def stamp(ts: tuple[int, int]) -> str:
            moment = datetime.datetime.fromtimestamp(ts[0], datetime.timezone.utc)
            return f"{moment:%Y%m%d%H%M%S}-{ts[1]}"

        day = datetime.datetime.fromtimestamp(start[0], datetime.timezone.utc)
        return (
            f"{self.root}/oplog/{replica_set}/{day:%Y%m%d}/"
            f"{stamp(start)}.{stamp(end)}.oplog{SUFFIX[compression]}"
        )


def _plain(value: Any) -> Any:
    """JSON for what a dump's summary holds: BSON timestamps as {t, i}, times as UTC text, the
    rest of BSON's types as relaxed Extended JSON."""
    if hasattr(value, "time") and hasattr(value, "inc"):
        return {"t": int(value.time), "i": int(value.inc)}
    if isinstance(value, datetime.datetime):
        return utc(value.replace(tzinfo=value.tzinfo or datetime.timezone.utc).timestamp())
    from bson import json_util

    return json.loads(json_util.dumps(value))


def _timestamp(value: Any, where: str) -> dict[str, int] | None:
    if value is None:
        return None
    plain = _plain(value) if not isinstance(value, Mapping) else dict(value)
    if (
        not isinstance(plain, dict)
        or not isinstance(plain.get("t"), int)
        or not isinstance(plain.get("i"), int)
    ):
        raise ManifestError(f"{where}: a BSON timestamp as {{t, i}} (seconds, increment)")
    return {"t": plain["t"], "i": plain["i"]}


@dataclass
class Collection:
    db: str
    name: str
    count: int
    size: int
    hash: str  # "<algorithm>:<hex>": HASH, over the documents' raw BSON, in any order
    crc64: str = ""  # the archive's CRC-64 of the namespace (hex), in the order dumped
    indexes: list[dict[str, Any]] = field(default_factory=list)
    type: str = "collection"
    options: dict[str, Any] = field(default_factory=dict)
    replica_set: str = ""  # a sharded snapshot's: the set (shard or config) it was dumped from

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.name}"


@dataclass
class StoredFile:
    key: str
    size: int
    sha256: str
    replica_set: str = ""


@dataclass
class Manifest:
    snapshot_id: str
    project_id: str
    cluster_id: str
    cluster_name: str
    topology: str
    mongodb_version: str
    fcv: str
    started_at: float
    finished_at: float
    oplog_start: dict[str, int] | None
    oplog_end: dict[str, int] | None
    collections: list[Collection]
    files: list[StoredFile]
    format: str = "archive"
    compression: str | None = "gzip"
    engine: str = "wap-agent"
    engine_version: str = __version__
    replica_sets: list[str] = field(default_factory=list)
    # A sharded snapshot's sets: {name (the shard's id, or "config"), replica_set, role ("shard"
    # or "config"), key, member, oplog {start, end}, documents}. Every set's oplog ends at the
    # snapshot's oplog end, the cluster time all of them reached.
    sets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def documents(self) -> int:
        return sum(c.count for c in self.collections)

    @property
    def data_size(self) -> int:
        return sum(c.size for c in self.collections)

    @property
    def stored_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["started_at"], body["finished_at"] = utc(self.started_at), utc(self.finished_at)
        body["oplog"] = {"start": body.pop("oplog_start"), "end": body.pop("oplog_end")}
        body["cluster"] = {"id": body.pop("cluster_id"), "name": body.pop("cluster_name")}
        body["engine"] = {"name": body.pop("engine"), "version": body.pop("engine_version")}
        body["totals"] = {
            "documents": self.documents,
            "data_size": self.data_size,
            "stored_size": self.stored_size,
        }
        return {"kind": "wap-snapshot", "format_version": FORMAT_VERSION, **body}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1).encode() + b"\n"  # an index key keeps its order


def _need(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ManifestError(f"manifest field {name!r}: expected {what}, found {value!r}")
    return value


def parse(data: bytes | str) -> Manifest:
    """A manifest from its JSON; ManifestError names the first field that is wrong."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"the manifest is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("kind") != "wap-snapshot":
        raise ManifestError("not a WAP snapshot manifest (kind 'wap-snapshot')")
    if body.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"manifest format {body.get('format_version')!r}: this engine reads {FORMAT_VERSION}"
        )
    cluster = _need(body, "cluster", dict, "{id, name}")
    oplog = _need(body, "oplog", dict, "{start, end}")
    engine = _need(body, "engine", dict, "{name, version}")
    if body.get("topology") not in TOPOLOGIES:
        raise ManifestError(f"manifest field 'topology': one of {', '.join(TOPOLOGIES)}")
    if body.get("format") not in FORMATS:
        raise ManifestError(f"manifest field 'format': one of {', '.join(FORMATS)}")
    if body.get("compression") not in COMPRESSIONS:
        raise ManifestError("manifest field 'compression': gzip, zstd or null")
    collections = []
    for n, item in enumerate(_need(body, "collections", list, "a list")):
        where = f"collections[{n}]"
        if not isinstance(item, dict):
            raise ManifestError(f"manifest field {where!r}: expected an object")
        try:
            collections.append(Collection(**item))
        except TypeError as exc:
            raise ManifestError(f"manifest field {where!r}: {exc}") from None
        for name in ("count", "size"):
            if not isinstance(item.get(name), int) or item[name] < 0:
                raise ManifestError(f"manifest field '{where}.{name}': a count of 0 or more")
    files = []
    for n, item in enumerate(_need(body, "files", list, "a list")):
        try:
            files.append(StoredFile(**item))
        except TypeError as exc:
            raise ManifestError(f"manifest field 'files[{n}]': {exc}") from None
    return Manifest(
        snapshot_id=_need(body, "snapshot_id", str, "the snapshot's id"),
        project_id=_need(body, "project_id", str, "the project's id"),
        cluster_id=_need(cluster, "id", str, "the cluster's id"),
        cluster_name=_need(cluster, "name", str, "the cluster's name"),
        topology=body["topology"],
        mongodb_version=_need(body, "mongodb_version", str, "a version such as 7.0.14"),
        fcv=_need(body, "fcv", str, "a feature compatibility version such as 7.0"),
        started_at=seconds(body.get("started_at")),
        finished_at=seconds(body.get("finished_at")),
        oplog_start=_timestamp(oplog.get("start"), "oplog.start"),
        oplog_end=_timestamp(oplog.get("end"), "oplog.end"),
        collections=collections,
        files=files,
        format=body["format"],
        compression=body["compression"],
        engine=_need(engine, "name", str, "the engine's name"),
        engine_version=_need(engine, "version", str, "the engine's version"),
        replica_sets=list(body.get("replica_sets") or []),
        sets=_sets(body.get("sets")),
    )


def _sets(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError("manifest field 'sets': a list of replica sets")
    for n, item in enumerate(value):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item.get(k) for k in ("name", "role", "key")
        ):
            raise ManifestError(f"manifest field 'sets[{n}]': an object with name, role and key")
        if item["role"] not in ("shard", "config"):
            raise ManifestError(f"manifest field 'sets[{n}].role': shard or config")
    return [dict(item) for item in value]


def collections_from(summary: Mapping[str, Any]) -> list[Collection]:
    """The collections and views of the engine's dump summary (`wap_agent.backup.dump`): entries
    with db, collection, type, count, bytes, hash (the order-independent content hash of
    `hashing.py`), crc64 (the archive's EOF check), indexes and options; views apart."""
    out = []
    for entry in summary.get("collections") or []:
        out.append(
            Collection(
                db=str(entry["db"]),
                name=str(entry["collection"]),
                count=int(entry.get("count") or 0),
                size=int(entry.get("bytes") or 0),
                hash=f"{HASH}:{entry['hash']}" if entry.get("hash") else "",
                crc64=str(entry.get("crc64") or ""),
                indexes=_plain(list(entry.get("indexes") or [])),
                type=str(entry.get("type") or "collection"),
                options=_plain(dict(entry.get("options") or {})),
            )
        )
    for view in summary.get("views") or []:
        db, _, name = str(view["ns"]).partition(".")
        out.append(Collection(db, name, 0, 0, "", type="view", options=_plain(view["options"])))
    return sorted(out, key=lambda c: (c.db, c.name))


def _moment(value: Any, default: float) -> float:
    """Seconds since the epoch from a number or an ISO 8601 time (the engine's summary)."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return float(value)
    moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.replace(tzinfo=moment.tzinfo or datetime.timezone.utc).timestamp()


def _oplog_window(summary: Mapping[str, Any]) -> tuple[Any, Any]:
    window = summary.get("oplog") or {}
    if isinstance(window, Mapping):
        return window.get("start"), window.get("end")
    return summary.get("oplog_start"), summary.get("oplog_end")


def store_snapshot(
    s3: Any,
    bucket: str,
    layout: Layout,
    produce: Callable[[BinaryIO], Mapping[str, Any]],
    *,
    cluster_name: str,
    topology: str = "replicaset",
    replica_set: str = "rs",
    compression: str | None = "gzip",
    expected_size: int | None = None,
    started: float | None = None,
    snapshot: str | None = None,
    clock: Callable[[], float] | None = None,
) -> Manifest:
    """Stream one replica set's snapshot to the store and write its manifest last.

    `produce(out)` writes the archive to `out` and returns its summary (the engine's dump:
    `lambda out: dump(uri, out, options=...)`): collections, oplog window, server version, FCV.
    When `produce` or the upload fails, the upload is aborted and nothing is left; when the
    manifest cannot be written, the archive is deleted: no snapshot without its manifest.
    """
    import time

    from wap_agent.backup.s3 import S3TransferError, S3Upload

    clock = clock or time.time
    started = clock() if started is None else started
    snapshot = snapshot or snapshot_id(started)
    key = layout.archive(snapshot, replica_set, compression)
    with S3Upload(s3, bucket, key, expected_size=expected_size) as out:
        summary = produce(out)
    stored = out.result
    if summary.get("compression", compression) != compression:
        s3.delete_object(Bucket=bucket, Key=key)
        raise ManifestError(
            f"the dump wrote {summary.get('compression') or 'no'} compression, the store was told"
            f" {compression or 'none'}: give both the same"
        )
    start, end = _oplog_window(summary)
    manifest = Manifest(
        snapshot_id=snapshot,
        project_id=layout.project_id,
        cluster_id=layout.cluster_id,
        cluster_name=cluster_name,
        topology=topology,
        mongodb_version=str(summary.get("server_version") or summary.get("mongodb_version") or ""),
        fcv=str(summary.get("fcv") or ""),
        started_at=_moment(summary.get("started_at"), started),
        finished_at=_moment(summary.get("ended_at") or summary.get("finished_at"), clock()),
        oplog_start=_timestamp(start, "oplog.start"),
        oplog_end=_timestamp(end, "oplog.end"),
        collections=collections_from(summary),
        files=[StoredFile(key, stored["size"], stored["sha256"], replica_set)],
        format="archive",
        compression=compression,
        replica_sets=[replica_set],
    )
    try:
        with S3Upload(s3, bucket, layout.manifest(snapshot), content_type="application/json") as m:
            m.write(manifest.to_json())
    except S3TransferError:
        s3.delete_object(Bucket=bucket, Key=key)
        raise
    return manifest


def read(s3: Any, bucket: str, key: str) -> Manifest:
    """The manifest stored at `key`; S3TransferError when it cannot be read, ManifestError when it
    is not one."""
    from wap_agent.backup.s3 import S3Download

    with S3Download(s3, bucket, key) as source:
        return parse(source.read())


# The arguments the platform's `backup` command carries (webui.services.backups): where to write,
# never a secret; the agent writes with its host's own AWS credentials (boto3's chain). `router`:
# a sharded cluster's mongos (host:port), reached with the agent's own credentials.
COMMAND_ARGS = ("snapshot_id", "bucket", "prefix", "region", "endpoint_url", "project_id",
                "cluster_id", "cluster_name", "compression", "member", "oplog",
                "users_and_roles", "router")  # fmt: skip


def back_up(
    uri: str,
    args: Mapping[str, Any],
    *,
    s3: Any = None,
    progress: Callable[[dict], None] | None = None,
    replica_set: str | None = None,
) -> dict[str, Any]:
    """Run the platform's `backup` command: dump `uri` with the engine and store the snapshot
    where `args` say (archive streamed, manifest last). The command's result: the snapshot's id,
    its manifest's key, size, SHA-256 and document count. `s3`: a client (else one from the
    arguments' endpoint and region with boto3's credential chain)."""
    from wap_agent.backup import s3 as s3mod
    from wap_agent.backup.dump import DumpOptions, client_for, dump

    missing = [k for k in ("snapshot_id", "bucket", "project_id", "cluster_id") if not args.get(k)]
    if missing:
        raise ValueError(f"the backup command lacks {', '.join(missing)}")
    compression = args.get("compression") or None
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: gzip, zstd or none")
    client = s3 or s3mod.client(args.get("endpoint_url") or None, args.get("region") or None)
    if replica_set is None:  # the archive is named by its set (a sharded cluster has several)
        with client_for(uri) as mongo:
            hello = mongo.admin.command("hello")
        if hello.get("msg") == "isdbgrid":
            from wap_agent.backup.sharded import back_up_cluster

            return back_up_cluster(uri, args, s3=client, progress=progress)
        replica_set = str(hello.get("setName") or "standalone")
    layout = Layout(str(args.get("prefix") or ""), str(args["project_id"]), str(args["cluster_id"]))
    options = DumpOptions(
        compression=compression,
        oplog=bool(args.get("oplog", True)),
        member=args.get("member") or None,
        users_and_roles=bool(args.get("users_and_roles", False)),
        progress=progress,
    )
    made = store_snapshot(
        client, str(args["bucket"]), layout, lambda out: dump(uri, out, options=options),
        cluster_name=str(args.get("cluster_name") or ""), replica_set=replica_set,
        compression=compression, snapshot=str(args["snapshot_id"]),
    )  # fmt: skip
    return {
        "snapshot_id": made.snapshot_id,
        "manifest_key": layout.manifest(made.snapshot_id),
        "size": made.stored_size,
        "sha256": made.files[0].sha256,
        "documents": made.documents,
    }
