"""``oplog_follow``: continuous backup, the oplog follower run in the agent for the platform.

``action: start`` starts a follower of the agent's deployment (its first ``[mongodb] uris``) in
a thread of the agent and answers at once: it runs until ``action: stop`` or the agent stops,
storing the oplog where the arguments say (wap_agent.backup.follower; the store's layout in
agent/docs/backup-storage.md), with the host's own AWS credentials as ``backup`` does. One
follower per cluster and replica set: starting one that runs answers its status. ``start`` (a
base snapshot's oplog end, ``{t, i}``) is needed only when the store holds no checkpoint for the
set; otherwise the follower resumes after its last durable entry. A sharded cluster's sets are
followed each on its own (the platform asks one agent per set): ``router`` (a mongos,
``host:port``) and ``replica_set`` (the set's name in the cluster and its snapshots: a shard's
name, or ``config``) say which, its members found through the router and reached with the
agent's URI's credentials. The followers started are
recorded in the agent's queue dir (``followers.json``: their arguments, nothing secret) until
``stop``: when the agent starts again, ``resume`` starts each of them once more, and each resumes
from its store's checkpoint without the platform asking. ``action: status`` answers, per
follower running here, the member read, the last durable entry and its latest events (gaps,
unrestorable entries, store failures).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

from wap_agent.commands import BadArguments, CommandRegistry, Context, Refused
from wap_agent.commands.backup import MEMBER, NAME, _location, _s3, _text, _uri
from wap_agent.config import AgentConfig

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "status")
STORE_ARGS = ("bucket", "region", "endpoint_url", "prefix", "project_id", "cluster_id")
START_ARGS = (*STORE_ARGS, "replica_set", "member", "compression", "start", "chunk_seconds",
              "slice_seconds", "router")  # fmt: skip
EVENTS_KEPT = 20
RECORD = "followers.json"  # in the agent's queue dir: the followers to start again
RESUME_EVERY = 60.0  # seconds between two tries to resume a recorded follower


def _number(args: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadArguments(f"{key}: a number of seconds from {low:g} to {high:g}")
    return float(value)


def _start(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or set(value) != {"t", "i"}
        or not all(isinstance(value[k], int) and 0 <= value[k] < 1 << 32 for k in ("t", "i"))
    ):
        raise BadArguments("start: a BSON timestamp {t, i} (a base snapshot's oplog end), or null")
    return {"t": value["t"], "i": value["i"]}


class Running:
    """A follower in its thread, with its latest events."""

    def __init__(self, follower: Any, key: str) -> None:
        self.follower, self.key = follower, key
        self.stop = threading.Event()
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.error = ""
        self.thread = threading.Thread(target=self._run, name=f"oplog-{key}", daemon=True)

    def _run(self) -> None:
        try:
            self.follower.run(self.stop)
        except Exception as exc:  # said in its status
            self.error = str(exc)[:500]

    def status(self) -> dict[str, Any]:
        last = self.follower.last
        return {
            "key": self.key,
            "running": self.thread.is_alive(),
            "member": self.follower.member,
            "last_durable": last.to_dict() if last is not None else None,
            "events": list(self.events),
            "error": self.error,
        }


class FollowOplog:
    name = "oplog_follow"

    def __init__(self) -> None:
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        action = args.get("action")
        if action not in ACTIONS:
            raise BadArguments(f"action: one of {', '.join(ACTIONS)}")
        allowed = {"action", *(START_ARGS if action == "start" else ("cluster_id", "replica_set"))}
        unknown = sorted(set(args) - allowed)
        if unknown:
            raise BadArguments(f"unknown argument(s) for {action}: {', '.join(unknown)}")
        checked: dict[str, Any] = {"action": action}
        checked["cluster_id"] = _text(args, "cluster_id", NAME, "an id", action == "start")
        checked["replica_set"] = _text(args, "replica_set", NAME, "a replica set's name", False)
        if action != "start":
            return checked
        checked.update(_location(args))
        checked["project_id"] = _text(args, "project_id", NAME, "an id", True)
        checked["prefix"] = _text(args, "prefix", NAME, "folders split by '/', or empty", False)
        checked["member"] = _text(args, "member", MEMBER, "host:port, or empty", False)
        checked["router"] = _text(args, "router", MEMBER, "a mongos's host:port, or empty", False)
        if checked["router"] and not checked["replica_set"]:
            raise BadArguments(
                "replica_set: through a router, the set to follow ('config' or a shard's name)"
            )
        compression = args.get("compression")
        if compression not in (None, "gzip", "zstd"):
            raise BadArguments("compression: gzip, zstd or null")
        checked["compression"] = compression
        checked["start"] = _start(args.get("start"))
        checked["chunk_seconds"] = _number(args, "chunk_seconds", 0.2, 60, 2.0)
        checked["slice_seconds"] = int(_number(args, "slice_seconds", 60, 86400, 600))
        return checked

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        if args["action"] == "start":
            return self.start(args, context)
        with self.lock:
            chosen = [r for k, r in self.running.items() if _matches(k, args)]
        if args["action"] == "stop":
            for running in chosen:
                running.stop.set()
            for running in chosen:
                running.thread.join(60)
            with self.lock:
                for running in chosen:
                    if not running.thread.is_alive():
                        self.running.pop(running.key, None)
                        _remember(context, running.key, None)
        return {"followers": [r.status() for r in chosen]}

    def start(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        from bson.timestamp import Timestamp

        from wap_agent.backup.dump import client_for
        from wap_agent.backup.follower import Follower, FollowerOptions
        from wap_agent.backup.manifest import Layout
        from wap_agent.backup.slices import OplogStore

        uri = _uri(context)
        replica_set = args["replica_set"]
        if args.get("router"):  # a sharded cluster's set, found through its mongos
            uri = _set_uri(uri, args["router"], replica_set)
        elif not replica_set:
            with client_for(uri) as mongo:
                replica_set = str(mongo.admin.command("hello").get("setName") or "")
            if not replica_set:
                raise RuntimeError("the agent's deployment is not a replica set: it has no oplog")
        key = f"{args['cluster_id']}/{replica_set}"
        with self.lock:
            found = self.running.get(key)
            if found is not None and found.thread.is_alive():
                return {"followers": [found.status()], "started": False}
            layout = Layout(args["prefix"], args["project_id"], args["cluster_id"])
            store = OplogStore(_s3(args), args["bucket"], layout, replica_set,
                               compression=args["compression"])  # fmt: skip
            start = args["start"]
            running: Running
            options = FollowerOptions(
                member=args["member"] or None, chunk_seconds=args["chunk_seconds"],
                slice_seconds=args["slice_seconds"],
                on_event=lambda event: running.events.append(event),
            )  # fmt: skip
            follower = Follower(uri, store, Timestamp(start["t"], start["i"]) if start else None,
                                options)  # fmt: skip
            follower.resume_point()  # FollowerError: no checkpoint in the store and no start
            running = Running(follower, key)
            self.running[key] = running
            running.thread.start()
            _remember(context, key, {**args, "replica_set": replica_set})
        context.progress(f"following the oplog of {replica_set}")
        return {"followers": [running.status()], "started": True}

    def shutdown(self, timeout: float = 10.0) -> None:
        """The agent stops: each follower stores what it read and stops; the record stays, so
        that the next start resumes them."""
        with self.lock:
            running = list(self.running.values())
        for each in running:
            each.stop.set()
        for each in running:
            each.thread.join(timeout)

    def resume(self, context: Context) -> list[str]:
        """Start the followers recorded by an earlier run of the agent that do not run here (each
        from its store's checkpoint); the keys of those that could not start (logged, kept)."""
        failed = []
        for key, args in _recorded(context).items():
            with self.lock:
                found = self.running.get(key)
                if found is not None and found.thread.is_alive():
                    continue
            try:
                self.start(self.check(args), context)
            except Exception as exc:  # the store or the set unreachable for now: tried again
                log.warning("oplog follower %s not resumed yet: %s", key, exc)
                failed.append(key)
        return failed


def _set_uri(uri: str, router: str, name: str) -> str:
    """The URI of the sharded cluster's set `name` (a shard's name, or 'config'), found through
    the mongos `router` reached with the agent's URI's credentials and options."""
    from wap_agent.backup.dump import client_for
    from wap_agent.backup.sharded import discover, with_hosts

    through = with_hosts(uri, router)
    with client_for(through) as mongos:
        sets = {s.name: s.uri for s in discover(mongos, through)}
    if name not in sets:
        raise RuntimeError(f"the cluster has no set {name!r}: its sets are {', '.join(sets)}")
    return sets[name]


def _allowed(registry: CommandRegistry, config: AgentConfig) -> FollowOplog | None:
    try:
        command, _ = registry.prepare(FollowOplog.name, {"action": "status"},
                                      config.commands_allow)  # fmt: skip
    except Refused:
        return None
    return command if isinstance(command, FollowOplog) else None


def resume(
    registry: CommandRegistry, config: AgentConfig, stop: threading.Event
) -> threading.Thread:
    """At the agent's start: the followers it ran before, started again (while oplog_follow is
    still on its allow-list) in a thread of their own, so that a store slow to answer delays
    nothing else; one that cannot start is tried again every RESUME_EVERY seconds until `stop`."""

    def run() -> None:
        command = _allowed(registry, config)
        while command is not None and command.resume(Context(config)):
            if stop.wait(RESUME_EVERY):
                return

    thread = threading.Thread(target=run, name="oplog-resume", daemon=True)
    thread.start()
    return thread


def shutdown(registry: CommandRegistry, config: AgentConfig) -> None:
    """At the agent's stop: its followers store what they read, and stop (resumed at the next
    start)."""
    command = _allowed(registry, config)
    if command is not None:
        command.shutdown()


def _record_path(context: Context) -> Path | None:
    return context.config.queue_dir / RECORD if context.config is not None else None


def _recorded(context: Context) -> dict[str, dict[str, Any]]:
    path = _record_path(context)
    if path is None or not path.exists():
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s): no follower resumed", path, exc)
        return {}
    return found if isinstance(found, dict) else {}


def _remember(context: Context, key: str, args: dict[str, Any] | None) -> None:
    """Record (or, with None, forget) a follower's start arguments, replaced in one rename."""
    path = _record_path(context)
    if path is None:
        return
    recorded = _recorded(context)
    if args is None and recorded.pop(key, None) is None:
        return
    if args is not None:
        recorded[key] = {k: v for k, v in args.items() if k != "action"} | {"action": "start"}
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    os.replace(part, path)


def _matches(key: str, args: dict[str, Any]) -> bool:
    cluster, _, replica_set = key.partition("/")
    return (not args["cluster_id"] or cluster == args["cluster_id"]) and (
        not args["replica_set"] or replica_set == args["replica_set"]
    )
