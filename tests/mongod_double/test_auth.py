"""Access control in the double: SCRAM as pymongo performs it, users and roles, role enforcement,
the localhost exception, and persistence of users across restarts."""

from __future__ import annotations

import pymongo
import pytest
from pymongo.errors import NotPrimaryError, OperationFailure

ROOT = {"username": "root", "password": "s3cret-Pässword", "authSource": "admin"}


def _auth_node(launcher, *args):
    """A node with --auth whose first user (root) was created through the localhost exception."""
    node = launcher.start("--auth", *args)
    node.client().admin.command("createUser", "root", pwd=ROOT["password"], roles=["root"])
    return node


def _error(call) -> OperationFailure:
    with pytest.raises(OperationFailure) as info:
        call()
    return info.value


def test_scram_sha1_sha256_and_speculative_default(launcher):
    """pymongo authenticates with SCRAM-SHA-1, SCRAM-SHA-256 and the default negotiation
    (saslSupportedMechs + speculativeAuthenticate in hello); connectionStatus shows the user.

    Source: https://github.com/mongodb/specifications/blob/master/source/auth/auth.md
    ("SCRAM-SHA-1", "SCRAM-SHA-256", "Speculative Authentication", "saslSupportedMechs") and
    https://www.mongodb.com/docs/manual/reference/command/connectionStatus/
    """
    node = _auth_node(launcher)
    for mechanism in ("SCRAM-SHA-1", "SCRAM-SHA-256", None):
        extra = {"authMechanism": mechanism} if mechanism else {}
        client = node.client(**ROOT, **extra)
        client.test.c.insert_one({"by": mechanism})
        info = client.admin.command("connectionStatus")["authInfo"]
        assert info["authenticatedUsers"] == [{"user": "root", "db": "admin"}]
        assert info["authenticatedUserRoles"] == [{"role": "root", "db": "admin"}]
    hello = node.client().admin.command("hello", saslSupportedMechs="admin.root")
    assert sorted(hello["saslSupportedMechs"]) == ["SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert "saslSupportedMechs" not in node.client().admin.command(
        "hello", saslSupportedMechs="admin.nobody"
    )
    # pymongo 4 starts every SCRAM conversation inside hello (speculativeAuthenticate).
    logins = [line for line in node.log_lines() if '"Authentication succeeded"' in line]
    assert len(logins) == 3
    assert all('"speculative":true' in line for line in logins)


def test_sasl_without_skip_empty_exchange(node_auth_raw):
    """Without ``skipEmptyExchange`` the server answers done: false after the proof, then
    done: true to an empty payload (the three-step conversation of older drivers).

    Source: https://github.com/mongodb/specifications/blob/master/source/auth/auth.md
    (SCRAM "skipEmptyExchange" / SERVER-44857).
    """
    node_auth_raw()


def test_wrong_password_and_unknown_user_fail_with_18(launcher):
    """A wrong password or an unknown user: AuthenticationFailed (18), "Authentication failed."

    Source: https://www.mongodb.com/docs/manual/reference/error-codes/ (18 AuthenticationFailed)
    """
    node = _auth_node(launcher)
    for user, password in (("root", "wrong"), ("nobody", "x")):
        client = node.client(username=user, password=password, serverSelectionTimeoutMS=2000)
        error = _error(lambda c=client: c.test.c.find_one())
        assert error.code == 18
        assert error.details["codeName"] == "AuthenticationFailed"
        assert error.details["errmsg"] == "Authentication failed."
    assert any('"Authentication failed"' in line for line in node.log_lines())


def test_unauthenticated_commands_need_authentication(launcher):
    """With --auth, commands other than the handshake fail with Unauthorized (13) "Command X
    requires authentication"; hello, ping, buildInfo and connectionStatus still answer.

    Source: https://www.mongodb.com/docs/manual/tutorial/enable-authentication/ and
    https://www.mongodb.com/docs/manual/reference/error-codes/ (13 Unauthorized)
    """
    node = _auth_node(launcher)
    client = node.client()
    for name in ("hello", "ping", "buildInfo", "connectionStatus"):
        assert client.admin.command(name)["ok"] == 1
    for call, name in (
        (lambda: client.test.c.insert_one({}), "insert"),
        (lambda: client.test.c.find_one(), "find"),
        (lambda: client.admin.command("serverStatus"), "serverStatus"),
        (lambda: client.list_database_names(), "listDatabases"),
    ):
        error = _error(call)
        assert error.code == 13
        assert error.details["errmsg"] == f"Command {name} requires authentication"


def test_builtin_roles_are_enforced(launcher):
    """read cannot insert, readWrite cannot createUser, clusterMonitor reads server state but
    not data, userAdmin manages users of its database only, dbOwner owns one database.

    Source: https://www.mongodb.com/docs/manual/reference/built-in-roles/
    """
    node = _auth_node(launcher)
    root = node.client(**ROOT)
    root.app.c.insert_one({"x": 1})
    grants = {
        "reader": [{"role": "read", "db": "app"}],
        "writer": [{"role": "readWrite", "db": "app"}],
        "monitor": [{"role": "clusterMonitor", "db": "admin"}],
        "useradmin": [{"role": "userAdmin", "db": "app"}],
        "owner": [{"role": "dbOwner", "db": "app"}],
        "anyreader": [{"role": "readAnyDatabase", "db": "admin"}],
    }
    for user, roles in grants.items():
        root.admin.command("createUser", user, pwd="pw-" + user, roles=roles)
    c = {user: node.client(username=user, password="pw-" + user) for user in grants}

    assert c["reader"].app.c.find_one()["x"] == 1
    denied = _error(lambda: c["reader"].app.c.insert_one({"x": 2}))
    assert denied.code == 13
    assert denied.details["errmsg"].startswith(
        'not authorized on app to execute command { insert: "c"'
    )
    assert _error(lambda: c["reader"].other.c.find_one()).code == 13
    # Without listDatabases, a user sees only the databases it has privileges on.
    assert c["reader"].list_database_names() == ["app"]

    c["writer"].app.c.insert_one({"x": 2})
    assert c["writer"].app.c.count_documents({}) == 2
    assert _error(lambda: c["writer"].app.command("createUser", "u", pwd="p", roles=[])).code == 13

    assert c["monitor"].admin.command("serverStatus")["ok"] == 1
    assert c["monitor"].admin.command("getCmdLineOpts")["ok"] == 1
    assert c["monitor"].app.command("dbStats")["ok"] == 1
    assert _error(lambda: c["monitor"].app.c.find_one()).code == 13
    assert _error(lambda: c["monitor"].admin.command("setParameter", 1, logLevel=1)).code == 13

    c["useradmin"].app.command("createUser", "appuser", pwd="p", roles=["read"])
    assert _error(lambda: c["useradmin"].app.c.find_one()).code == 13
    assert (
        _error(lambda: c["useradmin"].other.command("createUser", "x", pwd="p", roles=[])).code
        == 13
    )

    c["owner"].app.command("createUser", "appuser2", pwd="p", roles=["readWrite"])
    c["owner"].app.d.insert_one({})
    c["owner"].app.command("dropDatabase")
    assert _error(lambda: c["owner"].admin.command("serverStatus")).code == 13

    root.other.c.insert_one({})
    assert c["anyreader"].other.c.find_one() is not None
    assert "other" in c["anyreader"].list_database_names()
    assert _error(lambda: c["anyreader"].local.startup_log.find_one()).code == 13


def test_authorized_collections_and_collstats_without_find(launcher):
    """listCollections with authorizedCollections and nameOnly runs for a user with any privilege
    in the database and lists the collections that user may act on; without them it needs
    listCollections. $collStats needs collStats on the collection, not find. So clusterMonitor
    (collStats and dbStats on every normal database, no listCollections, no find) lists and
    sizes every collection without reading one.

    Sources: https://www.mongodb.com/docs/manual/reference/command/listCollections/
    (authorizedCollections: "if a user has find or any other action on the database resource,
    the command lists all collections in the database"),
    https://www.mongodb.com/docs/manual/reference/privilege-actions/ (find: aggregate "for all
    pipeline operations except $collStats, $out, and $indexStats"; collStats: the $collStats
    stage), https://www.mongodb.com/docs/manual/reference/built-in-roles/ (clusterMonitor).
    """
    node = _auth_node(launcher)
    root = node.client(**ROOT)
    for name in ("events", "users"):
        root.app[name].insert_one({"x": 1})
    root.other.c.insert_one({})
    root.app.command(
        "createRole",
        "eventReader",
        privileges=[{"resource": {"db": "app", "collection": "events"}, "actions": ["find"]}],
        roles=[],
    )
    root.admin.command("createUser", "monitor", pwd="p", roles=["clusterMonitor"])
    root.admin.command("createUser", "events", pwd="p", roles=[{"role": "eventReader",
                                                                 "db": "app"}])  # fmt: skip
    monitor = node.client(username="monitor", password="p")
    events = node.client(username="events", password="p")

    def names(client, db: str, **options) -> list[str]:
        return sorted(client[db].list_collection_names(**options))

    authorized = {"authorizedCollections": True}
    assert names(monitor, "app", **authorized) == ["events", "users"]
    assert names(monitor, "other", **authorized) == ["c"]
    refused = _error(lambda: names(monitor, "app"))
    assert refused.code == 13 and "listCollections" in refused.details["errmsg"]
    # An exact namespace lists that collection alone; a database it has nothing in, none.
    assert names(events, "app", **authorized) == ["events"]
    assert _error(lambda: names(events, "other", **authorized)).code == 13
    assert _error(lambda: names(events, "app")).code == 13
    # Without nameOnly, authorizedCollections does not open listCollections.
    full = _error(lambda: list(events.app.list_collections(authorizedCollections=True)))
    assert full.code == 13

    stats = list(monitor.app.events.aggregate([{"$collStats": {"storageStats": {}}}]))
    assert stats[0]["storageStats"]["count"] == 1
    assert _error(lambda: list(monitor.app.events.aggregate([{"$match": {}}]))).code == 13
    assert _error(lambda: monitor.app.events.find_one()).code == 13


def test_role_changes_reach_open_connections(launcher):
    """grantRolesToUser / revokeRolesFromUser take effect on connections already authenticated;
    dropUser ends the dropped user's access.

    Source: https://www.mongodb.com/docs/manual/reference/command/grantRolesToUser/,
    .../revokeRolesFromUser/, .../dropUser/
    """
    node = _auth_node(launcher)
    root = node.client(**ROOT)
    root.admin.command("createUser", "u", pwd="p", roles=[])
    user = node.client(username="u", password="p")
    assert _error(lambda: user.app.c.find_one()).code == 13
    root.admin.command("grantRolesToUser", "u", roles=[{"role": "read", "db": "app"}])
    assert user.app.c.find_one() is None
    info = root.admin.command("usersInfo", "u")["users"][0]
    assert info["roles"] == [{"role": "read", "db": "app"}]
    root.admin.command("revokeRolesFromUser", "u", roles=[{"role": "read", "db": "app"}])
    assert _error(lambda: user.app.c.find_one()).code == 13
    root.admin.command("grantRolesToUser", "u", roles=[{"role": "read", "db": "app"}])
    root.admin.command("dropUser", "u")
    assert _error(lambda: user.app.c.find_one()).code == 13


def test_user_management_errors(launcher):
    """createUser of an existing user: 51003 'User "u@db" already exists'; unknown users: 11
    UserNotFound; unknown roles: 31 RoleNotFound; updateUser needs a field.

    Source: https://www.mongodb.com/docs/manual/reference/command/createUser/ and MongoDB's
    error_codes.yml (11 UserNotFound, 31 RoleNotFound, 51003 in user_management_commands.cpp).
    """
    node = _auth_node(launcher)
    root = node.client(**ROOT)
    root.app.command("createUser", "u", pwd="p", roles=["read"])
    dup = _error(lambda: root.app.command("createUser", "u", pwd="p", roles=["read"]))
    assert (dup.code, dup.details["errmsg"]) == (51003, 'User "u@app" already exists')
    assert dup.details["codeName"] == "Location51003"
    missing = _error(lambda: root.app.command("dropUser", "nobody"))
    assert (missing.code, missing.details["codeName"]) == (11, "UserNotFound")
    no_role = _error(lambda: root.app.command("createUser", "v", pwd="p", roles=["nosuchrole"]))
    assert (no_role.code, no_role.details["errmsg"]) == (31, "Could not find role: nosuchrole@app")
    assert _error(lambda: root.app.command("updateUser", "u")).code == 2
    root.app.command("updateUser", "u", pwd="new", customData={"team": "ops"})
    node.client(username="u", password="new", authSource="app").app.c.find_one()
    assert root.app.command("dropAllUsersFromDatabase")["n"] == 1


def test_users_info_never_shows_credentials_unless_asked(launcher):
    """usersInfo returns _id, userId, user, db, roles, mechanisms; credentials only with
    showCredentials: true, in the admin.system.users document shape.

    Source: https://www.mongodb.com/docs/manual/reference/command/usersInfo/ and
    https://www.mongodb.com/docs/manual/reference/system-users-collection/
    """
    node = _auth_node(launcher)
    root = node.client(**ROOT)
    root.app.command("createUser", "u", pwd="p", roles=["read"], customData={"k": 1})
    replies = [
        root.app.command("usersInfo", 1),
        root.app.command("usersInfo", "u"),
        root.app.command("usersInfo", {"user": "u", "db": "app"}, showPrivileges=True),
        root.admin.command("usersInfo", {"forAllDBs": True}),
    ]
    for reply in replies:
        for user in reply["users"]:
            assert "credentials" not in user
            assert "pwd" not in str(user) and "storedKey" not in str(user)
    user = replies[0]["users"][0]
    assert {k: user[k] for k in ("_id", "user", "db", "customData")} == {
        "_id": "app.u",
        "user": "u",
        "db": "app",
        "customData": {"k": 1},
    }
    assert user["userId"].subtype == 4
    assert user["mechanisms"] == ["SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert {"role": "read", "db": "app"} in replies[2]["users"][0]["inheritedRoles"]
    creds = root.app.command("usersInfo", "u", showCredentials=True)["users"][0]["credentials"]
    assert set(creds) == {"SCRAM-SHA-1", "SCRAM-SHA-256"}
    assert set(creds["SCRAM-SHA-256"]) == {"iterationCount", "salt", "storedKey", "serverKey"}
    assert creds["SCRAM-SHA-256"]["iterationCount"] == 15000
    assert creds["SCRAM-SHA-1"]["iterationCount"] == 10000
    # The stored document itself never holds the password.
    doc = root.admin["system.users"].find_one({"_id": "app.u"})
    assert "p" not in [v for v in doc.values() if isinstance(v, str)]


def test_roles_info_and_create_role(launcher):
    """rolesInfo describes built-in roles (with privileges on request); createRole makes a
    user-defined role whose privileges are enforced; updateRole changes them.

    Source: https://www.mongodb.com/docs/manual/reference/command/rolesInfo/ and
    https://www.mongodb.com/docs/manual/reference/command/createRole/ and .../updateRole/
    """
    node = _auth_node(launcher)
    root = node.client(**ROOT)
    info = root.app.command("rolesInfo", "readWrite", showPrivileges=True)["roles"][0]
    assert info["isBuiltin"] is True and info["role"] == "readWrite"
    actions = info["privileges"][0]["actions"]
    assert "insert" in actions and "createUser" not in actions
    assert info["privileges"][0]["resource"] == {"db": "app", "collection": ""}
    assert root.admin.command("rolesInfo", {"role": "root", "db": "admin"})["roles"][0]["roles"][
        0
    ] == {"role": "clusterAdmin", "db": "admin"}
    root.app.command(
        "createRole",
        "inserter",
        privileges=[{"resource": {"db": "app", "collection": "events"}, "actions": ["insert"]}],
        roles=[],
    )
    dup = _error(lambda: root.app.command("createRole", "inserter", privileges=[], roles=[]))
    assert dup.code == 51002
    root.app.command("createUser", "ins", pwd="p", roles=["inserter"])
    ins = node.client(username="ins", password="p", authSource="app")
    ins.app.events.insert_one({})
    assert _error(lambda: ins.app.other.insert_one({})).code == 13
    assert _error(lambda: ins.app.events.find_one()).code == 13
    # updateRole replaces the privileges given; the role's users get them on their next command.
    root.app.command("updateRole", "inserter", privileges=[
        {"resource": {"db": "app", "collection": "events"}, "actions": ["find"]}])  # fmt: skip
    assert ins.app.events.find_one() is not None
    assert _error(lambda: ins.app.events.insert_one({})).code == 13
    missing = _error(lambda: root.app.command("updateRole", "nobody", roles=[]))
    assert missing.code == 31  # RoleNotFound
    assert _error(lambda: ins.app.command("updateRole", "inserter", roles=[])).code == 13


def test_localhost_exception_allows_only_the_first_user(launcher):
    """Only while no user exists and only from localhost: the first user can be created on
    admin (with admin roles), nothing else runs; once a user exists the exception is closed and
    commands need authentication again.

    Source: https://www.mongodb.com/docs/manual/core/localhost-exception/ ("Connections using
    the localhost exception have access to create only the first user or role")
    """
    node = launcher.start("--auth")
    client = node.client()
    for call, db in (
        (lambda: client.test.c.insert_one({}), "test"),
        (lambda: client.admin.command("serverStatus"), "admin"),
        (lambda: client.test.command("createUser", "x", pwd="p", roles=[]), "test"),
        (lambda: client.admin.command("createUser", "x", pwd="p", roles=[{"role": "read",
                                                                          "db": "app"}]), "admin"),
    ):  # fmt: skip
        error = _error(call)
        assert error.code == 13
        assert error.details["errmsg"].startswith(f"not authorized on {db} to execute command")
    client.admin.command("createUser", "first", pwd="p", roles=["userAdminAnyDatabase"])
    second = _error(lambda: client.admin.command("createUser", "second", pwd="p", roles=[]))
    assert second.code == 13
    assert second.details["errmsg"] == "Command createUser requires authentication"
    first = node.client(username="first", password="p")
    first.admin.command("createUser", "second", pwd="p", roles=["readWriteAnyDatabase"])


def test_localhost_exception_refuses_create_role_and_can_be_disabled(launcher):
    """createRole is not granted by the localhost exception to an unauthenticated connection
    (only to roles obtained through external authorization, e.g. LDAP), and
    enableLocalhostAuthBypass=0 disables the exception altogether.

    Source: https://www.mongodb.com/docs/manual/core/localhost-exception/ ("The ability to create
    a role first ... is specifically for users authorizing with LDAP") and
    https://www.mongodb.com/docs/manual/reference/parameters/#mongodb-parameter-param.enableLocalhostAuthBypass
    """
    node = launcher.start("--auth")
    refused = _error(
        lambda: node.client().admin.command("createRole", "r", privileges=[], roles=[])
    )
    assert refused.code == 13
    off = launcher.start("--auth", "--setParameter", "enableLocalhostAuthBypass=0")
    error = _error(lambda: off.client().admin.command("createUser", "u", pwd="p", roles=[]))
    assert error.details["errmsg"] == "Command createUser requires authentication"


def test_localhost_exception_on_a_replica_set_needs_the_primary(launcher):
    """On a replica set member the exception only helps on the primary: before initiate the
    write is refused with NotWritablePrimary (10107); the exception allows replSetInitiate,
    after which the first user is created on the primary.

    Source: https://www.mongodb.com/docs/manual/core/localhost-exception/ and
    https://www.mongodb.com/docs/manual/tutorial/deploy-replica-set-with-keyfile-access-control/
    """
    node = launcher.start("--auth", "--replSet", "rs0")
    client = node.client()
    with pytest.raises(NotPrimaryError) as refused:
        client.admin.command("createUser", "u", pwd="p", roles=["root"])
    assert refused.value.details["code"] == 10107
    client = node.client()  # the NotPrimaryError marked the server unknown in the first one
    client.admin.command("replSetInitiate")
    for _ in range(50):
        if client.admin.command("hello")["isWritablePrimary"]:
            break
    client.admin.command("createUser", "u", pwd="p", roles=["root"])
    assert node.client(username="u", password="p").admin.command("serverStatus")["ok"] == 1


def test_users_survive_a_restart(launcher):
    """Users are in admin.system.users and persist like any data: after a restart the same
    credentials work and the localhost exception stays closed.

    Source: https://www.mongodb.com/docs/manual/reference/system-users-collection/
    """
    node = _auth_node(launcher)
    node.client(**ROOT).app.c.insert_one({"kept": True})
    assert node.stop() == 0
    again = launcher.start("--auth", dbpath=node.dbpath)
    assert again.client(**ROOT).app.c.find_one()["kept"] is True
    closed = _error(lambda: again.client().admin.command("createUser", "x", pwd="p", roles=[]))
    assert closed.code == 13


def test_without_auth_everything_is_allowed_and_users_still_work(launcher):
    """Without --auth, commands need no login (mongod warns at start-up) but users can be
    created and authenticate.

    Source: https://www.mongodb.com/docs/manual/core/authorization/
    """
    node = launcher.start()
    client = node.client()
    client.admin.command("createUser", "u", pwd="p", roles=["read"])
    client.test.c.insert_one({})
    node.client(username="u", password="p").test.c.find_one()
    assert any("Access control is not enabled" in line for line in node.log_lines())


@pytest.fixture
def node_auth_raw(launcher):
    """Drive saslStart/saslContinue by hand without skipEmptyExchange (pymongo always sets it)."""

    def run():
        import base64
        import hashlib
        import hmac
        import os

        from bson.binary import Binary

        node = _auth_node(launcher)
        conn = pymongo.MongoClient(node.uri, serverSelectionTimeoutMS=3000, maxPoolSize=1)
        node.clients.append(conn)
        nonce = base64.b64encode(os.urandom(24)).decode()
        first_bare = f"n=root,r={nonce}".encode()
        start = conn.admin.command(
            "saslStart", 1, mechanism="SCRAM-SHA-256", payload=Binary(b"n,," + first_bare)
        )
        server_first = bytes(start["payload"])
        fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac(
            "sha256", ROOT["password"].encode(), base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        without_proof = f"c=biws,r={fields['r']}".encode()
        auth_message = b",".join((first_bare, server_first, without_proof))
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        final = without_proof + b",p=" + base64.b64encode(proof)
        step = conn.admin.command(
            "saslContinue", 1, conversationId=start["conversationId"], payload=Binary(final)
        )
        assert step["done"] is False and bytes(step["payload"]).startswith(b"v=")
        last = conn.admin.command(
            "saslContinue", 1, conversationId=start["conversationId"], payload=Binary(b"")
        )
        assert last["done"] is True
        assert conn.admin.command("connectionStatus")["authInfo"]["authenticatedUsers"] == [
            {"user": "root", "db": "admin"}
        ]

    return run
