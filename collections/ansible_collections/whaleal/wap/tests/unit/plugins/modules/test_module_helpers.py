"""The pure helpers inside the modules: option mapping, status merging, topology."""

from ansible_collections.whaleal.wap.plugins.modules import mongodb_info, mongodb_replicaset


def test_member_options_map_to_mongodb_fields():
    specs = mongodb_replicaset.member_specs(
        [
            {
                "host": "a:1",
                "priority": None,
                "votes": 1,
                "hidden": False,
                "arbiter_only": False,
                "tags": None,
                "secondary_delay_secs": 0,
                "build_indexes": True,
            },
            {
                "host": "b:1",
                "priority": 2.0,
                "votes": 1,
                "hidden": False,
                "arbiter_only": False,
                "tags": {"dc": "x"},
                "secondary_delay_secs": 0,
                "build_indexes": True,
            },
        ]
    )
    assert "priority" not in specs[0]
    assert specs[1]["priority"] == 2.0 and specs[1]["tags"] == {"dc": "x"}
    assert specs[0]["arbiterOnly"] is False and specs[0]["buildIndexes"] is True


def test_settings_changes_only_lists_differences():
    current = {"chainingAllowed": True, "electionTimeoutMillis": 10000}
    wanted = {"chainingAllowed": True, "electionTimeoutMillis": 5000}
    assert mongodb_replicaset.settings_changes(current, wanted) == {"electionTimeoutMillis": 5000}
    assert mongodb_replicaset.settings_changes(current, None) == {}


def test_topology():
    assert mongodb_info.topology_of({"msg": "isdbgrid"}) == "mongos"
    assert mongodb_info.topology_of({"setName": "rs0"}) == "replicaset"
    assert mongodb_info.topology_of({"isreplicaset": True}) == "uninitiated"
    assert mongodb_info.topology_of({"isWritablePrimary": True}) == "standalone"


def test_members_merge_config_and_status():
    config = {
        "members": [
            {"_id": 0, "host": "a:1", "priority": 1, "votes": 1},
            {"_id": 1, "host": "b:1", "priority": 0, "votes": 0},
        ]
    }
    status = {"members": [{"name": "a:1", "stateStr": "PRIMARY", "health": 1, "uptime": 5}]}
    merged = mongodb_info.merge_members(config, status)
    assert merged[0]["state"] == "PRIMARY" and merged[0]["health"] == 1
    assert "state" not in merged[1] and merged[1]["votes"] == 0


def test_users_never_carry_credentials():
    user = {
        "user": "app",
        "db": "shop",
        "roles": [],
        "credentials": {"SCRAM-SHA-256": {}},
        "mechanisms": ["SCRAM-SHA-256"],
    }
    assert "credentials" not in mongodb_info.public_user(user)


def test_member_state_from_hello():
    assert mongodb_info.member_state({"isWritablePrimary": True, "setName": "rs0"}) == "PRIMARY"
    assert mongodb_info.member_state({"secondary": True, "setName": "rs0"}) == "SECONDARY"
    assert mongodb_info.member_state({"arbiterOnly": True, "setName": "rs0"}) == "ARBITER"
    assert mongodb_info.member_state({"isreplicaset": True}) == "UNINITIATED"
    assert mongodb_info.member_state({"setName": "rs0", "isWritablePrimary": False}) == "OTHER"
    assert mongodb_info.member_state({"isWritablePrimary": True}) == "STANDALONE"
