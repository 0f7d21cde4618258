"""Backups that restore, on lab hosts (issue 14): the secured lab example (keyFile, TLS, access
control) on lab1..lab3 holding several databases (documents of every BSON type; unique, TTL,
compound and hashed indexes; a capped collection, a view; a user and a role) is
backed up to S3 (moto on 127.0.0.1) by backup_cluster.yml, then restored by
restore_cluster.yml into a new set, rs1 on lab4..lab6. This machine is the dedicated backup
host of both runs (the engine reads a secondary of the set over TLS, as a backup host on the
set's network would); the lab hosts cannot reach moto here. The new set then holds the same
documents (content hashes), indexes, options and users; a second restore into it, no longer
empty, is refused saying so."""

from __future__ import annotations

import datetime
import json
import subprocess
import uuid

import pymongo
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION
from tests.collection.test_backup_playbooks import on_this_machine
from tests.deploy.deployment import ADMIN, Deployment, wait_healthy
from tests.waiting import wait_until
from tests.webui.test_backups import BUCKET, moto  # noqa: F401 (a fixture, found by pytest)
from wap_agent.backup import manifest as mf
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.hashing import collection_hash

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]
REPLICASET = "replicaset.yml"
TARGET = ("lab4", "lab5", "lab6")
DATABASES = ("shop", "crm", "logs")


@pytest.fixture(scope="module")
def lab(deployment_factory) -> Deployment:
    """Six lab hosts: the lab example deployed on lab1..lab3, a new set rs1 on lab4..lab6 (the
    same keyFile and CA: one secrets directory)."""
    lab = deployment_factory(6)
    source = lab.run("deploy_replicaset.yml", REPLICASET)
    assert source.returncode == 0, source.failures()
    target = lab.run(
        "deploy_replicaset.yml", REPLICASET,
        wap_replicaset_hosts=list(TARGET), mongodb_replicaset_name="rs1",
        mongodb_config_instances=[{"name": "rs1", "port": 27017, "replica_set": "rs1",
                                   "cache_size_gb": 0.25}],
        mongodb_replicaset_members=[{"host": lab.address(h)} for h in TARGET],
        mongodb_users_replica_set="rs1",
    )  # fmt: skip
    assert target.returncode == 0, target.failures()
    return lab


def every_bson_type(n: int) -> dict:
    return {
        "_id": n, "double": n / 3, "string": f"s{n}", "object": {"a": n, "b": [n, {"c": n}]},
        "array": [n, "x", None], "binary": Binary(bytes([n % 256]) * 8),
        "uuid": Binary.from_uuid(uuid.UUID(int=n)), "oid": ObjectId(f"{n:024x}"),
        "bool": n % 2 == 0, "date": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        + datetime.timedelta(seconds=n), "null": None, "regex": Regex(f"^a{n}", "i"),
        "code": Code(f"function() {{ return {n}; }}"), "int": n, "ts": Timestamp(1_700_000_000, n),
        "long": Int64(n * 2**33), "decimal": Decimal128(f"{n}.25"), "min": MinKey(),
        "max": MaxKey(), "sku": f"sku-{n}", "a": n % 7, "b": -n, "customer": f"c{n % 13}",
        "created": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    }  # fmt: skip


def fill(client: pymongo.MongoClient) -> None:
    shop = client.shop
    shop.orders.insert_many([every_bson_type(n) for n in range(300)])
    shop.orders.create_index("sku", unique=True)
    shop.orders.create_index("created", expireAfterSeconds=10 * 365 * 86400)  # none expire here
    shop.orders.create_index([("a", 1), ("b", -1)])
    shop.orders.create_index([("customer", "hashed")])
    shop.command("create", "big_orders", viewOn="orders", pipeline=[{"$match": {"a": 6}}])
    shop.command(
        "createRole",
        "auditor",
        privileges=[{"resource": {"db": "shop", "collection": "orders"}, "actions": ["find"]}],
        roles=[],
    )
    shop.command(
        "createUser",
        "reporter",
        pwd="reporter-pw-1",
        roles=[{"role": "auditor", "db": "shop"}, {"role": "read", "db": "crm"}],
    )
    client.crm.people.insert_many([{"p": i, "tags": ["t"] * (i % 4)} for i in range(120)])
    client.logs.create_collection("events", capped=True, size=1 << 20)
    client.logs.events.insert_many([{"e": i} for i in range(50)])  # fmt: skip


def state(client: pymongo.MongoClient) -> dict:
    """What must be equal after the restore: per collection its count, content hash, indexes
    and options (a view's pipeline among them); the user and the role."""
    out: dict = {}
    for name in DATABASES:
        db = client[name]
        for info in db.list_collections():
            if info["name"].startswith("system."):  # system.views: the views' own definitions
                continue
            coll, key = db[info["name"]], f"{name}.{info['name']}"
            entry: dict = {"type": info["type"], "options": info.get("options", {})}
            if info["type"] == "collection":
                entry["count"] = coll.count_documents({})
                entry["hash"] = collection_hash(coll)
                entry["indexes"] = sorted(
                    json.dumps({k: v for k, v in spec.items() if k not in ("v", "ns")},
                               sort_keys=True, default=str)
                    for spec in coll.list_indexes()
                )  # fmt: skip
            out[key] = entry
    (user,) = client.shop.command("usersInfo", "reporter")["users"]
    (role,) = client.shop.command("rolesInfo", "auditor", showPrivileges=True)["roles"]
    out["user"] = sorted((r["role"], r["db"]) for r in user["roles"])
    out["role"] = role["privileges"]
    return out


def play(lab: Deployment, playbook: str, uri: str, **variables) -> subprocess.CompletedProcess:
    """playbook with this machine as the backup host, the set reached at ``uri``."""
    return on_this_machine(
        playbook, lab.secrets.parent / "backup-host.ini", timeout=600, mongodb_backup_uri=uri,
        mongodb_backup_bucket=BUCKET, mongodb_backup_users_and_roles=True, **variables,
    )  # fmt: skip


def set_uri(lab: Deployment, hosts: tuple[str, ...], name: str) -> str:
    seeds = ",".join(lab.address(h) for h in hosts)
    return (f"mongodb://{ADMIN[0]}:{ADMIN[1]}@{seeds}/?replicaSet={name}&authSource=admin"
            f"&tls=true&tlsCAFile={lab.secrets / 'ca.pem'}")  # fmt: skip


def test_a_secured_set_is_backed_up_to_s3_and_restored_into_a_new_set_equal(
    lab: Deployment,
    moto: str,  # noqa: F811 (the fixture)
) -> None:
    with lab.client(replicaSet="rs0") as source:
        wait_healthy(source, 3)
        # lab1 (priority 2) takes over from whichever member won the first election: written
        # to only once it has, not while it steps the other down.
        lab1 = (lab.lab.hosts["lab1"], 27017)
        wait_until(lambda: source.admin.command("hello").get("isWritablePrimary")
                   and source.primary == lab1, timeout=120, every=0.5,
                   what="lab1 primary", retry=pymongo.errors.PyMongoError)  # fmt: skip
        fill(source)
        before = state(source)
    endpoint = {"mongodb_backup_endpoint_url": moto}
    layout = {"mongodb_backup_prefix": "lab", "mongodb_backup_project_id": "p1",
              "mongodb_backup_cluster_id": "c1",
              "mongodb_backup_cluster_name": "lab-rs0"}  # fmt: skip
    backed_up = play(lab, "backup_cluster.yml", set_uri(lab, ("lab1", "lab2", "lab3"), "rs0"),
                     **endpoint, **layout)  # fmt: skip
    assert backed_up.returncode == 0, backed_up.stdout[-3000:]
    client = s3mod.client(moto, REGION, FAKE_KEY, FAKE_SECRET)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="lab/p1/c1/snapshots/")
    (key,) = [o["Key"] for o in listed["Contents"] if o["Key"].endswith("/manifest.json")]
    manifest = mf.read(client, BUCKET, key)
    counted = {c.ns: c.count for c in manifest.collections
               if c.db in DATABASES and c.type == "collection"}  # fmt: skip
    assert counted == {ns: e["count"] for ns, e in before.items() if "count" in e}
    (view,) = [c for c in manifest.collections if c.type == "view"]
    assert (view.ns, view.options["viewOn"]) == ("shop.big_orders", "orders")
    assert manifest.oplog_start is not None and manifest.oplog_end is not None

    target_uri = set_uri(lab, TARGET, "rs1")
    restored = play(lab, "restore_cluster.yml", target_uri, **endpoint,
                    mongodb_backup_manifest_key=key)  # fmt: skip
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert "verified equal to the snapshot" in restored.stdout
    with lab.client("lab4", replicaSet="rs1") as target:
        wait_healthy(target, 3)
        assert state(target) == before
        with lab.client("lab4", replicaSet="rs1", user=("reporter", "reporter-pw-1"),
                        authSource="shop") as reporter:  # fmt: skip
            assert reporter.shop.orders.count_documents({}) == 300  # the restored user logs in

    again = play(lab, "restore_cluster.yml", target_uri, **endpoint,
                 mongodb_backup_manifest_key=key)  # fmt: skip
    assert again.returncode != 0
    assert "the target is not empty" in again.stdout, again.stdout[-3000:]
    for run in (backed_up, restored, again):
        assert FAKE_SECRET not in run.stdout + run.stderr
        assert ADMIN[1] not in run.stdout + run.stderr
