"""The agent's collection layer against mongod doubles started on 127.0.0.1: `wap-agent collect
--once`, rates from two rounds, errors as state, the size survey's command budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import monitoring

from tests.mongod_double.shardedset import SHARDS, initiate, start_cluster
from wap_agent.collectors import Registry
from wap_agent.collectors.host import HostCollector
from wap_agent.collectors.mongodb import MongoCollector
from wap_agent.collectors.mongodb_sizes import SizeSurvey
from wap_agent.rates import Rates

HOST_SERIES = {
    "host_cpu_seconds_total",
    "host_load1",
    "host_load5",
    "host_load15",
    "host_memory_total_bytes",
    "host_memory_available_bytes",
    "host_swap_total_bytes",
    "host_swap_used_bytes",
    "host_filesystem_size_bytes",
    "host_filesystem_avail_bytes",
    "host_disk_reads_completed_total",
    "host_disk_written_bytes_total",
    "host_disk_io_time_seconds_total",
    "host_network_receive_bytes_total",
    "host_network_transmit_packets_total",
    "host_network_receive_errs_total",
    "host_network_transmit_drop_total",
}
MONGOD_SERIES = {
    "mongodb_up",
    "mongodb_op_counters_total",
    "mongodb_op_counters_repl_total",
    "mongodb_connections",
    "mongodb_memory_bytes",
    "mongodb_extra_info_page_faults_total",
    "mongodb_asserts_total",
    "mongodb_network_bytes_total",
    "mongodb_wiredtiger_cache_bytes",
    "mongodb_wiredtiger_cache_max_bytes",
    "mongodb_wiredtiger_cache_bytes_total",
    "mongodb_wiredtiger_concurrent_transactions_available_tickets",
    "mongodb_metrics_document_total",
    "mongodb_metrics_query_executor_total",
    "mongodb_metrics_operation_total",
    "mongodb_metrics_cursor_open",
    "mongodb_op_latencies_seconds_total",
    "mongodb_op_latencies_ops_total",
    "mongodb_transactions_total",
    "mongodb_global_lock_current_queue",
    "mongodb_replset_my_state",
    "mongodb_replset_member_state",
    "mongodb_replset_member_health",
    "mongodb_replset_member_optime_date_seconds",
    "mongodb_replset_member_replication_lag_seconds",
    "mongodb_oplog_head_timestamp_seconds",
    "mongodb_oplog_tail_timestamp_seconds",
    "mongodb_oplog_window_seconds",
    "mongodb_oplog_size_bytes",
    "mongodb_oplog_max_size_bytes",
    "mongodb_db_data_size_bytes",
    "mongodb_db_index_size_bytes",
    "mongodb_collection_size_bytes",
}


def wap_agent(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "wap_agent", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def values(samples, name: str, **labels: str) -> list[float]:
    return [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


@pytest.fixture
def member(launcher):
    """A one-member replica set with some data."""
    node = launcher.start("--replSet", "rs0")
    initiate(node, "rs0")
    client = node.client()
    client.shop.orders.insert_many([{"n": i, "pad": "x" * 100} for i in range(200)])
    client.shop.customers.insert_one({"name": "ann"})
    return node


def test_collect_once_prints_host_and_mongod_series(member):
    result = wap_agent("collect", "--once", "--mongodb-uri", member.uri)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["errors"] == {}
    samples = doc["samples"]
    names = {s["name"] for s in samples}
    assert names >= HOST_SERIES, HOST_SERIES - names
    assert names >= MONGOD_SERIES, MONGOD_SERIES - names
    assert len(names) >= 30

    def one(name: str, **labels: str) -> float:
        found = [
            s["value"]
            for s in samples
            if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items())
        ]
        assert found, (name, labels)
        return found[0]

    instance = f"127.0.0.1:{member.port}"
    assert one("mongodb_up", instance=instance) == 1
    assert one("mongodb_op_counters_total", type="insert") == 201
    assert one("mongodb_replset_my_state") == 1
    assert one("mongodb_replset_member_health", member=instance) == 1
    assert one("mongodb_replset_member_replication_lag_seconds", member=instance) == 0
    assert one("mongodb_oplog_window_seconds") >= 0
    assert one("mongodb_oplog_size_bytes") > 0
    assert one("mongodb_collection_documents", db="shop", collection="orders") == 200
    assert one("mongodb_db_objects", db="shop") == 201
    assert one("host_memory_total_bytes") > one("host_memory_available_bytes") > 0
    kinds = {s["name"]: s["kind"] for s in samples}
    assert kinds["mongodb_op_counters_total"] == "counter" and kinds["mongodb_up"] == "gauge"
    assert all(s["timestamp"] > 1e9 for s in samples)


def test_a_rate_from_two_rounds_is_the_increase_over_the_samples_own_interval(member):
    collector = MongoCollector(member.uri)
    rates = Rates()
    try:
        first = collector.collect()
        assert rates.update(first) == []  # nothing to compare the first round with
        member.client().shop.orders.insert_many([{"n": i} for i in range(150)])
        second = collector.collect()
        per_second = rates.update(second)
    finally:
        collector.close()
    [before] = values(first, "mongodb_op_counters_total", type="insert")
    [after] = values(second, "mongodb_op_counters_total", type="insert")
    assert after - before == 150
    [t1] = [s.timestamp for s in first if s.name == "mongodb_op_counters_total"][:1]
    [t2] = [s.timestamp for s in second if s.name == "mongodb_op_counters_total"][:1]
    [rate] = values(per_second, "mongodb_op_counters_per_second", type="insert")
    assert rate == pytest.approx(150 / (t2 - t1))
    [inserted] = values(per_second, "mongodb_metrics_document_per_second", state="inserted")
    assert inserted == pytest.approx(150 / (t2 - t1))


def test_an_unreachable_server_is_state_not_an_exception(launcher):
    port = launcher.free_port()  # nothing listens there
    collector = MongoCollector(f"mongodb://127.0.0.1:{port}/", timeout_ms=300)
    registry = Registry([collector, HostCollector()])
    result = registry.collect()
    assert values(result.samples, "mongodb_up") == [0.0]
    [message] = result.errors[collector.name]
    assert "serverStatus" in message and "refused" in message.lower()
    assert values(result.samples, "host_load1")  # the host's collector still ran
    registry.close()

    cli = wap_agent(
        "collect",
        "--once",
        "--no-host",
        "--timeout-ms",
        "300",
        "--format",
        "prometheus",
        "--mongodb-uri",
        f"mongodb://127.0.0.1:{port}/",
    )
    assert cli.returncode == 0, cli.stderr
    assert f'mongodb_up{{instance="127.0.0.1:{port}"}} 0' in cli.stdout
    assert "# error mongodb" in cli.stdout


def test_a_wrong_password_and_a_refused_command_are_reported(launcher):
    node = launcher.start("--auth")
    admin = node.client()
    admin.admin.command("createUser", "root", pwd="secret-pw", roles=["root"])
    owner = node.client(username="root", password="secret-pw")
    owner.admin.command(
        "createUser", "reader", pwd="reader-pw", roles=[{"role": "read", "db": "shop"}]
    )

    wrong = MongoCollector(f"mongodb://root:not-it@127.0.0.1:{node.port}/", timeout_ms=2000)
    samples = wrong.collect()
    wrong.close()
    assert values(samples, "mongodb_up") == [0.0]
    assert "Authentication failed" in wrong.errors[0]
    assert "not-it" not in wrong.errors[0]

    reader = MongoCollector(f"mongodb://reader:reader-pw@127.0.0.1:{node.port}/", timeout_ms=2000)
    samples = reader.collect()
    reader.close()
    assert values(samples, "mongodb_up") == [0.0]
    assert "serverStatus" in reader.errors[0] and "code 13" in reader.errors[0]


class CommandLog(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def test_sizes_of_many_collections_stay_within_the_command_budget(launcher):
    node = launcher.start()
    client = node.client()
    for i in range(2000):
        client.many.command("create", f"c{i:04d}")
    client.many.c0042.insert_many([{"pad": "y" * 500} for _ in range(50)])
    client.other.big.insert_many([{"pad": "z" * 1000} for _ in range(30)])

    log = CommandLog()
    survey = SizeSurvey(dbstats_per_round=10, collections_per_round=20, top_collections=5, every=0)
    collector = MongoCollector(node.uri, sizes=survey, client_options={"event_listeners": [log]})
    budget = 1 + 1 + 10 + 20  # serverStatus, listDatabases, dbStats lane, collection lane
    rounds = []
    try:
        for _ in range(6):
            log.names.clear()
            samples = collector.collect()
            rounds.append(samples)
            assert len(log.names) <= budget, log.names
            assert len(log.names) == collector.commands  # the agent's own count is true
            assert collector.errors == []
    finally:
        collector.close()
    assert log.names.count("getMore") == 0
    # 6 rounds x 20 commands: a few listCollections, the rest $collStats, in rotation
    assert 100 <= len(survey.collections) <= 120
    last = rounds[-1]
    reported = {s.labels["collection"] for s in last if s.name == "mongodb_collection_size_bytes"}
    assert len(reported) == 5
    assert "c0042" in reported  # the largest surveyed so far ("other" comes after "many")
    sizes = {
        s.labels["collection"]: s.value for s in last if s.name == "mongodb_collection_size_bytes"
    }
    assert max(sizes, key=sizes.get) == "c0042"
    assert values(last, "mongodb_db_objects", db="many") == [50.0]
    assert values(last, "mongodb_db_collections", db="many") == [2000.0]


def test_database_stats_rotate_when_there_are_more_databases_than_the_budget(launcher):
    node = launcher.start()
    client = node.client()
    for i in range(12):
        client[f"db{i:02d}"].items.insert_one({"i": i})
    log = CommandLog()
    survey = SizeSurvey(dbstats_per_round=4, collections_per_round=1, every=0)
    collector = MongoCollector(node.uri, sizes=survey, client_options={"event_listeners": [log]})
    try:
        for _ in range(4):  # 12 databases and admin (config and local are empty here)
            log.names.clear()
            collector.collect()
            assert log.names.count("dbStats") == 4
            assert len(log.names) <= 1 + 1 + 4 + 1
    finally:
        collector.close()
    listed = {d["name"] for d in client.admin.command("listDatabases")["databases"]}
    assert set(survey.databases) == listed


def test_sizes_are_read_at_most_once_a_minute_whatever_the_interval(launcher):
    """Rounds within ``every`` seconds of the survey's last run report the sizes known (with
    the time each was read) and send no size command; the next run comes once a minute has
    passed."""
    node = launcher.start()
    node.client().app.items.insert_many([{"i": i} for i in range(5)])
    now = [1_000_000.0]
    log = CommandLog()
    survey = SizeSurvey(clock=lambda: now[0])
    collector = MongoCollector(node.uri, sizes=survey, client_options={"event_listeners": [log]})
    sizes = ("listDatabases", "dbStats", "listCollections", "aggregate")
    try:
        runs = []
        for advance in (0, 1, 30, 28.5, 0.5):  # 0, 1, 31, 59.5, then 60 s after the first
            now[0] += advance
            log.names.clear()
            samples = collector.collect()
            runs.append(sum(log.names.count(name) for name in sizes))
            assert values(samples, "mongodb_collection_documents", db="app") == [5.0]
            assert values(samples, "mongodb_db_objects", db="app") == [5.0]
        # aggregate also reads the oplog's $collStats in a replica set: not here (standalone)
        assert runs[0] > 0 and runs[1:4] == [0, 0, 0] and runs[4] > 0, runs
        # What is kept between runs is the figures reported, not whole replies.
        kept = {"size", "storageSize", "totalIndexSize", "count"}
        assert set(survey.collections[("app", "items")][1]) == kept
    finally:
        collector.close()


def test_prometheus_output_parses(member):
    result = wap_agent("collect", "--once", "--format", "prometheus", "--mongodb-uri", member.uri)
    assert result.returncode == 0, result.stderr
    families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
    assert families["mongodb_op_counters"].type == "counter"
    assert families["host_cpu_seconds"].type == "counter"
    assert families["mongodb_up"].type == "gauge"
    inserts = [
        s for s in families["mongodb_op_counters"].samples if s.labels.get("type") == "insert"
    ]
    assert inserts[0].value == 201 and inserts[0].name == "mongodb_op_counters_total"
    assert len(families) >= 30


def test_rates_option_adds_per_second_gauges(member):
    result = wap_agent(
        "collect", "--once", "--no-host", "--rates", "0.5", "--mongodb-uri", member.uri
    )
    assert result.returncode == 0, result.stderr
    rates = json.loads(result.stdout)["rates"]
    names = {r["name"] for r in rates}
    assert "mongodb_op_counters_per_second" in names
    assert all(r["kind"] == "gauge" for r in rates)


def test_mongos_gives_its_own_series(launcher):
    cluster = start_cluster(launcher)
    router = cluster.router_client()
    for name in SHARDS:
        router.admin.command("addShard", cluster.shard_host(name))
    router.shop.orders.insert_many([{"n": i} for i in range(5)])
    collector = MongoCollector(f"mongodb://127.0.0.1:{cluster.routers[0].port}/")
    samples = collector.collect()
    collector.close()
    assert collector.errors == []
    assert values(samples, "mongodb_up") == [1.0]
    assert values(samples, "mongodb_op_counters_total", type="insert") == [5.0]
    assert values(samples, "mongodb_version_info", process="mongos") == [1.0]
    assert not [s for s in samples if s.name.startswith(("mongodb_replset", "mongodb_oplog"))]
