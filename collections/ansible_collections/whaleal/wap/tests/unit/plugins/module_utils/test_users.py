"""User and role comparison."""

from ansible_collections.whaleal.wap.plugins.module_utils import users as u


def test_roles_normalised_sorted_deduplicated():
    roles = u.normalize_roles(
        ["readWrite", {"role": "read", "db": "reporting"}, "readWrite"], "shop"
    )
    assert roles == [{"role": "read", "db": "reporting"}, {"role": "readWrite", "db": "shop"}]


def test_new_user_is_created_with_password():
    assert u.user_changes(None, [], False, "always") == {
        "create": True,
        "roles": [],
        "password": True,
    }


def test_same_roles_same_password_is_no_change():
    current = {"user": "app", "db": "shop", "roles": [{"role": "readWrite", "db": "shop"}]}
    roles = u.normalize_roles(["readWrite"], "shop")
    assert u.user_changes(current, roles, True, "always") == {}


def test_wrong_password_changes_it_only_when_always():
    current = {"user": "app", "db": "shop", "roles": []}
    assert u.user_changes(current, [], False, "always") == {"password": True}
    assert u.user_changes(current, [], False, "on_create") == {}


def test_no_password_wanted_leaves_it():
    current = {"user": "app", "db": "shop", "roles": []}
    assert u.user_changes(current, [], None, "always") == {}


def test_roles_change():
    current = {"user": "app", "db": "shop", "roles": [{"role": "read", "db": "shop"}]}
    roles = u.normalize_roles(["readWrite"], "shop")
    assert u.user_changes(current, roles, True, "always") == {"roles": roles}


def test_privileges_compare_in_any_order():
    server = [
        {"resource": {"db": "shop", "collection": "orders"}, "actions": ["update", "find"]},
        {"resource": {"cluster": True}, "actions": ["serverStatus"]},
    ]
    wanted = u.normalize_privileges(
        [
            {"resource": {"cluster": True}, "actions": ["serverStatus"]},
            {"resource": {"collection": "orders", "db": "shop"}, "actions": ["find", "update"]},
        ]
    )
    current = {"role": "desk", "db": "shop", "privileges": server, "roles": []}
    assert u.role_changes(current, wanted, []) == {}
    assert u.role_changes(current, wanted[:1], []) == {"privileges": wanted[:1]}
    assert u.role_changes(None, wanted, [])["create"]
