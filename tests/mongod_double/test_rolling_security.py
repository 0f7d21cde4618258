"""Securing a running replica set of doubles member by member, as MongoDB documents it.

transitionToAuth: a member with the keyFile accepts connections with or without authentication,
and to its peers tries the keyFile first and goes on without authentication when a peer cannot
check it (a member not restarted yet), so a set of mixed members stays healthy at each step.
TLS: allowTLS accepts both and connects to peers without TLS; preferTLS accepts both and connects
with TLS; requireTLS accepts TLS only.

Sources: https://www.mongodb.com/docs/manual/tutorial/enforce-keyfile-access-control-in-existing-replica-set-without-downtime/
("a mongod running with transitionToAuth accepts both authenticated and non-authenticated
connections"; "--transitionToAuth: attempt to authenticate over outgoing connections and proceed
regardless of success"), https://www.mongodb.com/docs/manual/tutorial/upgrade-cluster-to-ssl/ and
https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-net.tls.mode
"""

from __future__ import annotations

import pymongo
import pytest
from pymongo.errors import OperationFailure, PyMongoError

from tests.mongod_double.shardedset import SHARDS, start_cluster
from tests.mongod_double.test_replset_local import _pki, _wait
from tests.waiting import wait_until

KEY = "c2VjcmV0LWtleS1mb3ItdGhlLXJvbGxpbmctdGVzdHM="


def _healthy_everywhere(nodes, **options) -> dict[int, list[str]]:
    """Each member's view of the set: the states of the members it sees healthy."""
    views = {}
    for node in nodes:
        with pymongo.MongoClient(f"127.0.0.1:{node.port}", directConnection=True,
                                 serverSelectionTimeoutMS=2000, **options) as client:  # fmt: skip
            members = client.admin.command("replSetGetStatus")["members"]
        views[node.port] = sorted(m["stateStr"] for m in members if m["health"] == 1)
    return views


def _all_see(nodes, states: list[str], **options) -> bool:
    try:
        return all(v == states for v in _healthy_everywhere(nodes, **options).values())
    except PyMongoError:
        return False


def _restart(launcher, nodes, i: int, *args: str):
    old = nodes[i]
    old.stop()
    nodes[i] = launcher.start(*args, dbpath=old.dbpath, port=old.port)
    return nodes[i]


def _initiate(nodes, **options) -> None:
    config = {"_id": "rs0", "members": [
        {"_id": i, "host": f"127.0.0.1:{n.port}", "priority": 2 if i == 0 else 1}
        for i, n in enumerate(nodes)]}  # fmt: skip
    nodes[0].client(**options).admin.command("replSetInitiate", config)


SET = ["PRIMARY", "SECONDARY", "SECONDARY"]


def test_transition_to_auth_keeps_a_mixed_set_healthy_then_auth_is_enforced(launcher, tmp_path):
    keyfile = tmp_path / "keyfile"
    keyfile.write_text(KEY + "\n")
    keyfile.chmod(0o400)
    base = ("--replSet", "rs0")
    nodes = [launcher.start(*base) for _ in range(3)]
    _initiate(nodes)
    _wait(lambda: _all_see(nodes, SET), what="an open set", seen=lambda: _healthy_everywhere(nodes))

    # One member with keyFile + transitionToAuth beside two without a keyFile: it fails to
    # authenticate to them and goes on unauthenticated; they reach it without credentials.
    transition = (*base, "--keyFile", str(keyfile), "--transitionToAuth")
    _restart(launcher, nodes, 2, *transition)
    _wait(lambda: _all_see(nodes, SET), what="one member in transition, the set healthy",
          seen=lambda: _healthy_everywhere(nodes))  # fmt: skip
    for i in (1, 0):
        _restart(launcher, nodes, i, *transition)
        _wait(lambda: _all_see(nodes, SET), what=f"{3 - i} members in transition",
              seen=lambda: _healthy_everywhere(nodes))  # fmt: skip
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    unauthenticated = pymongo.MongoClient(f"mongodb://{hosts}/?replicaSet=rs0", w="majority",
                                          serverSelectionTimeoutMS=10_000)  # fmt: skip
    wait_until(lambda: unauthenticated.app.c.insert_one({"step": "transition"}).acknowledged,
               timeout=30, what="an unauthenticated write in transition",
               retry=PyMongoError)  # fmt: skip
    unauthenticated.admin.command("createUser", "admin", pwd="pw", roles=["root"])
    unauthenticated.close()
    user = {"username": "admin", "password": "pw"}
    authenticated = pymongo.MongoClient(f"mongodb://{hosts}/?replicaSet=rs0", w="majority",
                                        serverSelectionTimeoutMS=10_000, **user)  # fmt: skip
    authenticated.app.c.insert_one({"step": "authenticated in transition"})
    with pytest.raises(OperationFailure) as wrong:
        nodes[1].client(username="admin", password="not it").admin.command("ping")
    assert wrong.value.code == 18  # a client that authenticates is checked even in transition

    # Without transitionToAuth a member enforces access control; members in transition reach it
    # with the keyFile, and it reaches them the same way.
    enforced = (*base, "--keyFile", str(keyfile))
    for i in (2, 1, 0):
        _restart(launcher, nodes, i, *enforced)
        _wait(lambda: _all_see(nodes, SET, **user), what=f"{3 - i} members enforcing",
              seen=lambda: _healthy_everywhere(nodes, **user))  # fmt: skip
    wait_until(lambda: authenticated.app.c.insert_one({"step": "enforced"}).acknowledged,
               timeout=30, what="an authenticated write once enforced",
               retry=PyMongoError)  # fmt: skip
    assert authenticated.app.c.count_documents({}) == 3
    authenticated.close()
    with pytest.raises(OperationFailure) as refused:
        nodes[0].client().app.c.insert_one({"step": "unauthenticated once enforced"})
    assert refused.value.code == 13


def test_tls_modes_accept_and_connect_to_peers_as_documented(launcher, tmp_path):
    ca, member = _pki(tmp_path)
    files = ("--tlsCertificateKeyFile", str(member), "--tlsCAFile", str(ca))
    tls = {"tls": True, "tlsCAFile": str(ca), "tlsCertificateKeyFile": str(member)}
    base = ("--replSet", "rs0")
    nodes = [launcher.start(*base) for _ in range(3)]
    _initiate(nodes)
    _wait(lambda: _all_see(nodes, SET), what="a set without TLS",
          seen=lambda: _healthy_everywhere(nodes))  # fmt: skip

    allow = (*base, "--tlsMode", "allowTLS", *files)
    for i in (2, 1, 0):
        _restart(launcher, nodes, i, *allow)
    # allowTLS accepts plain and TLS clients alike.
    _wait(lambda: _all_see(nodes, SET) and _all_see(nodes, SET, **tls), what="allowTLS set",
          seen=lambda: _healthy_everywhere(nodes))  # fmt: skip

    # A member at requireTLS beside members at allowTLS: it reaches them over TLS (they accept
    # it), but they reach it without TLS, which it refuses: they see it down, it sees them up.
    require = (*base, "--tlsMode", "requireTLS", *files)
    _restart(launcher, nodes, 2, *require)

    def split() -> bool:
        views = _healthy_everywhere(nodes[:2])
        views.update(_healthy_everywhere(nodes[2:], **tls))
        return (len(views[nodes[2].port]) == 3
                and all(len(views[n.port]) == 2 for n in nodes[:2]))  # fmt: skip

    _wait(
        split,
        what="the allowTLS members unable to reach the requireTLS one",
        seen=lambda: (_healthy_everywhere(nodes[:2]), _healthy_everywhere(nodes[2:], **tls)),
    )
    with pytest.raises(PyMongoError):
        nodes[2].client(serverSelectionTimeoutMS=1500).admin.command("ping")

    # preferTLS: peers reached over TLS, so a requireTLS member is reached too; plain clients
    # still accepted.
    prefer = (*base, "--tlsMode", "preferTLS", *files)
    for i in (1, 0):
        _restart(launcher, nodes, i, *prefer)
    _wait(lambda: _all_see(nodes, SET, **tls) and _all_see(nodes[:2], SET),
          what="preferTLS members and a requireTLS one, all healthy",
          seen=lambda: _healthy_everywhere(nodes, **tls))  # fmt: skip
    for i in (1, 0):
        _restart(launcher, nodes, i, *require)
    _wait(lambda: _all_see(nodes, SET, **tls), what="a requireTLS set",
          seen=lambda: _healthy_everywhere(nodes, **tls))  # fmt: skip
    for node in nodes:
        with pytest.raises(PyMongoError):
            node.client(serverSelectionTimeoutMS=1500).admin.command("ping")


def test_a_router_in_transition_logs_users_in_and_lets_others_through(launcher, tmp_path):
    """A mongos with the keyFile and transitionToAuth accepts connections without credentials and
    authenticates a client as the cluster's user (kept on the config servers), as mongod in
    transition does.

    Source: https://www.mongodb.com/docs/manual/tutorial/enforce-keyfile-access-control-in-existing-sharded-cluster-no-downtime/
    """
    keyfile = tmp_path / "keyfile"
    keyfile.write_text(KEY)
    keyfile.chmod(0o400)
    cluster = start_cluster(launcher, 1, "--keyFile", str(keyfile), "--transitionToAuth")
    for name in SHARDS:
        cluster.router_client().admin.command("addShard", cluster.shard_host(name))
    cluster.config.client().admin.command("createUser", "admin", pwd="pw", roles=["root"])
    cluster.router_client().app.c.insert_one({"without": "credentials"})
    admin = cluster.router_client(username="admin", password="pw")
    assert admin.admin.command("connectionStatus")["authInfo"]["authenticatedUsers"] == [
        {"user": "admin", "db": "admin"}]  # fmt: skip
    assert admin.app.c.count_documents({}) == 1
    with pytest.raises(OperationFailure) as wrong:
        cluster.router_client(username="admin", password="not it").admin.command("ping")
    assert wrong.value.code == 18
