"""A sharded cluster of doubles on 127.0.0.1 for the sharding tests.

A config server replica set (``cfg``), two shard replica sets (``shard1``, ``shard2``), one
member each, and any number of mongos routers, all started through the tests' ``Launcher`` so
that every process is killed when the test ends, even when it fails.
"""

from __future__ import annotations

import pathlib
import subprocess
import time
from dataclasses import dataclass, field

import pymongo

from tests.mongod_double.conftest import START_TIMEOUT, Launcher, Node, _listening

SHARDS = ("shard1", "shard2")


def initiate(node: Node, name: str) -> None:
    client = node.client()
    config = {"_id": name, "members": [{"_id": 0, "host": f"127.0.0.1:{node.port}"}]}
    if name == "cfg":
        config["configsvr"] = True
    client.admin.command("replSetInitiate", config)
    deadline = time.monotonic() + START_TIMEOUT
    while not client.admin.command("hello").get("isWritablePrimary"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not elect a primary")
        time.sleep(0.05)


def start_mongos(
    launcher: Launcher,
    config_db: str,
    *args: str,
    port: int | None = None,
    executable: str | None = None,
) -> Node:
    launcher.count += 1
    port = port or launcher.free_port()
    logpath = launcher.tmp_path / f"mongos{launcher.count}.log"
    argv = ["--configdb", config_db, "--port", str(port), "--bind_ip", "127.0.0.1"]
    argv += ["--logpath", str(logpath), "--logappend", *args]
    proc = subprocess.Popen(
        [*launcher.command(executable), *argv],
        env=launcher.env(None, program="mongos"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    node = Node(proc, port, pathlib.Path(), logpath)
    launcher.nodes.append(node)
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(port):
        if proc.poll() is not None:
            raise AssertionError(f"mongos exited with {proc.returncode}: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("mongos did not listen in time")
        time.sleep(0.05)
    return node


@dataclass
class ShardedCluster:
    launcher: Launcher
    config: Node
    shards: dict[str, Node]
    routers: list[Node] = field(default_factory=list)
    args: tuple[str, ...] = ()

    @property
    def config_db(self) -> str:
        return f"cfg/127.0.0.1:{self.config.port}"

    def shard_host(self, name: str) -> str:
        return f"{name}/127.0.0.1:{self.shards[name].port}"

    def add_router(self) -> Node:
        router = start_mongos(self.launcher, self.config_db, *self.args)
        self.routers.append(router)
        return router

    def router_client(self, index: int = 0, **kwargs) -> pymongo.MongoClient:
        return self.routers[index].client(**kwargs)

    def shard_client(self, name: str, **kwargs) -> pymongo.MongoClient:
        return self.shards[name].client(**kwargs)


def start_cluster(launcher: Launcher, routers: int = 1, *args: str) -> ShardedCluster:
    """The cluster; ``args`` (a key file, say) go to every member and router."""
    config = launcher.start("--configsvr", "--replSet", "cfg", *args)
    shards = {name: launcher.start("--shardsvr", "--replSet", name, *args) for name in SHARDS}
    initiate(config, "cfg")
    for name, node in shards.items():
        initiate(node, name)
    cluster = ShardedCluster(launcher, config, shards, args=args)
    for _ in range(routers):
        cluster.add_router()
    return cluster
