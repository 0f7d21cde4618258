"""Pure pieces of the job machinery: inventory, credential variables, masking, trimming."""

from pathlib import Path

from webui.jobs.events import MASK, Redactor, trim
from webui.jobs.runner import extra_vars_for, inventory_for, secret_environment

HOSTS = [
    {"name": "a", "address": "10.0.0.1", "port": 22, "user": "ops", "connection": "ssh"},
    {"name": "b", "address": "10.0.0.2", "port": 2222, "user": "ops", "connection": "ssh"},
]


def test_cluster_hosts_form_the_mongodb_group() -> None:
    plain = inventory_for(HOSTS)
    assert plain == {
        "all": {
            "hosts": {
                "a": {"ansible_host": "10.0.0.1", "ansible_user": "ops", "ansible_port": 22},
                "b": {"ansible_host": "10.0.0.2", "ansible_user": "ops", "ansible_port": 2222},
            }
        }
    }
    cluster = inventory_for(HOSTS, {"name": "rs1"})
    group = cluster["all"]["children"]["mongodb"]
    assert set(group["hosts"]) == {"a", "b"} and group["vars"] == {"wap_cluster_name": "rs1"}


def test_credentials_fill_variables_by_reference_only() -> None:
    env, key, prompts, secrets = secret_environment(
        [{"kind": "mongodb", "name": "db", "username": "app", "password": "pw-123456"}]
    )
    assert env == {"WAP_MONGODB_USERNAME": "app", "WAP_MONGODB_PASSWORD": "pw-123456"}
    assert key is None and prompts == {} and secrets == ["pw-123456"]
    extra = extra_vars_for({"extra_vars": {"mongodb_security_admin_user": "root"}}, {"mongodb"})
    assert extra["mongodb_security_admin_user"] == "root"  # the job's own value wins
    assert "WAP_MONGODB_PASSWORD" in extra["mongodb_security_admin_password"]
    assert "pw-123456" not in str(extra)
    assert extra_vars_for({"extra_vars": {"x": 1}}, set()) == {"x": 1}


def test_trim_drops_results_and_masks_secrets() -> None:
    redact = Redactor(["s3cret-value", "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\n-----END KEY-----"])
    event = {
        "counter": 7,
        "uuid": "u",
        "event": "runner_on_ok",
        "stdout": "got s3cret-value and AAAABBBBCCCCDDDD",
        "event_data": {
            "host": "a",
            "task": "t",
            "res": {"changed": True, "stdout": "s3cret-value"},
        },
    }
    kept = trim(event, redact)
    assert kept["stdout"] == f"got {MASK} and {MASK}"
    assert kept["changed"] is True and "res" not in kept and kept["counter"] == 7
    recap = {"counter": 9, "event": "playbook_on_stats", "event_data": {"ok": {"a": 2}}}
    stats = trim(recap, redact)
    assert stats["stats"]["ok"] == {"a": 2} and stats["stats"]["failures"] == {}


def test_a_pasted_private_key_gets_unix_line_ends(tmp_path: Path) -> None:
    from tests.webui.helpers import ssh_private_key
    from webui.config import load_settings
    from webui.services.credentials import validate

    settings = load_settings({"WAP_DATA_DIR": str(tmp_path)})
    pasted = ssh_private_key().replace("\n", "\r\n")
    fields = {"username": "root", "private_key": pasted}
    public, secret = validate(settings, "ssh_key", "k", fields)
    assert public["username"] == "root" and public["public_key"].startswith("ssh-ed25519 ")
    assert secret["private_key"] == pasted.replace("\r\n", "\n")


def test_the_stats_event_keeps_what_the_playbook_reported_masked() -> None:
    from webui.jobs.events import Redactor, trim
    from webui.services.cloud import connection_string

    reported = [
        {"name": "a-rs0-0", "role": "mongod", "replica_set": "rs0", "private_ip": "10.0.0.5",
         "port": 27017, "note": "pw s3cret-value"},
        {"name": "a-rs0-1", "role": "mongod", "replica_set": "rs0", "private_ip": "10.0.1.5",
         "port": 27017},
    ]  # fmt: skip
    data = {"ok": {"a": 1}, "artifact_data": {"wap_instances": reported}}
    event = {"counter": 9, "event": "playbook_on_stats", "event_data": data}
    kept = trim(event, Redactor(["s3cret-value"]))
    instances = kept["artifact_data"]["wap_instances"]
    assert [i["private_ip"] for i in instances] == ["10.0.0.5", "10.0.1.5"]
    assert instances[0]["note"] == "pw ********"
    plan = {"topology": "replicaset"}
    assert connection_string(plan, instances) == (
        "mongodb://10.0.0.5:27017,10.0.1.5:27017/?replicaSet=rs0"
    )
    routers = [{"role": "mongos", "private_ip": "10.0.2.9", "port": 27017}]
    assert connection_string({"topology": "sharded"}, routers) == "mongodb://10.0.2.9:27017/"
    assert "artifact_data" not in trim({"counter": 1, "event": "playbook_on_stats"}, Redactor([]))


def test_events_are_stored_in_batches_with_the_recap_alone() -> None:
    from webui.jobs import store as records

    ok = [{"counter": n, "event": "runner_on_ok", "stdout": f"ok {n}"} for n in (1, 2, 3)]
    recap = {"counter": 4, "event": "playbook_on_stats", "stdout": "", "stats": {"ok": {"a": 3}}}
    last = {"counter": 5, "event": "playbook_on_end", "stdout": ""}
    events = [*ok, recap, last]
    docs = records.documents("j", events, records.encode(events))
    assert [(d["counter"], d.get("last")) for d in docs] == [(1, 3), (4, None), (5, 5)]
    assert {d["job_id"] for d in docs} == {"j"} and docs[1]["stats"] == {"ok": {"a": 3}}
    assert [e for d in docs for e in records.events_of(dict(d))] == events
    assert records.documents("j", ok, "[…]")[0]["events_json"] == "[…]"  # encoded once, kept


def test_an_upgrade_that_ended_well_records_the_release_for_later_deploys() -> None:
    from webui.services.deployments import recorded_version

    cluster = {
        "mongodb_version": "7.0.14",
        "deploy_vars": {"mongodb_install_version": "7.0.14", "wap_replicaset_hosts": ["a"]},
    }
    update = recorded_version(cluster, {"mongodb_upgrade_version": "8.0.4"})
    assert update == {"mongodb_version": "8.0.4",
                      "deploy_vars": {"mongodb_install_version": "8.0.4",
                                      "wap_replicaset_hosts": ["a"]}}  # fmt: skip
    assert cluster["deploy_vars"]["mongodb_install_version"] == "7.0.14"  # not changed in place
    # A taken-over cluster has no deploy variables: its version alone.
    taken_over = recorded_version({"mongodb_version": "6.0.20"},
                                  {"mongodb_upgrade_version": "7.0.14"})  # fmt: skip
    assert taken_over == {"mongodb_version": "7.0.14", "deploy_vars": {}}
    assert recorded_version(cluster, {}) == {}


def test_a_set_taken_over_is_laid_out_as_wap_does_when_its_members_share_a_port() -> None:
    from webui.services.takeover import layout_vars

    found = {"topology": "replicaset", "name": "rs9", "security": {"tls": "requireTLS"}}
    members = [{"host": h, "port": 27017} for h in ("db1", "db2", "db3")]
    assert layout_vars(found, members) == {
        "wap_replicaset_hosts": ["db1", "db2", "db3"], "mongodb_replicaset_name": "rs9",
        "mongodb_replicaset_port": 27017, "mongodb_replicaset_tls": True}  # fmt: skip
    # Members on several ports (several per host), or a sharded cluster: no layout assumed.
    assert layout_vars(found, [*members[:2], {"host": "db1", "port": 27018}]) == {}
    assert layout_vars({**found, "topology": "sharded"}, members) == {}
