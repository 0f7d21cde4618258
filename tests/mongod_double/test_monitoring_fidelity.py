"""What the agent reads from mongod and mongos has MongoDB's documented shape: serverStatus's
sections (on mongod and on mongos), $collStats, dbStats. The expected shapes are transcribed
from MongoDB's reference pages named on each table; the double is compared to them, field by
field and type by type, never to what the agent happens to read.
"""

from __future__ import annotations

import datetime

import pytest
from bson.int64 import Int64
from pymongo.errors import OperationFailure

from tests.mongod_double.shardedset import SHARDS, start_cluster

NUMBER = (int, float)  # <num> in the pages: int32, int64 or double
LONG = Int64  # NumberLong(<num>) / Long("<num>") in the pages

# https://www.mongodb.com/docs/manual/reference/command/serverStatus/ (mongod)
MONGOD_SERVER_STATUS = {
    "host": str,
    "version": str,
    "process": str,
    "pid": LONG,
    "uptime": NUMBER,
    "uptimeMillis": LONG,
    "uptimeEstimate": LONG,
    "localTime": datetime.datetime,
    "asserts": {
        "regular": NUMBER,
        "warning": NUMBER,
        "msg": NUMBER,
        "user": NUMBER,
        "rollovers": NUMBER,
    },
    "connections": {
        "current": NUMBER,
        "available": NUMBER,
        "totalCreated": NUMBER,
        "active": NUMBER,
        "threaded": NUMBER,
        "exhaustIsMaster": NUMBER,
        "exhaustHello": NUMBER,
        "awaitingTopologyChanges": NUMBER,
    },
    "extra_info": {"note": str, "page_faults": NUMBER},
    "globalLock": {
        "totalTime": LONG,
        "currentQueue": {"total": NUMBER, "readers": NUMBER, "writers": NUMBER},
        "activeClients": {"total": NUMBER, "readers": NUMBER, "writers": NUMBER},
    },
    "mem": {"bits": NUMBER, "resident": NUMBER, "virtual": NUMBER},
    "network": {
        "bytesIn": LONG,
        "bytesOut": LONG,
        "numSlowDNSOperations": LONG,
        "numSlowSSLOperations": LONG,
        "numRequests": LONG,
    },
    "opLatencies": {
        kind: {"latency": LONG, "ops": LONG} for kind in ("reads", "writes", "commands")
    },
    "opcounters": {k: LONG for k in ("insert", "query", "update", "delete", "getmore", "command")},
    "opcountersRepl": {
        k: LONG for k in ("insert", "query", "update", "delete", "getmore", "command")
    },
    "metrics": {
        "cursor": {
            "timedOut": NUMBER,
            "open": {"noTimeout": NUMBER, "pinned": NUMBER, "total": NUMBER},
        },
        "document": {k: LONG for k in ("deleted", "inserted", "returned", "updated")},
        "queryExecutor": {
            "scanned": LONG,
            "scannedObjects": LONG,
            "collectionScans": {"nonTailable": LONG, "total": LONG},
        },
        "operation": {"scanAndOrder": LONG, "writeConflicts": LONG},
    },
    "storageEngine": {"name": str, "supportsCommittedReads": bool, "persistent": bool},
    "transactions": {
        k: LONG
        for k in (
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
    },
    "wiredTiger": {
        "cache": {
            k: NUMBER
            for k in (
                "bytes currently in the cache",
                "maximum bytes configured",
                "tracked dirty bytes in the cache",
                "bytes read into cache",
                "bytes written from cache",
                "pages read into cache",
                "pages written from cache",
                "unmodified pages evicted",
            )
        },
        "concurrentTransactions": {
            rw: {"out": NUMBER, "available": NUMBER, "totalTickets": NUMBER}
            for rw in ("write", "read")
        },
    },
}

# The same page, mongos: the transactions tab for mongos; no storage engine, no replication.
MONGOS_SERVER_STATUS = {
    key: MONGOD_SERVER_STATUS[key]
    for key in (
        "host",
        "version",
        "process",
        "pid",
        "uptime",
        "uptimeMillis",
        "uptimeEstimate",
        "localTime",
        "asserts",
        "connections",
        "extra_info",
        "mem",
        "network",
        "opcounters",
    )
}
MONGOS_SERVER_STATUS["transactions"] = {
    **{
        k: LONG
        for k in (
            "currentOpen",
            "currentActive",
            "currentInactive",
            "totalStarted",
            "totalCommitted",
            "totalAborted",
            "totalContactedParticipants",
            "totalParticipantsAtCommit",
            "totalRequestsTargeted",
        )
    },
    "abortCause": dict,
    "commitTypes": {
        t: {"initiated": LONG, "successful": LONG, "successfulDurationMicros": LONG}
        for t in (
            "noShards",
            "singleShard",
            "singleWriteShard",
            "readOnly",
            "twoPhaseCommit",
            "recoverWithToken",
        )
    },
}
MONGOD_ONLY = ("opcountersRepl", "opLatencies", "storageEngine", "wiredTiger", "repl")

# https://www.mongodb.com/docs/manual/reference/operator/aggregation/collStats/ and the
# collStats page it refers to for storageStats.
COLL_STATS_STAGE = {
    "ns": str,
    "host": str,
    "localTime": datetime.datetime,
    "storageStats": {
        "size": NUMBER,
        "count": NUMBER,
        "avgObjSize": NUMBER,
        "storageSize": NUMBER,
        "freeStorageSize": NUMBER,
        "capped": bool,
        "nindexes": NUMBER,
        "indexBuilds": list,
        "totalIndexSize": NUMBER,
        "totalSize": NUMBER,
        "indexSizes": dict,
        "scaleFactor": NUMBER,
    },
    "count": NUMBER,
}

# https://www.mongodb.com/docs/manual/reference/command/dbStats/
DB_STATS = {
    k: NUMBER
    for k in (
        "collections",
        "views",
        "objects",
        "avgObjSize",
        "dataSize",
        "storageSize",
        "indexes",
        "indexSize",
        "totalSize",
        "scaleFactor",
        "fsUsedSize",
        "fsTotalSize",
    )
}
DB_STATS["db"] = str


def mismatches(doc: dict, shape: dict, path: str = "") -> list[str]:
    """Where ``doc`` lacks a documented field or holds it with another type."""
    found = []
    for key, expected in shape.items():
        where = f"{path}{key}"
        if key not in doc:
            found.append(f"{where}: missing")
        elif isinstance(expected, dict):
            if not isinstance(doc[key], dict):
                found.append(f"{where}: {type(doc[key]).__name__}, expected a document")
            else:
                found += mismatches(doc[key], expected, f"{where}.")
        elif isinstance(doc[key], bool) and expected is not bool:
            found.append(f"{where}: bool, expected {expected}")
        elif not isinstance(doc[key], expected):
            found.append(f"{where}: {type(doc[key]).__name__}, expected {expected}")
    return found


def test_mongod_server_status_has_the_documented_shape(node):
    client = node.client()
    client.test.docs.insert_one({"x": 1})
    status = client.admin.command("serverStatus")
    assert mismatches(status, MONGOD_SERVER_STATUS) == []
    assert status["process"] == "mongod"


def test_op_latencies_count_each_kind_of_operation(node):
    client = node.client()
    before = client.admin.command("serverStatus")["opLatencies"]
    client.test.docs.insert_one({"x": 1})
    client.test.docs.find_one({"x": 1})
    client.test.command("ping")
    after = client.admin.command("serverStatus")["opLatencies"]
    assert after["writes"]["ops"] == before["writes"]["ops"] + 1
    assert after["writes"]["latency"] > before["writes"]["latency"]
    assert after["reads"]["ops"] == before["reads"]["ops"] + 1
    # ping, and the serverStatus that read `before`
    assert after["commands"]["ops"] >= before["commands"]["ops"] + 2


def test_coll_stats_stage_has_the_documented_shape(node):
    client = node.client()
    client.test.docs.insert_many([{"x": i} for i in range(10)])
    [doc] = client.test.docs.aggregate([{"$collStats": {"storageStats": {}, "count": {}}}])
    assert mismatches(doc, COLL_STATS_STAGE) == []
    assert doc["ns"] == "test.docs" and doc["count"] == 10 and doc["storageStats"]["count"] == 10
    assert "ns" not in doc["storageStats"]
    [scaled] = client.test.docs.aggregate([{"$collStats": {"storageStats": {"scale": 1024}}}])
    assert scaled["storageStats"]["scaleFactor"] == 1024
    [only_count] = client.test.docs.aggregate(
        [{"$collStats": {"count": {}}}, {"$project": {"count": 1}}]
    )
    assert only_count == {"count": 10}


def test_coll_stats_stage_errors(node):
    client = node.client()
    client.test.docs.insert_one({"x": 1})

    def code(pipeline, coll="docs") -> int:
        with pytest.raises(OperationFailure) as failure:
            list(client.test[coll].aggregate(pipeline))
        return failure.value.code

    assert code([{"$match": {}}, {"$collStats": {"count": {}}}]) == 40602
    assert code([{"$collStats": {"sizes": {}}}]) == 40415
    assert code([{"$collStats": {"storageStats": {}}}], coll="missing") == 26
    assert code([{"$collStats": {"latencyStats": {}}}]) == 238  # not kept by the double


def test_db_stats_has_the_documented_shape(node):
    client = node.client()
    client.test.docs.insert_one({"x": 1})
    assert mismatches(client.test.command("dbStats"), DB_STATS) == []


def test_mongos_server_status_has_the_documented_shape(launcher):
    cluster = start_cluster(launcher)
    client = cluster.router_client()
    for name in SHARDS:
        client.admin.command("addShard", cluster.shard_host(name))
    client.test.docs.insert_many([{"x": 1}, {"x": 2}])
    client.test.docs.find_one({})
    status = client.admin.command("serverStatus")
    assert mismatches(status, MONGOS_SERVER_STATUS) == []
    assert status["process"] == "mongos"
    assert not set(MONGOD_ONLY) & set(status)
    assert status["opcounters"]["insert"] == 2 and status["opcounters"]["query"] >= 1
