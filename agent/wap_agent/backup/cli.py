"""``wap-agent backup`` and ``wap-agent restore``: the flags of mongodump and mongorestore, so
that scripts written for them move over unchanged; progress on standard error."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

URI_ENV = "WAP_AGENT_URI"


def _failures() -> tuple[type[BaseException], ...]:
    """What a backup or restore fails with, reported as one line. The engine is imported when
    one runs, not when the agent's command line is built: `wap-agent run`, which every host runs
    all the time, then never loads it (3.6 MiB of resident memory)."""
    import pymongo

    from wap_agent.backup.archive import ArchiveError
    from wap_agent.backup.dump import DumpError
    from wap_agent.backup.metadata import MetadataError
    from wap_agent.backup.namespaces import NamespaceError
    from wap_agent.backup.restore import RestoreError

    return (
        DumpError,
        RestoreError,
        ArchiveError,
        MetadataError,
        NamespaceError,
        OSError,
        pymongo.errors.PyMongoError,
    )


class Progress:
    """Per-collection lines on standard error (as mongodump prints them); on a terminal, a
    status line with documents, bytes and MB/s rewritten in place."""

    def __init__(self, verb: str, quiet: bool) -> None:
        self.verb = verb
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()
        self.docs = self.bytes = 0
        self.started = time.monotonic()
        self.last_draw = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        with self.lock:
            kind = event.get("event")
            if kind == "documents":
                self.docs += event.get("count", 0)
                self.bytes += event.get("bytes", 0)
                if self.tty and time.monotonic() - self.last_draw > 0.2:
                    self.last_draw = time.monotonic()
                    rate = self.bytes / 1e6 / max(1e-6, time.monotonic() - self.started)
                    sys.stderr.write(
                        f"\r{self.verb}: {self.docs:,} documents, {self.bytes / 1e6:,.1f} MB, "
                        f"{rate:,.1f} MB/s \x1b[K"
                    )
                    sys.stderr.flush()
                return
            if self.tty:
                sys.stderr.write("\r\x1b[K")
            if kind == "collection":
                self._line(f"done {self.verb} {event['ns']} ({event['count']:,} documents)")
            elif kind == "indexes":
                self._line(f"built {event['count']} indexes on {event['ns']}")
            elif kind == "oplog" and self.verb == "dumping":
                self._line(f"captured {event['count']:,} oplog entries")
            elif kind == "start":
                self._line(f"{self.verb} {event.get('collections', 0)} collections")

    def _line(self, text: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")
        sys.stderr.flush()


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uri",
        default=os.environ.get(URI_ENV),
        required=URI_ENV not in os.environ,
        help=f"the MongoDB connection string (default: ${URI_ENV}, which keeps a password out of"
        " the host's process list)",
    )
    parser.add_argument(
        "--archive",
        nargs="?",
        const="-",
        metavar="FILE",
        help="the archive file; '-' or no FILE: standard output (backup) or input (restore)",
    )
    parser.add_argument(
        "--gzip", action="store_true", help="gzip (the whole archive, or each file)"
    )
    parser.add_argument("--zstd", action="store_true", help="zstd instead of gzip (ours)")
    parser.add_argument(
        "--nsInclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only these namespaces ('*' matches anything); repeatable",
    )
    parser.add_argument(
        "--nsExclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave these namespaces out; repeatable",
    )
    parser.add_argument(
        "-j",
        "--numParallelCollections",
        type=int,
        default=4,
        metavar="N",
        help="collections copied at once (4)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on standard error")
    parser.add_argument(
        "--summary", metavar="FILE", help="write the summary (counts, hashes, oplog window) as JSON"
    )


def add_parsers(commands) -> None:
    backup = commands.add_parser(
        "backup",
        help="dump a replica set member (mongodump's flags)",
        description="A logical snapshot in mongodump's archive format (--archive) or directory "
        "format (--dir, or ./dump when neither is given, as mongodump does).",
    )
    _common(backup)
    backup.add_argument(
        "--dir",
        "--out",
        "-o",
        dest="dir",
        metavar="DIR",
        help="write mongodump's directory format under DIR",
    )
    backup.add_argument(
        "--oplog",
        action="store_true",
        help="capture the oplog written during the dump (point in time)",
    )
    backup.add_argument(
        "--member", metavar="HOST:PORT", help="the member to read (default: a secondary)"
    )
    backup.add_argument(
        "--dumpDbUsersAndRoles",
        action="store_true",
        help="include admin.system.users and admin.system.roles",
    )
    _store(backup, "--to", "s3://BUCKET[/PREFIX]", "write a snapshot there, with its manifest, "
           "as the platform lays it out (the host's AWS credentials)")  # fmt: skip
    backup.add_argument("--project", default="", help="with --to: the project's id (the layout)")
    backup.add_argument("--cluster", default="", help="with --to: the cluster's id (the layout)")
    backup.add_argument("--clusterName", default="", help="with --to: the cluster's name")
    backup.add_argument("--snapshotId", default="", help="with --to: the id (default: made)")
    backup.set_defaults(handler=run_backup)
    back = commands.add_parser(
        "restore",
        help="restore an archive or directory dump (mongorestore's flags)",
        description="Restore our snapshots or mongodump's archives and directories.",
    )
    _common(back)
    back.add_argument("--dir", metavar="DIR", help="read mongodump's directory format")
    back.add_argument("source", nargs="?", help="a dump directory (as mongorestore's argument)")
    back.add_argument("--drop", action="store_true", help="drop each target collection first")
    back.add_argument("--oplogReplay", action="store_true", help="replay the snapshot's oplog")
    back.add_argument(
        "--oplogLimit",
        metavar="SECONDS[:ORDINAL]",
        help="replay only entries before this timestamp",
    )
    back.add_argument(
        "--nsFrom",
        action="append",
        default=[],
        metavar="PATTERN",
        help="rename from ($name$ captures); pairs with --nsTo",
    )
    back.add_argument("--nsTo", action="append", default=[], metavar="PATTERN")
    back.add_argument(
        "--restoreDbUsersAndRoles",
        action="store_true",
        help="restore admin.system.users and admin.system.roles",
    )
    _store(back, "--from", "s3://BUCKET/KEY/manifest.json",
           "restore the snapshot this manifest describes, checked against it; print the"
           " verification (exit 1 unless equal)")  # fmt: skip
    back.set_defaults(handler=run_restore)


def _store(parser: argparse.ArgumentParser, flag: str, metavar: str, text: str) -> None:
    parser.add_argument(flag, dest="store", metavar=metavar, help=text)
    parser.add_argument("--endpointUrl", default="", help="an S3-compatible store's endpoint")
    parser.add_argument("--region", default="", help="the bucket's AWS region")


def _compression(args: argparse.Namespace) -> str | None:
    if args.zstd:
        return "zstd"
    return "gzip" if args.gzip else None


def _finish(args: argparse.Namespace, summary: dict) -> int:
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _fail(name: str, exc: BaseException) -> int:
    print(f"wap-agent {name}: {exc}", file=sys.stderr)
    return 1


def _s3_url(text: str) -> tuple[str, str]:
    if not text.startswith("s3://") or not text[5:].split("/", 1)[0]:
        raise ValueError(f"{text!r}: expected s3://BUCKET/...")
    bucket, _, key = text[5:].partition("/")
    return bucket, key.strip("/")


def _to_store(args: argparse.Namespace) -> int:
    """The platform's backup command, run from a terminal: the snapshot and its manifest in the
    store's layout; its result (id, manifest key, size, SHA-256, documents) on standard output."""
    from wap_agent.backup import s3
    from wap_agent.backup.manifest import back_up, snapshot_id

    bucket, prefix = _s3_url(args.store)
    store = {"bucket": bucket, "prefix": prefix, "region": args.region,
             "endpoint_url": args.endpointUrl}  # fmt: skip
    command = {**store, "snapshot_id": args.snapshotId or snapshot_id(time.time()),
               "project_id": args.project, "cluster_id": args.cluster,
               "cluster_name": args.clusterName, "compression": _compression(args),
               "member": args.member or "", "oplog": args.oplog,
               "users_and_roles": args.dumpDbUsersAndRoles}  # fmt: skip
    client = s3.client(args.endpointUrl or None, args.region or None)
    result = back_up(args.uri, command, s3=client, progress=Progress("dumping", args.quiet))
    print(json.dumps(result))
    return _finish(args, result)


def _from_store(args: argparse.Namespace) -> int:
    """The platform's restore command, run from a terminal, then its verification against the
    manifest; the report on standard output."""
    from wap_agent.backup import s3
    from wap_agent.backup.manifest import read
    from wap_agent.backup.verify import verification
    from wap_agent.commands import BadArguments
    from wap_agent.commands.backup import Restore, restore_snapshot

    bucket, key = _s3_url(args.store)
    try:
        checked = Restore().check(
            {"bucket": bucket, "manifest_key": key, "region": args.region,
             "endpoint_url": args.endpointUrl, "drop": args.drop, "include": args.nsInclude,
             "exclude": args.nsExclude, "rename_from": args.nsFrom, "rename_to": args.nsTo,
             "oplog_replay": args.oplogReplay,
             "users_and_roles": args.restoreDbUsersAndRoles}
        )  # fmt: skip
    except BadArguments as exc:
        print(f"wap-agent restore: {exc}", file=sys.stderr)
        return 2
    client = s3.client(args.endpointUrl or None, args.region or None)
    result = restore_snapshot(args.uri, checked, client, Progress("restoring", args.quiet))
    report = verification(read(client, bucket, key), result, selected=bool(args.nsInclude))
    print(json.dumps({**result, "verification": report}))
    _finish(args, result)
    if not report["equal"]:
        print("wap-agent restore: the restored data differs from the snapshot's manifest"
              " (the report's differences say where)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _with_store(name: str, clash: str, elsewhere: Any, run: Any) -> int:
    if elsewhere:
        print(f"wap-agent {name}: {clash}", file=sys.stderr)
        return 2
    try:
        return run()
    except (*_failures(), ValueError) as exc:
        return _fail(name, exc)


def run_backup(args: argparse.Namespace) -> int:
    if args.store:
        return _with_store("backup", "--to excludes --archive and --dir", args.archive or args.dir,
                           lambda: _to_store(args))  # fmt: skip
    if args.archive and args.dir:
        print("wap-agent backup: --archive and --dir exclude each other", file=sys.stderr)
        return 2
    from wap_agent.backup.dump import DumpOptions, dump

    options = DumpOptions(
        directory=not args.archive,
        compression=_compression(args),
        oplog=args.oplog,
        member=args.member,
        users_and_roles=args.dumpDbUsersAndRoles,
        include=args.nsInclude,
        exclude=args.nsExclude,
        parallel=args.numParallelCollections,
        progress=Progress("dumping", args.quiet),
    )
    try:
        if options.directory:
            summary = dump(args.uri, Path(args.dir or "dump"), options=options)
        elif args.archive == "-":
            summary = dump(args.uri, sys.stdout.buffer, options=options)
            sys.stdout.buffer.flush()
        else:
            try:
                with open(args.archive, "wb") as out:
                    summary = dump(args.uri, out, options=options)
            except BaseException:
                Path(args.archive).unlink(missing_ok=True)  # never a partial archive left behind
                raise
    except _failures() as exc:
        return _fail("backup", exc)
    return _finish(args, summary)


def run_restore(args: argparse.Namespace) -> int:
    directory = args.dir or args.source
    if args.store:
        return _with_store("restore", "--from excludes --archive and a directory",
                           args.archive or directory, lambda: _from_store(args))  # fmt: skip
    if args.archive and directory:
        print("wap-agent restore: --archive and a directory exclude each other", file=sys.stderr)
        return 2
    from wap_agent.backup.restore import RestoreOptions, parse_oplog_limit, restore

    try:
        limit = parse_oplog_limit(args.oplogLimit) if args.oplogLimit else None
        options = RestoreOptions(
            directory=not args.archive,
            drop=args.drop,
            oplog_replay=args.oplogReplay,
            oplog_limit=limit,
            include=args.nsInclude,
            exclude=args.nsExclude,
            rename_from=args.nsFrom,
            rename_to=args.nsTo,
            users_and_roles=args.restoreDbUsersAndRoles,
            parallel=args.numParallelCollections,
            progress=Progress("restoring", args.quiet),
        )
        if options.directory:
            summary = restore(args.uri, Path(directory or "dump"), options=options)
        elif args.archive == "-":
            summary = restore(args.uri, sys.stdin.buffer, options=options)
        else:
            with open(args.archive, "rb") as source:
                summary = restore(args.uri, source, options=options)
    except _failures() as exc:
        return _fail("restore", exc)
    return _finish(args, summary)
