"""``backup`` and ``restore``: the backup engine run for the platform, next to the data.

Both read and write the snapshot store with the host's own AWS credentials (boto3's chain: the
instance role, the service's environment), never with a key in their arguments: arguments are
kept in the agent's outbox and shown to the project's readers (agent/docs/backup-storage.md says
why). MongoDB is reached with the agent's own URI (the first of ``[mongodb] uris``), whose user
needs the ``backup`` role to back up and ``restore`` to restore.

The engine's progress events become the command's progress: collections done of all, documents
and bytes so far, and a fraction of the bytes expected. ``backup``'s result is what the platform's
``backups.tick()`` settles the snapshot from (its id, manifest key, size, SHA-256, documents).
``restore`` reads the snapshot's manifest, streams its archive into the agent's deployment
(the archive's SHA-256 checked against the manifest as it is read), and returns, per restored
collection, what was copied from the archive (count, content hash) and what the target then holds
(count, content hash, indexes, read back from the server once the oplog is replayed), for the
platform to compare with the manifest.
"""

from __future__ import annotations

import io
import re
import threading
import time
from typing import Any

from wap_agent.commands import BadArguments, Context

NAME = re.compile(r"^[A-Za-z0-9_.:/=-]{0,200}$")
SNAPSHOT = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MEMBER = re.compile(r"^([A-Za-z0-9.-]+(:\d{1,5})?)?$")
ENDPOINT = re.compile(r"^(https?://[A-Za-z0-9.:\[\]-]+/?)?$")
NAMESPACE = re.compile(r"^[^\x00 ]{1,255}$")  # as --nsInclude, --nsFrom ($var$) take
LOCATION = ("bucket", "region", "endpoint_url")
PROGRESS_EVERY = 1.0  # seconds between two progress messages


def _text(args: dict[str, Any], key: str, pattern: re.Pattern, what: str, required: bool) -> str:
    value = args.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or not pattern.match(value) or (required and not value):
        raise BadArguments(f"{key}: {what}")
    return value


def _location(args: dict[str, Any]) -> dict[str, str]:
    return {
        "bucket": _text(args, "bucket", NAME, "an S3 bucket name", True),
        "region": _text(args, "region", NAME, "an AWS region, or empty", False),
        "endpoint_url": _text(
            args, "endpoint_url", ENDPOINT, "http(s)://host[:port], or empty", False
        ),
    }


def _flag(args: dict[str, Any], key: str, default: bool) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise BadArguments(f"{key}: true or false")
    return value


def _patterns(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key) or []
    if not isinstance(value, list) or len(value) > 100:
        raise BadArguments(f"{key}: a list of at most 100 namespace patterns such as 'shop.*'")
    for item in value:
        if not isinstance(item, str) or not NAMESPACE.match(item):
            raise BadArguments(f"{key}: {str(item)[:80]!r} is not a namespace pattern")
    return list(value)


def _uri(context: Context) -> str:
    uris = context.config.mongodb_uris if context.config is not None else ()
    if not uris:
        raise RuntimeError("this agent has no MongoDB URI ([mongodb] uris) to read or write with")
    return uris[0]


def _via(context: Context, args: dict[str, Any]) -> str:
    """The agent's URI, or with ``router`` (a sharded cluster's mongos, host:port) that router
    reached with the URI's credentials and options."""
    uri = _uri(context)
    if not args.get("router"):
        return uri
    from wap_agent.backup.sharded import with_hosts

    return with_hosts(uri, args["router"])


def _s3(location: dict[str, str]) -> Any:
    from wap_agent.backup import s3

    return s3.client(location["endpoint_url"] or None, location["region"] or None)


class Progress:
    """The engine's progress events summed up as the command's progress: at most one message a
    second (the engine reports every batch), and each collection's end at once; a sharded
    cluster's sets, dumped or restored at once, are counted together."""

    def __init__(self, context: Context, verb: str) -> None:
        self.context, self.verb = context, verb
        self.lock = threading.Lock()
        self.collections = self.done = self.documents = self.bytes = self.expected = 0
        self.said = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            kind = event.get("event")
            if kind == "start":  # a sharded cluster's sets each start: their sums
                self.collections += int(event.get("collections") or 0)
                self.expected += int(event.get("bytes") or 0)
            elif kind == "documents":
                self.documents += int(event.get("count") or 0)
                self.bytes += int(event.get("bytes") or 0)
            elif kind == "collection":
                self.done += 1
            elif kind == "step":
                self.say(str(event.get("message")), event.get("fraction"))
                return
            elif kind == "oplog":
                self.say(f"{self.verb}: oplog, {int(event.get('count') or 0):,} entries", None)
                return
            else:
                return
            if kind == "documents" and time.monotonic() - self.said < PROGRESS_EVERY:
                return
            fraction = min(0.99, self.bytes / self.expected) if self.expected else None
            self.say(
                f"{self.verb}: {self.done} of {self.collections} collections,"
                f" {self.documents:,} documents, {self.bytes / 1e6:,.1f} MB",
                fraction,
            )

    def say(self, message: str, fraction: float | None) -> None:
        self.said = time.monotonic()
        self.context.progress(message, fraction)


class Backup:
    name = "backup"

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        from wap_agent.backup.manifest import COMMAND_ARGS

        unknown = sorted(set(args) - set(COMMAND_ARGS))
        if unknown:
            raise BadArguments(f"unknown argument(s): {', '.join(unknown)}")
        checked: dict[str, Any] = _location(args)
        checked["snapshot_id"] = _text(args, "snapshot_id", SNAPSHOT,
                                       "YYYYMMDDTHHMMSSZ-<6 hex>", True)  # fmt: skip
        for key in ("project_id", "cluster_id"):
            checked[key] = _text(args, key, NAME, "an id", True)
        checked["prefix"] = _text(args, "prefix", NAME, "folders split by '/', or empty", False)
        checked["cluster_name"] = _text(args, "cluster_name", NAME, "a cluster's name", False)
        checked["member"] = _text(args, "member", MEMBER, "host:port, or empty", False)
        checked["router"] = _text(args, "router", MEMBER, "a mongos's host:port, or empty", False)
        compression = args.get("compression")
        if compression not in (None, "gzip", "zstd"):
            raise BadArguments("compression: gzip, zstd or null")
        checked["compression"] = compression
        checked["oplog"] = _flag(args, "oplog", True)
        checked["users_and_roles"] = _flag(args, "users_and_roles", False)
        return checked

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        from wap_agent.backup.manifest import back_up

        context.progress("backup: starting")
        progress = Progress(context, "backup")
        return back_up(_via(context, args), args, s3=_s3(args), progress=progress)


def _until(value: Any) -> dict[str, int] | None:
    """A point-in-time restore's last oplog entry included, {t, i} (wap_agent.backup.pitr)."""
    if value is None:
        return None
    if not (isinstance(value, dict) and set(value) == {"t", "i"} and all(
            isinstance(value[k], int) and not isinstance(value[k], bool)
            and 0 <= value[k] < 1 << 32 for k in ("t", "i"))):  # fmt: skip
        raise BadArguments("until: the last oplog entry to restore, a BSON timestamp {t, i}")
    return {"t": value["t"], "i": value["i"]}


class Restore:
    name = "restore"

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        known = {*LOCATION, "manifest_key", "drop", "include", "exclude", "rename_from",
                 "rename_to", "oplog_replay", "restore_id", "users_and_roles",
                 "router", "until"}  # fmt: skip
        unknown = sorted(set(args) - known)
        if unknown:
            raise BadArguments(f"unknown argument(s): {', '.join(unknown)}")
        checked: dict[str, Any] = _location(args)
        checked["manifest_key"] = _text(args, "manifest_key", NAME, "the manifest's key", True)
        if not checked["manifest_key"].endswith("/manifest.json"):
            raise BadArguments("manifest_key: the key of a snapshot's manifest.json")
        checked["restore_id"] = _text(args, "restore_id", NAME, "an id, or empty", False)
        checked["router"] = _text(args, "router", MEMBER, "a mongos's host:port, or empty", False)
        checked["drop"] = _flag(args, "drop", False)
        checked["users_and_roles"] = _flag(args, "users_and_roles", False)
        for key in ("include", "exclude", "rename_from", "rename_to"):
            checked[key] = _patterns(args, key)
        if len(checked["rename_from"]) != len(checked["rename_to"]):
            raise BadArguments("rename_from and rename_to: as many of one as of the other")
        selecting = any(checked[k] for k in ("include", "exclude", "rename_from"))
        checked["oplog_replay"] = _flag(args, "oplog_replay", not selecting)
        if checked["oplog_replay"] and selecting:
            raise BadArguments("oplog_replay cannot be used with a selection of namespaces")
        checked["until"] = _until(args.get("until"))
        if checked["until"] and (selecting or not checked["oplog_replay"]):
            raise BadArguments("until (a point in time) replays the oplog: no selection")
        return checked

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        return restore_snapshot(_via(context, args), args, _s3(args), Progress(context, "restore"))


def restore_snapshot(uri: str, args: dict[str, Any], s3: Any, progress: Any) -> dict[str, Any]:
    """Restore the snapshot whose manifest `args` name (Restore.check's arguments) into `uri`:
    its archive streamed from the store, its SHA-256 checked against the manifest as it is read;
    the result holds, per restored collection, what was copied and what the server then holds.
    `progress(event)` is given the engine's events, and the command's own steps as ``step``."""
    from wap_agent.backup.dump import client_for
    from wap_agent.backup.manifest import read
    from wap_agent.backup.restore import RestoreError, RestoreOptions, restore
    from wap_agent.backup.s3 import Checked, S3Download
    from wap_agent.backup.verify import found

    progress({"event": "step", "message": "restore: reading the manifest"})
    manifest = read(s3, args["bucket"], args["manifest_key"])
    if manifest.topology == "sharded":
        from wap_agent.backup.sharded import restore_cluster

        if any(args.get(k) for k in ("include", "exclude", "rename_from")):
            raise RestoreError(
                "a sharded snapshot restores whole into a new sharded cluster: no selection of"
                " namespaces (drop empties the whole target first)"
            )
        moments = None
        if args.get("until"):  # every set to the same cluster time, from its followed oplog
            from wap_agent.backup.pitr import ClusterPointInTime

            moments = ClusterPointInTime(s3, args["bucket"], args["manifest_key"], manifest,
                                         args["until"])  # fmt: skip
        result = restore_cluster(uri, manifest, s3, args["bucket"], restore_id=args.get(
            "restore_id", ""), users_and_roles=args.get("users_and_roles", False),
            progress=progress, oplog=moments.options if moments else None,
            replace=bool(args.get("drop")))  # fmt: skip
        if moments:
            result["point_in_time"] = moments.summary(result)
        return result
    if len(manifest.files) != 1:
        raise RestoreError(
            f"the snapshot has {len(manifest.files)} archives and is not marked sharded: its"
            " manifest is not one this engine wrote"
        )
    (stored,) = manifest.files
    moment = None
    if args.get("until"):  # a point in time: the followed oplog replayed after the snapshot's
        from wap_agent.backup.pitr import PointInTime

        moment = PointInTime(s3, args["bucket"], args["manifest_key"], manifest, args["until"])
    options = RestoreOptions(
        drop=args["drop"], oplog_replay=args["oplog_replay"], include=args["include"],
        exclude=args["exclude"], rename_from=args["rename_from"],
        rename_to=args["rename_to"], users_and_roles=args.get("users_and_roles", False),
        progress=progress, **(moment.options() if moment else {}),
    )  # fmt: skip
    with S3Download(s3, args["bucket"], stored.key) as source:
        checked = Checked(source)
        summary = restore(uri, io.BufferedReader(checked, 1 << 20), options=options)
    if checked.digest.hexdigest() != stored.sha256 or checked.size != stored.size:
        raise RestoreError(
            f"{stored.key} read {checked.size} bytes with SHA-256 {checked.digest.hexdigest()}"
            f", the manifest says {stored.size} bytes, {stored.sha256}: the snapshot's archive"
            " is not the one its manifest describes; the restored data cannot be trusted"
        )
    progress({"event": "step", "message": "restore: verifying", "fraction": 0.99})
    copied = {c["ns"]: c for c in summary["collections"]}
    kinds = {c.ns: c.type for c in manifest.collections}
    series = frozenset(ns for ns, c in copied.items() if kinds.get(c["source"]) == "timeseries")
    with client_for(uri) as client:
        created = moment.created(client, set(copied)) if moment else []
        held = found(client, sorted([*copied, *created]), series)
    for ns in created:
        copied[ns] = {"source": ns, "count": None, "hash": None}
    return {
        "snapshot_id": manifest.snapshot_id,
        "restore_id": args.get("restore_id", ""),
        "duration_seconds": summary["duration_seconds"],
        "documents": sum(c["count"] for c in summary["collections"]),
        "bytes": sum(c["bytes"] for c in summary["collections"]),
        "oplog": summary.get("oplog"),
        "collections": [
            {
                "ns": ns,
                "source": copied[ns]["source"],
                **held[ns],
                "copied": {"count": copied[ns]["count"], "hash": copied[ns]["hash"]},
            }
            for ns in sorted(held)
        ],
        **({"point_in_time": moment.summary(summary, created)} if moment else {}),
    }
