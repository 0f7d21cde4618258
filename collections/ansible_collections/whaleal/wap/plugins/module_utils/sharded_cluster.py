# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""A sharded cluster seen from a mongos: its replica sets (config servers first, then each
shard) and clients on them, for modules that act on the whole cluster (an upgrade, the FCV).

The functions at the top are pure and unit-tested; the ones taking a connection do the I/O.
"""

from __future__ import annotations

from ansible_collections.whaleal.wap.plugins.module_utils.discovery import split_seeds
from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MongoClient,
    client_options,
)


def cluster_fcv(documents: dict[str, dict]) -> dict:
    """One FCV document for the whole cluster from each replica set's (pure).

    Sets that agree give their document; sets that disagree (an interrupted change through a
    mongos) give the lowest version with the highest as targetVersion, so that setting it again
    finishes the change.
    """
    if not documents:
        return {}
    versions = sorted({d.get("version", "") for d in documents.values()})
    targets = sorted({d["targetVersion"] for d in documents.values() if d.get("targetVersion")})
    merged = {"version": versions[0]}
    if len(versions) > 1 or targets:
        merged["targetVersion"] = max([versions[-1], *targets])
    return merged


def is_router(client) -> bool:
    """Whether ``client`` is connected to a mongos (hello answers msg: isdbgrid)."""
    return client.admin.command("hello").get("msg") == "isdbgrid"


def cluster_sets(client) -> list[dict]:
    """The config server replica set, then each shard's: [{name, role, seeds}], read through the
    mongos ``client`` (getShardMap, listShards)."""
    config_name, config_seeds = split_seeds(client.admin.command("getShardMap")["map"]["config"])
    sets = [{"name": config_name, "role": "config", "seeds": config_seeds}]
    for shard in client.admin.command("listShards")["shards"]:
        name, seeds = split_seeds(shard["host"])
        sets.append({"name": name or shard["_id"], "role": "shard", "seeds": seeds})
    return sets


def set_client(conn, name: str, seeds: list[str]):
    """A replica set client on ``seeds`` with the module's credentials and TLS."""
    options = client_options(conn.module.params, authenticate=conn.authenticated)
    for key in ("host", "port", "directConnection"):
        options.pop(key, None)
    return MongoClient(host=list(seeds), replicaSet=name, **options)


def read_fcv_document(client) -> dict:
    reply = client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
    return dict(reply["featureCompatibilityVersion"])


def router_fcv(conn) -> dict:
    """The cluster's FCV document (see cluster_fcv), read on each set's primary: a mongos has
    no FCV of its own to read."""
    documents = {}
    for each in cluster_sets(conn.client):
        client = set_client(conn, each["name"], each["seeds"])
        try:
            documents[each["name"]] = read_fcv_document(client)
        finally:
            client.close()
    return cluster_fcv(documents)
