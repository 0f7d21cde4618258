"""Discovering a deployment before taking it over: the roles a credential lacks, the security
settings, a replica set's members, the hosts involved; and a whole discovery read through a
stand-in for the clients (the module's lab and console tests read real doubles)."""

import pytest
from ansible_collections.whaleal.wap.plugins.module_utils.discovery import (
    Discoverer,
    DiscoveryRefused,
    missing_roles,
    security_of,
    set_members,
    split_seeds,
    summary,
)


def test_clustermonitor_or_a_role_holding_it_is_needed():
    assert missing_roles([{"role": "readAnyDatabase", "db": "admin"}]) == ["clusterMonitor"]
    assert missing_roles([{"role": "clusterMonitor", "db": "app"}]) == ["clusterMonitor"]
    for role in ("clusterMonitor", "clusterAdmin", "root"):
        assert missing_roles([{"role": role, "db": "admin"}]) == []
    inherited = [{"role": "clusterMonitor", "db": "admin"}]
    assert missing_roles([{"role": "ops", "db": "admin"}], inherited) == []


def test_security_from_the_command_line_options():
    opts = {"parsed": {"security": {"keyFile": "/etc/mongodb/keyfile"},
                       "net": {"tls": {"mode": "requireTLS"}}}}  # fmt: skip
    assert security_of(opts) == {"auth": True, "transition_to_auth": False,
                                 "cluster_auth": "keyFile", "key_file": "/etc/mongodb/keyfile",
                                 "tls": "requireTLS"}  # fmt: skip
    assert security_of({"parsed": {}})["auth"] is False
    moving = {"parsed": {"security": {"keyFile": "/k", "transitionToAuth": True}}}
    assert security_of(moving)["auth"] is False
    assert security_of(moving)["transition_to_auth"] is True
    assert security_of({"parsed": {"net": {"ssl": {"mode": "preferSSL"}}}})["tls"] == "preferSSL"


def test_members_carry_their_configuration_and_state():
    config = {"_id": "rs0", "members": [
        {"_id": 0, "host": "a:1", "priority": 2},
        {"_id": 1, "host": "b:1", "priority": 0, "hidden": True, "secondaryDelaySecs": 60},
        {"_id": 2, "host": "c:1", "arbiterOnly": True, "priority": 0},
    ]}  # fmt: skip
    status = {"members": [{"name": "a:1", "stateStr": "PRIMARY", "health": 1},
                          {"name": "b:1", "stateStr": "SECONDARY", "health": 1}]}  # fmt: skip
    members = set_members(config, status)
    assert [(m["host"], m["state"], m["priority"], m["hidden"], m["arbiter"], m["delay_seconds"])
            for m in members] == [("a:1", "PRIMARY", 2, False, False, 0),
                                  ("b:1", "SECONDARY", 0, True, False, 60),
                                  ("c:1", "UNKNOWN", 0, False, True, 0)]  # fmt: skip
    assert split_seeds("cfg/a:27019,b:27019") == ("cfg", ["a:27019", "b:27019"])


class Client:
    """Answers admin commands from a table, as one process of a deployment would."""

    def __init__(self, answers):
        self.answers = answers
        self.admin = self

    def command(self, name, *args, **kwargs):
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self):
        pass


def replica_set_member(roles):
    config = {"_id": "rs0", "members": [{"_id": 0, "host": "db1:27017"},
                                        {"_id": 1, "host": "db2:27017"}]}  # fmt: skip
    status = {"members": [
        {"name": "db1:27017", "stateStr": "PRIMARY", "health": 1},
        {"name": "db2:27017", "stateStr": "SECONDARY", "health": 1},
    ]}  # fmt: skip
    return Client({
        "hello": {"setName": "rs0", "hosts": ["db1:27017", "db2:27017"]},
        "connectionStatus": {"authInfo": {"authenticatedUsers": [{"user": "ops", "db": "admin"}],
                                          "authenticatedUserRoles": roles}},
        "rolesInfo": {"roles": [{"role": r["role"], "inheritedRoles": []} for r in roles]},
        "replSetGetConfig": {"config": config}, "replSetGetStatus": status,
        "buildInfo": {"version": "7.0.14"},
        "getParameter": {"featureCompatibilityVersion": {"version": "7.0"}},
        "getCmdLineOpts": {"parsed": {"security": {"keyFile": "/k"}}},
    })  # fmt: skip


def test_a_replica_set_is_found_whole_from_one_secondary():
    roles = [{"role": "clusterMonitor", "db": "admin"}]
    reader = Discoverer(lambda address: replica_set_member(roles), errors=(KeyError,))
    found = reader.discover("db2:27017")
    assert found["topology"] == "replicaset" and found["name"] == "rs0"
    assert [(m["host"], m["state"], m["version"]) for m in found["sets"][0]["members"]] == [
        ("db1:27017", "PRIMARY", "7.0.14"), ("db2:27017", "SECONDARY", "7.0.14")]  # fmt: skip
    assert found["fcv"] == "7.0" and found["security"]["auth"] is True
    assert found["hosts"] == ["db1", "db2"]
    assert found["credential"] == {"user": "ops@admin", "roles": ["clusterMonitor@admin"]}
    assert summary(found)[0] == "replicaset rs0, MongoDB 7.0.14, FCV 7.0"


def test_a_credential_without_clustermonitor_is_refused_naming_it():
    roles = [{"role": "readAnyDatabase", "db": "admin"}]
    reader = Discoverer(lambda address: replica_set_member(roles), errors=(KeyError,))
    with pytest.raises(DiscoveryRefused, match=r"ops@admin\) lacks .* clusterMonitor on admin "
                       r"\(its roles: readAnyDatabase@admin\)"):  # fmt: skip
        reader.discover("db1:27017")
