"""Replica set behaviour that needs no separate hosts: members on 127.0.0.1 with their own ports.

An arbiter votes but holds no data (PSA: implicit default write concern w: 1); a member that
was down while the primary's oplog wrapped comes back RECOVERING, "too stale", as mongod says.

Sources: https://www.mongodb.com/docs/manual/core/replica-set-arbiter/,
https://www.mongodb.com/docs/manual/reference/replica-states/ (RECOVERING, ARBITER),
https://www.mongodb.com/docs/manual/tutorial/resync-replica-set-member/ (too stale),
https://www.mongodb.com/docs/manual/reference/write-concern/ (implicit default write concern).
"""

from __future__ import annotations

import datetime
import ipaddress
import signal
from pathlib import Path

import pymongo
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.waiting import member_states, wait_until


def _wait(predicate, what: str, seen=None, timeout: float = 30):
    """Until predicate() holds (driver errors count as not yet); fails with what seen() says."""
    return wait_until(
        predicate, timeout=timeout, what=what, retry=pymongo.errors.PyMongoError, seen=seen
    )


def _states(nodes, **options) -> str:
    return member_states(
        {
            f"127.0.0.1:{n.port}": pymongo.MongoClient(
                f"127.0.0.1:{n.port}", directConnection=True, serverSelectionTimeoutMS=2000,
                **options,
            )
            for n in nodes
        },
        close=True,
    )  # fmt: skip


def test_arbiter_votes_holds_no_data_and_a_stale_member_recovers_honestly(launcher):
    args = ("--replSet", "rs0", "--oplogSize", "1")
    primary, secondary, arbiter = (launcher.start(*args) for _ in range(3))
    config = {
        "_id": "rs0",
        "members": [
            {"_id": 0, "host": f"127.0.0.1:{primary.port}", "priority": 2},
            {"_id": 1, "host": f"127.0.0.1:{secondary.port}"},
            {"_id": 2, "host": f"127.0.0.1:{arbiter.port}", "arbiterOnly": True},
        ],
    }
    admin = primary.client().admin
    admin.command("replSetInitiate", config)

    def seen() -> str:
        return _states([primary, secondary, arbiter])

    _wait(lambda: admin.command("hello")["isWritablePrimary"], what="a primary", seen=seen)
    hello = arbiter.client().admin.command("hello")
    assert hello["arbiterOnly"] is True and hello["arbiters"] == [f"127.0.0.1:{arbiter.port}"]
    assert f"127.0.0.1:{arbiter.port}" not in hello["hosts"]
    _wait(
        lambda: arbiter.client().admin.command("replSetGetStatus")["myState"] == 7,
        what="ARBITER",
        seen=seen,
    )
    status = admin.command("replSetGetStatus")
    assert status["writeMajorityCount"] == 2 and status["writableVotingMembersCount"] == 2
    _wait(
        lambda: secondary.client().admin.command("replSetGetStatus")["myState"] == 2,
        what="SECONDARY",
        seen=seen,
    )
    coll = primary.client().app.c
    coll.insert_one({"_id": "first"})
    _wait(
        lambda: secondary.client().app.c.find_one({"_id": "first"}), what="replication", seen=seen
    )
    arbiter_status = arbiter.client().admin.command("replSetGetStatus")  # holds no data
    assert next(m for m in arbiter_status["members"] if m.get("self"))["optime"]["t"] == -1
    with pytest.raises(pymongo.errors.NotPrimaryError) as info:
        arbiter.client().app.c.find_one()
    assert info.value.details["code"] == 13436  # NotPrimaryOrSecondary

    secondary.stop(signal.SIGKILL)
    # The primary still sees a majority (itself and the arbiter) and w: 1 is the default in PSA:
    # the writes do not wait for the missing secondary (a write waiting for it would run out
    # of its 20 s and fail, saying what the members were doing).
    bounded = primary.client(timeoutMS=20_000).app.c
    try:
        for i in range(40):
            bounded.insert_one({"_id": i, "pad": "x" * 50_000})  # 2 MB through a 1 MB oplog
    except pymongo.errors.PyMongoError as exc:
        raise AssertionError(
            f"insert {i} with the secondary down: {exc}; {_states([primary, arbiter])}"
        ) from exc
    assert admin.command("hello")["isWritablePrimary"] is True
    oldest = next(primary.client().local["oplog.rs"].find().sort("$natural", 1).limit(1))
    assert oldest["o"].get("_id") != "first"

    back = launcher.start(*args, dbpath=secondary.dbpath, port=secondary.port)
    status = _wait(
        lambda: (s := back.client().admin.command("replSetGetStatus"))["myState"] == 3 and s,
        what="RECOVERING",
        seen=lambda: _states([primary, back, arbiter]),
    )
    me = next(m for m in status["members"] if m.get("self"))
    assert me["stateStr"] == "RECOVERING" and "too stale" in me["infoMessage"]
    hello = back.client().admin.command("hello")
    assert hello["secondary"] is False and hello["isWritablePrimary"] is False


def _pki(root: Path) -> tuple[Path, Path]:
    """A CA and one member certificate (127.0.0.1 / localhost), for server and peer alike."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replset test CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    member_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "WAP"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Members"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    member = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(member_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    ca_path, member_path = root / "ca.pem", root / "member.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    member_path.write_bytes(
        member.public_bytes(serialization.Encoding.PEM)
        + member_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, member_path


def test_members_authenticate_with_the_keyfile_over_tls(launcher, tmp_path):
    """With --keyFile (access control on) and requireTLS, members heartbeat, elect and replicate
    over TLS as __system; a client needs a user, created through the localhost exception.

    Source: https://www.mongodb.com/docs/manual/tutorial/deploy-replica-set-with-keyfile-access-control/
    and https://www.mongodb.com/docs/manual/tutorial/configure-ssl/
    """
    keyfile = tmp_path / "keyfile"
    keyfile.write_text("c2VjcmV0LWtleS1mb3ItdGhlLXJlcGxpY2Etc2V0\n  dGVzdHM=\n")
    keyfile.chmod(0o400)
    ca, member = _pki(tmp_path)
    args = ("--replSet", "rs0", "--keyFile", str(keyfile), "--tlsMode", "requireTLS",
            "--tlsCertificateKeyFile", str(member), "--tlsCAFile", str(ca))  # fmt: skip
    nodes = [launcher.start(*args) for _ in range(3)]
    tls = {"tls": True, "tlsCAFile": str(ca), "tlsCertificateKeyFile": str(member)}
    first = nodes[0].client(**tls).admin
    config = {
        "_id": "rs0",
        "members": [{"_id": i, "host": f"127.0.0.1:{n.port}"} for i, n in enumerate(nodes)],
    }
    first.command("replSetInitiate", config)
    _wait(
        lambda: first.command("hello")["isWritablePrimary"],
        what="a primary",
        seen=lambda: _states(nodes, **tls),
    )
    first.command("createUser", "admin", pwd="pw", roles=["root"])
    user = {"username": "admin", "password": "pw", **tls}
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    client = pymongo.MongoClient(
        f"mongodb://{hosts}/?replicaSet=rs0", w="majority", wTimeoutMS=30_000, **user
    )
    nodes[0].clients.append(client)
    try:
        client.app.c.insert_one({"_id": 1})
    except pymongo.errors.PyMongoError as exc:
        raise AssertionError(f"a majority insert: {exc}; {_states(nodes, **user)}") from exc
    for node in nodes[1:]:
        on_secondary = node.client(**user)
        _wait(
            lambda c=on_secondary: c.app.c.find_one({"_id": 1}),
            what="replication",
            seen=lambda: _states(nodes, **user),
        )

    # The primary learns its members' states by heartbeat (every 2 s), so its view may lag.
    def states() -> list[str]:
        members = client.admin.command("replSetGetStatus")["members"]
        return sorted(m["stateStr"] if m["health"] == 1 else "UNHEALTHY" for m in members)

    _wait(
        lambda: states() == ["PRIMARY", "SECONDARY", "SECONDARY"],
        what="two SECONDARY members",
        seen=lambda: _states(nodes, **user),
    )


def test_ttl_deletes_happen_on_the_primary_and_replicate_as_deletes(launcher):
    # mongod's TTL monitor (https://www.mongodb.com/docs/manual/core/index-ttl/): a pass every
    # ttlMonitorSleepSecs deletes expired documents on the primary only; a secondary removes
    # them when it applies the primary's deletes from the oplog, never by itself.
    args = ("--replSet", "rs0", "--setParameter", "ttlMonitorSleepSecs=1")
    primary, secondary = launcher.start(*args), launcher.start(*args)
    admin = primary.client().admin
    admin.command("replSetInitiate", {"_id": "rs0", "members": [
        {"_id": 0, "host": f"127.0.0.1:{primary.port}", "priority": 2},
        {"_id": 1, "host": f"127.0.0.1:{secondary.port}"}]})  # fmt: skip
    _wait(lambda: admin.command("hello")["isWritablePrimary"], what="a primary")
    assert admin.command("getParameter", 1, ttlMonitorSleepSecs=1)["ttlMonitorSleepSecs"] == 1
    admin.command("setParameter", 1, ttlMonitorEnabled=False)
    coll = primary.client().app.sessions
    coll.create_index("seen", expireAfterSeconds=3600)
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    new = datetime.datetime.now(datetime.UTC)
    coll.insert_many([
        {"_id": "expired", "seen": old}, {"_id": "fresh", "seen": new},
        {"_id": "array", "seen": [new, old]},  # the earliest date counts
        {"_id": "not a date", "seen": "2001-01-01"}, {"_id": "no field"},
    ], )  # fmt: skip
    on_secondary = secondary.client(readPreference="secondaryPreferred").app.sessions
    _wait(lambda: on_secondary.count_documents({}) == 5, what="the five documents replicated")
    status = secondary.client().admin.command("serverStatus")
    assert status["metrics"]["ttl"]["deletedDocuments"] == 0  # the secondary deletes nothing
    assert on_secondary.count_documents({}) == 5  # disabled on the primary: nothing expired yet

    admin.command("setParameter", 1, ttlMonitorEnabled=True)
    kept = ["fresh", "no field", "not a date"]
    _wait(lambda: sorted(d["_id"] for d in coll.find()) == kept, what="the TTL deletes")
    _wait(lambda: sorted(d["_id"] for d in on_secondary.find()) == kept, what="them replicated")
    deletes = primary.client().local["oplog.rs"].find({"op": "d", "ns": "app.sessions"})
    assert sorted(entry["o"]["_id"] for entry in deletes) == ["array", "expired"]
    assert admin.command("serverStatus")["metrics"]["ttl"]["deletedDocuments"] == 2
    ttl = _wait(
        lambda: (
            (t := secondary.client().admin.command("serverStatus")["metrics"]["ttl"])["passes"]
            and t
        ),
        what="a pass of the secondary's TTL monitor",
    )
    assert ttl["deletedDocuments"] == 0
