"""The mapping of MongoDB's replies to samples, on replies shaped as MongoDB's reference pages
show them (sections the double does not produce: locks, members of a three-member set)."""

from __future__ import annotations

import datetime

from bson.int64 import Int64
from bson.timestamp import Timestamp

from wap_agent.collectors.mongodb_status import (
    oplog_samples,
    replset_samples,
    server_status_samples,
)

UTC = datetime.UTC


def by_key(samples):
    return {(s.name, tuple(sorted(s.labels.items()))): s for s in samples}


def test_locks_become_counters_per_resource_and_mode():
    # https://www.mongodb.com/docs/manual/reference/command/serverStatus/ "locks"
    status = {
        "locks": {
            "Global": {
                "acquireCount": {"r": Int64(40), "w": Int64(7)},
                "acquireWaitCount": {"w": Int64(2)},
                "timeAcquiringMicros": {"w": Int64(1_500_000)},
            },
            "Database": {"acquireCount": {"r": Int64(9)}},
        }
    }
    samples = by_key(server_status_samples(status, {"instance": "a:1"}, 5.0))
    key = ("instance", "a:1")
    acquired = samples[
        ("mongodb_locks_acquire_total", (key, ("mode", "w"), ("resource", "Global")))
    ]
    assert acquired.value == 7 and acquired.kind == "counter"
    waited = samples[
        ("mongodb_locks_time_acquiring_seconds_total", (key, ("mode", "w"), ("resource", "Global")))
    ]
    assert waited.value == 1.5
    assert (
        "mongodb_locks_acquire_total",
        (key, ("mode", "r"), ("resource", "Database")),
    ) in samples


def test_a_reply_without_a_section_gives_no_sample_for_it():
    samples = server_status_samples({"uptime": 12.0}, {}, 1.0)
    assert [s.name for s in samples] == ["mongodb_instance_uptime_seconds"]


def test_replica_set_lag_is_measured_against_the_primary():
    # https://www.mongodb.com/docs/manual/reference/command/replSetGetStatus/ "members"
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    status = {
        "set": "rs0",
        "myState": 2,
        "members": [
            {
                "_id": 0,
                "name": "a:1",
                "health": 1,
                "state": 1,
                "stateStr": "PRIMARY",
                "optimeDate": now,
            },
            {
                "_id": 1,
                "name": "b:1",
                "health": 1,
                "state": 2,
                "stateStr": "SECONDARY",
                "optimeDate": now - datetime.timedelta(seconds=7),
                "pingMs": Int64(3),
            },
            {
                "_id": 2,
                "name": "c:1",
                "health": 0,
                "state": 8,
                "stateStr": "(not reachable/healthy)",
                "optimeDate": datetime.datetime(1970, 1, 1, tzinfo=UTC),
            },
        ],
    }
    samples = by_key(replset_samples(status, {"instance": "b:1"}, 1.0))
    base = (("instance", "b:1"), ("member", "b:1"), ("set", "rs0"))
    assert samples[("mongodb_replset_member_replication_lag_seconds", base)].value == 7.0
    assert samples[("mongodb_replset_member_ping_seconds", base)].value == 0.003
    assert samples[("mongodb_replset_my_state", (("instance", "b:1"), ("set", "rs0")))].value == 2
    down = (("instance", "b:1"), ("member", "c:1"), ("set", "rs0"))
    assert samples[("mongodb_replset_member_health", down)].value == 0
    assert samples[("mongodb_replset_member_state", down)].value == 8
    assert ("mongodb_replset_member_replication_lag_seconds", down) not in samples


def test_oplog_window_is_newest_minus_oldest_entry():
    first, last = {"ts": Timestamp(1000, 1)}, {"ts": Timestamp(4600, 3)}
    stats = {"storageStats": {"size": 10, "maxSize": 100, "storageSize": 20, "count": 4}}
    samples = {s.name: s.value for s in oplog_samples(first, last, stats, {}, 1.0)}
    assert samples["mongodb_oplog_window_seconds"] == 3600
    assert samples["mongodb_oplog_max_size_bytes"] == 100
    assert oplog_samples(None, None, None, {}, 1.0) == []
