"""A sharded cluster's snapshot, and its restore into a new sharded cluster with as many shards.

Backup (:func:`back_up_cluster`), given a mongos:

1. The shards come from ``listShards``, the config servers from ``getShardMap``; each replica
   set is reached with the router URI's credentials and TLS options.
2. The balancer is stopped (``balancerStop``) and waited for until no round, and so no chunk
   migration, runs; whatever happens next it is set back to the mode it had (``balancerStart``
   when it was on), so that no chunk moves between two sets' dumps.
3. Every set is dumped at once (each from a secondary by default; the config servers with the
   sharding catalogue). Once all have copied their data, each notes its newest oplog entry and
   the largest of these is the snapshot's common point, as Percona Backup for MongoDB takes its
   cluster time. A set whose member has not reached it gets no-op entries (``appendOplogNote``)
   on its primary until it has; each set then copies its oplog up to that point. Restoring every
   set and replaying its oplog to the point gives the cluster as it was at that one time.
4. Each archive streams to the store at once; the manifest, written last, names each set's
   archive, member, oplog window and collections (counts, content hashes, CRCs). A failure
   anywhere aborts the uploads still open and deletes the archives already stored.

Restore (:func:`restore_cluster`), given a mongos of the target cluster:

1. The target must have as many shards as the snapshot and no database of its own; the
   snapshot's shards map to the target's in the order of their names.
2. The target's balancer is stopped for the restore and set back afterwards.
3. Each shard's archive is restored straight into its target shard's replica set with the
   collections' UUIDs kept (a sharded collection's UUID is the same on every shard and in the
   catalogue), its oplog replayed to the common point.
4. The config servers' catalogue (``config.databases``, ``collections``, ``chunks``, ``tags``)
   goes into the target's config servers with shard names mapped, the target's own
   ``config.system.sessions`` routing kept; the config servers' oplog is replayed to the same
   point (catalogue entries only, names mapped). Each shard's zones (its ``config.shards``
   tags, which the manifest keeps per set) are given to the target shard it maps to with
   ``addShardToZone``, so that the zone ranges (``config.tags``) name zones the new shards
   have. Users and roles when asked.
5. The routers are told to reload the catalogue (``flushRouterConfig``) and each shard is
   verified against the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import bson
import pymongo
from bson.binary import UUID_SUBTYPE, Binary
from bson.timestamp import Timestamp

from wap_agent.backup.archive import ArchiveReader
from wap_agent.backup.dump import SHARDING_CATALOGUE, DumpError, DumpOptions, client_for, dump
from wap_agent.backup.manifest import (
    COMPRESSIONS,
    Layout,
    Manifest,
    StoredFile,
    _moment,
    collections_from,
    snapshot_id,
)
from wap_agent.backup.metadata import CollectionMetadata, MetadataError
from wap_agent.backup.restore import AUTH, RestoreError, RestoreOptions, Restorer, _Target
from wap_agent.backup.s3 import Checked, S3Download, S3Upload
from wap_agent.backup.verify import found

CONFIG = "config"
SESSIONS = "config.system.sessions"
BALANCER_WAIT = 300.0  # seconds for a balancer round in progress to end
POINT_WAIT = 60.0  # seconds for a set's member to reach the common point
Progress = Callable[[dict], None]


@dataclasses.dataclass(frozen=True)
class ReplicaSet:
    name: str  # the shard's id in config.shards, or "config"
    replica_set: str
    role: str  # "shard" or "config"
    uri: str
    zones: tuple[str, ...] = ()  # a shard's zones (its config.shards tags)


def set_uri(router_uri: str, connection: str) -> str:
    """A URI for the replica set of ``connection`` (``"<set>/host:port,..."``, as listShards
    and getShardMap give it) with the router URI's credentials, database and options."""
    name, sep, seeds = connection.partition("/")
    if not sep or not seeds:
        raise ValueError(f"{connection!r} is not a replica set's connection string (set/hosts)")
    return with_hosts(router_uri, seeds, name)


def with_hosts(uri: str, seeds: str, replica_set: str = "") -> str:
    """``uri`` with its hosts replaced by ``seeds`` (host:port,...), its credentials, database
    and options kept; ``replicaSet`` set to ``replica_set`` or left out (a mongos)."""
    scheme, _, rest = uri.partition("://")
    if scheme != "mongodb":
        raise ValueError("give the mongos as a mongodb:// URI (not mongodb+srv://)")
    authority, _, tail = rest.partition("/")
    userinfo = authority.rpartition("@")[0]
    path, _, query = tail.partition("?")
    dropped = ("replicaset", "directconnection", "loadbalanced")
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0].lower() not in dropped]
    if replica_set:
        kept.append(f"replicaSet={quote(replica_set)}")
    credentials = f"{userinfo}@" if userinfo else ""
    query = f"?{'&'.join(kept)}" if kept else ""
    return f"mongodb://{credentials}{seeds}/{path}{query}"


def discover(router: pymongo.MongoClient, router_uri: str) -> list[ReplicaSet]:
    """The cluster's shards (by name) and its config server set, last."""
    if router.admin.command("hello").get("msg") != "isdbgrid":
        raise ValueError("the URI names no mongos: a sharded cluster is reached through a router")
    sets = []
    for shard in sorted(router.admin.command("listShards")["shards"], key=lambda s: s["_id"]):
        host = str(shard["host"])
        sets.append(
            ReplicaSet(
                str(shard["_id"]), host.partition("/")[0], "shard", set_uri(router_uri, host),
                tuple(str(zone) for zone in shard.get("tags") or ()),
            )
        )  # fmt: skip
    config = str(router.admin.command("getShardMap")["map"][CONFIG])
    sets.append(ReplicaSet(CONFIG, config.partition("/")[0], CONFIG, set_uri(router_uri, config)))
    return sets


class BalancerPaused:
    """The balancer stopped and no round running inside the block; its former mode back after
    it, whatever happened. ``error``: the exception class a balancer that will not stop raises."""

    def __init__(
        self,
        router: pymongo.MongoClient,
        error: type[Exception] = RuntimeError,
        timeout: float = BALANCER_WAIT,
    ) -> None:
        self.router, self.error, self.timeout = router, error, timeout
        self.mode = "off"

    def status(self) -> dict:
        return self.router.admin.command("balancerStatus")

    def __enter__(self) -> BalancerPaused:
        self.mode = str(self.status().get("mode", "full"))
        if self.mode == "off":
            return self
        self.router.admin.command("balancerStop")
        try:
            deadline = time.monotonic() + self.timeout
            while self.status().get("inBalancerRound"):
                if time.monotonic() > deadline:
                    raise self.error(
                        f"the balancer was still migrating after {self.timeout:.0f} s: try again"
                        " when it is quieter"
                    )
                time.sleep(0.2)
        except BaseException:
            self.resume()
            raise
        return self

    def resume(self) -> None:
        """balancerStart when the balancer was on; a few tries, then an error saying what to do
        (the backup's outcome is not trusted while the balancer may stay off)."""
        if self.mode == "off":
            return
        for attempt in range(3):
            try:
                self.router.admin.command("balancerStart")
                return
            except pymongo.errors.PyMongoError as exc:
                if attempt == 2:
                    raise self.error(
                        f"the balancer could not be started again ({exc}): start it with"
                        " sh.startBalancer() on a mongos"
                    ) from exc
                time.sleep(1)

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        self.resume()


class CommonPoint:
    """The sets' dumps meet once their data is copied: the point is the newest of their newest
    oplog entries; each set's member is brought to it (``DumpOptions.oplog_end``)."""

    def __init__(self, sets: int, wait: float = POINT_WAIT) -> None:
        self.barrier = threading.Barrier(sets)
        self.ends: list[Timestamp] = []
        self.lock = threading.Lock()
        self.wait = wait

    def abort(self) -> None:
        self.barrier.abort()

    @property
    def point(self) -> Timestamp:
        return max(self.ends)

    def __call__(self, dumper: Any, end: Timestamp) -> Timestamp:
        with self.lock:
            self.ends.append(end)
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            raise DumpError("stopped: another replica set failed") from None
        point = self.point
        if end < point:
            self.reach(dumper, point)
        return point

    def reach(self, dumper: Any, point: Timestamp) -> None:
        """No-op entries on the set's primary until the member read has one at ``point`` or
        later (the member's oplog then holds every entry up to the point)."""
        deadline = time.monotonic() + self.wait
        with client_for(dumper.uri) as primary:
            while True:
                newest = primary.local["oplog.rs"].find_one({}, {"ts": 1}, sort=[("$natural", -1)])
                if newest is None or newest["ts"] < point:
                    primary.admin.command(
                        "appendOplogNote", data={"msg": "wap-agent: a sharded snapshot's point"}
                    )
                if dumper.oplog_ends()[1] >= point:
                    return
                if time.monotonic() > deadline:
                    raise DumpError(
                        f"{dumper.member} did not reach the snapshot's common point "
                        f"{point.time}:{point.inc} within {self.wait:.0f} s (replication lag?)"
                    )
                time.sleep(0.05)


def _ts(value: Mapping[str, int] | None) -> Timestamp | None:
    return None if not value else Timestamp(int(value["t"]), int(value["i"]))


def back_up_cluster(
    uri: str,
    args: Mapping[str, Any],
    *,
    s3: Any,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The platform's ``backup`` command for a sharded cluster whose mongos ``uri`` names (the
    module's note); the same arguments and result as :func:`wap_agent.backup.manifest.back_up`,
    the result with each set's archive. ``member`` is ignored: each set is read on a secondary."""
    compression = args.get("compression") or None
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: gzip, zstd or none")
    bucket = str(args["bucket"])
    layout = Layout(str(args.get("prefix") or ""), str(args["project_id"]), str(args["cluster_id"]))
    started = clock()
    snapshot = str(args.get("snapshot_id") or snapshot_id(started))
    done: dict[str, tuple[str, dict, dict]] = {}
    with client_for(uri) as router:
        sets = discover(router, uri)
        with _deleting(s3, bucket, done), BalancerPaused(router, DumpError):
            if progress:
                progress(
                    {
                        "event": "step",
                        "message": f"backup: balancer stopped, dumping {len(sets)} replica sets",
                    }
                )
            done.update(_dump_all(sets, s3, bucket, layout, snapshot, compression, args, progress))
    point = max(_ts(summary["oplog"]["end"]) for _, summary, _ in done.values())
    starts = [_ts(summary["oplog"]["start"]) for _, summary, _ in done.values()]
    config = done[CONFIG][1]
    collections = []
    for rs in sets:
        for collection in collections_from(done[rs.name][1]):
            collections.append(dataclasses.replace(collection, replica_set=rs.name))
    manifest = Manifest(
        snapshot_id=snapshot,
        project_id=layout.project_id,
        cluster_id=layout.cluster_id,
        cluster_name=str(args.get("cluster_name") or ""),
        topology="sharded",
        mongodb_version=str(config.get("server_version") or ""),
        fcv=str(config.get("fcv") or ""),
        started_at=min(_moment(s.get("started_at"), started) for _, s, _ in done.values()),
        finished_at=clock(),
        oplog_start={"t": max(starts).time, "i": max(starts).inc},
        oplog_end={"t": point.time, "i": point.inc},
        collections=collections,
        files=[
            StoredFile(
                done[rs.name][0], done[rs.name][2]["size"], done[rs.name][2]["sha256"], rs.name
            )
            for rs in sets
        ],
        format="archive",
        compression=compression,
        replica_sets=[rs.name for rs in sets],
        sets=[
            {
                "name": rs.name,
                "replica_set": rs.replica_set,
                "role": rs.role,
                "key": done[rs.name][0],
                "member": done[rs.name][1]["member"],
                "oplog": done[rs.name][1]["oplog"],
                "documents": sum(c["count"] for c in done[rs.name][1]["collections"]),
                "zones": list(rs.zones),
            }
            for rs in sets
        ],
    )
    try:
        with S3Upload(s3, bucket, layout.manifest(snapshot), content_type="application/json") as m:
            m.write(manifest.to_json())
    except BaseException:
        _delete(s3, bucket, [key for key, _, _ in done.values()])
        raise
    return {
        "snapshot_id": snapshot,
        "manifest_key": layout.manifest(snapshot),
        "size": manifest.stored_size,
        "sha256": "",  # one per set: the manifest's files
        "documents": manifest.documents,
        "topology": "sharded",
        "sets": [
            {"name": s["name"], "role": s["role"], "key": s["key"], "documents": s["documents"]}
            for s in manifest.sets
        ],
    }


def _dump_all(
    sets: list[ReplicaSet],
    s3: Any,
    bucket: str,
    layout: Layout,
    snapshot: str,
    compression: str | None,
    args: Mapping[str, Any],
    progress: Progress | None,
) -> dict[str, tuple[str, dict, dict]]:
    """Each set's (archive key, dump summary, stored size and SHA-256), dumped at once."""
    meeting = CommonPoint(len(sets))
    stop = threading.Event()  # one set failing stops the others' copies at their next document
    stored: list[str] = []
    lock = threading.Lock()

    def one(rs: ReplicaSet) -> tuple[str, dict, dict]:
        key = layout.archive(snapshot, rs.name, compression)
        options = DumpOptions(
            compression=compression,
            oplog=True,
            users_and_roles=bool(args.get("users_and_roles")) and rs.role == CONFIG,
            sharding_catalogue=rs.role == CONFIG,
            oplog_end=meeting,
            progress=progress,
            stop=stop,
        )
        try:
            with S3Upload(s3, bucket, key) as out:
                summary = dump(rs.uri, out, options=options)
        except BaseException:
            stop.set()
            meeting.abort()
            raise
        with lock:
            stored.append(key)
        return key, summary, out.result

    with ThreadPoolExecutor(max_workers=len(sets)) as pool:
        futures = {rs.name: pool.submit(one, rs) for rs in sets}
        errors = []
        for name, future in futures.items():
            try:
                future.result()
            except BaseException as exc:
                errors.append((name, exc))
    if errors:
        _delete(s3, bucket, stored)
        # The set that failed first, not the others it stopped.
        name, first = next(((n, e) for n, e in errors if "stopped:" not in str(e)), errors[0])
        if isinstance(first, (DumpError, pymongo.errors.PyMongoError)):
            raise DumpError(f"replica set {name}: {first}") from first
        raise first
    return {name: future.result() for name, future in futures.items()}


@contextlib.contextmanager
def _deleting(s3: Any, bucket: str, done: dict[str, tuple[str, dict, dict]]) -> Iterator[None]:
    """The archives stored (``done``) deleted when the block fails: the balancer that cannot be
    started again fails the backup after every set was stored."""
    try:
        yield
    except BaseException:
        _delete(s3, bucket, [key for key, _, _ in done.values()])
        raise


def _delete(s3: Any, bucket: str, keys: list[str]) -> None:
    for key in keys:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except Exception:  # the first failure is the one reported
            continue


# -- restore -----------------------------------------------------------------------------------


def map_shards(value: Any, shards: Mapping[str, str]) -> Any:
    """``value`` with every ``shard`` and ``primary`` naming a snapshot's shard renamed to the
    target's (documents of config.databases and config.chunks, their updates' $set and diffs)."""
    if isinstance(value, dict):
        return {
            k: shards.get(v, v)
            if k in ("shard", "primary") and isinstance(v, str)
            else map_shards(v, shards)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [map_shards(v, shards) for v in value]
    return value


def check_new(client: pymongo.MongoClient) -> None:
    """Refuse a target cluster that holds databases of its own (its catalogue, read through a
    router or on its config servers)."""
    held = sorted(
        d["_id"]
        for d in client[CONFIG].databases.find({"_id": {"$nin": [CONFIG, "admin"]}}, {"_id": 1})
    )
    if held:
        raise RestoreError(
            f"the target cluster already holds databases ({', '.join(held)}): restore a sharded"
            " snapshot into a new cluster"
        )


def empty(router: pymongo.MongoClient, shards: list[ReplicaSet], config_uri: str) -> list[str]:
    """Drop what the target cluster holds, as a restore left it, failed midway or not: every
    database but admin and config through the router, then on each shard (a shard's data is
    restored before the catalogue names it), then the catalogue's entries left without one
    (databases, collections but config.system.sessions, their chunks, every zone range); the
    shards' zones stay (a restore gives them again, once). Returns the databases dropped."""
    system = [CONFIG, "admin"]
    dropped = {d["_id"] for d in router[CONFIG].databases.find({"_id": {"$nin": system}})}
    for name in sorted(dropped):
        router.drop_database(name)
    for shard in shards:
        with client_for(shard.uri) as client:
            for name in client.list_database_names():
                if name not in (*system, "local"):
                    client.drop_database(name)
                    dropped.add(name)
    with client_for(config_uri) as client:
        catalogue = client[CONFIG]
        catalogue.collections.delete_many({"_id": {"$ne": SESSIONS}})
        kept = [c["uuid"] for c in catalogue.collections.find({}, {"uuid": 1}) if "uuid" in c]
        catalogue.chunks.delete_many({"uuid": {"$nin": kept}})
        catalogue.databases.delete_many({"_id": {"$nin": system}})
        catalogue.tags.delete_many({})
    return sorted(dropped)


class CatalogueRestorer(Restorer):
    """The config servers' archive into the target's config servers: the sharding catalogue with
    shard names mapped, users and roles when asked, the oplog's catalogue entries replayed. The
    snapshot's ``config.system.sessions`` routing is left out (the target has its own)."""

    def __init__(
        self, uri: str, source: Any, options: RestoreOptions, shards: Mapping[str, str]
    ) -> None:
        super().__init__(uri, source, options)
        self.shards = dict(shards)
        self.sessions: set[bytes] = set()  # the snapshot's config.system.sessions UUIDs

    def plan(self, reader: ArchiveReader) -> None:
        for space in reader.namespaces:
            if space.is_oplog:
                continue
            if space.ns in AUTH and self.options.users_and_roles:
                self.auth[space.ns] = []
            elif space.db == CONFIG and space.collection in SHARDING_CATALOGUE:
                try:
                    meta = CollectionMetadata.from_json(space.metadata, space.collection, space.ns)
                except MetadataError as exc:
                    raise RestoreError(str(exc)) from None
                self.targets[space.ns] = _Target(space.ns, space.ns, meta)

    def check_targets(self) -> None:
        check_new(self.client)

    def create_collections(self) -> None:
        """The config servers' own collections, with their own indexes."""

    def build_indexes(self) -> None:
        """The config servers' own indexes stay."""

    def create_views(self) -> None:
        """The catalogue has no views."""

    def kept(self, coll: str, doc: dict) -> dict | None:
        """The document mapped to the target's shards, or None when it is left out."""
        if coll == "collections" and doc.get("_id") == SESSIONS:
            if doc.get("uuid") is not None:
                self.sessions.add(bytes(doc["uuid"]))
            return None
        if coll == "databases" and doc.get("_id") in (CONFIG, "admin"):
            return None
        if coll == "chunks" and doc.get("ns") == SESSIONS:
            return None
        return map_shards(doc, self.shards)

    def add_documents(self, target: _Target, docs: list[bytes]) -> None:
        mapped = [self.kept(target.collection, bson.decode(raw)) for raw in docs]
        super().add_documents(target, [bson.encode(d) for d in mapped if d is not None])

    def handle(self, entry: dict) -> None:
        kind, ns = entry.get("op"), str(entry.get("ns", ""))
        db, _, coll = ns.partition(".")
        if kind == "c":
            name = next(iter(entry.get("o") or {}), "")
            if name in ("applyOps", "commitTransaction", "abortTransaction"):
                self.handle_command(entry, db)  # the nested entries come back here
            return
        if kind not in ("i", "u", "d"):
            return
        if db == CONFIG and coll in SHARDING_CATALOGUE:
            doc = entry.get("o") or {}
            if kind == "i" and self.kept(coll, dict(doc)) is None:
                return
            self.queue(
                {
                    **entry,
                    "o": map_shards(doc, self.shards),
                    **({"o2": entry["o2"]} if "o2" in entry else {}),
                }
            )
        elif ns in AUTH and self.options.users_and_roles:
            self.queue(entry)

    def run(self) -> dict:
        summary = super().run()
        if self.sessions:  # the snapshot's sessions chunks, which had no ns field to skip them by
            uuids = [Binary(u, UUID_SUBTYPE) for u in self.sessions]
            self.client[CONFIG].chunks.delete_many({"uuid": {"$in": uuids}})
        return summary


def _zones(
    router: pymongo.MongoClient, manifest: Manifest, mapping: Mapping[str, str]
) -> dict[str, list[str]]:
    """Each snapshot shard's zones given to the target shard it maps to (addShardToZone), so
    that the zone ranges restored with the catalogue (config.tags) name zones the target's
    shards have. Returns the zones per target shard."""
    given: dict[str, list[str]] = {}
    for entry in manifest.sets:
        if entry.get("role") != "shard" or entry["name"] not in mapping:
            continue
        target = mapping[entry["name"]]
        for zone in entry.get("zones") or []:
            try:
                router.admin.command("addShardToZone", target, zone=zone)
            except pymongo.errors.OperationFailure as exc:
                raise RestoreError(
                    f"shard {entry['name']} -> {target}: its zone {zone!r} could not be given"
                    f" (addShardToZone): {exc.details.get('errmsg') if exc.details else exc}"
                ) from None
            given.setdefault(target, []).append(zone)
    return given


def _restore_set(uri: str, s3: Any, bucket: str, stored: StoredFile, restorer: Callable) -> dict:
    with S3Download(s3, bucket, stored.key) as source:
        checked = Checked(source)
        summary = restorer(uri, io.BufferedReader(checked, 1 << 20)).run()
    if checked.digest.hexdigest() != stored.sha256 or checked.size != stored.size:
        raise RestoreError(
            f"{stored.key} read {checked.size} bytes with SHA-256 {checked.digest.hexdigest()}"
            f", the manifest says {stored.size} bytes, {stored.sha256}: the archive is not the"
            " one its manifest describes; the restored data cannot be trusted"
        )
    return summary


def restore_cluster(
    uri: str,
    manifest: Manifest,
    s3: Any,
    bucket: str,
    *,
    restore_id: str = "",
    users_and_roles: bool = False,
    progress: Progress | None = None,
    oplog: Callable[[str], dict[str, Any]] | None = None,
    replace: bool = False,
) -> dict[str, Any]:
    """Restore the sharded snapshot ``manifest`` describes into the cluster whose mongos ``uri``
    names (the module's note). The result: per shard, per collection, what was copied and what
    the target shard holds (:func:`wap_agent.backup.verify.verification` compares them with the
    manifest). ``oplog(set name)``: the replay's options for that set instead of the snapshot's
    point (a point-in-time restore's limit and followed oplog: wap_agent.backup.pitr).
    ``replace``: what the target holds is dropped first (:func:`empty`), the way out of a
    restore that failed midway, which leaves the target no longer new."""
    replay = oplog or (lambda name: {})
    say = progress or (lambda event: None)
    clock = time.monotonic()
    point = _ts(manifest.oplog_end)
    if manifest.topology != "sharded" or point is None or not manifest.sets:
        raise RestoreError("not a sharded snapshot: restore it into a replica set")
    limit = Timestamp(point.time, point.inc + 1)  # the limit is exclusive; the point is kept
    files = {f.replica_set: f for f in manifest.files}
    snapshot_shards = sorted(s["name"] for s in manifest.sets if s["role"] == "shard")
    with client_for(uri) as router:
        try:
            targets = discover(router, uri)
        except ValueError as exc:
            raise RestoreError(f"{exc}: the target must be a sharded cluster") from None
        shards = [t for t in targets if t.role == "shard"]
        if len(shards) != len(snapshot_shards):
            raise RestoreError(
                f"the snapshot has {len(snapshot_shards)} shards, the target cluster "
                f"{len(shards)}: restore into a cluster with as many shards"
            )
        mapping = dict(zip(snapshot_shards, [t.name for t in shards], strict=True))
        by_name = {t.name: t for t in targets}
        config_uri = by_name[CONFIG].uri
        if replace:
            dropped = empty(router, shards, config_uri)
            say({"event": "step", "message": f"restore: dropped {', '.join(dropped) or 'nothing'}"})
        check_new(router)
        with BalancerPaused(router, RestoreError):
            say(
                {
                    "event": "step",
                    "message": f"restore: balancer stopped, restoring {len(shards)} shards",
                }
            )

            def shard(name: str) -> dict:
                options = RestoreOptions(**{"oplog_replay": True, "oplog_limit": limit,
                                            "preserve_uuid": True, "progress": progress,
                                            **replay(name)})  # fmt: skip
                return _restore_set(
                    by_name[mapping[name]].uri,
                    s3,
                    bucket,
                    files[name],
                    lambda u, src: Restorer(u, src, options),
                )

            with ThreadPoolExecutor(max_workers=len(shards)) as pool:
                futures = {name: pool.submit(shard, name) for name in snapshot_shards}
                copied = {}
                for name, future in futures.items():
                    try:
                        copied[name] = future.result()
                    except RestoreError as exc:
                        raise RestoreError(f"shard {name} -> {mapping[name]}: {exc}") from None
            say({"event": "step", "message": "restore: the sharding catalogue"})
            options = RestoreOptions(**{"oplog_replay": True, "oplog_limit": limit,
                                        "users_and_roles": users_and_roles, "progress": progress,
                                        **replay(CONFIG)})  # fmt: skip
            catalogue = _restore_set(
                config_uri,
                s3,
                bucket,
                files[CONFIG],
                lambda u, src: CatalogueRestorer(u, src, options, mapping),
            )
            zones = _zones(router, manifest, mapping)
            router.admin.command("flushRouterConfig")
    say({"event": "step", "message": "restore: reading the shards back", "fraction": 0.99})
    reports = []
    for name in snapshot_shards:
        summary = copied[name]
        with client_for(by_name[mapping[name]].uri) as client:
            held = found(client, sorted(c["ns"] for c in summary["collections"]))
        collections = [
            {"ns": c["ns"], "source": c["source"], **held[c["ns"]],
             "copied": {"count": c["count"], "hash": c["hash"]}}
            for c in summary["collections"]
        ]  # fmt: skip
        reports.append({"shard": name, "target": mapping[name], "oplog": summary.get("oplog"),
                        "collections": collections})  # fmt: skip
    documents = sum(c["copied"]["count"] for r in reports for c in r["collections"])
    return {
        "snapshot_id": manifest.snapshot_id,
        "restore_id": restore_id,
        "topology": "sharded",
        "duration_seconds": round(time.monotonic() - clock, 3),
        "point": {"t": point.time, "i": point.inc},
        "documents": documents,
        "bytes": sum(c["bytes"] for s in copied.values() for c in s["collections"]),
        "shards": reports,
        "catalogue": {c["ns"]: c["count"] for c in catalogue["collections"]},
        "zones": zones,
        "users_and_roles": catalogue.get("users_and_roles") or {},
    }
