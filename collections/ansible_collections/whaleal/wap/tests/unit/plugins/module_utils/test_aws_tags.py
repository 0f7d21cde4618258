# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

from ansible_collections.whaleal.wap.plugins.module_utils.aws_tags import (
    LIVE_INSTANCE_STATES,
    RESOURCE_TYPES,
    ids_in_answer,
    tag_filters,
)


def test_every_tag_is_an_exact_filter_and_instances_must_be_live():
    tags = {"wap:project": "acme", "wap:cluster": "orders"}
    assert tag_filters(tags, "volume") == [
        {"Name": "tag:wap:cluster", "Values": ["orders"]},
        {"Name": "tag:wap:project", "Values": ["acme"]},
    ]
    assert tag_filters(tags, "instance")[-1] == {
        "Name": "instance-state-name",
        "Values": LIVE_INSTANCE_STATES,
    }
    assert "terminated" not in LIVE_INSTANCE_STATES


def test_ids_are_read_from_each_answer_shape():
    reservations = {
        "Reservations": [
            {"Instances": [{"InstanceId": "i-2"}, {"InstanceId": "i-1"}]},
            {"Instances": [{"InstanceId": "i-3"}]},
        ]
    }
    assert ids_in_answer("instance", reservations) == ["i-1", "i-2", "i-3"]
    assert ids_in_answer("key-pair", {"KeyPairs": [{"KeyName": "wap-acme-orders"}]}) == [
        "wap-acme-orders"
    ]
    assert ids_in_answer("vpc", {}) == []
    for resource_type, (method, list_key, _id_key) in RESOURCE_TYPES.items():
        assert method.startswith("describe_"), resource_type
        assert ids_in_answer(resource_type, {list_key: []}) == []
