"""Users, setup, passwords, sessions, tokens, credentials at rest, audit."""

import json
import os
import subprocess
import sys

import pytest

from webui.config import Settings
from webui.services import accounts, audit, credentials, projects
from webui.services.audit import Actor
from webui.services.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from webui.store import Store

PASSWORD = "a long enough password"


def test_setup_happens_once_and_hashes_with_argon2id(store: Store) -> None:
    assert not accounts.is_set_up(store)
    user = accounts.setup_first_admin(store, "root", PASSWORD, "10.0.0.1")
    assert accounts.is_set_up(store)
    assert store.users.find_one({"_id": user["_id"]})["password_hash"].startswith("$argon2id$")
    with pytest.raises(Conflict):
        accounts.setup_first_admin(store, "other", PASSWORD, "10.0.0.2")
    with pytest.raises(Invalid) as bad:
        accounts.validate_new_user("no spaces", "short", "god")
    assert set(bad.value.fields) == {"username", "password", "role"}


def test_a_platform_hashes_with_rfc_9106_parameters_and_the_suites_cheap_ones_are_rehashed(
    store: Store,
) -> None:
    # The suite hashes cheaply (tests/conftest.py); a platform started without that switch, as
    # every platform is, hashes with RFC 9106's low-memory parameters.
    env = {k: v for k, v in os.environ.items() if k != accounts.INSECURE_FAST_HASHING}
    code = "from webui.services import accounts; print(accounts._hasher.hash('x' * 12))"
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert printed.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), printed
    # A password hashed cheaply is hashed again with the platform's parameters at its next login.
    user = accounts.setup_first_admin(store, "root", PASSWORD, "10.0.0.1")
    assert "$m=8,t=1,p=1$" in store.users.find_one({"_id": user["_id"]})["password_hash"]
    strong = accounts.PasswordHasher.from_parameters(accounts.profiles.RFC_9106_LOW_MEMORY)
    cheap, accounts._hasher = accounts._hasher, strong
    try:
        accounts.authenticate(store, "root", PASSWORD, "10.0.0.1")
    finally:
        accounts._hasher = cheap
    assert "$m=65536,t=3,p=4$" in store.users.find_one({"_id": user["_id"]})["password_hash"]


def test_logins_are_audited_and_sessions_are_new_each_time(store: Store) -> None:
    user = accounts.setup_first_admin(store, "root", PASSWORD, "1.2.3.4")
    with pytest.raises(Unauthorized):
        accounts.authenticate(store, "root", "wrong password!", "5.6.7.8")
    with pytest.raises(Unauthorized):
        accounts.authenticate(store, "nobody", PASSWORD, "5.6.7.8")
    assert accounts.authenticate(store, "root", PASSWORD, "1.2.3.4")["_id"] == user["_id"]
    first = accounts.start_session(store, user, "1.2.3.4")
    second = accounts.start_session(store, user, "1.2.3.4")
    assert first != second
    assert accounts.session_user(store, first)["username"] == "root"
    assert store.sessions.find_one({"_id": first}) is None  # only the digest is kept
    accounts.end_session(store, first)
    assert accounts.session_user(store, first) is None
    logins = audit.search(store, action="login")
    assert [(r["actor"], r["source"], r["outcome"]) for r in logins] == [
        ("root", "1.2.3.4", "ok"),
        ("nobody", "5.6.7.8", "failed"),
        ("root", "5.6.7.8", "failed"),
    ]
    assert audit.search(store, outcome="failed", actor="nobody")[0]["action"] == "login"


def test_tokens_are_stored_hashed_and_revocable(store: Store) -> None:
    user = accounts.setup_first_admin(store, "root", PASSWORD, "x")
    actor = Actor(user["_id"], "root", "admin", "x")
    token, record = accounts.create_token(store, actor, "ci")
    assert token not in json.dumps(list(store.tokens.find()), default=str)
    assert accounts.token_user(store, token)["_id"] == user["_id"]
    accounts.revoke_token(store, actor, record["_id"])
    assert accounts.token_user(store, token) is None


def test_credentials_are_sealed_and_only_revealed_to_the_worker(
    store: Store, settings: Settings
) -> None:
    user = accounts.setup_first_admin(store, "root", PASSWORD, "x")
    actor = Actor(user["_id"], "root", "admin", "x")
    project = projects.create_project(store, actor, "p1")
    canary = "canary-7f3a9c-secret"
    public = credentials.create(
        store,
        settings,
        actor,
        project["_id"],
        "mongodb",
        "db",
        {"username": "app", "password": canary},
    )
    assert canary not in json.dumps(public, default=str)
    assert canary not in json.dumps(list(store.db.credentials.find()), default=str)
    assert canary not in json.dumps(credentials.list_public(store, project["_id"]), default=str)
    revealed = credentials.reveal(store, settings.credential_key, public["_id"])
    assert (revealed["username"], revealed["password"]) == ("app", canary)
    other_key = credentials.fernet(settings.credential_key)  # a key of the right shape...
    assert other_key
    with pytest.raises(credentials.CredentialKeyError):
        credentials.reveal(store, "A" * 43 + "=", public["_id"])
    assert canary not in json.dumps(list(store.audit.find()), default=str)


def test_project_roles(store: Store) -> None:
    admin_user = accounts.setup_first_admin(store, "root", PASSWORD, "x")
    admin = Actor(admin_user["_id"], "root", "admin", "x")
    bob_user = accounts.create_user(store, admin, "bob", PASSWORD, "user")
    bob = Actor(bob_user["_id"], "bob", "user", "x")
    project = projects.create_project(store, admin, "p1")
    with pytest.raises(NotFound):
        projects.require(store, bob, project["_id"], "read-only")
    projects.set_member(store, admin, project["_id"], "bob", "read-only")
    assert projects.require(store, bob, project["_id"], "read-only")
    with pytest.raises(Forbidden, match="operator"):
        projects.require(store, bob, project["_id"], "operator")
    with pytest.raises(Forbidden):
        projects.create_project(store, bob, "p2")
    assert [p["name"] for p in projects.list_projects(store, bob)] == ["p1"]
