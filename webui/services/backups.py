"""Backups of clusters: policies, the snapshot catalogue, backups on demand or on schedule, and
retention.

A **policy** (one per cluster) says when to back up (a cron expression, UTC, read by croniter),
how long to keep snapshots (the newest `keep_last`, and optionally any younger than
`max_age_days`: a snapshot goes when it is neither), where (a snapshot store: an S3 bucket and
prefix with one of the project's AWS credentials, whose endpoint URL, when it has one, names an
S3-compatible store) and how (compression, the member to read from).

A **backup** is a catalogue entry first (`running`), then work elsewhere: the engine runs next to
the data, so a cluster whose host has a live agent gets the agent command `backup` (webui.services
.agent_commands) with where to write and nothing secret (the agent writes with its host's own AWS
credentials); a cluster without one gets a job running `backup_cluster.yml` with the store's
credential, when the playbooks dir has it. Either way the snapshot lands at the layout of
`wap_agent.backup.manifest` (agent/docs/backup-storage.md), its manifest written last.

`tick()` is the periodic part, run by each worker's reaper process (webui.jobs.reaper): it starts
the backups whose policy is due (each policy's next run is claimed with one atomic update of the
store, so it fires once however many workers tick, and a restart loses no schedule: the next run
is stored), settles running backups from their command or job (a succeeded one is `done` only once
its manifest is read from the store: a snapshot without its manifest is not a snapshot) and
expires what the retention no longer keeps (a policy's retention is looked at every
RETENTION_EVERY seconds, and at the next tick after a backup of its cluster is done), deleting the
S3 objects, then the catalogue entry, on the audit log. A backup whose agent is silent for
AGENT_STALL fails; a failed backup's leftovers (open multipart uploads, objects) are removed.

A **restore** (the section "restores" below) takes a done snapshot into another cluster, the same
one or a new one deployed first, through the target's agent (command `restore`) or, without one,
a `restore_cluster.yml` job; `tick()` settles it with a verification report against the
snapshot's manifest (wap_agent.backup.verify). Download links are presigned GETs.

S3 is reached with the store's credential through `credentials.reveal`: in `tick()` (the worker's
side), and from a request to check a policy's store when it is saved, to delete a snapshot by
hand or to sign its download links; nothing secret is returned, logged or audited.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from croniter import CroniterBadCronError, croniter

from wap_agent.backup import manifest as snapshots
from wap_agent.backup import verify
from webui.config import Settings
from webui.services import agent_commands, audit, credentials, jobs, projects
from webui.services.audit import SYSTEM, Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store, now

RUNNING, DONE, FAILED = "running", "done", "failed"
STATUSES = (RUNNING, DONE, FAILED)
COMPRESSIONS = ("gzip", "zstd", "none")
PLAYBOOK = "backup_cluster.yml"  # a cluster without an agent is backed up by this job
# A backup through an agent with no word from it (taken, progress, outcome) for this long is
# failed: the engine reports progress as it goes, so silence means the agent stopped. A job's
# backup ends with its job (the reaper marks a job whose worker died lost).
AGENT_STALL = 3600.0
S3_TIMEOUT = 10.0  # seconds the platform waits for S3 to connect or answer
AGENT_FRESH = 300.0  # seconds since an agent was last heard of for it to take a backup
MIN_INTERVAL = 3600.0  # a schedule may not fire more often than hourly
RETENTION_EVERY = 600.0  # seconds between two retention passes of a policy (sooner after a backup)
BUCKET_RE = re.compile(r"^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]{0,200}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
PUBLIC_STORE = ("bucket", "prefix", "region", "credential_id", "credential_name")


S3Factory = Callable[[Store, Settings, dict[str, Any]], Any]


def _snapshots(store: Store) -> Any:
    return store.db.snapshots


def _policies(store: Store) -> Any:
    return store.db.backup_policies


# -- policies --------------------------------------------------------------------------------


def next_run(schedule: str, after: float) -> float:
    return float(croniter(schedule, after).get_next(float))


def _schedule_errors(schedule: str) -> list[str]:
    if not croniter.is_valid(schedule):
        return [
            "a cron expression of five fields, minute hour day month weekday, in UTC:"
            " '0 2 * * *' is every day at 02:00"
        ]
    try:
        first = next_run(schedule, now())
        second = next_run(schedule, first)
    except (CroniterBadCronError, ValueError) as exc:
        return [f"not a schedule croniter can follow: {exc}"]
    if second - first < MIN_INTERVAL:
        return ["at most one backup an hour: use a minute field of one value, such as '0'"]
    return []


def _integer(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _boolean(value: Any) -> bool:
    """A flag from JSON or a form's text (a checkbox sends 'on')."""
    if isinstance(value, str):
        return value.lower() in ("1", "on", "true", "yes")
    return bool(value)


def _drill_fields(
    store: Store, project_id: str, cluster_id: str, data: dict[str, Any],
    errors: dict[str, list[str]], current: str = "",
) -> dict[str, str]:  # fmt: skip
    """Restore drills: a schedule and the scratch cluster each drill restores the latest snapshot
    into (its collections of the same names replaced), both or neither. Each drill is a
    destructive restore: a scratch cluster set or changed (other than `current`) needs its name
    typed in `drill_confirm`, as the restore wizard asks for its target's."""
    schedule = " ".join(str(data.get("drill_schedule") or "").split())
    target = str(data.get("drill_cluster_id") or "").strip()
    if not schedule and not target:
        return {"drill_schedule": "", "drill_cluster_id": "", "drill_cluster_name": ""}
    if not schedule:
        errors["drill_schedule"] = ["when to drill, a cron expression as the schedule's"]
    elif problems := (_schedule_errors(schedule) if len(schedule) <= 100 else ["too long"]):
        errors["drill_schedule"] = problems
    scratch = None
    if not target:
        errors["drill_cluster_id"] = ["the scratch cluster each drill restores into"]
    elif target == cluster_id:
        errors["drill_cluster_id"] = [
            "another cluster than the one backed up: a drill replaces the scratch cluster's"
            " collections"
        ]
    elif (scratch := store.clusters.find_one({"_id": target, "project_id": project_id})) is None:
        errors["drill_cluster_id"] = ["a cluster of this project"]
    elif target != current and str(data.get("drill_confirm") or "").strip() != scratch["name"]:
        errors["drill_confirm"] = [
            f"type the scratch cluster's name, {scratch['name']}: each drill replaces its"
            " collections of the snapshot's names"
        ]
    name = scratch["name"] if scratch else ""
    return {"drill_schedule": schedule, "drill_cluster_id": target, "drill_cluster_name": name}


def validate_policy(
    store: Store, project_id: str, data: dict[str, Any], cluster_id: str = "",
    current_drill: str = "",
) -> dict[str, Any]:  # fmt: skip
    """A policy as it will be stored, or Invalid naming each field that is wrong and why.
    `current_drill`: the scratch cluster the stored policy drills into (kept, not typed again)."""
    errors: dict[str, list[str]] = {}
    drill = _drill_fields(store, project_id, cluster_id, data, errors, current_drill)
    schedule = " ".join(str(data.get("schedule") or "").split())
    problems = _schedule_errors(schedule) if len(schedule) <= 100 else ["at most 100 characters"]
    if problems:
        errors["schedule"] = problems
    keep_last = _integer(data.get("keep_last"), 1, 1000)
    if keep_last is None:
        errors["keep_last"] = ["a whole number of snapshots, 1 to 1000"]
    max_age = data.get("max_age_days")
    if max_age in (None, ""):
        max_age = None
    else:
        max_age = _integer(max_age, 1, 3650)
        if max_age is None:
            errors["max_age_days"] = ["a whole number of days, 1 to 3650, or empty"]
    compression = str(data.get("compression") or "gzip")
    if compression not in COMPRESSIONS:
        errors["compression"] = [f"one of {', '.join(COMPRESSIONS)}"]
    bucket = str(data.get("bucket") or "").strip()
    if not BUCKET_RE.match(bucket):
        errors["bucket"] = [
            "an S3 bucket name: 3 to 63 lower-case letters, digits, '.' or '-', starting and"
            " ending with a letter or digit"
        ]
    prefix = str(data.get("prefix") or "").strip().strip("/")
    if not PREFIX_RE.match(prefix) or "//" in prefix or ".." in prefix.split("/"):
        errors["prefix"] = ["up to 200 letters, digits and !_.*'()-, folders split by '/'"]
    region = str(data.get("region") or "").strip()
    if region and not REGION_RE.match(region):
        errors["region"] = ["an AWS region such as eu-west-1, or empty for the credential's"]
    credential = None
    credential_id = str(data.get("credential_id") or "")
    if not credential_id:
        errors["credential_id"] = ["pick the AWS credential that may write to the bucket"]
    else:
        credential = store.credentials.find_one(
            {"_id": credential_id, "project_id": project_id, "kind": "aws"}
        )
        if credential is None:
            errors["credential_id"] = ["an AWS credential of this project"]
    member = str(data.get("member") or "").strip()
    if member and not re.match(r"^[A-Za-z0-9.-]+(:\d{1,5})?$", member):
        errors["member"] = ["host:port of the member to read from, or empty for a secondary"]
    enabled = _boolean(data.get("enabled", True))
    if errors:
        raise Invalid("the backup policy cannot be saved as given", errors)
    assert credential is not None
    return {
        "schedule": schedule,
        "keep_last": keep_last,
        "max_age_days": max_age,
        "compression": compression,
        "member": member,
        "users_and_roles": _boolean(data.get("users_and_roles", False)),
        "enabled": bool(enabled),
        **drill,
        "store": {
            "bucket": bucket,
            "prefix": prefix,
            "region": region,
            "credential_id": credential["_id"],
            "credential_name": credential["name"],
            "endpoint_url": credential.get("public", {}).get("endpoint_url", ""),
        },
    }


def _cluster(store: Store, actor: Actor, cluster_id: str, role: str) -> tuple[dict, dict]:
    cluster = store.clusters.find_one({"_id": cluster_id})
    if cluster is None:
        raise NotFound("no such cluster (or you are not a member of its project)")
    project = projects.require(store, actor, cluster["project_id"], role)
    return cluster, project


def get_policy(store: Store, actor: Actor, cluster_id: str) -> dict[str, Any] | None:
    cluster, _ = _cluster(store, actor, cluster_id, "read-only")
    return _policies(store).find_one({"_id": cluster["_id"]})


def save_policy(
    store: Store,
    settings: Settings,
    actor: Actor,
    cluster_id: str,
    data: dict[str, Any],
    s3: S3Factory | None = None,
) -> dict[str, Any]:
    """Create or replace the cluster's policy (operators and owners), its store checked first
    (the bucket answers to the credential); audited with what changed, never a secret."""
    cluster, project = _cluster(store, actor, cluster_id, "operator")
    before = _policies(store).find_one({"_id": cluster["_id"]}) or {}
    where = f"{project['name']}/{cluster['name']}"
    try:
        policy = validate_policy(store, cluster["project_id"], data, cluster["_id"],
                                 before.get("drill_cluster_id", ""))  # fmt: skip
    except Invalid as error:
        if "drill_confirm" in error.fields:
            audit.record(store, actor, "backup.drill", where, "refused",
                         {"scratch": _cluster_name(store, data.get("drill_cluster_id")),
                          "reason": error.fields["drill_confirm"][0]})  # fmt: skip
        raise
    check_store(store, settings, policy["store"], s3 or s3_client)
    at = now()
    policy.update(
        _id=cluster["_id"],
        project_id=cluster["project_id"],
        cluster_id=cluster["_id"],
        next_run_at=next_run(policy["schedule"], at) if policy["enabled"] else None,
        drill_next_at=next_run(policy["drill_schedule"], at)
        if policy["enabled"] and policy["drill_schedule"]
        else None,
        retention_at=0.0,  # the next tick applies it
        running=before.get("running"),  # a backup running goes on holding its cluster
        updated_at=at,
        updated_by=actor.username,
        created_at=before.get("created_at", at),
    )
    _policies(store).replace_one({"_id": cluster["_id"]}, policy, upsert=True)
    changed = sorted(
        k for k in ("schedule", "keep_last", "max_age_days", "compression", "member",
                    "users_and_roles", "enabled", "store", "drill_schedule",
                    "drill_cluster_id") if before.get(k) != policy[k]
    )  # fmt: skip
    audit.record(
        store, actor, "backup.policy", where,
        detail={"changed": changed, "schedule": policy["schedule"],
                "keep_last": policy["keep_last"], "max_age_days": policy["max_age_days"],
                "bucket": policy["store"]["bucket"], "enabled": policy["enabled"]},
    )  # fmt: skip
    if "drill_schedule" in changed or "drill_cluster_id" in changed:
        audit.record(store, actor, "backup.drill", where,
                     detail={"scratch": policy["drill_cluster_name"],
                             "was": _cluster_name(store, before.get("drill_cluster_id")),
                             "schedule": policy["drill_schedule"]})  # fmt: skip
    return policy


def _cluster_name(store: Store, cluster_id: Any) -> str:
    found = store.clusters.find_one({"_id": str(cluster_id or "")})
    return found["name"] if found else ""


def public_policy(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    shown = {k: v for k, v in policy.items() if k != "store"}
    shown["store"] = {k: policy["store"].get(k, "") for k in PUBLIC_STORE}
    shown["store"]["endpoint_url"] = policy["store"].get("endpoint_url", "")
    return shown


# -- backups -----------------------------------------------------------------------------------


def _agent_host(store: Store, cluster: dict[str, Any], at: float) -> dict[str, Any] | None:
    """A host of the cluster whose agent was heard of lately (the engine picks the member)."""
    hosts = store.hosts.find(
        {"_id": {"$in": cluster.get("host_ids", [])}, "agent.last_seen": {"$gte": at - AGENT_FRESH}}
    )
    return next(iter(sorted(hosts, key=lambda h: h["name"])), None)


def _first_router(store: Store, cluster: dict[str, Any]) -> dict[str, Any] | None:
    """A sharded cluster's first mongos ({host, address, port}), which its backups and restores
    go through; None for a replica set."""
    from webui.services import deployments

    return next(iter(deployments.routers(store, cluster)), None)


def _router(store: Store, cluster: dict[str, Any]) -> str:
    first = _first_router(store, cluster)
    return f"{first['address']}:{first['port']}" if first else ""


def _wake(settings: Settings) -> dict[str, Any]:
    """What wakes the agent's waiting poll when a command is queued for it, so that it does not
    wait for its next look at the store (webui.services.agent_commands.enqueue)."""
    if not settings.redis_url:
        return {}
    from redis import Redis

    return {
        "wake": Redis.from_url(settings.redis_url, socket_timeout=5),
        "wake_prefix": f"wap:{settings.queue_name}:agent-commands",
    }


def _job_request(playbook: str, cluster: dict[str, Any], store_credential: str) -> dict[str, Any]:
    """A backup or restore job on the cluster: the store's credential beside the cluster's own
    (its SSH key, its administrator), as the playbook logs in to a member's host and reads or
    writes the set as the deploy did."""
    wanted = [store_credential, *cluster.get("credential_ids", [])]
    return {"playbook": playbook, "cluster_id": cluster["_id"],
            "credential_ids": list(dict.fromkeys(wanted))}  # fmt: skip


def _cluster_vars(settings: Settings, cluster: dict[str, Any]) -> dict[str, Any]:
    """The set's own settings from its deploy (name, port, TLS), and the agent's wheelhouse for
    the role (whaleal.wap.mongodb_backup) to install the engine on a host that has no agent."""
    deployed = cluster.get("deploy_vars") or {}
    found = {k: deployed[k] for k in ("mongodb_replicaset_name", "mongodb_replicaset_port",
                                      "mongodb_replicaset_tls") if k in deployed}  # fmt: skip
    wheelhouse = settings.agent_wheelhouse
    if wheelhouse is not None and any(wheelhouse.glob("wap_agent-*.whl")):
        found["mongodb_backup_wheelhouse"] = str(wheelhouse)
    return found


def _layout(policy: dict[str, Any]) -> snapshots.Layout:
    return snapshots.Layout(policy["store"]["prefix"], policy["project_id"], policy["cluster_id"])


def start_backup(
    store: Store,
    settings: Settings,
    actor: Actor,
    cluster_id: str,
    *,
    trigger: str = "manual",
    at: float | None = None,
) -> dict[str, Any]:
    """Back the cluster up now, to its policy's store: the catalogue entry, `running`. A refusal
    (no policy, one running, nowhere to run) is on the audit log too."""
    cluster, project = _cluster(store, actor, cluster_id, "operator")
    at = now() if at is None else at
    try:
        return _start(store, settings, actor, cluster, project, trigger, at)
    except Conflict as error:
        audit.record(
            store, actor, "backup.start", f"{project['name']}/{cluster['name']}", "refused",
            {"trigger": trigger, "reason": error.message},
        )  # fmt: skip
        raise


def _start(
    store: Store, settings: Settings, actor: Actor, cluster: dict[str, Any],
    project: dict[str, Any], trigger: str, at: float,
) -> dict[str, Any]:  # fmt: skip
    policy = _policies(store).find_one({"_id": cluster["_id"]})
    if policy is None:
        raise Conflict("the cluster has no backup policy: save one first (where to write)")
    snapshot_id = snapshots.snapshot_id(at)
    # One backup of a cluster at a time, even when a click and a schedule meet: the policy holds
    # the running one, taken in one update and given back when it ends (or cannot start).
    taken = _policies(store).update_one(
        {"_id": cluster["_id"], "running": {"$in": [None, ""]}}, {"$set": {"running": snapshot_id}}
    )
    if taken.modified_count != 1 or _snapshots(store).find_one(
        {"cluster_id": cluster["_id"], "status": RUNNING}
    ):
        if taken.modified_count == 1:
            _release(store, cluster["_id"], snapshot_id)
        raise Conflict("a backup of this cluster is running: wait for it to end")
    try:
        return _launch(store, settings, actor, cluster, project, policy, trigger, at, snapshot_id)
    except BaseException:
        _release(store, cluster["_id"], snapshot_id)
        raise


def _release(store: Store, cluster_id: str, snapshot_id: str) -> None:
    _policies(store).update_one({"_id": cluster_id, "running": snapshot_id},
                                {"$set": {"running": None}})  # fmt: skip


def _launch(
    store: Store, settings: Settings, actor: Actor, cluster: dict[str, Any],
    project: dict[str, Any], policy: dict[str, Any], trigger: str, at: float, snapshot_id: str,
) -> dict[str, Any]:  # fmt: skip
    layout = _layout(policy)
    compression = None if policy["compression"] == "none" else policy["compression"]
    entry: dict[str, Any] = {
        "_id": snapshot_id,
        "project_id": cluster["project_id"],
        "cluster_id": cluster["_id"],
        "cluster_name": cluster["name"],
        "trigger": trigger,
        "status": RUNNING,
        "started_at": at,
        "finished_at": None,
        "store": {k: policy["store"].get(k, "") for k in (*PUBLIC_STORE, "endpoint_url")},
        "prefix": layout.snapshot(snapshot_id),
        "manifest_key": layout.manifest(snapshot_id),
        "compression": compression,
        "created_by": actor.username,
        "size": None,
        "documents": None,
        "reason": "",
    }
    host = _agent_host(store, cluster, now())  # heard of lately, whatever `at` says
    if host is not None:
        args = {
            "snapshot_id": snapshot_id,
            "bucket": policy["store"]["bucket"],
            "prefix": policy["store"]["prefix"],
            "region": policy["store"]["region"],
            "endpoint_url": policy["store"]["endpoint_url"],
            "project_id": cluster["project_id"],
            "cluster_id": cluster["_id"],
            "cluster_name": cluster["name"],
            "compression": compression,
            "member": policy.get("member", ""),
            "oplog": True,
            "users_and_roles": bool(policy.get("users_and_roles")),
        }
        if cluster.get("topology") == "sharded":  # every shard and the config servers at once
            args["router"] = _router(store, cluster)
        command = agent_commands.enqueue(
            store, actor, cluster["project_id"], host["_id"], "backup", args, **_wake(settings)
        )
        entry.update(via="agent", host_id=host["_id"], command_id=command["_id"])
    elif PLAYBOOK in jobs.list_playbooks(settings):
        _backup_job(store, settings, actor, cluster, entry, policy)
    else:
        raise Conflict(
            f"no agent on the cluster's hosts was heard of in the last {int(AGENT_FRESH)} s, and"
            f" the platform has no {PLAYBOOK} to back it up without one: deploy the agent"
            " (deploy_agent.yml) on one of its hosts"
        )
    _snapshots(store).insert_one(entry)
    audit.record(
        store, actor, "backup.start", f"{project['name']}/{cluster['name']}",
        detail={"snapshot_id": snapshot_id, "trigger": trigger, "via": entry["via"],
                **({"job_id": entry["job_id"]} if entry.get("job_id") else {})},
    )  # fmt: skip
    return entry


def _backup_job(
    store: Store, settings: Settings, actor: Actor, cluster: dict[str, Any],
    entry: dict[str, Any], policy: dict[str, Any],
) -> None:  # fmt: skip
    """backup_cluster.yml as a job on the cluster, writing the entry's snapshot."""
    data = _job_request(PLAYBOOK, cluster, entry["store"]["credential_id"])
    job = jobs.create_job(
        store, settings, actor, cluster["project_id"], data,
        action="backup", platform_vars={
            "wap_backup": {**entry["store"], **{
                "snapshot_id": entry["_id"], "compression": entry["compression"] or "none",
                "member": policy.get("member", ""),
                "users_and_roles": bool(policy.get("users_and_roles")),
                "project_id": cluster["project_id"],
                "cluster_id": cluster["_id"], "cluster_name": cluster["name"]}},
            **_cluster_vars(settings, cluster), **_sharded_vars(store, cluster, "backup"),
        },
    )  # fmt: skip
    entry.update(via="job", job_id=job["_id"])


def _sharded_vars(store: Store, cluster: dict[str, Any], kind: str) -> dict[str, Any]:
    """A sharded cluster's job (`kind`: backup or restore) runs the engine on its first router's
    host, against the mongos there (the engine finds the shards and config servers from it)."""
    first = _first_router(store, cluster)
    if first is None:
        return {}
    return {f"wap_{kind}_host": first["host"], "mongodb_backup_port": int(first["port"]),
            "mongodb_backup_replica_set": ""}  # fmt: skip


def _instead_of_agent(store: Store, settings: Settings, entry: dict[str, Any], kind: str) -> bool:
    """An agent refused the command (backup or restore not on its allow-list, say): the job of
    the playbook does it instead when the platform has the playbook; True when started."""
    playbook = PLAYBOOK if kind == "backup" else RESTORE_PLAYBOOK
    cluster = store.clusters.find_one({"_id": entry["cluster_id"]})
    if cluster is None or playbook not in jobs.list_playbooks(settings):
        return False
    if entry.get("point_in_time"):  # the job's role replays no followed oplog
        return False
    if kind == "backup":
        policy = _policies(store).find_one({"_id": entry["cluster_id"]}) or {}
        _backup_job(store, settings, SYSTEM, cluster, entry, policy)
        found = _snapshots(store)
    else:
        snapshot = _snapshots(store).find_one({"_id": entry["snapshot_id"]})
        if snapshot is None:
            return False
        _restore_job(store, settings, SYSTEM, entry, snapshot, cluster)
        found = _restores(store)
    found.update_one({"_id": entry["_id"]}, {"$set": {"via": "job", "job_id": entry["job_id"]}})
    return True


def list_snapshots(
    store: Store, actor: Actor, cluster_id: str, limit: int = 200
) -> list[dict[str, Any]]:
    """The cluster's catalogue, newest first."""
    cluster, _ = _cluster(store, actor, cluster_id, "read-only")
    cursor = _snapshots(store).find({"cluster_id": cluster["_id"]}).sort("started_at", -1)
    return list(cursor.limit(limit))


def get_snapshot(store: Store, actor: Actor, snapshot_id: str) -> dict[str, Any]:
    entry = _snapshots(store).find_one({"_id": snapshot_id})
    if entry is None:
        raise NotFound("no such snapshot")
    projects.require(store, actor, entry["project_id"], "read-only")
    return entry


def public_snapshot(entry: dict[str, Any]) -> dict[str, Any]:
    shown = dict(entry)
    shown["store"] = {k: entry.get("store", {}).get(k, "") for k in PUBLIC_STORE}
    shown["duration"] = (
        entry["finished_at"] - entry["started_at"] if entry.get("finished_at") else None
    )
    return shown


# -- S3, on the worker's side ----------------------------------------------------------------


def s3_client(store: Store, settings: Settings, entry_store: dict[str, Any]) -> Any:
    """An S3 client with the store's credential (revealed here, never kept)."""
    from wap_agent.backup.s3 import client

    return client(*_access(store, settings, entry_store), max_attempts=3, timeout=S3_TIMEOUT)


def _access(store: Store, settings: Settings, entry_store: dict[str, Any]) -> tuple[Any, ...]:
    """Endpoint, region, access key id and secret of a snapshot store."""
    secret = credentials.reveal(store, settings.credential_key, entry_store["credential_id"])
    return (
        entry_store.get("endpoint_url") or secret.get("endpoint_url"),
        entry_store.get("region") or "us-east-1",
        secret["access_key_id"],
        secret["secret_access_key"],
    )


def presigner(store: Store, settings: Settings, entry_store: dict[str, Any]) -> Any:
    """An S3 client that signs links with Signature Version 4 (botocore signs a presigned GET
    with version 2 unless told, which regions opened since 2014 refuse)."""
    import boto3
    from botocore.config import Config

    endpoint, region, key, secret = _access(store, settings, entry_store)
    return boto3.client(
        "s3", endpoint_url=endpoint or None, region_name=region, aws_access_key_id=key,
        aws_secret_access_key=secret, config=Config(signature_version="s3v4"),
    )  # fmt: skip


def check_store(
    store: Store, settings: Settings, entry_store: dict[str, Any], s3: S3Factory
) -> None:
    """The bucket answers to the store's credential, or Invalid with S3's reason."""
    from wap_agent.backup.s3 import failure_reason

    try:
        s3(store, settings, entry_store).head_bucket(Bucket=entry_store["bucket"])
    except Exception as exc:
        reason = failure_reason(exc)
        raise Invalid(
            "the snapshot store does not answer as given",
            {
                "bucket": [
                    f"S3 answered {reason!r} for bucket {entry_store['bucket']!r} with"
                    f" credential {entry_store['credential_name']!r}: check the bucket,"
                    " its region and what the credential may do"
                ]
            },
        ) from None


def _finish(store: Store, entry: dict[str, Any], update: dict[str, Any]) -> None:
    _snapshots(store).update_one({"_id": entry["_id"], "status": RUNNING}, {"$set": update})
    _release(store, entry["cluster_id"], entry["_id"])
    project = store.projects.find_one({"_id": entry["project_id"]}) or {}
    audit.record(
        store, SYSTEM, f"backup.{update['status']}",
        f"{project.get('name', entry['project_id'])}/{entry['cluster_name']}",
        "ok" if update["status"] == DONE else "failed",
        {"snapshot_id": entry["_id"], **({"reason": update["reason"][:300]}
                                         if update.get("reason") else {})},
    )  # fmt: skip


def _clean(s3: Any, bucket: str, prefix: str) -> str:
    """What a failed backup left under its prefix, removed: multipart uploads still open (an
    agent killed mid-upload never aborts its own) and objects (an archive without its manifest).
    What was done, or why it could not be."""
    try:
        aborted = 0
        pages = s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=prefix + "/"
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                aborted += 1
        deleted = _delete_objects(s3, bucket, prefix)
    except Exception as exc:
        from wap_agent.backup.s3 import failure_reason

        return f"what it left in the store could not be removed: {failure_reason(exc)}"
    return (
        f"{aborted} open upload(s) aborted, {deleted} object(s) deleted"
        if aborted or deleted
        else ""
    )


def _fail(
    store: Store, settings: Settings, entry: dict[str, Any], s3: S3Factory, reason: str, at: float
) -> str:
    """The backup failed: what it left in the store removed, the reason (and the removal) kept."""
    left = _clean(s3(store, settings, entry["store"]), entry["store"]["bucket"], entry["prefix"])
    _finish(store, entry, {"status": FAILED, "finished_at": at,
                           "reason": f"{reason}; {left}" if left else reason})  # fmt: skip
    return FAILED


def settle(
    store: Store,
    settings: Settings,
    entry: dict[str, Any],
    s3: S3Factory,
    at: float | None = None,
) -> str:
    """Bring a running backup's entry up to date from its command or job; its status after. One
    whose agent went silent for AGENT_STALL is failed; a failed one's leftovers are removed."""
    if entry["status"] != RUNNING:
        return entry["status"]
    at = now() if at is None else at
    if entry.get("via") == "agent":
        work = store.agent_commands.find_one({"_id": entry.get("command_id")}) or {}
        state = work.get("state", "gone")
        if state == agent_commands.REFUSED and _instead_of_agent(store, settings, entry, "backup"):
            return RUNNING
        finished = state in (*agent_commands.OUTCOMES, agent_commands.EXPIRED, "gone")
        succeeded = state == agent_commands.SUCCEEDED
        reason = work.get("reason") or f"the agent's command {state}"
    else:
        work = store.jobs.find_one({"_id": entry.get("job_id")}) or {}
        state = work.get("status", "gone")
        finished = state in (*jobs.FINISHED, "gone")
        succeeded = state == "successful"
        reason = work.get("reason") or f"the backup job ended {state}"
    if not finished and entry.get("via") == "agent":
        heard = max(float(work.get(k) or 0) for k in ("created_at", "started_at"))
        heard = max(heard, float((work.get("progress") or {}).get("at") or 0))
        if now() - heard > AGENT_STALL:  # the agent's records are stamped by the clock
            finished = True
            reason = (
                f"no word from its agent for {AGENT_STALL / 60:.0f} min ({state} when given up):"
                " the agent stopped or lost the command"
            )
    if not finished:
        return RUNNING
    if not succeeded:
        return _fail(store, settings, entry, s3, reason, at)
    try:
        made = snapshots.read(s3(store, settings, entry["store"]), entry["store"]["bucket"],
                              entry["manifest_key"])  # fmt: skip
    except (OSError, ValueError) as exc:
        reason = f"the backup reported success but its manifest cannot be read: {exc}"
        return _fail(store, settings, entry, s3, reason, at)
    _finish(
        store, entry,
        {"status": DONE, "started_at": made.started_at, "finished_at": made.finished_at,
         "size": made.stored_size, "data_size": made.data_size, "documents": made.documents,
         "collections": len(made.collections), "mongodb_version": made.mongodb_version,
         "oplog": {"start": made.oplog_start, "end": made.oplog_end},
         "topology": made.topology,
         "sets": [{"name": s["name"], "role": s["role"], "documents": s.get("documents")}
                  for s in made.sets]},
    )  # fmt: skip
    _policies(store).update_one({"_id": entry["cluster_id"]}, {"$set": {"retention_at": 0.0}})
    return DONE


def expired(
    entries: list[dict[str, Any]], keep_last: int, max_age_days: int | None, at: float
) -> list[dict[str, Any]]:
    """The done snapshots a retention no longer keeps: neither among the newest `keep_last`
    nor, when `max_age_days` is set, younger than that; and the failed backups older than the
    oldest snapshot kept (their record goes with the snapshots of their time)."""
    done = sorted((e for e in entries if e["status"] == DONE), key=lambda e: -e["started_at"])
    old = done[keep_last:]
    if max_age_days is not None:
        old = [e for e in old if e["started_at"] < at - max_age_days * 86400]
    kept = [e for e in done if e not in old]
    if len(kept) >= keep_last:
        oldest = kept[-1]["started_at"]
        old += [e for e in entries if e["status"] == FAILED and e["started_at"] < oldest]
    return old


def _delete_objects(s3: Any, bucket: str, prefix: str) -> int:
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(f"S3 refused to delete {first.get('Key')}: {first.get('Code')}")
            deleted += len(keys)
    return deleted


def _remove(
    store: Store, settings: Settings, actor: Actor, entry: dict[str, Any], s3: S3Factory,
    action: str,
) -> None:  # fmt: skip
    objects = _delete_objects(s3(store, settings, entry["store"]), entry["store"]["bucket"],
                              entry["prefix"])  # fmt: skip
    _snapshots(store).delete_one({"_id": entry["_id"]})
    project = store.projects.find_one({"_id": entry["project_id"]}) or {}
    audit.record(
        store, actor, action, f"{project.get('name', entry['project_id'])}/{entry['cluster_name']}",
        detail={"snapshot_id": entry["_id"], "objects": objects,
                "started_at": entry["started_at"]},
    )  # fmt: skip


def delete_snapshot(
    store: Store, settings: Settings, actor: Actor, snapshot_id: str, confirm: str,
    s3: S3Factory = s3_client,
) -> None:  # fmt: skip
    """Delete one snapshot (its objects, then its entry): operators, typing the snapshot's id."""
    entry = get_snapshot(store, actor, snapshot_id)
    projects.require(store, actor, entry["project_id"], "operator")
    if confirm != snapshot_id:
        raise Invalid("type the snapshot's id to delete it", {"confirm": [snapshot_id]})
    if entry["status"] == RUNNING:
        raise Conflict("the backup is running: wait for it to end")
    _remove(store, settings, actor, entry, s3, "backup.delete")


def apply_retention(
    store: Store, settings: Settings, policy: dict[str, Any], at: float, s3: S3Factory
) -> list[str]:
    """Delete the cluster's snapshots its retention no longer keeps; their ids."""
    entries = list(_snapshots(store).find({"cluster_id": policy["cluster_id"]}))
    gone = []
    for entry in expired(entries, policy["keep_last"], policy.get("max_age_days"), at):
        _remove(store, settings, SYSTEM, entry, s3, "backup.expire")
        gone.append(entry["_id"])
    return gone


def _claim_due(store: Store, at: float) -> dict[str, Any] | None:
    """One policy whose run is due, its next run moved on in the same update: another worker
    ticking at the same moment cannot claim it again."""
    for policy in _policies(store).find({"enabled": True, "next_run_at": {"$lte": at}}):
        claimed = _policies(store).update_one(
            {"_id": policy["_id"], "next_run_at": policy["next_run_at"]},
            {"$set": {"next_run_at": next_run(policy["schedule"], at), "last_run_at": at}},
        )
        if claimed.modified_count == 1:
            return policy
    return None


def tick(
    store: Store, settings: Settings, at: float | None = None, s3: S3Factory = s3_client
) -> dict[str, list[str]]:
    """The periodic work (see the module's note): backups due started, running ones settled,
    expired ones deleted. What it did, by snapshot id."""
    at = now() if at is None else at
    report: dict[str, list[str]] = {"started": [], "refused": [], "settled": [], "expired": []}
    while (policy := _claim_due(store, at)) is not None:
        try:
            entry = start_backup(store, settings, SYSTEM, policy["cluster_id"],
                                 trigger="schedule", at=at)  # fmt: skip
            report["started"].append(entry["_id"])
        except Conflict:  # on the audit log already
            report["refused"].append(policy["cluster_id"])
        except (Invalid, NotFound) as error:  # the cluster or its project is gone
            report["refused"].append(policy["cluster_id"])
            project = store.projects.find_one({"_id": policy["project_id"]}) or {}
            audit.record(store, SYSTEM, "backup.start", project.get("name", ""), "refused",
                         {"cluster_id": policy["cluster_id"], "reason": error.message})  # fmt: skip
    for entry in list(_snapshots(store).find({"status": RUNNING})):
        if settle(store, settings, entry, s3, at) != RUNNING:
            report["settled"].append(entry["_id"])
    for policy in list(_policies(store).find({"retention_at": {"$lte": at}})):
        claimed = _policies(store).update_one(
            {"_id": policy["_id"], "retention_at": policy["retention_at"]},
            {"$set": {"retention_at": at + RETENTION_EVERY}},
        )
        if claimed.modified_count == 1:
            report["expired"] += apply_retention(store, settings, policy, at, s3)
    report["drills"] = []
    while (policy := _claim_drill(store, at)) is not None:
        report["drills"].append(start_drill(store, settings, policy, at))
    report["restored"] = tick_restores(store, settings, at, s3)
    return report


# -- restore drills ----------------------------------------------------------------------------


def _claim_drill(store: Store, at: float) -> dict[str, Any] | None:
    """One policy whose drill is due, its next drill moved on in the same update."""
    due = {"enabled": True, "drill_next_at": {"$ne": None, "$lte": at}}
    for policy in _policies(store).find(due):
        claimed = _policies(store).update_one(
            {"_id": policy["_id"], "drill_next_at": policy["drill_next_at"]},
            {"$set": {"drill_next_at": next_run(policy["drill_schedule"], at)}},
        )
        if claimed.modified_count == 1:
            return policy
    return None


def start_drill(store: Store, settings: Settings, policy: dict[str, Any], at: float) -> str:
    """A restore drill: the cluster's latest done snapshot restored into the policy's scratch
    cluster (its collections of the same names dropped first) and verified as every restore is;
    the restore is marked as a drill. Audited as backup.drill, a drill that cannot start too.
    Returns the restore's id, or "" when refused."""
    cluster = store.clusters.find_one({"_id": policy["cluster_id"]}) or {}
    project = store.projects.find_one({"_id": policy["project_id"]}) or {}
    where = f"{project.get('name', policy['project_id'])}/{cluster.get('name', '?')}"
    latest = next(iter(_snapshots(store).find({"cluster_id": policy["cluster_id"],
                                               "status": DONE}).sort("started_at", -1).limit(1)),
                  None)  # fmt: skip
    try:
        if latest is None:
            raise Conflict("the cluster has no done snapshot to drill with yet")
        # the scratch cluster's name was typed when it was set: each drill replaces it (a
        # sharded one emptied whole, else a second drill would find it holding the first's)
        entry = start_restore(store, settings, SYSTEM, latest["_id"], {
            "target": "cluster", "cluster_id": policy["drill_cluster_id"], "drop": True,
            "drop_confirm": _cluster_name(store, policy["drill_cluster_id"]),
            "replacing": True})  # fmt: skip
    except (Conflict, Invalid, NotFound) as error:
        audit.record(store, SYSTEM, "backup.drill", where, "refused",
                     {"at": at, "reason": error.message})  # fmt: skip
        return ""
    _restores(store).update_one({"_id": entry["_id"]}, {"$set": {"drill": True}})
    audit.record(store, SYSTEM, "backup.drill", where,
                 detail={"restore_id": entry["_id"], "snapshot_id": latest["_id"],
                         "scratch": entry["cluster_name"]})  # fmt: skip
    return str(entry["_id"])


def public_drill(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    report = entry.get("verification") or {}
    return {"id": entry["_id"], "status": entry["status"], "snapshot_id": entry["snapshot_id"],
            "cluster_name": entry["cluster_name"], "started_at": entry["started_at"],
            "finished_at": entry.get("finished_at"),
            "equal": report.get("equal") if report else None,
            "reason": entry.get("reason", "")}  # fmt: skip


def latest_drill(store: Store, cluster_id: str) -> dict[str, Any] | None:
    """The cluster's newest restore drill (its status, verification and reason), or None."""
    found = _restores(store).find({"source_cluster_id": cluster_id, "drill": True})
    return next(iter(found.sort("started_at", -1).limit(1)), None)


def timeline(entries: list[dict[str, Any]], at: float, days: int = 30) -> dict[str, Any]:
    """The console's picture of the last `days`: one mark per snapshot at its start, a done one
    as high as its size relative to the largest, coloured by status (x in 0..1000, height in
    0..100)."""
    since = at - days * 86400
    shown = [e for e in entries if e["started_at"] >= since]
    largest = max((e.get("size") or 0 for e in shown), default=0) or 1
    marks = [
        {
            "id": e["_id"],
            "x": round((e["started_at"] - since) / (days * 86400) * 1000, 1),
            # a failed or running backup has no size: a third of the height, in its colour
            "height": max(4, round(e["size"] / largest * 100)) if e.get("size") else 33,
            "status": e["status"],
            "size": e.get("size"),
            "started_at": e["started_at"],
        }
        for e in shown
    ]
    return {"since": since, "until": at, "days": days, "marks": marks}


# -- restores --------------------------------------------------------------------------------
#
# A restore takes a done snapshot into a target: another cluster of the project (one deployed
# for it by the wizard first: the restore waits for its deploy job and an agent on its hosts), or
# the snapshot's own cluster (typing its name); optionally only some namespaces, renamed. It runs
# as the agent command `restore` on a host of the target (the engine next to the data, reading
# the store with the host's own AWS credentials: nothing secret in its arguments); its progress
# is the command's. A target without an agent is restored by a restore_cluster.yml job instead.
# It ends with a verification report: per restored collection, what was copied and what the
# target holds (count, content hash, index set, read back by the engine) compared with the
# snapshot's manifest, read here with the project's credential. The report is stored with the
# restore and shown on the snapshot. Every step is on the audit log.

WAITING = "waiting"  # for the target's deploy job and its agent
RESTORE_TARGETS = ("cluster", "same", "new")
RESTORE_PLAYBOOK = "restore_cluster.yml"  # a target without an agent is restored by this job
DOWNLOAD_TTL = 3600  # seconds a download link is good for
NS_RE = re.compile(r"^[^\x00 ]{1,255}$")  # the engine checks patterns and $var$s


def _restores(store: Store) -> Any:
    return store.db.restores


def _namespaces(value: Any) -> list[str] | None:
    """A list of namespace patterns from a list or from text (commas, spaces or lines)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [v for v in re.split(r"[\s,]+", value) if v]
    if not isinstance(value, list) or len(value) > 100:
        return None
    if not all(isinstance(v, str) and NS_RE.match(v) for v in value):
        return None
    return value


def _renames(value: Any) -> tuple[list[str], list[str]] | None:
    """Renames as 'from=to' lines (or a list of them): mongorestore's --nsFrom/--nsTo pairs."""
    if isinstance(value, str):
        value = [v.strip() for v in value.splitlines() if v.strip()]
    pairs = [str(v).split("=", 1) for v in value or []]
    if any(len(p) != 2 for p in pairs):
        return None
    sources = _namespaces([p[0].strip() for p in pairs])
    targets = _namespaces([p[1].strip() for p in pairs])
    if sources is None or targets is None:
        return None
    return sources, targets


def check_restore(store: Store, snapshot: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The restore as it will run, or Invalid naming each field that is wrong and why."""
    errors: dict[str, list[str]] = {}
    target = str(data.get("target") or "")
    cluster = None
    if target not in RESTORE_TARGETS:
        errors["target"] = ["cluster (another of the project's), same (typing its name) or new"]
    elif target == "same":
        cluster = store.clusters.find_one({"_id": snapshot["cluster_id"]})
        if cluster is None:
            errors["target"] = ["the snapshot's cluster no longer exists: restore into another"]
        elif str(data.get("confirm") or "") != cluster["name"]:
            errors["confirm"] = [f"type the cluster's name, {cluster['name']}, to restore into it"]
    elif target == "cluster":
        cluster = store.clusters.find_one(
            {"_id": str(data.get("cluster_id") or ""), "project_id": snapshot["project_id"]}
        )
        if cluster is None:
            errors["cluster_id"] = ["a cluster of the snapshot's project"]
        elif cluster["_id"] == snapshot["cluster_id"]:
            errors["cluster_id"] = ["the snapshot's own cluster: choose target 'same'"]
    include = _namespaces(data.get("include"))
    if include is None:
        errors["include"] = ["namespace patterns such as shop.* or shop.orders, at most 100"]
    renames = _renames(data.get("renames"))
    if renames is None:
        errors["renames"] = ["lines of from=to, mongorestore's --nsFrom/--nsTo: shop.$c$=copy.$c$"]
    drop = _boolean(data.get("drop", False))
    if snapshot.get("topology") == "sharded":
        selecting = bool(include) or bool(renames and renames[0])
        # drop on a sharded cluster empties it whole: only for the platform's own replacing
        # restores (a drill's scratch cluster, a failed restore's target), never the wizard's
        _check_sharded_restore(snapshot, data, target, cluster, errors, selecting,
                               bool(drop) and not data.get("replacing"))  # fmt: skip
    if (drop and target == "cluster" and cluster is not None and "cluster_id" not in errors
            and str(data.get("drop_confirm") or "").strip() != cluster["name"]):  # fmt: skip
        errors["drop_confirm"] = [
            f"type the cluster's name, {cluster['name']}, to drop its collections of the"
            " snapshot's names"
        ]
    if errors:
        raise Invalid("the restore cannot start as given", errors)
    assert include is not None and renames is not None
    return {
        "target": target,
        "cluster": cluster,
        "include": include,
        "rename_from": renames[0],
        "rename_to": renames[1],
        "drop": bool(drop),
        "users_and_roles": _boolean(data.get("users_and_roles", False)),
    }


def shard_count(snapshot: dict[str, Any]) -> int:
    """How many shards a sharded snapshot holds (0 for a replica set's)."""
    return sum(1 for s in snapshot.get("sets") or [] if s.get("role") == "shard")


def _check_sharded_restore(
    snapshot: dict[str, Any], data: dict[str, Any], target: str, cluster: dict[str, Any] | None,
    errors: dict[str, list[str]], selecting: bool, drop: bool,
) -> None:  # fmt: skip
    """A sharded snapshot restores whole into a sharded cluster with as many shards that holds
    no database yet: a new one, or an empty one of the project."""
    shards = shard_count(snapshot)
    wanted = f"a sharded cluster with {shards} shards"
    if target == "same":
        errors["target"] = [f"a sharded snapshot restores into a new cluster: {wanted}"]
    elif (
        target == "cluster"
        and cluster is not None
        and (cluster.get("topology") != "sharded" or int(cluster.get("shards") or 0) != shards)
    ):
        errors["cluster_id"] = [f"{wanted}, holding no database yet"]
    elif target == "new":
        deployment = dict(data.get("deployment") or {})
        if deployment.get("topology") != "sharded" or str(deployment.get("shards")) != str(shards):
            errors["deployment"] = [f"{wanted} (the snapshot's shard count)"]
    if selecting:
        errors["include"] = ["a sharded snapshot restores whole: no selection, no renames"]
    if drop:
        errors["drop"] = ["a sharded snapshot restores into a new cluster: nothing to drop"]


def start_restore(
    store: Store, settings: Settings, actor: Actor, snapshot_id: str, data: dict[str, Any],
    deploy: Callable[..., tuple[dict[str, Any], dict[str, Any]]] | None = None,
    point_in_time: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Restore a done snapshot (operators of its project): the restore's entry, `running` (or
    `waiting` for a new cluster's deployment). Audited, refused ones too. With a moment
    (`data["at"]`), the cluster as it was then: webui.services.coverage checks the moment and
    comes back with the base snapshot and `point_in_time` (the last oplog entry replayed)."""
    snapshot = get_snapshot(store, actor, snapshot_id)
    if point_in_time is None and str(data.get("at") or "").strip():
        from webui.services import coverage

        return coverage.start_point_in_time_restore(
            store, settings, actor, snapshot["cluster_id"], data, deploy=deploy
        )
    project = projects.require(store, actor, snapshot["project_id"], "operator")
    where = f"{project['name']}/{snapshot['cluster_name']}"
    try:
        if snapshot["status"] != DONE:
            raise Conflict(f"the snapshot is {snapshot['status']}: only a done one restores")
        plan = check_restore(store, snapshot, data)
        if point_in_time and (plan["include"] or plan["rename_from"]):
            whole = "a restore to a moment replays the oplog: everything, no selection"
            raise Invalid("the restore cannot start as given", {"include": [whole]})
        job = None
        if plan["target"] == "new":
            from webui.services import deployments

            plan["cluster"], job = (deploy or deployments.create)(
                store, settings, actor, snapshot["project_id"], dict(data.get("deployment") or {})
            )
        cluster = plan.pop("cluster")
        entry: dict[str, Any] = {
            "_id": uuid.uuid4().hex,
            "project_id": snapshot["project_id"],
            "snapshot_id": snapshot_id,
            "source_cluster_id": snapshot["cluster_id"],
            "source_cluster_name": snapshot["cluster_name"],
            "cluster_id": cluster["_id"],
            "cluster_name": cluster["name"],
            **plan,
            "status": WAITING if job else RUNNING,
            "deploy_job_id": job["_id"] if job else None,
            "started_at": now(),
            "finished_at": None,
            "created_by": actor.username,
            "reason": "",
            "verification": None,
            "point_in_time": point_in_time,
        }
        if job is None:
            _enqueue_restore(store, settings, actor, entry, snapshot)
    except (Conflict, Invalid) as error:
        audit.record(store, actor, "backup.restore", where, "refused",
                     {"snapshot_id": snapshot_id, "reason": error.message,
                      **_moment(point_in_time)})  # fmt: skip
        raise
    _restores(store).insert_one(entry)
    audit.record(
        store, actor, "backup.restore", where,
        detail={"restore_id": entry["_id"], "snapshot_id": snapshot_id, "target": plan["target"],
                "cluster": cluster["name"], "include": plan["include"], "drop": plan["drop"],
                "renames": len(plan["rename_from"]), **_moment(point_in_time)},
    )  # fmt: skip
    return entry


def restore_again(
    store: Store, settings: Settings, actor: Actor, restore_id: str, confirm: str,
) -> dict[str, Any]:  # fmt: skip
    """The way out of a restore that failed midway: its target holds what it wrote (its reason
    names the collections left complete) and refuses a second restore as not empty, so the same
    snapshot is restored into the same target, the same namespaces, with drop (the collections
    it restores replaced; a sharded cluster is emptied whole, every database it holds dropped),
    once the target's name is typed. A new restore (`again_of` names the failed one), audited as
    every restore."""
    failed = get_restore(store, actor, restore_id)
    project = projects.require(store, actor, failed["project_id"], "operator")
    try:
        _check_again(store, failed, confirm)
    except (Conflict, Invalid) as error:
        audit.record(store, actor, "backup.restore", f"{project['name']}/{failed['cluster_name']}",
                     "refused", {"again_of": restore_id, "reason": error.message})  # fmt: skip
        raise
    same = failed["cluster_id"] == failed["source_cluster_id"]
    data = {
        "target": "same" if same else "cluster", "cluster_id": failed["cluster_id"],
        "confirm": confirm, "include": failed["include"], "drop": True,
        "renames": [f"{a}={b}" for a, b in zip(failed["rename_from"], failed["rename_to"],
                                                strict=True)],
        "users_and_roles": failed.get("users_and_roles", False),
        "at": (failed.get("point_in_time") or {}).get("at", ""),
        "drop_confirm": confirm, "replacing": True,
    }  # fmt: skip
    entry = start_restore(store, settings, actor, failed["snapshot_id"], data)
    _restores(store).update_one({"_id": entry["_id"]}, {"$set": {"again_of": restore_id}})
    entry["again_of"] = restore_id
    return entry


def _check_again(store: Store, failed: dict[str, Any], confirm: str) -> None:
    if failed["status"] != FAILED:
        raise Conflict(f"the restore is {failed['status']}: only a failed one is restored again")
    if confirm != failed["cluster_name"]:
        raise Invalid(
            "type the target's name to replace what the failed restore left",
            {"confirm": [f"type the cluster's name, {failed['cluster_name']}, to restore into it"
                         " again, replacing its collections of the snapshot's names"]},
        )  # fmt: skip


def _moment(point_in_time: dict[str, Any] | None) -> dict[str, Any]:
    """A restore to a moment's audit detail: the moment as asked and the last entry replayed."""
    if not point_in_time:
        return {}
    return {"at": point_in_time["at"], "until": point_in_time["until"]}


def _enqueue_restore(
    store: Store, settings: Settings, actor: Actor, entry: dict[str, Any],
    snapshot: dict[str, Any], job_fallback: bool = True,
) -> None:  # fmt: skip
    """The restore command for an agent on the target's hosts; without one, a job running
    restore_cluster.yml when the platform has it (and `job_fallback`); else Conflict."""
    cluster = store.clusters.find_one({"_id": entry["cluster_id"]})
    host = _agent_host(store, cluster, now()) if cluster else None
    if (
        host is None
        and cluster
        and job_fallback
        and not entry.get("point_in_time")  # the job's role replays no followed oplog
        and RESTORE_PLAYBOOK in jobs.list_playbooks(settings)
    ):
        _restore_job(store, settings, actor, entry, snapshot, cluster)
        return
    if host is None:
        raise Conflict(
            f"no agent on the hosts of {entry['cluster_name']!r} was heard of in the last"
            f" {int(AGENT_FRESH)} s, and the platform has no {RESTORE_PLAYBOOK} to restore"
            " without one: deploy the agent (deploy_agent.yml) on one of its hosts"
        )
    args = _restore_args(entry, snapshot)
    if cluster and cluster.get("topology") == "sharded":
        args["router"] = _router(store, cluster)
    command = agent_commands.enqueue(
        store, actor, entry["project_id"], host["_id"], "restore", args, **_wake(settings)
    )
    entry.update(status=RUNNING, via="agent", host_id=host["_id"], command_id=command["_id"])


def _restore_args(entry: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    """The agent's restore command's arguments: where the snapshot is, what to restore."""
    return {
        "restore_id": entry["_id"],
        "bucket": snapshot["store"]["bucket"],
        "region": snapshot["store"].get("region", ""),
        "endpoint_url": snapshot["store"].get("endpoint_url", ""),
        "manifest_key": snapshot["manifest_key"],
        "drop": entry["drop"],
        "include": entry["include"],
        "rename_from": entry["rename_from"],
        "rename_to": entry["rename_to"],
        "users_and_roles": bool(entry.get("users_and_roles")),
        **({"until": entry["point_in_time"]["until"]} if entry.get("point_in_time") else {}),
    }


def _restore_job(
    store: Store, settings: Settings, actor: Actor, entry: dict[str, Any],
    snapshot: dict[str, Any], cluster: dict[str, Any],
) -> None:  # fmt: skip
    """restore_cluster.yml as a job on the target cluster, with the store's credential and the
    cluster's own; its role reports the engine's result with set_stats (wap_backup_result)."""
    data = _job_request(RESTORE_PLAYBOOK, cluster, snapshot["store"]["credential_id"])
    args = _restore_args(entry, snapshot)
    renames = zip(args.pop("rename_from"), args.pop("rename_to"), strict=True)
    del args["restore_id"]
    request = {
        **{f"mongodb_backup_{k}": v for k, v in args.items()},
        "mongodb_backup_renames": [{"from": f, "to": t} for f, t in renames],
        **_cluster_vars(settings, cluster),
        **_sharded_vars(store, cluster, "restore"),
    }
    job = jobs.create_job(store, settings, actor, entry["project_id"], data, action="restore",
                          platform_vars=request)  # fmt: skip
    entry.update(status=RUNNING, via="job", job_id=job["_id"])


def _job_outcome(store: Store, entry: dict[str, Any], at: float) -> dict[str, Any] | str:
    """A restore job's result (the role's set_stats), or the restore's status when there is none
    to verify yet (running) or ever (failed)."""
    job = store.jobs.find_one({"_id": entry.get("job_id")}) or {}
    status = job.get("status", "gone")
    if status not in (*jobs.FINISHED, "gone"):
        return RUNNING
    if status != "successful":
        return _restore_failed(store, entry, at, job.get("reason") or f"its job ended {status}")
    from webui.jobs import store as job_records

    stats = (job_records.recap(store, entry["job_id"]) or {}).get("artifact_data") or {}
    result = stats.get("wap_backup_result")
    if not isinstance(result, dict):
        return _restore_failed(store, entry, at, "its job reported no result to verify")
    return result


def _finish_restore(store: Store, entry: dict[str, Any], update: dict[str, Any]) -> str:
    done = _restores(store).update_one(
        {"_id": entry["_id"], "status": {"$in": [RUNNING, WAITING]}}, {"$set": update}
    )
    if done.modified_count == 1:
        project = store.projects.find_one({"_id": entry["project_id"]}) or {}
        report = update.get("verification") or {}
        audit.record(
            store, SYSTEM, f"backup.restore.{update['status']}",
            f"{project.get('name', entry['project_id'])}/{entry['cluster_name']}",
            "ok" if update["status"] == DONE else "failed",
            {"restore_id": entry["_id"], "snapshot_id": entry["snapshot_id"],
             **_moment(entry.get("point_in_time")),
             **({"equal": report["equal"]} if report else {}),
             **({"reason": update["reason"][:300]} if update.get("reason") else {})},
        )  # fmt: skip
    return str(update["status"])


def _restore_failed(store: Store, entry: dict[str, Any], at: float, reason: str) -> str:
    return _finish_restore(store, entry, {"status": FAILED, "finished_at": at, "reason": reason})


def _start_waiting(store: Store, settings: Settings, entry: dict[str, Any], at: float) -> str:
    """A restore waiting for its new cluster: started once the deployment succeeded and an agent
    on its hosts is heard of; failed with the deployment, or without an agent after AGENT_FRESH."""
    job = store.jobs.find_one({"_id": entry.get("deploy_job_id")}) or {}
    status = job.get("status", "gone")
    if status in (*jobs.FINISHED, "gone") and status != "successful":
        return _restore_failed(store, entry, at, f"the target's deployment ended {status}")
    if status != "successful":
        return WAITING
    snapshot = _snapshots(store).find_one({"_id": entry["snapshot_id"]})
    if snapshot is None:
        return _restore_failed(store, entry, at, "the snapshot was deleted meanwhile")
    try:  # its agent is given AGENT_FRESH to be heard of before a job restores without it
        late = at - float(job.get("finished_at") or at) > AGENT_FRESH
        _enqueue_restore(store, settings, SYSTEM, entry, snapshot, job_fallback=late)
    except Conflict:
        if at - float(job.get("finished_at") or at) > AGENT_FRESH:
            return _restore_failed(
                store, entry, at, "no agent was heard of on the deployed cluster's hosts"
            )
        return WAITING
    _restores(store).update_one(
        {"_id": entry["_id"], "status": WAITING},
        {"$set": {k: entry[k] for k in ("status", "host_id", "command_id", "via", "job_id")
                  if k in entry}},
    )  # fmt: skip
    return RUNNING


def settle_restore(
    store: Store, settings: Settings, entry: dict[str, Any], s3: S3Factory,
    at: float | None = None,
) -> str:  # fmt: skip
    """Bring a restore up to date: a waiting one starts once its cluster is deployed, a running
    one ends with its command, verified against the manifest (done only when equal)."""
    at = now() if at is None else at
    if entry["status"] == WAITING:
        return _start_waiting(store, settings, entry, at)
    if entry["status"] != RUNNING:
        return entry["status"]
    if entry.get("via") == "job":
        outcome = _job_outcome(store, entry, at)
        if isinstance(outcome, str):
            return outcome
        return _verify_restore(store, settings, entry, outcome, s3, at)
    work = store.agent_commands.find_one({"_id": entry.get("command_id")}) or {}
    state = work.get("state", "gone")
    if state == agent_commands.REFUSED and _instead_of_agent(store, settings, entry, "restore"):
        return RUNNING
    if state not in (*agent_commands.OUTCOMES, agent_commands.EXPIRED, "gone"):
        heard = max(float(work.get(k) or 0) for k in ("created_at", "started_at"))
        heard = max(heard, float((work.get("progress") or {}).get("at") or 0))
        if now() - heard <= AGENT_STALL:
            return RUNNING
        return _restore_failed(
            store, entry, at, f"no word from its agent for {AGENT_STALL / 60:.0f} min"
        )
    if state != agent_commands.SUCCEEDED:
        return _restore_failed(store, entry, at, work.get("reason") or f"its command {state}")
    result = json.loads(work["result"]) if isinstance(work.get("result"), str) else {}
    return _verify_restore(store, settings, entry, result, s3, at)


def _verify_restore(
    store: Store, settings: Settings, entry: dict[str, Any], result: dict[str, Any],
    s3: S3Factory, at: float,
) -> str:  # fmt: skip
    """A restore's end: the engine's result against the snapshot's manifest, done when equal."""
    snapshot = _snapshots(store).find_one({"_id": entry["snapshot_id"]}) or {}
    try:
        made = snapshots.read(s3(store, settings, snapshot["store"]), snapshot["store"]["bucket"],
                              snapshot["manifest_key"])  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        return _restore_failed(
            store, entry, at, f"restored, but the manifest to verify against cannot be read: {exc}"
        )
    if entry.get("point_in_time"):  # what the snapshot held, and what the replay made
        from wap_agent.backup import pitr

        report = pitr.verification(made, result)
        report["point_in_time"] = {**report["point_in_time"], **_moment(entry["point_in_time"])}
    else:
        report = verify.verification(made, result, selected=bool(entry.get("include")))
    update = {
        "status": DONE if report["equal"] else FAILED,
        "finished_at": at,
        "verification": report,
        **{k: result.get(k) for k in ("documents", "bytes", "duration_seconds")},
    }
    if not report["equal"]:
        update["reason"] = "the restored data differs from the snapshot's manifest" + (
            f" ({report['note']})" if report["note"] else ""
        )
    return _finish_restore(store, entry, update)


def get_restore(store: Store, actor: Actor, restore_id: str) -> dict[str, Any]:
    """A restore, with its command's latest progress while it runs."""
    entry = _restores(store).find_one({"_id": restore_id})
    if entry is None:
        raise NotFound("no such restore")
    projects.require(store, actor, entry["project_id"], "read-only")
    command = store.agent_commands.find_one({"_id": entry.get("command_id")}) or {}
    entry["progress"] = command.get("progress")
    return entry


def list_restores(store: Store, actor: Actor, snapshot_id: str) -> list[dict[str, Any]]:
    """A snapshot's restores, newest first."""
    snapshot = get_snapshot(store, actor, snapshot_id)
    found = _restores(store).find({"snapshot_id": snapshot["_id"]}).sort("started_at", -1)
    return list(found.limit(100))


def latest_restores(store: Store, cluster_id: str) -> dict[str, dict[str, Any]]:
    """The newest restore of each of a cluster's snapshots, by snapshot id: the snapshot list's
    verification column."""
    found: dict[str, dict[str, Any]] = {}
    for entry in _restores(store).find({"source_cluster_id": cluster_id}).sort("started_at", 1):
        found[entry["snapshot_id"]] = entry
    return found


def download_link(
    store: Store, settings: Settings, actor: Actor, snapshot_id: str, s3: S3Factory = s3_client,
    ttl: int = DOWNLOAD_TTL, sign: S3Factory = presigner,
) -> dict[str, Any]:  # fmt: skip
    """Time-limited links (presigned GETs, Signature Version 4) to a done snapshot's archives and
    manifest, for a manual mongorestore (operators). Audited without the links: each one is a
    bearer's right to read the object until it expires. A link names the access key's id (as any
    presigned link does: AWS treats it as an identifier), never its secret."""
    snapshot = get_snapshot(store, actor, snapshot_id)
    project = projects.require(store, actor, snapshot["project_id"], "operator")
    if snapshot["status"] != DONE:
        raise Conflict(f"the snapshot is {snapshot['status']}: only a done one downloads")
    client = s3(store, settings, snapshot["store"])
    bucket = snapshot["store"]["bucket"]
    made = snapshots.read(client, bucket, snapshot["manifest_key"])
    objects = [(f.key, f.size) for f in made.files] + [(snapshot["manifest_key"], None)]
    client = sign(store, settings, snapshot["store"])
    links = [
        {"key": key, "name": key.rsplit("/", 1)[-1], "size": size,
         "url": client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                              ExpiresIn=ttl)}
        for key, size in objects
    ]  # fmt: skip
    audit.record(store, actor, "backup.download", f"{project['name']}/{snapshot['cluster_name']}",
                 detail={"snapshot_id": snapshot_id, "expires_in": ttl})  # fmt: skip
    name = links[0]["name"]
    if made.topology == "sharded":  # mongorestore cannot map the catalogue's shard names
        command = (f'wap-agent restore --uri "$MONGOS_URI" --from s3://{bucket}/'
                   f'{snapshot["manifest_key"]}  # through a mongos of a new cluster with'
                   f" {sum(1 for s in made.sets if s['role'] == 'shard')} shards")  # fmt: skip
    elif made.compression == "zstd":  # mongorestore reads gzip only: zstd decompresses into it
        command = f'zstd -dc {name} | mongorestore --uri "$URI" --archive --oplogReplay'
    else:
        gzip = " --gzip" if made.compression == "gzip" else ""
        command = f'mongorestore --uri "$URI" --archive={name}{gzip} --oplogReplay'
    return {"expires_at": now() + ttl, "links": links, "command": command}


def tick_restores(
    store: Store, settings: Settings, at: float | None = None, s3: S3Factory = s3_client
) -> list[str]:
    """Restores waiting or running brought up to date; the ids of those that ended."""
    ended = []
    for entry in list(_restores(store).find({"status": {"$in": [RUNNING, WAITING]}})):
        if settle_restore(store, settings, entry, s3, at) not in (RUNNING, WAITING):
            ended.append(entry["_id"])
    return ended
