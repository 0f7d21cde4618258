"""The store, against each server of STORE_SERVERS: schema versions, indexes, the queries used."""

import uuid
from collections.abc import Iterator

import pytest
from pymongo.errors import DuplicateKeyError

from webui.services import jobs
from webui.store import Store
from webui.store.migrations import MIGRATIONS


@pytest.fixture
def store_uri(each_store_server: str) -> str:
    return each_store_server.format(db=f"wap_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def store(store_uri: str) -> Iterator[Store]:
    store = Store(store_uri)
    store.migrate()
    yield store
    store.close()


def test_migrate_records_the_version_and_is_idempotent(store_uri: str) -> None:
    store = Store(store_uri)
    try:
        assert store.schema_version() == 0
        assert store.migrate() == MIGRATIONS[-1].version
        assert store.migrate() == MIGRATIONS[-1].version
        indexes = store.job_events.index_information()
        assert any(
            ix.get("unique") and dict(ix["key"]) == {"job_id": 1, "counter": 1}
            for ix in indexes.values()
        )
    finally:
        store.close()


def test_unique_indexes_hold(store: Store) -> None:
    store.users.insert_one({"_id": "a", "username": "ann"})
    with pytest.raises(DuplicateKeyError):
        store.users.insert_one({"_id": "b", "username": "ann"})
    store.job_events.insert_one({"job_id": "j", "counter": 1})
    with pytest.raises(DuplicateKeyError):
        store.job_events.insert_one({"job_id": "j", "counter": 1})


def test_events_after_pages_in_counter_order(store: Store) -> None:
    store.job_events.insert_many(
        [{"job_id": "j", "counter": c, "stdout": str(c)} for c in (3, 1, 5, 2, 4)]
    )
    store.job_events.insert_one({"job_id": "other", "counter": 9})
    assert [e["counter"] for e in jobs.events_after(store, "j", 0)] == [1, 2, 3, 4, 5]
    assert [e["counter"] for e in jobs.events_after(store, "j", 2, limit=2)] == [3, 4]
    assert "_id" not in jobs.events_after(store, "j", 4)[0]


def test_times_compare_as_numbers(store: Store) -> None:
    store.jobs.insert_many(
        [
            {"_id": "old", "status": "running", "heartbeat_at": 100.0},
            {"_id": "new", "status": "running", "heartbeat_at": 200.0},
        ]
    )
    assert [
        j["_id"] for j in store.jobs.find({"status": "running", "heartbeat_at": {"$lt": 150.0}})
    ] == ["old"]
