"""Diagnostics and administration commands."""

from __future__ import annotations

import threading

import pytest
from bson.int64 import Int64
from pymongo.errors import AutoReconnect, OperationFailure

from tests.waiting import wait_until


def test_server_status_sections(client):
    """serverStatus has the sections monitoring reads, with MongoDB's field names.

    Source: https://www.mongodb.com/docs/manual/reference/command/serverStatus/
    """
    client.test.c.insert_many([{"_id": i} for i in range(3)])
    list(client.test.c.find())
    status = client.admin.command("serverStatus")
    for section in (
        "host",
        "version",
        "process",
        "pid",
        "uptime",
        "uptimeMillis",
        "localTime",
        "connections",
        "opcounters",
        "opcountersRepl",
        "mem",
        "network",
        "globalLock",
        "asserts",
        "wiredTiger",
        "metrics",
    ):
        assert section in status, section
    assert status["process"] == "mongod" and status["version"] == "7.0.14"
    assert status["opcounters"]["insert"] == 3 and status["opcounters"]["query"] >= 1
    assert isinstance(status["opcounters"]["insert"], Int64)
    assert status["connections"]["current"] >= 1
    cache = status["wiredTiger"]["cache"]
    assert cache["bytes currently in the cache"] > 0
    assert cache["maximum bytes configured"] > 0
    assert status["metrics"]["document"]["inserted"] == 3
    assert status["metrics"]["document"]["returned"] >= 3
    assert status["metrics"]["queryExecutor"]["scannedObjects"] >= 3
    assert status["network"]["bytesIn"] > 0 and status["network"]["numRequests"] > 0
    assert {"resident", "virtual", "bits"} <= set(status["mem"])


def test_server_status_cache_bytes_follow_writes(client):
    """The cache bytes (every collection's data, the double's whole cache) follow inserts,
    updates, deletes, renames and drops: kept per collection, measured again after a write."""
    import bson

    def cache() -> int:
        return client.admin.command("serverStatus")["wiredTiger"]["cache"][
            "bytes currently in the cache"
        ]

    def size(*docs: dict) -> int:
        return sum(len(bson.encode(d)) for d in docs)

    base = cache()
    docs = [{"_id": i, "v": "x" * 10} for i in range(3)]
    client.test.c.insert_many(docs[:2])
    assert cache() == base + size(*docs[:2])
    client.test.c.insert_one(docs[2])  # into a collection already measured: counted as it goes
    assert cache() == base + size(*docs)
    client.test.c.update_one({"_id": 0}, {"$set": {"v": "y" * 1000}})
    docs[0]["v"] = "y" * 1000
    assert cache() == base + size(*docs)
    client.test.c.delete_one({"_id": 1})
    assert cache() == base + size(docs[0], docs[2])
    client.admin.command("renameCollection", "test.c", to="other.c")
    client.other.d.insert_one({"_id": 9})
    assert cache() == base + size(docs[0], docs[2], {"_id": 9})
    client.other.c.drop()
    assert cache() == base + size({"_id": 9})
    client.drop_database("other")
    assert cache() == base


def test_build_info_host_info_list_commands(client):
    """buildInfo, hostInfo and listCommands shapes.

    Source: https://www.mongodb.com/docs/manual/reference/command/buildInfo/,
    https://www.mongodb.com/docs/manual/reference/command/hostInfo/
    """
    info = client.admin.command("buildInfo")
    assert info["version"] == "7.0.14" and info["versionArray"] == [7, 0, 14, 0]
    assert info["bits"] == 64 and len(info["gitVersion"]) == 40
    host = client.admin.command("hostInfo")
    assert {"system", "os", "extra"} <= set(host)
    assert host["system"]["numCores"] >= 1 and host["os"]["type"] == "Linux"
    commands = client.admin.command("listCommands")["commands"]
    assert "find" in commands and "compact" not in commands  # only what the double runs


def test_get_and_set_parameter(client):
    """getParameter / setParameter, and their errors for unknown names.

    Source: https://www.mongodb.com/docs/manual/reference/command/setParameter/ and
    https://www.mongodb.com/docs/manual/reference/command/getParameter/
    """
    assert client.admin.command("getParameter", 1, logLevel=1) == {"logLevel": 0, "ok": 1.0}
    reply = client.admin.command("setParameter", 1, logLevel=2)
    assert reply["was"] == 0
    assert client.admin.command("getParameter", 1, logLevel=1)["logLevel"] == 2
    everything = client.admin.command("getParameter", "*")
    assert "featureCompatibilityVersion" in everything and "cursorTimeoutMillis" in everything
    with pytest.raises(OperationFailure) as info:
        client.admin.command("getParameter", 1, noSuchParameter=1)
    assert (info.value.code, str(info.value.details["errmsg"])) == (72, "no option found to get")
    with pytest.raises(OperationFailure) as info:
        client.admin.command("setParameter", 1, noSuchParameter=1)
    assert info.value.code == 72
    assert "attempted to set unrecognized parameter [noSuchParameter]" in str(info.value)
    with pytest.raises(OperationFailure) as info:
        client.admin.command("setParameter", 1, authenticationMechanisms="SCRAM-SHA-256")
    assert info.value.code == 20


def test_profiler_writes_system_profile(client):
    """profile level 2 records operations in <db>.system.profile with the profiler's fields.

    Source: https://www.mongodb.com/docs/manual/reference/command/profile/ and
    https://www.mongodb.com/docs/manual/reference/database-profiler/
    """
    db = client.shop
    assert db.command("profile", 2) == {"was": 0, "slowms": 100, "sampleRate": 1.0, "ok": 1.0}
    db.orders.insert_one({"_id": 1, "x": 1})
    list(db.orders.find({"x": 1}))
    db.command("profile", 0)
    entries = list(db.system.profile.find())
    ops = [e["op"] for e in entries]
    assert "insert" in ops and "query" in ops
    query = next(e for e in entries if e["op"] == "query")
    assert query["ns"] == "shop.orders"
    assert query["command"]["filter"] == {"x": 1}
    assert query["nreturned"] == 1 and query["docsExamined"] == 1
    assert query["planSummary"] == "COLLSCAN"
    assert {"millis", "ts", "client", "responseLength", "protocol"} <= set(query)
    assert db.command("profile", -1)["was"] == 0
    with pytest.raises(OperationFailure):
        db.command("profile", 5)


def test_explain_query_planner_shape(client):
    """explain returns queryPlanner (and executionStats when asked).

    Source: https://www.mongodb.com/docs/manual/reference/explain-results/
    """
    client.test.c.insert_many([{"a": i} for i in range(5)])
    plan = client.test.command(
        "explain", {"find": "c", "filter": {"a": {"$gt": 2}}}, verbosity="executionStats"
    )
    planner = plan["queryPlanner"]
    assert planner["namespace"] == "test.c"
    assert planner["winningPlan"]["stage"] == "COLLSCAN"
    assert planner["rejectedPlans"] == []
    assert plan["executionStats"]["nReturned"] == 2
    assert plan["executionStats"]["totalDocsExamined"] == 5
    assert plan["serverInfo"]["version"] == "7.0.14"


def test_current_op_and_kill_op_interrupt_an_await_data_get_more(launcher):
    """currentOp lists a waiting getMore; killOp interrupts it (code 11601 Interrupted).

    Source: https://www.mongodb.com/docs/manual/reference/command/currentOp/ and
    https://www.mongodb.com/docs/manual/reference/command/killOp/
    """
    node = launcher.start()
    client = node.client()
    db = client.test
    db.command("create", "capped", capped=True, size=4096)
    db.capped.insert_one({"n": 1})
    cursor_id = db.command("find", "capped", tailable=True, awaitData=True)["cursor"]["id"]
    errors: list = []

    def wait_for_data() -> None:
        try:
            db.command("getMore", cursor_id, collection="capped", maxTimeMS=20000)
        except OperationFailure as exc:
            errors.append(exc.code)

    waiter = threading.Thread(target=wait_for_data)
    waiter.start()
    ops = wait_until(
        lambda: client.admin.command({"currentOp": 1, "op": "getmore"})["inprog"],
        timeout=15,
        every=0.05,
        what="the waiting getMore in currentOp",
    )
    opid = ops[0]["opid"]
    assert ops[0]["ns"] == "test.capped" and ops[0]["active"] is True
    reply = client.admin.command("killOp", op=opid)
    assert reply["info"] == "attempting to kill op"
    waiter.join(10)
    assert errors == [11601]


def test_top_get_log_and_log_rotate(node):
    """top counts per namespace; getLog returns recent log lines; logRotate renames the file.

    Source: https://www.mongodb.com/docs/manual/reference/command/top/,
    https://www.mongodb.com/docs/manual/reference/command/getLog/,
    https://www.mongodb.com/docs/manual/reference/command/logRotate/
    """
    client = node.client()
    client.test.c.insert_one({})
    list(client.test.c.find())
    totals = client.admin.command("top")["totals"]
    assert totals["test.c"]["insert"]["count"] == 1
    assert totals["test.c"]["queries"]["count"] == 1
    assert client.admin.command("getLog", "*")["names"] == ["global", "startupWarnings"]
    global_log = client.admin.command("getLog", "global")
    assert any('"Waiting for connections"' in line for line in global_log["log"])
    assert client.admin.command("logRotate")["ok"] == 1
    rotated = list(node.logpath.parent.glob(node.logpath.name + ".*"))
    assert len(rotated) == 1 and node.logpath.exists()


def test_shutdown_command_stops_the_server(node):
    """The shutdown command stops mongod cleanly; the client sees the connection close.

    Source: https://www.mongodb.com/docs/manual/reference/command/shutdown/
    """
    client = node.client()
    with pytest.raises(OperationFailure):
        client.test.command("shutdown")  # admin only
    with pytest.raises(AutoReconnect):
        client.admin.command("shutdown")
    assert node.proc.wait(10) == 0
