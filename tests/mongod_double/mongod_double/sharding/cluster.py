"""The router's view of the cluster: the config server replica set and the shards.

The sharding catalog lives in the config servers' ``config`` database as ordinary collections
(so it persists and replicates like any data), with MongoDB 7.0's document shapes:

- ``config.shards``: ``{_id, host: "<set>/<host:port>,...", state: 1, topologyTime}``, plus
  ``draining: true`` while a shard is being removed;
- ``config.databases``: ``{_id, primary, version: {uuid, timestamp, lastMod}}``;
- ``config.collections``: ``{_id: ns, lastmodEpoch, lastmod, timestamp, uuid, key, unique,
  noBalance}``;
- ``config.chunks``: ``{_id, uuid, min, max, shard, lastmod, onCurrentShardSince, history}``;
- ``config.settings``: ``{_id: "balancer", mode, stopped}``, and the balancer's round state
  (``inRound``, ``roundExpires``, ``rounds``); ``config.version``: the cluster id.

The router keeps no cache: every command reads the catalog it needs, so two routers always agree
(flushRouterConfig has nothing to flush). Connections use the vendored pymongo: a replica set
client (``replicaSet=``) per shard and for the config servers; with a key file they
authenticate as MongoDB's internal ``__system`` user, as the members of a replica set do.
Sources: https://www.mongodb.com/docs/manual/reference/config-database/
"""

from __future__ import annotations

import contextlib
import datetime
import threading

import pymongo
from bson.codec_options import CodecOptions
from bson.objectid import ObjectId
from bson.timestamp import Timestamp
from pymongo.errors import DuplicateKeyError

from mongod_double.errors import CommandError
from mongod_double.options import ServerOptions
from mongod_double.peers import internal_auth_kwargs
from mongod_double.sharding.keys import ShardKey, sort_chunks
from mongod_double.storage import new_uuid

CODEC = CodecOptions(document_class=dict, tz_aware=False)
CONNECT_TIMEOUT_MS = 3000
SERVER_SELECTION_TIMEOUT_MS = 5000
SHARD_NOT_FOUND = 70
NAMESPACE_NOT_SHARDED = 118
FAILED_TO_SATISFY_READ_PREFERENCE = 133


def parse_connection_string(text: str) -> tuple[str | None, list[str]]:
    """``"cfg/h1:27019,h2:27019"`` -> ``("cfg", ["h1:27019", "h2:27019"])``."""
    name, sep, seeds = text.partition("/")
    if not sep:
        return None, [h for h in name.split(",") if h]
    return name, [h for h in seeds.split(",") if h]


def client_kwargs(options: ServerOptions) -> dict:
    """pymongo options for the router's internal connections (key file and TLS as mongod's)."""
    kwargs: dict = {
        "connectTimeoutMS": CONNECT_TIMEOUT_MS,
        "serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS,
        "appname": "mongos double",
        "document_class": dict,
        "tz_aware": False,
        "retryWrites": False,
    }
    kwargs.update(internal_auth_kwargs(options))
    return kwargs


def now_timestamp() -> Timestamp:
    return Timestamp(int(datetime.datetime.now(datetime.UTC).timestamp()), 1)


class Cluster:
    def __init__(self, config_db: str, options: ServerOptions) -> None:
        self.config_db = config_db
        self.kwargs = client_kwargs(options)
        set_name, hosts = parse_connection_string(config_db)
        self.config_set = set_name
        self.config_client = pymongo.MongoClient(hosts, replicaSet=set_name, **self.kwargs)
        self.config = self.config_client.get_database("config", codec_options=CODEC)
        self._clients: dict[str, pymongo.MongoClient] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()
        self.config_client.close()

    # -- connections ---------------------------------------------------------------------

    def client_for_host(self, host: str) -> pymongo.MongoClient:
        """A replica set client for a shard's connection string (cached)."""
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                set_name, hosts = parse_connection_string(host)
                client = pymongo.MongoClient(hosts, replicaSet=set_name, **self.kwargs)
                self._clients[host] = client
            return client

    def shard_db(self, shard: str | dict, db: str):
        doc = shard if isinstance(shard, dict) else self.shard(shard)
        return self.client_for_host(doc["host"]).get_database(db, codec_options=CODEC)

    # -- config.shards -------------------------------------------------------------------

    def shards(self) -> list[dict]:
        return list(self.config.shards.find({}).sort("_id", 1))

    def shard(self, name: str) -> dict:
        doc = self.config.shards.find_one({"_id": name})
        if doc is None:
            raise CommandError(SHARD_NOT_FOUND, f"Shard {name} not found")
        return doc

    def active_shards(self) -> list[dict]:
        return [s for s in self.shards() if not s.get("draining")]

    def require_shards(self) -> list[dict]:
        shards = self.active_shards()
        if not shards:
            raise CommandError(
                SHARD_NOT_FOUND,
                "Database could not be created :: caused by :: No shards found",
            )
        return shards

    # -- config.databases ----------------------------------------------------------------

    def database(self, db: str) -> dict | None:
        return self.config.databases.find_one({"_id": db})

    def ensure_database(self, db: str, primary: str | None = None) -> dict:
        """The database's entry, created (with a primary shard) on first use, as mongos does."""
        doc = self.database(db)
        if doc is not None:
            return doc
        shards = self.require_shards()
        if primary is None:
            counts = {s["_id"]: 0 for s in shards}
            for entry in self.config.databases.find({}, {"primary": 1}):
                if entry.get("primary") in counts:
                    counts[entry["primary"]] += 1
            primary = min(counts, key=lambda name: (counts[name], name))
        doc = {
            "_id": db,
            "primary": primary,
            "version": {"uuid": new_uuid(), "timestamp": now_timestamp(), "lastMod": 1},
        }
        try:
            self.config.databases.insert_one(doc)
        except DuplicateKeyError:
            return self.database(db) or doc
        return doc

    def primary_db(self, db: str, create: bool):
        """The database on its primary shard, or None when the database does not exist."""
        entry = self.ensure_database(db) if create else self.database(db)
        if entry is None:
            return None
        return self.shard_db(entry["primary"], db)

    # -- config.collections / config.chunks ----------------------------------------------

    def collection(self, ns: str) -> dict | None:
        doc = self.config.collections.find_one({"_id": ns})
        if doc is None or doc.get("dropped"):
            return None
        return doc

    def routing(self, ns: str) -> Routing | None:
        doc = self.collection(ns)
        if doc is None:
            return None
        chunks = sort_chunks(list(self.config.chunks.find({"uuid": doc["uuid"]})))
        return Routing(doc, ShardKey.from_doc(doc["key"]), chunks)

    def sharded_collections(self, db: str | None = None) -> list[dict]:
        query: dict = {"dropped": {"$ne": True}}
        if db is not None:
            query["_id"] = {"$regex": "^" + _regex_escape(db) + r"\."}
        return list(self.config.collections.find(query))

    def new_chunk(self, coll: dict, low: dict, high: dict, shard: str, major: int) -> dict:
        stamp = now_timestamp()
        return {
            "_id": ObjectId(),
            "uuid": coll["uuid"],
            "min": low,
            "max": high,
            "shard": shard,
            "lastmod": Timestamp(major, 0),
            "onCurrentShardSince": stamp,
            "history": [{"validAfter": stamp, "shard": shard}],
        }

    # -- config.settings (balancer) ------------------------------------------------------

    def balancer_settings(self) -> dict:
        return self.config.settings.find_one({"_id": "balancer"}) or {"mode": "full"}

    def set_balancer(self, mode: str) -> None:
        self.config.settings.update_one(
            {"_id": "balancer"},
            {"$set": {"mode": mode, "stopped": mode == "off"}},
            upsert=True,
        )

    def balancer_round(self) -> dict:
        """Whether a balancer round runs now and how many ran (a round whose router went away
        is over once its time is up)."""
        doc = self.balancer_settings()
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        running = bool(doc.get("inRound")) and doc.get("roundExpires", now) > now
        return {"inRound": running, "rounds": int(doc.get("rounds", 0))}

    def begin_balancer_round(self, seconds: float) -> bool:
        """Mark a round begun, only while the balancer is on: one atomic update, so a
        balancerStop either comes first (no round) or sees the round and waits for it."""
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        begun = self.config.settings.update_one(
            {"_id": "balancer", "mode": {"$ne": "off"}},
            {"$set": {"inRound": True, "roundExpires": now + datetime.timedelta(seconds=seconds)}},
        )
        if begun.matched_count:
            return True
        try:  # no settings yet: the balancer is on (mode full)
            self.config.settings.insert_one(
                {"_id": "balancer", "mode": "full", "stopped": False, "inRound": True,
                 "roundExpires": now + datetime.timedelta(seconds=seconds)}
            )  # fmt: skip
        except DuplicateKeyError:
            return False  # the balancer is off
        return True

    def end_balancer_round(self) -> None:
        self.config.settings.update_one(
            {"_id": "balancer"}, {"$set": {"inRound": False}, "$inc": {"rounds": 1}}
        )

    def ensure_cluster_id(self) -> None:
        if self.config.version.find_one({"_id": 1}) is None:
            with contextlib.suppress(DuplicateKeyError):
                self.config.version.insert_one({"_id": 1, "clusterId": ObjectId()})


class Routing:
    """One sharded collection's catalog entry, shard key and chunks (sorted by min)."""

    def __init__(self, doc: dict, key: ShardKey, chunks: list[dict]) -> None:
        self.doc = doc
        self.key = key
        self.chunks = chunks

    @property
    def ns(self) -> str:
        return self.doc["_id"]

    def shard_names(self) -> list[str]:
        return sorted({c["shard"] for c in self.chunks})


def _regex_escape(text: str) -> str:
    return "".join("\\" + ch if not ch.isalnum() and ch != "_" else ch for ch in text)
