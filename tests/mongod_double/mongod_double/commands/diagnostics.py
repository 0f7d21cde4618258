"""Diagnostics and administration: serverStatus, hostInfo, getCmdLineOpts, getParameter,
setParameter, setFeatureCompatibilityVersion, currentOp, killOp, profile, explain, top, getLog,
logRotate, shutdown."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import time

from bson.int64 import Int64
from mongomock import filtering

from mongod_double.commands import REGISTRY, Invocation, command, command_not_found
from mongod_double.errors import (
    BAD_VALUE,
    INVALID_OPTIONS,
    TYPE_MISMATCH,
    CloseConnection,
    CommandError,
)
from mongod_double.logs import log
from mongod_double.transactions import sessions_of

FCV_CONFIRM_REQUIRED_FROM = (7, 0)


def _memory_mb() -> tuple[int, int]:
    resident = virtual = 0
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = [int(x) for x in handle.read().split()[:2]]
        page = os.sysconf("SC_PAGE_SIZE")
        virtual, resident = pages[0] * page // 2**20, pages[1] * page // 2**20
    except OSError:
        resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return resident, virtual


# The WiredTiger read and write tickets: 128 each (wiredTigerConcurrentRead/WriteTransactions'
# default before 7.0's dynamic algorithm, and its maximum after).
TICKETS = 128


def instance_status(server) -> dict:
    """The serverStatus sections mongod and mongos share (instance information, asserts,
    connections, extra_info, mem, network, opcounters), as MongoDB's serverStatus page shows
    them."""
    metrics = server.metrics
    uptime = time.monotonic() - server.started_monotonic
    resident, virtual = _memory_mb()
    with metrics.lock:
        opcounters = {k: Int64(v) for k, v in metrics.opcounters.items()}
        asserts = dict(metrics.asserts)
    connections = server.connection_count()
    return {
        "host": server.hostname if server.port == 27017 else server.host,
        "version": server.version.text,
        "process": "mongos" if server.options.program == "mongos" else "mongod",
        "pid": Int64(os.getpid()),
        "uptime": float(int(uptime)),
        "uptimeMillis": Int64(int(uptime * 1000)),
        "uptimeEstimate": Int64(int(uptime)),
        "localTime": datetime.datetime.now(datetime.UTC),
        "asserts": asserts,
        "connections": {
            "current": connections,
            "available": 838860 - connections,
            "totalCreated": metrics.connections_created,
            "rejected": 0,
            "active": len(server.ops.running),
            "threaded": connections,
            "exhaustIsMaster": 0,
            "exhaustHello": 0,
            "awaitingTopologyChanges": 0,
        },
        # Linux: page_faults is the process's major faults (getrusage ru_majflt).
        "extra_info": {
            "note": "fields vary by platform",
            "page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_majflt,
        },
        "mem": {"bits": 64, "resident": resident, "virtual": virtual, "supported": True},
        "network": {
            "bytesIn": Int64(metrics.bytes_in),
            "bytesOut": Int64(metrics.bytes_out),
            "physicalBytesIn": Int64(metrics.bytes_in),
            "physicalBytesOut": Int64(metrics.bytes_out),
            "numSlowDNSOperations": Int64(0),
            "numSlowSSLOperations": Int64(0),
            "numRequests": Int64(metrics.requests),
        },
        "opcounters": opcounters,
    }


@command("serverStatus")
def server_status(inv: Invocation) -> dict:
    server = inv.server
    metrics = server.metrics
    uptime = time.monotonic() - server.started_monotonic
    cache_bytes = server.storage.total_data_size()
    running = list(server.ops.running.values())
    with metrics.lock:
        document = {k: Int64(v) for k, v in metrics.document.items()}
        ttl = {k: Int64(v) for k, v in metrics.ttl.items()}
        scanned_objects, scans = metrics.scanned_objects, metrics.collection_scans
        latencies = {
            k: {"latency": Int64(v[0]), "ops": Int64(v[1])} for k, v in metrics.latencies.items()
        }
    # Tickets out: the operations running now, as the reads and writes they are.
    writing = sum(1 for op in running if getattr(server.registry.get(op.name), "write", False))
    reply = instance_status(server)
    reply.update(
        {
            "globalLock": {
                "totalTime": Int64(int(uptime * 1e6)),
                "currentQueue": {"total": 0, "readers": 0, "writers": 0},
                "activeClients": {"total": len(running), "readers": 0, "writers": 0},
            },
            "metrics": {
                "commands": {
                    name: {
                        "failed": Int64(metrics.failed_commands.get(name, 0)),
                        "total": Int64(total),
                    }
                    for name, total in sorted(metrics.commands.items())
                },
                "cursor": server.cursors.stats(),
                "document": document,
                "queryExecutor": {
                    "scanned": Int64(0),
                    "scannedObjects": Int64(scanned_objects),
                    "collectionScans": {"nonTailable": Int64(scans), "total": Int64(scans)},
                },
                "operation": {"scanAndOrder": Int64(0), "writeConflicts": Int64(0)},
                "ttl": ttl,
            },
            "opLatencies": latencies,
            "opcountersRepl": {k: Int64(0) for k in reply["opcounters"]},
            "storageEngine": {
                "name": "wiredTiger",
                "supportsCommittedReads": True,
                "persistent": True,
                "readOnly": False,
            },
            # Prepared transactions and retried statements the double has none of: 0.
            "transactions": {
                name: Int64(0)
                for name in (
                    "retriedCommandsCount",
                    "retriedStatementsCount",
                    "transactionsCollectionWriteCount",
                    "currentActive",
                    "currentInactive",
                    "currentOpen",
                    "totalAborted",
                    "totalCommitted",
                    "totalStarted",
                    "totalPrepared",
                    "totalPreparedThenCommitted",
                    "totalPreparedThenAborted",
                    "currentPrepared",
                )
            }
            | {name: Int64(count) for name, count in sessions_of(server).status().items()},
            "wiredTiger": {
                "cache": {
                    "bytes currently in the cache": Int64(cache_bytes),
                    "maximum bytes configured": Int64(server.options.cache_size_bytes),
                    "tracked dirty bytes in the cache": Int64(0),
                    "bytes read into cache": Int64(0),
                    "bytes written from cache": Int64(0),
                    "pages read into cache": Int64(0),
                    "pages written from cache": Int64(0),
                    "unmodified pages evicted": Int64(0),
                    "modified pages evicted": Int64(0),
                },
                "concurrentTransactions": {
                    "write": {
                        "out": writing,
                        "available": TICKETS - writing,
                        "totalTickets": TICKETS,
                    },
                    "read": {
                        "out": len(running) - writing,
                        "available": TICKETS - (len(running) - writing),
                        "totalTickets": TICKETS,
                    },
                },
            },
        }
    )
    if server.role.is_replicated:
        repl = server.replication
        repl_section: dict = {"topologyVersion": dict(repl.topology_version)}
        repl_section.update(
            {k: v for k, v in repl.hello_fields().items() if k != "topologyVersion"}
        )
        repl_section["isWritablePrimary"] = repl.is_writable_primary
        reply["repl"] = repl_section
    return reply


@command("hostInfo")
def host_info(inv: Invocation) -> dict:
    uname = platform.uname()
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    cores = os.cpu_count() or 1
    os_name, os_version = "", ""
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            release = dict(line.rstrip().split("=", 1) for line in handle if "=" in line)
        os_name = release.get("PRETTY_NAME", "").strip('"')
        os_version = release.get("VERSION_ID", "").strip('"')
    except OSError:
        pass
    return {
        "system": {
            "currentTime": datetime.datetime.now(datetime.UTC),
            "hostname": inv.server.host,
            "cpuAddrSize": 64,
            "memSizeMB": Int64(mem_mb),
            "memLimitMB": Int64(mem_mb),
            "numCores": cores,
            "numCoresAvailableToProcess": len(os.sched_getaffinity(0)),
            "numPhysicalCores": cores,
            "numCpuSockets": 1,
            "cpuArch": uname.machine,
            "numaEnabled": False,
            "numNumaNodes": 1,
        },
        "os": {"type": uname.system, "name": os_name, "version": os_version or uname.release},
        "extra": {
            "versionString": f"{uname.system} version {uname.release} {uname.version}",
            "libcVersion": platform.libc_ver()[1],
            "kernelVersion": uname.release,
            "pageSize": Int64(os.sysconf("SC_PAGE_SIZE")),
            "numPages": os.sysconf("SC_PHYS_PAGES"),
            "maxOpenFiles": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        },
    }


@command("getCmdLineOpts", admin_only=True)
def get_cmd_line_opts(inv: Invocation) -> dict:
    options = inv.server.options
    return {"argv": [options.program, *options.argv], "parsed": options.parsed}


@command("getParameter", admin_only=True)
def get_parameter(inv: Invocation) -> dict:
    server = inv.server
    show_details = isinstance(inv.arg, dict) and bool(inv.arg.get("showDetails"))
    fcv = dict(server.storage.fcv_document)
    values: dict = {
        "featureCompatibilityVersion": {
            "value": fcv,
            "settableAtRuntime": False,
            "settableAtStartup": False,
        }
        if show_details
        else fcv
    }
    for name in server.parameters.names():
        values[name] = (
            server.parameters.details(name) if show_details else server.parameters.get(name)
        )
    # "*" and {allParameters: true} answer every parameter the double has, as mongod does.
    want_all = inv.arg == "*" or (isinstance(inv.arg, dict) and inv.arg.get("allParameters"))
    generic = {
        "comment",
        "lsid",
        "$readPreference",
        "$clusterTime",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "txnNumber",
        "maxTimeMS",
        "readConcern",
        "writeConcern",
    }
    reply = {}
    for name, value in values.items():
        if want_all or (name in inv.body and name != inv.name and name not in generic):
            reply[name] = value
    if not reply:
        raise CommandError(INVALID_OPTIONS, "no option found to get")
    return reply


@command("setParameter", admin_only=True)
def set_parameter(inv: Invocation) -> dict:
    generic = {
        "comment",
        "lsid",
        "$readPreference",
        "$clusterTime",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "txnNumber",
        "maxTimeMS",
        "writeConcern",
    }
    values = {k: v for k, v in inv.body.items() if k != inv.name and k not in generic}
    if "featureCompatibilityVersion" in values:
        raise CommandError(
            BAD_VALUE,
            "featureCompatibilityVersion cannot be set via setParameter. "
            "See http://dochub.mongodb.org/core/setFeatureCompatibilityVersion.",
        )
    return inv.server.parameters.set_at_runtime(values)


@command("setFeatureCompatibilityVersion", admin_only=True, write=True)
def set_fcv(inv: Invocation) -> dict:
    server = inv.server
    version = server.version
    requested = inv.arg
    if not isinstance(requested, str):
        raise CommandError(
            TYPE_MISMATCH,
            "Command argument must be of type String, but was of "
            f"type {type(requested).__name__} in: setFeatureCompatibilityVersion",
        )
    if requested not in version.settable_fcvs:
        expected = " or ".join(f"'{v}'" for v in version.settable_fcvs)
        raise CommandError(
            BAD_VALUE,
            f"Invalid feature compatibility version value "
            f"'{requested}'; expected {expected}. See "
            f"https://docs.mongodb.com/master/release-notes/{version.last_lts}"
            "-compatibility/#feature-compatibility.",
        )
    if version.series >= FCV_CONFIRM_REQUIRED_FROM:
        confirmed = inv.body.get("confirm", False)
        if not confirmed:
            if requested > server.storage.fcv:
                message = (
                    f"Once you have upgraded to {requested}, you will not be able to "
                    "downgrade FCV and binary version without support assistance. Please "
                    "re-run this command with 'confirm: true' to acknowledge this and "
                    "continue with the FCV upgrade."
                )
            else:
                message = (
                    "Once you have downgraded the FCV, if you choose to downgrade the "
                    "binary version, it will require support assistance. Please re-run "
                    "this command with 'confirm: true' to acknowledge this and continue "
                    "with the FCV downgrade."
                )
            raise CommandError(7369100, message)
    elif "confirm" in inv.body:
        raise CommandError(
            40415, "BSON field 'setFeatureCompatibilityVersion.confirm' is an unknown field."
        )
    with server.storage.lock:
        if requested != server.storage.fcv:
            log.info(
                "COMMAND",
                6744302,
                "setFeatureCompatibilityVersion succeeded",
                {
                    "upgradeOrDowngrade": "upgrade"
                    if requested > server.storage.fcv
                    else "downgrade",
                    "version": requested,
                },
                ctx=inv.ctx.thread_name,
            )
            # Through the transitional document first, as mongod does: an upgrade is
            # {version: old, targetVersion: new}, a downgrade {version: new, targetVersion: new,
            # previousVersion: old}; a node stopped between the two restarts in the transition.
            old = server.storage.fcv
            if requested > old:
                server.storage.set_fcv({"version": old, "targetVersion": requested})
            else:
                server.storage.set_fcv(
                    {"version": requested, "targetVersion": requested, "previousVersion": old}
                )
            server.storage.set_fcv({"version": requested})
    return {}


def _op_document(inv_or_ctx, server, now: float) -> dict:
    from mongod_double.commands import Invocation as Inv

    if isinstance(inv_or_ctx, Inv):
        inv = inv_or_ctx
        ctx = inv.ctx
        micros = int((time.monotonic() - inv.started) * 1e6)
        spec = REGISTRY[inv.name]
        doc = {
            "type": "op",
            "host": server.host,
            "desc": ctx.thread_name,
            "connectionId": ctx.connection_id,
            "client": ctx.peer_text,
            "appName": ctx.app_name,
            "clientMetadata": ctx.client_metadata or {},
            "active": True,
            "currentOpTime": datetime.datetime.now(datetime.UTC),
            "opid": inv.opid,
            "secs_running": Int64(micros // 1_000_000),
            "microsecs_running": Int64(micros),
            "op": spec.profile_op,
            "ns": inv.profile.get("ns", f"{inv.db}.$cmd"),
            "command": {**inv.body, "$db": inv.db},
            "numYields": 0,
            "locks": {},
            "waitingForLock": False,
            "lockStats": {},
        }
        return doc
    ctx = inv_or_ctx
    return {
        "type": "op",
        "host": server.host,
        "desc": ctx.thread_name,
        "connectionId": ctx.connection_id,
        "client": ctx.peer_text,
        "appName": ctx.app_name,
        "clientMetadata": ctx.client_metadata or {},
        "active": False,
        "currentOpTime": datetime.datetime.now(datetime.UTC),
    }


@command("currentOp", admin_only=True)
def current_op(inv: Invocation) -> dict:
    server = inv.server
    include_all = bool(inv.body.get("$all"))
    own_ops = bool(inv.body.get("$ownOps"))
    query = {
        k: v
        for k, v in inv.body.items()
        if k
        not in (
            inv.name,
            "$all",
            "$ownOps",
            "lsid",
            "$readPreference",
            "$clusterTime",
            "comment",
            "apiVersion",
        )
    }
    now = time.time()
    docs = []
    running = list(server.ops.running.values())
    busy = {op.ctx.connection_id for op in running}
    for op in running:
        if own_ops and op.ctx is not inv.ctx:
            continue
        docs.append(_op_document(op, server, now))
    if include_all:
        for ctx in server.connections():
            if ctx.connection_id not in busy:
                docs.append(_op_document(ctx, server, now))
    if query:
        docs = [d for d in docs if filtering.filter_applies(query, d)]
    return {"inprog": docs}


@command("killOp", admin_only=True)
def kill_op(inv: Invocation) -> dict:
    opid = inv.body.get("op")
    if not isinstance(opid, (int, float)) or isinstance(opid, bool):
        raise CommandError(TYPE_MISMATCH, 'Did not provide "op" field')
    log.info("COMMAND", 20482, "Going to kill op", {"opId": int(opid)}, ctx=inv.ctx.thread_name)
    inv.server.ops.kill(int(opid))
    return {"info": "attempting to kill op"}


@command("profile")
def profile(inv: Invocation) -> dict:
    profiler = inv.server.profiler
    level = inv.arg
    if not isinstance(level, (int, float)) or isinstance(level, bool) or level not in (-1, 0, 1, 2):
        raise CommandError(BAD_VALUE, f"Invalid profiling level: {level}")
    was = profiler.level(inv.db)
    reply = {"was": was, "slowms": profiler.slowms, "sampleRate": profiler.sample_rate}
    if "slowms" in inv.body:
        profiler.slowms = int(inv.body["slowms"])
    if "sampleRate" in inv.body:
        rate = float(inv.body["sampleRate"])
        if not 0 <= rate <= 1:
            raise CommandError(BAD_VALUE, "'sampleRate' must be between 0.0 and 1.0 inclusive")
        if rate != 1.0:
            raise NotImplementedError("profiler sampleRate other than 1.0")
        profiler.sample_rate = rate
    if "filter" in inv.body:
        raise NotImplementedError("profiler filter")
    if level != -1:
        if inv.db == "local" and level:
            raise CommandError(BAD_VALUE, "Cannot enable profiling on the local database")
        profiler.levels[inv.db] = int(level)
    return reply


def query_planner(inv: Invocation, ns: str, query: dict) -> dict:
    return {
        "namespace": ns,
        "indexFilterSet": False,
        "parsedQuery": query,
        "maxIndexedOrSolutionsReached": False,
        "maxIndexedAndSolutionsReached": False,
        "maxScansToExplodeReached": False,
        "winningPlan": {"stage": "COLLSCAN", "filter": query, "direction": "forward"},
        "rejectedPlans": [],
    }


@command("explain")
def explain(inv: Invocation) -> dict:
    inner = inv.arg
    if not isinstance(inner, dict) or not inner:
        raise CommandError(BAD_VALUE, "explain command requires a nested object")
    verbosity = inv.body.get("verbosity", "allPlansExecution")
    if verbosity not in ("queryPlanner", "executionStats", "allPlansExecution"):
        raise CommandError(
            BAD_VALUE,
            "verbosity string must be one of {'queryPlanner', "
            "'executionStats', 'allPlansExecution'}",
        )
    name = next(iter(inner))
    if name not in ("find", "count", "distinct", "update", "delete", "findAndModify", "aggregate"):
        if name in REGISTRY:
            raise CommandError(BAD_VALUE, f"Explain failed due to unknown command: {name}")
        raise command_not_found(name)
    ns = f"{inv.db}.{inner[name]}"
    query = inner.get("filter") or inner.get("query") or {}
    if name in ("update", "delete"):
        statements = inner.get("updates") or inner.get("deletes") or [{}]
        query = statements[0].get("q", {})
    reply: dict = {"explainVersion": "1", "queryPlanner": query_planner(inv, ns, query)}
    if verbosity != "queryPlanner":
        storage = inv.server.storage
        started = time.monotonic()
        with storage.lock:
            total = storage.count(ns)
            if ns in storage.capped:
                returned = len(storage.capped[ns].scan(query))
            elif storage.exists(ns):
                returned = storage.collection(ns).count_documents(query)
            else:
                returned = 0
        limit = inner.get("limit") or 0
        if limit:
            returned = min(returned, limit)
        millis = int((time.monotonic() - started) * 1000)
        stage = {
            "stage": "COLLSCAN",
            "filter": query,
            "nReturned": returned,
            "executionTimeMillisEstimate": millis,
            "works": total + 1,
            "advanced": returned,
            "needTime": total - returned + 1,
            "needYield": 0,
            "saveState": 0,
            "restoreState": 0,
            "isEOF": 1,
            "direction": "forward",
            "docsExamined": total,
        }
        reply["executionStats"] = {
            "executionSuccess": True,
            "nReturned": returned,
            "executionTimeMillis": millis,
            "totalKeysExamined": 0,
            "totalDocsExamined": total,
            "executionStages": stage,
        }
    reply["command"] = {**inner, "$db": inv.db}
    reply["serverInfo"] = {
        "host": inv.server.hostname,
        "port": inv.server.port,
        "version": inv.server.version.text,
        "gitVersion": inv.server.version.git_version,
    }
    reply["serverParameters"] = {
        "internalQueryFacetBufferSizeBytes": 104857600,
        "internalQueryFacetMaxOutputDocSizeBytes": 104857600,
        "internalLookupStageIntermediateDocumentMaxSizeBytes": 104857600,
        "internalDocumentSourceGroupMaxMemoryBytes": 104857600,
        "internalQueryMaxBlockingSortMemoryUsageBytes": 104857600,
        "internalQueryProhibitBlockingMergeOnMongoS": 0,
        "internalQueryMaxAddToSetBytes": 104857600,
        "internalDocumentSourceSetWindowFieldsMaxMemoryBytes": 104857600,
    }
    return reply


@command("top", admin_only=True)
def top(inv: Invocation) -> dict:
    metrics = inv.server.metrics
    kinds = (
        "total",
        "readLock",
        "writeLock",
        "queries",
        "getmore",
        "insert",
        "update",
        "remove",
        "commands",
    )
    totals: dict = {"note": "all times in microseconds"}
    with metrics.lock:
        for ns in sorted(metrics.top):
            entry = metrics.top[ns]
            totals[ns] = {
                k: {"time": entry.get(k, [0, 0])[0], "count": entry.get(k, [0, 0])[1]}
                for k in kinds
            }
    return {"totals": totals}


@command("getLog", admin_only=True)
def get_log(inv: Invocation) -> dict:
    which = inv.arg
    if which == "*":
        return {"names": ["global", "startupWarnings"]}
    if which == "global":
        lines = list(log.ring)
        return {"totalLinesWritten": log.total_lines, "log": lines}
    if which == "startupWarnings":
        lines = list(log.startup_warnings)
        return {"totalLinesWritten": len(lines), "log": lines}
    if not isinstance(which, str):
        raise CommandError(
            TYPE_MISMATCH,
            "Argument to getLog must be of type String; found "
            f"{which!r} of type {type(which).__name__}",
        )
    raise CommandError(BAD_VALUE, f"No log named '{which}'")


@command("logRotate", admin_only=True)
def log_rotate(inv: Invocation) -> dict:
    target = inv.arg
    if target not in (1, "server", True):
        raise NotImplementedError(f"logRotate of {target!r} (only the server log exists here)")
    if not log.rotate():
        raise CommandError(
            BAD_VALUE,
            "logRotate requires systemLog.destination to be a file",
        )
    log.info(
        "CONTROL",
        23166,
        "Log rotation initiated",
        {"suffix": "", "logType": "server"},
        ctx=inv.ctx.thread_name,
    )
    return {}


@command("shutdown", admin_only=True)
def shutdown(inv: Invocation) -> dict:
    log.info(
        "COMMAND",
        4695400,
        "Terminating via shutdown command",
        {"force": bool(inv.body.get("force")), "timeoutSecs": inv.body.get("timeoutSecs", 15)},
        ctx=inv.ctx.thread_name,
    )
    inv.server.request_shutdown("shutdown command")
    raise CloseConnection()
