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
shard), or None while a set has no window; `windows`, the cluster's restorable windows: the
intersection of its sets'. The store is read with the policy's credential,
revealed for the read and never kept or returned.

Each set's `follower` says what its follower last reported: its checkpoint (`last_durable`) and
when it saved it (`reported_at`; a follower saves it after each chunk and, idle, every 30 s), and
`silent` once it has said nothing for SILENT_AFTER seconds (stopped, its agent down, or unable to
reach the store or any member).

A **gap** starts a new base snapshot by itself (`tick`, run by each worker's reaper process):
each followed set's gap records are looked at every GAP_CHECK_EVERY seconds, and a gap not seen
before is recorded here (once, claimed across workers by its id), on the audit log
(`backup.gap`), and closed by "back up now" (webui.services.backups.start_backup, trigger `gap`):
the snapshot's end lies after the gap, so it is the base of the window that closes it, shown as
such on the timeline (a done snapshot that already ends after the gap closes it instead, with no
new backup). A backup that cannot start yet (one is running) or fails is tried again at the next
look, until one is done.

`follow` turns a cluster's continuous backup on or off (the agent command oplog_follow on one
of its hosts; for a sharded cluster, one per set, each shard and the config servers, spread over
its hosts' agents, each reaching its set through the first router); `restore_target` says where
a point-in-time restore to a moment (a UTC second or an exact oplog timestamp) starts and stops,
or why it cannot, and `start_point_in_time_restore` runs one: the base snapshot the moment maps
to, restored by the target's agent with the followed oplog replayed up to the moment (the agent's
restore command's `until`, wap_agent.backup.pitr), on every set of a sharded cluster alike.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable
from typing import Any

from bson.timestamp import Timestamp
from pymongo.errors import DuplicateKeyError

from wap_agent.backup import coverage as oplog_coverage
from wap_agent.backup import manifest as snapshots
from wap_agent.backup import pitr
from wap_agent.backup.restore import RestoreError
from wap_agent.backup.slices import OplogStore
from wap_agent.backup.slices import utc as oplog_utc
from webui.config import Settings
from webui.services import agent_commands, audit, backups
from webui.services.audit import SYSTEM, Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store, now

S3Factory = Callable[[Store, Settings, dict[str, Any]], Any]
SILENT_AFTER = 120.0  # seconds without a checkpoint saved: the follower stopped reporting
GAP_CHECK_EVERY = 60.0  # seconds between two looks at a cluster's gap records
GAP_TRIGGER = "gap"  # a snapshot's trigger when it was taken to close a gap

log = logging.getLogger(__name__)


def _gaps(store: Store) -> Any:
    """One document per gap seen: {_id: cluster/set/after, snapshot_id, ...}."""
    return store.db.backup_gaps


def _looks(store: Store) -> Any:
    """When each cluster's gap records are looked at next: {_id: cluster_id, next_at}."""
    return store.db.backup_gap_looks


def _seconds(utc: str | None) -> float | None:
    if not utc:
        return None
    try:
        at = datetime.datetime.strptime(utc, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return at.replace(tzinfo=datetime.UTC).timestamp()


def follower_state(checkpoint: dict[str, Any] | None, at: float) -> dict[str, Any] | None:
    """What a set's follower last reported (pure): None when it never stored a checkpoint."""
    if not checkpoint:
        return None
    reported = _seconds(checkpoint.get("saved_at"))
    silent_for = None if reported is None else max(0.0, at - reported)
    return {
        "last_durable": checkpoint.get("last"),
        "reported_at": reported,
        "silent": silent_for is None or silent_for > SILENT_AFTER,
        "silent_for": silent_for,
    }


def _gap_id(cluster_id: str, replica_set: str, gap: dict[str, Any]) -> str:
    after = gap["after"]
    return f"{cluster_id}/{replica_set}/{after['t']}.{after['i']}.{after.get('term', -1)}"


def restorable_until(replica_sets: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The earliest of the sets' newest window ends; None when a set has none (pure)."""
    ends = []
    for covered in replica_sets.values():
        if not covered["windows"]:
            return None
        newest = max(covered["windows"], key=lambda w: (w["until"]["t"], w["until"]["i"]))
        ends.append(newest["until"])
    return min(ends, key=lambda p: (p["t"], p["i"])) if ends else None


def _key(point: dict[str, Any]) -> tuple[int, int]:
    return int(point["t"]), int(point["i"])


def common_windows(replica_sets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The moments every set can be restored to (pure): the intersection of the sets' windows,
    each {from, until}, oldest first; a sharded cluster is restored to one moment on all its
    sets, so these are its restorable windows."""
    found: list[tuple[dict, dict]] | None = None
    for covered in replica_sets.values():
        mine = [(w["from"], w["until"]) for w in covered["windows"]]
        if found is None:
            found = mine
            continue
        found = [
            (max(a, c, key=_key), min(b, d, key=_key))
            for a, b in found
            for c, d in mine
            if _key(max(a, c, key=_key)) <= _key(min(b, d, key=_key))
        ]
    return [{"from": a, "until": b} for a, b in sorted(found or [], key=lambda w: _key(w[0]))]


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
    at = now()
    closing = {g["_id"]: g for g in _gaps(store).find({"cluster_id": cluster_id})}
    for name, covered in sets.items():
        covered["follower"] = follower_state(covered.pop("checkpoint", None), at)
        closes = {}
        for gap in covered["gaps"]:
            seen = closing.get(_gap_id(cluster_id, name, gap))
            gap["closed_by"] = seen.get("snapshot_id") if seen else None
            if gap["closed_by"]:
                closes.setdefault(gap["closed_by"], gap["after"])  # its first
        for window in covered["windows"]:
            window["closes_gap"] = closes.get(window["snapshot_id"])
    return {
        "cluster_id": cluster_id,
        "read_at": at,
        "restorable_until": restorable_until(sets),
        "windows": common_windows(sets),
        "replica_sets": sets,
    }


# -- continuous backup on and off ------------------------------------------------------------

FOLLOW_ACTIONS = ("start", "stop")


def _agent_hosts(store: Store, cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The cluster's hosts whose agent was heard of lately, by name."""
    heard = {"$gte": now() - backups.AGENT_FRESH}
    wanted = {"_id": {"$in": cluster.get("host_ids", [])}, "agent.last_seen": heard}
    return sorted(store.hosts.find(wanted), key=lambda h: h["name"])


def _base(store: Store, actor: Actor, cluster_id: str) -> dict[str, Any]:
    """The newest done snapshot with an oplog end: where following starts when the store has no
    checkpoint yet (the agent resumes from its checkpoint otherwise)."""
    for entry in backups.list_snapshots(store, actor, cluster_id):
        if entry["status"] == backups.DONE and (entry.get("oplog") or {}).get("end"):
            return entry
    raise Conflict('no snapshot of this cluster is done yet: take one ("Back up now"); '
                   "continuous backup follows the oplog from its end")  # fmt: skip


def _followed_sets(
    store: Store, cluster: dict[str, Any], base: dict[str, Any] | None, hosts: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Which agent follows which set: a replica set's, the first host's; a sharded cluster's
    sets (its snapshot's: each shard and the config servers), spread over the hosts in turn (in
    WAP's layout every host holds a member of every set; each agent reaches its set's members
    through the router)."""
    if cluster.get("topology") != "sharded":
        return [("", hosts[0])]
    names = [s["name"] for s in (base or {}).get("sets") or []]
    if not names:
        raise Conflict(
            "the newest done snapshot names no shard or config server set: take a backup of"
            ' the cluster through its router ("Back up now") first'
        )
    return [(name, hosts[n % len(hosts)]) for n, name in enumerate(names)]


def follow(store: Store, actor: Actor, cluster_id: str, action: str) -> dict[str, Any]:
    """Continuous backup on (`start`) or off (`stop`) for a cluster (operators): the agent
    command oplog_follow queued for agents of its hosts heard of lately, with the policy's store
    and, to start, the newest done snapshot's oplog end; a sharded cluster's every set (each
    shard and the config servers) followed by one of them through its first router; audited
    `backup.continuous`. An agent keeps its followers running across its restarts until they are
    stopped."""
    if action not in FOLLOW_ACTIONS:
        raise Invalid(f"action: one of {', '.join(FOLLOW_ACTIONS)}", {"action": ["unknown"]})
    policy = backups.get_policy(store, actor, cluster_id)  # the cluster, for its readers
    cluster = store.clusters.find_one({"_id": cluster_id}) or {}
    if policy is None:
        raise Conflict("this cluster has no backup policy: save one first (where the oplog goes)")
    hosts = _agent_hosts(store, cluster)
    if not hosts:
        raise Conflict(
            f"no agent on the cluster's hosts was heard of in the last {int(backups.AGENT_FRESH)}"
            " s: deploy the agent (deploy_agent.yml) with oplog_follow on its allow list"
        )
    args: dict[str, Any] = {"action": action, "cluster_id": cluster_id}
    base = None
    if action == "start":
        where, compression = policy["store"], policy["compression"]
        args.update(bucket=where["bucket"], prefix=where["prefix"], region=where["region"],
                    endpoint_url=where.get("endpoint_url", ""), project_id=policy["project_id"],
                    compression=None if compression == "none" else compression,
                    member=policy.get("member", ""))  # fmt: skip
        base = _base(store, actor, cluster_id)
        args["start"] = {k: int(base["oplog"]["end"][k]) for k in ("t", "i")}
    sharded = cluster.get("topology") == "sharded"
    if sharded and action == "start":
        from webui.services import deployments

        first = next(iter(deployments.routers(store, cluster)), None)
        if first is None:
            raise Conflict("the cluster has no mongos router to reach its sets through")
        args.update(router=f"{first['address']}:{first['port']}", member="")
    asked = []  # a stop goes to every agent heard of: each stops the cluster's followers it runs
    pairs = _followed_sets(store, cluster, base, hosts) if action == "start" else [
        ("", h) for h in (hosts if sharded else hosts[:1])]  # fmt: skip
    for name, host in pairs:
        command = agent_commands.enqueue(store, actor, cluster["project_id"], host["_id"],
                                         "oplog_follow", {**args, "replica_set": name})  # fmt: skip
        asked.append({"replica_set": name, "host": host["name"], "host_id": host["_id"],
                      "command_id": command["_id"]})  # fmt: skip
    detail: dict[str, Any] = {"action": action, "host": asked[0]["host"],
                              "command_id": asked[0]["command_id"]}  # fmt: skip
    if action == "start":
        detail["start"] = args["start"]
    if sharded:
        detail["sets"] = [{k: a[k] for k in ("replica_set", "host", "command_id")} for a in asked]
    audit.record(store, actor, "backup.continuous", _target(store, policy), detail=detail)
    return {**detail, "host_id": asked[0]["host_id"]}


# -- the moment a restore picks --------------------------------------------------------------

TIMESTAMP_RE = re.compile(r"^\s*(?:Timestamp\(\s*)?(\d{1,10})\s*[,:]\s*(\d{1,10})\s*\)?\s*$")
UTC_FORMS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
TARGET_FORMS = (
    "a UTC time (2026-05-28 20:37:30, or 2026-05-28T20:37:30Z) or an oplog timestamp "
    "(Timestamp(1780000650, 1), or 1780000650:1)"
)


def parse_target(text: str) -> Timestamp | datetime.datetime:
    """A UTC time or an oplog timestamp, or Invalid naming the forms (pure)."""
    found = TIMESTAMP_RE.match(text or "")
    if found:
        seconds, inc = int(found[1]), int(found[2])
        if seconds < (1 << 32) - 1 and inc < 1 << 32:
            return Timestamp(seconds, inc)
    given = (text or "").strip().removesuffix("UTC").strip()
    for form in UTC_FORMS:
        try:
            moment = datetime.datetime.strptime(given, form).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
        if 0 <= moment.timestamp() < (1 << 32) - 1:  # what an oplog timestamp can say
            return moment
    shown = repr(text[:60]) + ("…" if len(text or "") > 60 else "")
    raise Invalid(f"{shown} is not a moment to restore to: give {TARGET_FORMS}",
                  {"at": [f"give {TARGET_FORMS}"]})  # fmt: skip


def explain(target: Timestamp | datetime.datetime) -> tuple[dict[str, Any], str]:
    """The last oplog entry a restore to `target` includes, and why, in words (pure)."""
    if isinstance(target, datetime.datetime):
        last = Timestamp(int(target.timestamp()), 0xFFFFFFFF)
        second = target.strftime("%Y-%m-%d %H:%M:%S UTC")
        why = (f"{second} restores every oplog entry written in that second or before: oplog "
               f"timestamps count whole seconds (each second's entries numbered by an "
               f"increment), so it maps to the entries up to Timestamp({last.time}, {last.inc}), "
               f"every increment of that second")  # fmt: skip
    else:
        last = target
        why = (f"Timestamp({target.time}, {target.inc}) restores up to and including that oplog "
               f"entry ({oplog_utc(target)}, increment {target.inc}), none after it")  # fmt: skip
    return {"t": last.time, "i": last.inc, "utc": oplog_utc(last)}, why


def restore_target(
    store: Store,
    settings: Settings,
    actor: Actor,
    cluster_id: str,
    text: str,
    s3: S3Factory = backups.s3_client,
) -> dict[str, Any]:
    """Where a point-in-time restore to `text` starts and stops, per replica set (project
    readers): the base snapshot (the newest ending at or before the target in the window that
    holds it) and the last entry replayed; Invalid, naming the windows, outside the coverage."""
    target = parse_target(text)
    last, why = explain(target)
    covered = cluster_coverage(store, settings, actor, cluster_id, s3)
    limit = pitr.limit_for(target)
    bases = {}
    for name, found in covered["replica_sets"].items():
        try:
            bases[name] = pitr.choose_base(found["windows"], limit, name)
        except RestoreError as error:
            raise Invalid(str(error), {"at": ["outside the restorable windows"]}) from None
    if not bases:
        raise Invalid("nothing of this cluster is backed up yet", {"at": ["no coverage"]})
    return {"target": text, "last_entry": last, "explained": why,
            "replica_sets": {n: {"snapshot_id": b["id"], "snapshot_end": b["end"]}
                             for n, b in bases.items()}}  # fmt: skip


def start_point_in_time_restore(
    store: Store,
    settings: Settings,
    actor: Actor,
    cluster_id: str,
    data: dict[str, Any],
    s3: S3Factory = backups.s3_client,
    deploy: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Restore the cluster as it was at the moment `data["at"]` (operators), into the target the
    rest of `data` names as for a snapshot's restore: the moment checked by restore_target first
    (a moment outside the coverage refused, naming the windows, on the audit log too), then the
    base snapshot it maps to restored by the target's agent with the followed oplog replayed up
    to and including the moment's last entry (webui.services.backups.start_restore)."""
    text = str(data.get("at") or "").strip()
    try:
        moment = restore_target(store, settings, actor, cluster_id, text, s3)
        chosen = sorted({b["snapshot_id"] for b in moment["replica_sets"].values()})
        if len(chosen) != 1:
            raise Conflict(
                f"the replica sets' windows start from different snapshots ({', '.join(chosen)})"
                ": a cluster is restored from one snapshot of all its sets"
            )
    except (Invalid, Conflict) as error:
        policy = backups.get_policy(store, actor, cluster_id) or {
            "project_id": "", "cluster_id": cluster_id}  # fmt: skip
        audit.record(store, actor, "backup.restore", _target(store, policy), "refused",
                     {"at": text[:100], "reason": error.message[:500]})  # fmt: skip
        raise
    last = moment["last_entry"]
    point = {"at": text, "until": {"t": last["t"], "i": last["i"]}, "last_entry": last,
             "explained": moment["explained"], "replica_sets": moment["replica_sets"]}  # fmt: skip
    return backups.start_restore(store, settings, actor, chosen[0], data, deploy=deploy,
                                 point_in_time=point)  # fmt: skip


# -- gaps close themselves -------------------------------------------------------------------


def _claim_look(store: Store, cluster_id: str, at: float) -> bool:
    """This worker looks at the cluster's gaps now (once per GAP_CHECK_EVERY across workers)."""
    later = {"$set": {"next_at": at + GAP_CHECK_EVERY}}
    if _looks(store).update_one({"_id": cluster_id, "next_at": {"$lte": at}}, later).modified_count:
        return True
    try:
        _looks(store).insert_one({"_id": cluster_id, "next_at": at + GAP_CHECK_EVERY})
    except DuplicateKeyError:
        return False
    return True


def _snapshot_status(store: Store, snapshot_id: str | None) -> str | None:
    if not snapshot_id:
        return None
    try:
        return backups.get_snapshot(store, SYSTEM, snapshot_id)["status"]
    except NotFound:
        return None


def _target(store: Store, policy: dict[str, Any]) -> str:
    """project/cluster by name, as the backups' audit entries say it."""
    project = store.projects.find_one({"_id": policy["project_id"]}) or {}
    cluster = store.clusters.find_one({"_id": policy["cluster_id"]}) or {}
    return f"{project.get('name', '')}/{cluster.get('name', policy['cluster_id'])}"


def _done_after(store: Store, cluster_id: str, resumed: dict[str, Any]) -> str | None:
    """A done snapshot of the cluster whose oplog ends at or after `resumed`, if any."""
    for entry in backups.list_snapshots(store, SYSTEM, cluster_id):
        end = (entry.get("oplog") or {}).get("end")
        if (
            entry["status"] == backups.DONE
            and end
            and (end["t"], end["i"]) >= (resumed["t"], resumed["i"])
        ):
            return entry["_id"]
    return None


def _close(
    store: Store, settings: Settings, policy: dict[str, Any], seen: dict[str, Any], at: float
) -> tuple[str, str]:
    """A base snapshot for the gap `seen`: ("closed", a done one already ending after it),
    ("started", one started through "back up now"), or ("waiting", the gap's id: tried again at
    the next look, a backup of the cluster running, say)."""
    detail = {k: seen[k] for k in ("replica_set", "after", "resumed", "reason")}
    done = _done_after(store, policy["cluster_id"], seen["resumed"])
    if done is not None:  # a snapshot taken since already ends after the gap: it closes it
        _gaps(store).update_one({"_id": seen["_id"]}, {"$set": {"snapshot_id": done,
                                                                "waiting": ""}})  # fmt: skip
        detail.update(snapshot_id=done, taken_before=True)
        audit.record(store, SYSTEM, "backup.gap", _target(store, policy), detail=detail)
        return "closed", done
    try:
        entry = backups.start_backup(
            store, settings, SYSTEM, policy["cluster_id"], trigger=GAP_TRIGGER, at=at
        )
    except (Conflict, Invalid, NotFound) as error:
        if not seen.get("waiting"):  # said once, not at every look
            detail["waiting"] = error.message
            audit.record(store, SYSTEM, "backup.gap", _target(store, policy), "waiting", detail)
            _gaps(store).update_one({"_id": seen["_id"]}, {"$set": {"waiting": error.message}})
        return "waiting", seen["_id"]
    update = {"snapshot_id": entry["_id"], "started_at": at, "waiting": ""}
    _gaps(store).update_one({"_id": seen["_id"]}, {"$set": update})
    detail["snapshot_id"] = entry["_id"]
    audit.record(store, SYSTEM, "backup.gap", _target(store, policy), detail=detail)
    return "started", entry["_id"]


def _seen(store: Store, cluster_id: str, name: str, gap: dict[str, Any], at: float) -> Any:
    """The gap's document, made when it is new; None when nothing is to be done for it (still
    open, another worker took it, or its snapshot is running or done)."""
    if gap.get("resumed") is None:  # still open: its end is not known yet
        return None
    gap_id = _gap_id(cluster_id, name, gap)
    seen = _gaps(store).find_one({"_id": gap_id})
    if seen is None:
        seen = {k: gap[k] for k in ("after", "resumed", "reason")}
        seen.update(_id=gap_id, cluster_id=cluster_id, replica_set=name, seen_at=at,
                    snapshot_id=None)  # fmt: skip
        try:
            _gaps(store).insert_one(seen)
        except DuplicateKeyError:  # another worker's
            return None
        return seen
    if _snapshot_status(store, seen.get("snapshot_id")) in (backups.RUNNING, backups.DONE):
        return None
    return seen


def tick(
    store: Store, settings: Settings, at: float | None = None, s3: S3Factory = backups.s3_client
) -> dict[str, list[str]]:
    """Gaps recorded in the clusters' followed oplogs, each closed by a new base snapshot (see
    the module's note); what it did: `started` and `closed` (by a done one) snapshot ids,
    `waiting` gap ids."""
    at = now() if at is None else at
    report: dict[str, list[str]] = {"started": [], "closed": [], "waiting": []}
    for policy in list(store.db.backup_policies.find({})):
        if not _claim_look(store, policy["cluster_id"], at):
            continue
        try:
            _look(store, settings, policy, s3, at, report)
        except Exception as exc:  # a store unreachable: the next look tries again
            log.warning("gaps of cluster %s not looked at: %s", policy["cluster_id"], exc)
    return report


def _look(
    store: Store, settings: Settings, policy: dict[str, Any], s3: S3Factory, at: float,
    report: dict[str, list[str]],
) -> None:  # fmt: skip
    layout = snapshots.Layout(policy["store"]["prefix"], policy["project_id"], policy["cluster_id"])
    client = s3(store, settings, policy["store"])
    bucket = policy["store"]["bucket"]
    for name in oplog_coverage.oplog_sets(client, bucket, layout):
        for gap in OplogStore(client, bucket, layout, name).gaps():
            seen = _seen(store, policy["cluster_id"], name, gap, at)
            if seen is not None:
                kind, done = _close(store, settings, policy, seen, at)
                report[kind].append(done)
