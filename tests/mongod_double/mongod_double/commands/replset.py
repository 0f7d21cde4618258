"""Replica set commands: replSetInitiate, replSetGetStatus, replSetGetConfig, replSetReconfig,
replSetStepDown, replSetStepUp, replSetFreeze, appendOplogNote, and the internal ones members
send each other (replSetHeartbeat, replSetRequestVotes, replSetUpdatePosition), as mongod names
them.

Reply shapes and error codes follow MongoDB's command reference pages of the same names.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import random
import time

from mongod_double import rsconfig
from mongod_double.commands import Invocation, command
from mongod_double.errors import (
    ALREADY_INITIALIZED,
    BAD_VALUE,
    NO_REPLICATION_ENABLED,
    NO_SUCH_KEY,
    NODE_NOT_FOUND,
    NOT_WRITABLE_PRIMARY,
    NOT_YET_INITIALIZED,
    TYPE_MISMATCH,
    CommandError,
)
from mongod_double.replication import NOT_SECONDARY, PRIMARY, ReplicationCoordinator

EXCEEDED_TIME_LIMIT = 262
CURRENT_CONFIG_NOT_COMMITTED_YET = 308
INTERRUPTED_DUE_TO_REPL_STATE_CHANGE = 11602
CONFLICTING_OPERATION_IN_PROGRESS = 117
MAX_TIME_MS_EXPIRED = 50
COMMAND_FAILED = 125
FORCE_VERSION_BUMP = (10_000, 100_000)


def _replicated(inv: Invocation) -> ReplicationCoordinator:
    if not inv.server.role.is_replicated:
        raise CommandError(NO_REPLICATION_ENABLED, "not running with --replSet")
    return inv.server.replication


def _initialized(inv: Invocation) -> ReplicationCoordinator:
    repl = _replicated(inv)
    if repl.config is None:
        raise CommandError(NOT_YET_INITIALIZED, "no replset config has been received")
    return repl


@command("replSetInitiate", admin_only=True)
def repl_set_initiate(inv: Invocation) -> dict:
    server = inv.server
    repl = server.replication
    if not server.role.is_replicated:
        raise CommandError(
            NO_REPLICATION_ENABLED, "This node was not started with replication enabled."
        )
    if repl.config is not None:
        raise CommandError(ALREADY_INITIALIZED, "already initialized")
    given = inv.arg if isinstance(inv.arg, dict) and inv.arg else None
    if given is None:  # no config, or an empty one (rs.initiate()): this node alone
        given = {"_id": repl.set_name, "version": 1, "members": [{"_id": 0, "host": repl.me()}]}
    config = rsconfig.normalize(given, repl.set_name)
    config["term"] = 0
    me = repl.self_member(config)
    if me is None:
        raise CommandError(
            NODE_NOT_FOUND,
            "No host described in new configuration with "
            f"{{version: {config['version']}, term: 0}} for replica set "
            f"{repl.set_name} maps to this node",
        )
    _quorum_check(repl, config, me)
    if repl.config is not None:
        raise CommandError(ALREADY_INITIALIZED, "already initialized")
    repl.initiate(config)
    return {}


def _quorum_check(repl: ReplicationCoordinator, config: dict, me: dict) -> None:
    """Every proposed member must answer a heartbeat and not be initialized already."""
    failures = []
    body = {
        "replSetHeartbeat": config["_id"],
        "configVersion": config["version"],
        "configTerm": 0,
        "hbv": 1,
        "from": me["host"],
        "fromId": me["_id"],
        "term": 0,
        "checkEmpty": True,
    }
    already = []
    for member in config["members"]:
        if member is me:
            continue
        try:
            reply = _peers(repl).command(member["host"], body)
        except Exception as exc:
            failures.append(f"{member['host']} failed with {str(exc).split(', Timeout:')[0]}")
            continue
        if int(reply.get("v", -2)) != -2:
            already.append(
                f"Our config version of {config['version']} is no larger than the version on "
                f"{member['host']}, which is {reply.get('v')}"
            )
    if failures:
        raise CommandError(
            NODE_NOT_FOUND,
            "replSetInitiate quorum check failed because not all proposed set members "
            "responded affirmatively: " + ", ".join(failures),
        )
    if already:
        raise CommandError(rsconfig.NEW_CONFIG_INCOMPATIBLE, "; ".join(already))


def _peers(repl: ReplicationCoordinator):
    if repl.peers is None:  # threads not started yet (server still starting)
        raise CommandError(NOT_YET_INITIALIZED, "replication is not running yet")
    return repl.peers


@command("replSetGetStatus", admin_only=True)
def repl_set_get_status(inv: Invocation) -> dict:
    repl = _initialized(inv)
    return repl.status()


@command("replSetGetConfig", admin_only=True)
def repl_set_get_config(inv: Invocation) -> dict:
    repl = _initialized(inv)
    reply: dict = {"config": copy.deepcopy(repl.config)}
    if inv.body.get("commitmentStatus"):
        if repl.state != PRIMARY:
            raise CommandError(
                NOT_WRITABLE_PRIMARY,
                "commitmentStatus is only supported on primary.",
            )
        reply["commitmentStatus"] = repl.config_committed()
    return reply


@command("replSetReconfig", admin_only=True)
def repl_set_reconfig(inv: Invocation) -> dict:
    repl = _initialized(inv)
    force = bool(inv.body.get("force"))
    given = inv.arg
    if not isinstance(given, dict):
        raise CommandError(BAD_VALUE, "replSetReconfig requires a config document")
    if not force and repl.state != PRIMARY:
        raise CommandError(
            NOT_WRITABLE_PRIMARY,
            "replSetReconfig should only be run on a writable PRIMARY. Current state "
            f"{repl.state};",
        )
    old = repl.config
    given = copy.deepcopy(given)
    settings = given.setdefault("settings", {})
    if isinstance(settings, dict) and "replicaSetId" not in settings:
        settings["replicaSetId"] = old["settings"].get("replicaSetId")
    new = rsconfig.normalize(given, repl.set_name)
    rsconfig.check_reconfig(old, new, force)
    me = repl.self_member(new)
    if me is None:
        raise CommandError(
            NODE_NOT_FOUND,
            f"No host described in new configuration with {{version: {new['version']}, term: "
            f"{repl.term}}} for replica set {new['_id']} maps to this node",
        )
    max_time = inv.body.get("maxTimeMS")
    deadline = time.monotonic() + max_time / 1000 if max_time else None
    if force:
        new["version"] = old["version"] + random.randint(*FORCE_VERSION_BUMP)
        new["term"] = -1
        repl.install_config(new, "force reconfig")
        return {}
    if not rsconfig.electable(me):
        raise CommandError(
            rsconfig.NEW_CONFIG_INCOMPATIBLE,
            f"This node, {me['host']}, with _id {me['_id']} is not electable under the new "
            f"configuration with {{version: {new['version']}, term: {repl.term}}} for replica "
            f"set {new['_id']}",
        )
    if not _wait(lambda: repl.config_committed(), deadline, default=5.0):
        raise CommandError(
            CURRENT_CONFIG_NOT_COMMITTED_YET,
            "Cannot run replSetReconfig because the current config: {version: "
            f"{old['version']}, term: {old.get('term')}}} is not yet committed.",
        )
    if repl.state != PRIMARY or repl.config is not old:
        raise CommandError(
            CONFLICTING_OPERATION_IN_PROGRESS,
            "Cannot run replSetReconfig because the node is currently updating its configuration",
        )
    new["term"] = repl.term
    repl.install_config(new, "reconfig")
    repl._wake_heartbeats()
    if not _wait(lambda: repl.config_committed() or repl.state != PRIMARY, deadline, default=None):
        raise CommandError(
            MAX_TIME_MS_EXPIRED, "operation exceeded time limit waiting for the new config"
        )
    if repl.state != PRIMARY:  # stepped down while the new config spread
        raise CommandError(
            INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
            "operation was interrupted because a replica set state change occurred while "
            "waiting for the new config to be committed",
        )
    return {}


def _wait(condition, deadline: float | None, default: float | None) -> bool:
    """Poll ``condition`` until ``deadline`` (or ``default`` seconds; None: for ever)."""
    if deadline is None and default is not None:
        deadline = time.monotonic() + default
    while not condition():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@command("replSetStepDown", admin_only=True)
def repl_set_step_down(inv: Invocation) -> dict:
    repl = _initialized(inv)
    if repl.state != PRIMARY:
        raise CommandError(NOT_WRITABLE_PRIMARY, "not primary so can't step down")
    step_down_secs = inv.arg if isinstance(inv.arg, (int, float)) and inv.arg is not True else 60
    catch_up = inv.body.get("secondaryCatchUpPeriodSecs", 10)
    force = bool(inv.body.get("force"))
    if step_down_secs < catch_up:
        raise CommandError(
            BAD_VALUE,
            "stepdown period must be longer than secondaryCatchUpPeriodSecs",
        )
    with repl.writes_blocked():
        if repl.state != PRIMARY:
            raise CommandError(NOT_WRITABLE_PRIMARY, "not primary so can't step down")
        target = repl.last_applied
        deadline = time.monotonic() + catch_up
        caught_up: list[str] = []
        while True:
            caught_up = repl.caught_up_electable(target)
            if caught_up or time.monotonic() >= deadline or repl.state != PRIMARY:
                break
            time.sleep(0.05)
        if repl.state != PRIMARY:
            raise CommandError(NOT_WRITABLE_PRIMARY, "not primary so can't step down")
        if not caught_up and not force:
            when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            raise CommandError(
                EXCEEDED_TIME_LIMIT,
                f"No electable secondaries caught up as of {when}+00:00. Please use the "
                "replSetStepDown command with the argument {force: true} to force node to step "
                "down.",
            )
        repl.step_down("replSetStepDown command", freeze_secs=step_down_secs)
    if repl.peers is not None:
        _hand_off(repl, caught_up)
    return {}


def _hand_off(repl: ReplicationCoordinator, hosts: list[str]) -> None:
    """Election handoff: ask the caught-up electable secondaries, in turn, to stand at once
    (one that is frozen refuses); else they stand after their election timeout."""
    for host in hosts:
        with contextlib.suppress(Exception):
            repl.peers.command(host, {"replSetStepUp": 1, "skipDryRun": True}, "vote")
            return


@command("replSetStepUp", admin_only=True)
def repl_set_step_up(inv: Invocation) -> dict:
    repl = _initialized(inv)
    if repl.state == PRIMARY:
        return {"info": "already primary"}
    why_not = repl.can_stand()
    if why_not:
        raise CommandError(COMMAND_FAILED, f"Election failed: {why_not}")
    if not repl.run_election("step up request", skip_dry_run=bool(inv.body.get("skipDryRun"))):
        raise CommandError(COMMAND_FAILED, "Election failed.")
    return {}


@command("replSetFreeze", admin_only=True)
def repl_set_freeze(inv: Invocation) -> dict:
    repl = _initialized(inv)
    seconds = inv.arg
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise CommandError(BAD_VALUE, "replSetFreeze requires a number of seconds")
    if repl.state == PRIMARY:
        raise CommandError(
            NOT_SECONDARY,
            "cannot freeze node when primary or running for election. state: Primary",
        )
    repl.freeze(int(seconds))
    reply: dict = {}
    if seconds == 0:
        reply["info"] = "unfreezing"
    elif seconds == 1:
        reply["warning"] = "you really want to freeze for only 1 second?"
    return reply


@command("replSetHeartbeat")
def repl_set_heartbeat(inv: Invocation) -> dict:
    """Internal: one member's heartbeat to another."""
    return inv.server.replication.process_heartbeat(inv.body)


@command("replSetRequestVotes", admin_only=True)
def repl_set_request_votes(inv: Invocation) -> dict:
    """Internal: a candidate asks for this member's vote."""
    repl = _replicated(inv)
    return repl.process_vote_request(inv.body)


@command("replSetUpdatePosition", admin_only=True)
def repl_set_update_position(inv: Invocation) -> dict:
    """Internal: a secondary reports how far it has applied and made durable the oplog."""
    repl = _initialized(inv)
    repl.process_update_position(inv.body)
    return {}


@command("appendOplogNote", admin_only=True, write=True)
def append_oplog_note(inv: Invocation) -> dict:
    """A no-op entry ``{op: "n", ns: "", o: <data>}`` written to the oplog by the primary, as
    backup tools use it to move a set's oplog past a point (reference/command/appendOplogNote:
    ``data`` is required and must be a document; the backup role grants the action)."""
    _initialized(inv)
    if "data" not in inv.body:
        raise CommandError(NO_SUCH_KEY, 'Missing expected field "data"')
    data = inv.body["data"]
    if not isinstance(data, dict):
        raise CommandError(TYPE_MISMATCH, '"data" had the wrong type. Expected object')
    inv.server.storage.apply({"op": "n", "ns": "", "o": data})
    return {}
