"""whaleal.wap.mongodb_security_info from a terminal on a sharded cluster of doubles on 127.0.0.1,
read through one router: every config server, shard member and router with what it runs, the
passes planned for the whole cluster, and a member part-way through refused for TLS alone (the
processes differ in access control). Reads only."""

from __future__ import annotations

import json
import subprocess

from tests.labhosts import REPO, VENV_BIN, ansible_env
from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
from tests.mongod_double.shardedset import SHARDS, start_cluster

KEY = "c2VjdXJpdHktaW5mby10ZXN0cy1rZXlmaWxlLWNvbnRlbnQ="


def _info(port: int, **args) -> dict:
    done = subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-m", "whaleal.wap.mongodb_security_info",
         "-a", json.dumps({"login_host": "127.0.0.1", "login_port": port, **args})],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**ansible_env(), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
    )  # fmt: skip
    return json.loads(done.stdout.partition(" => ")[2])


def test_the_passes_of_a_sharded_cluster_are_read_through_a_router(launcher, tmp_path) -> None:  # noqa: F811
    cluster = start_cluster(launcher, 1)
    for name in SHARDS:
        cluster.router_client().admin.command("addShard", cluster.shard_host(name))
    router = cluster.routers[0].port
    found = _info(router, access_control=True, tls_enabled=True)
    assert not found.get("failed"), found
    assert found["topology"] == "sharded"
    hosts = [f"127.0.0.1:{n.port}" for n in (cluster.config, *cluster.shards.values())]
    assert [(p["host"], p["set"], p["auth"], p["tls"]) for p in found["processes"]] == [
        *((h, s, "open", "disabled") for h, s in zip(hosts, ("cfg", *SHARDS), strict=True)),
        (f"127.0.0.1:{router}", "", "open", "disabled")]  # fmt: skip
    assert [s["name"] for s in found["plan"]["steps"]] == [
        "auth_transition+allowTLS", "users", "auth_enforce+preferTLS", "requireTLS"]  # fmt: skip
    assert found["lines"][0].startswith(
        "1. restart with the keyFile and transitionToAuth (connections with or without "
        "authentication accepted) and at allowTLS (TLS and plain accepted, peers reached without "
        f"TLS): the sharded cluster, member by member ({hosts[0]}, "
    )

    # shard1's member restarted in transition: it reads so; TLS alone is refused until the
    # access control passes are finished, naming each process.
    keyfile = tmp_path / "keyfile"
    keyfile.write_text(KEY)
    keyfile.chmod(0o400)
    old = cluster.shards["shard1"]
    old.stop()
    launcher.start("--shardsvr", "--replSet", "shard1", "--keyFile", str(keyfile),
                   "--transitionToAuth", dbpath=old.dbpath, port=old.port)  # fmt: skip
    mixed = _info(router, tls_enabled=True)
    assert mixed["msg"].startswith(
        "Cannot secure the sharded cluster: the processes differ in access control"
    )
    assert f"127.0.0.1:{old.port} transitionToAuth" in mixed["msg"]
    resumed = _info(router, access_control=True)
    assert [s["name"] for s in resumed["plan"]["steps"]] == [
        "auth_transition", "users", "auth_enforce"]  # fmt: skip
