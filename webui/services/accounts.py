"""Users, first-start setup, login sessions and API tokens.

Passwords are hashed with argon2id; session ids and API tokens are random and only their SHA-256
is stored, so a copy of the store lets nobody log in. Failed logins are counted in Redis, per
username and per address, so that every web server refuses a guesser alike.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from redis import Redis
from redis.exceptions import RedisError

from webui.services import audit
from webui.services.audit import Actor
from webui.services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServiceError,
    Unauthorized,
)
from webui.store import Store, now

log = logging.getLogger(__name__)

ROLES = ("admin", "user")
SETUP_DOC_ID = "setup"
MIN_PASSWORD = 10
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# argon2id with RFC 9106's low-memory parameters (argon2-cffi's default: 64 MiB, 3 passes,
# ~0.25 s of CPU a hash). WAP_INSECURE_FAST_PASSWORD_HASHING=1 takes argon2-cffi's CHEAPEST
# profile, made for test suites whose passwords are throwaway: the test suite sets it (a webui
# test's setup hashes three to six passwords); never a platform's setting, so it is read here
# and nowhere documented as one. A hash keeps its own parameters: a login with the default
# parameters rehashes a password hashed cheaply (check_needs_rehash, below).
INSECURE_FAST_HASHING = "WAP_INSECURE_FAST_PASSWORD_HASHING"
_fast = os.environ.get(INSECURE_FAST_HASHING) == "1"
_hasher = PasswordHasher.from_parameters(
    profiles.CHEAPEST if _fast else profiles.RFC_9106_LOW_MEMORY
)
if _fast:
    log.warning(
        "%s=1: passwords are hashed with test parameters, unfit for use", INSECURE_FAST_HASHING
    )
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def is_set_up(store: Store) -> bool:
    return store.meta.find_one({"_id": SETUP_DOC_ID}) is not None


def normalize_username(username: str) -> str:
    """One spelling per name: NFKC (full-width and other compatibility forms become plain
    letters) and case-folded. With USERNAME_RE, names that only look alike cannot both exist."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


def validate_new_user(username: str, password: str, role: str) -> None:
    """`username` as normalize_username gives it."""
    fields: dict[str, list[str]] = {}
    if not USERNAME_RE.match(username):
        fields["username"] = [
            "1 to 64 letters a-z, digits, '.', '-' or '_', starting with a letter or digit"
            " (upper case is taken as lower case; no other alphabets, so that no two names"
            " look alike)"
        ]
    if len(password) < MIN_PASSWORD:
        fields["password"] = [f"at least {MIN_PASSWORD} characters"]
    if role not in ROLES:
        fields["role"] = [f"one of {', '.join(ROLES)}"]
    if fields:
        raise Invalid("the user cannot be created as given", fields)


def _insert_user(store: Store, username: str, password: str, role: str) -> dict[str, Any]:
    user = {
        "_id": uuid.uuid4().hex,
        "username": username,
        "password_hash": _hasher.hash(password),
        "role": role,
        "disabled": False,
        "created_at": now(),
    }
    try:
        store.users.insert_one(user)
    except DuplicateKeyError:
        raise Conflict(
            f"a user named {username!r} already exists", {"username": ["already taken"]}
        ) from None
    return user


def setup_first_admin(store: Store, username: str, password: str, source: str) -> dict[str, Any]:
    """Create the first admin; only ever once (a second caller gets Conflict, even concurrently)."""
    username = normalize_username(username)
    validate_new_user(username, password, "admin")
    try:
        store.meta.insert_one({"_id": SETUP_DOC_ID, "at": now(), "by": username})
    except DuplicateKeyError:
        raise Conflict("WAP is already set up: log in instead") from None
    user = _insert_user(store, username, password, "admin")
    audit.record(store, Actor(user["_id"], username, "admin", source), "setup.admin", username)
    return user


def create_user(
    store: Store, actor: Actor, username: str, password: str, role: str
) -> dict[str, Any]:
    if not actor.is_admin:
        raise Forbidden("only admins can create users")
    username = normalize_username(username)
    validate_new_user(username, password, role)
    try:
        user = _insert_user(store, username, password, role)
    except Conflict:
        audit.record(store, actor, "user.create", username, "failed", {"reason": "exists"})
        raise
    audit.record(store, actor, "user.create", username, detail={"role": role})
    return user


def _flags(user: dict[str, Any]) -> dict[str, Any]:
    """`disabled` as a bool (the embedded store gives back a stored true as 1)."""
    user["disabled"] = bool(user.get("disabled"))
    return user


def list_users(store: Store) -> list[dict[str, Any]]:
    return [_flags(u) for u in store.users.find({}, {"password_hash": 0}).sort("username", 1)]


def get_user(store: Store, user_id: str) -> dict[str, Any] | None:
    user = store.users.find_one({"_id": user_id, "disabled": False}, {"password_hash": 0})
    return _flags(user) if user else None


def _active_admins(store: Store) -> int:
    return store.users.count_documents({"role": "admin", "disabled": False})


def _last_admin(store: Store, actor: Actor, action: str, user: dict[str, Any]) -> Conflict:
    audit.record(store, actor, action, user["username"], "failed", {"reason": "last admin"})
    return Conflict(
        f"{user['username']} is the last active admin: make another user admin first, "
        "so that someone can still manage users"
    )


def _change_user(
    store: Store, actor: Actor, user_id: str, action: str, change: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply `change` to the user unless that leaves no active admin; return (before, after).

    Two admins demoting each other at once must not leave none: the change is made, the active
    admins are counted, and the change is undone if the count is 0 (without transactions, which
    the embedded store lacks)."""
    before = store.users.find_one({"_id": user_id}, {"password_hash": 0})
    if not before:
        raise NotFound("no such user")
    loses_admin = (
        before["role"] == "admin"
        and not before.get("disabled")
        and (change.get("role", "admin") != "admin" or change.get("disabled", False))
    )
    if loses_admin and _active_admins(store) <= 1:
        raise _last_admin(store, actor, action, before)
    current = {key: before.get(key) for key in change}
    after = store.users.find_one_and_update(
        {"_id": user_id, **current},
        {"$set": change},
        projection={"password_hash": 0},
        return_document=ReturnDocument.AFTER,
    )
    if after is None:
        raise Conflict(f"{before['username']} was changed meanwhile: reload and try again")
    if loses_admin and _active_admins(store) == 0:
        store.users.update_one({"_id": user_id, **change}, {"$set": current})
        raise _last_admin(store, actor, action, before)
    return _flags(before), _flags(after)


def set_role(store: Store, actor: Actor, user_id: str, role: str) -> dict[str, Any]:
    """Make a user an admin or a plain user; the last active admin stays one."""
    if not actor.is_admin:
        raise Forbidden("only admins can change roles")
    if role not in ROLES:
        raise Invalid("unknown role", {"role": [f"one of {', '.join(ROLES)}"]})
    before, after = _change_user(store, actor, user_id, "user.role", {"role": role})
    if before["role"] != role:
        audit.record(
            store,
            actor,
            "user.role",
            after["username"],
            detail={"from": before["role"], "to": role},
        )
    return after


def set_disabled(store: Store, actor: Actor, user_id: str, disabled: bool) -> dict[str, Any]:
    """Disable a user (their sessions and API tokens end at once) or enable them again."""
    if not actor.is_admin:
        raise Forbidden("only admins can disable users")
    if user_id == actor.user_id and disabled:
        raise Invalid("you cannot disable yourself")
    action = "user.disable" if disabled else "user.enable"
    before, after = _change_user(store, actor, user_id, action, {"disabled": disabled})
    if disabled:
        store.sessions.delete_many({"user_id": user_id})
        store.tokens.delete_many({"user_id": user_id})
    if bool(before.get("disabled")) != disabled:
        audit.record(store, actor, action, after["username"])
    return after


class TooManyFailures(ServiceError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed logins for this username or from your address: "
            f"try again in {retry_after} s"
        )
        self.retry_after = retry_after


# Count one failure; the count lives until `lockout` seconds pass without another failure.
_FAILED = """
local n = redis.call('incr', KEYS[1])
redis.call('expire', KEYS[1], ARGV[1])
return n
"""


@dataclass(frozen=True)
class LoginThrottle:
    """Failed logins counted in Redis, until `lockout` seconds pass without one, so that a
    stranger cannot lock someone else out for long:

    - one username from one address: from `max_failures` failures that pair is refused, unchecked,
      until `lockout` passes without a failure (each failure after that locks again). Only the
      guesser's own address is locked; the user logs in from theirs.
    - one address, any usernames: from four times that, the address is refused alike.
    - one username from many addresses: from four times that, each further failure makes every
      address wait before the next try, 1 s, then 2, 4... at most `max_delay`: guessing is slowed,
      and the user waits seconds, not minutes.

    A successful login clears its username's counts (not its address's, else a guesser with an
    account of their own could clear it between guesses)."""

    redis: Redis
    max_failures: int
    lockout: float
    prefix: str
    max_delay: float = 30.0

    def _keys(self, username: str, address: str) -> tuple[str, str, str, str]:
        user = _digest(normalize_username(username))
        return (
            f"{self.prefix}:pair:{_digest(user + chr(0) + address[:64])}",
            f"{self.prefix}:addr:{address[:64]}",
            f"{self.prefix}:user:{user}",
            f"{self.prefix}:user-wait:{user}",
        )

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until this username and address may try again (0: now)."""
        pair_key, addr_key, _, wait_key = self._keys(username, address)
        pipe = self.redis.pipeline()
        pipe.get(pair_key).ttl(pair_key).get(addr_key).ttl(addr_key).pttl(wait_key)
        pair_n, pair_ttl, addr_n, addr_ttl, wait_ms = pipe.execute()
        waits = [0]
        if int(pair_n or 0) >= self.max_failures:
            waits.append(max(1, pair_ttl))
        if int(addr_n or 0) >= 4 * self.max_failures:
            waits.append(max(1, addr_ttl))
        if wait_ms and wait_ms > 0:
            waits.append(max(1, -(-wait_ms // 1000)))
        return max(waits)

    def failed(self, username: str, address: str) -> None:
        pair_key, addr_key, user_key, wait_key = self._keys(username, address)
        ttl = max(1, round(self.lockout))
        for key in (pair_key, addr_key):
            self.redis.eval(_FAILED, 1, key, ttl)
        spread = int(self.redis.eval(_FAILED, 1, user_key, ttl)) - 4 * self.max_failures
        if spread >= 0:
            delay = min(self.max_delay, 2.0 ** min(spread, 30))
            self.redis.set(wait_key, 1, px=max(1, round(delay * 1000)))

    def succeeded(self, username: str, address: str) -> None:
        pair_key, _, user_key, wait_key = self._keys(username, address)
        self.redis.delete(pair_key, user_key, wait_key)


def authenticate(
    store: Store,
    username: str,
    password: str,
    source: str,
    throttle: LoginThrottle | None = None,
) -> dict[str, Any]:
    """Check a password; every attempt goes to the audit log (`login`, or `login.refused`).

    With a throttle, a username or address with too many recent failures is refused (429) before
    its password is even checked, and a failure is counted. When Redis cannot be reached the
    login goes on unthrottled (argon2 still slows guessing, and the audit log has every failure)
    rather than locking everyone out."""
    username = normalize_username(username)
    user = store.users.find_one({"username": username})
    actor = Actor(
        user["_id"] if user else None, username[:64], user["role"] if user else "", source
    )
    if throttle is not None:
        try:
            wait = throttle.retry_after(username, source)
        except RedisError as exc:
            log.warning("login throttle unavailable (logins are not rate-limited): %s", exc)
            throttle, wait = None, 0
        if wait:
            audit.record(
                store,
                actor,
                "login.refused",
                username[:64],
                "failed",
                {"reason": "too many failed logins", "retry_after": wait},
            )
            raise TooManyFailures(wait)
    stored_hash = user["password_hash"] if user and not user.get("disabled") else _DUMMY_HASH
    try:
        ok = _hasher.verify(stored_hash, password) and user is not None and not user.get("disabled")
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        audit.record(store, actor, "login", username[:64], "failed")
        if throttle is not None:
            try:
                throttle.failed(username, source)
            except RedisError as exc:
                log.warning("login throttle unavailable: %s", exc)
        raise Unauthorized("wrong username or password")
    if _hasher.check_needs_rehash(user["password_hash"]):
        store.users.update_one(
            {"_id": user["_id"]}, {"$set": {"password_hash": _hasher.hash(password)}}
        )
    if throttle is not None:
        try:
            throttle.succeeded(username, source)
        except RedisError as exc:
            log.warning("login throttle unavailable: %s", exc)
    audit.record(store, actor, "login", username)
    return user


def start_session(store: Store, user: dict[str, Any], source: str) -> str:
    """A new session id at every login (never reuse one from before the login)."""
    session_id = secrets.token_urlsafe(32)
    store.sessions.insert_one(
        {"_id": _digest(session_id), "user_id": user["_id"], "created_at": now(), "source": source}
    )
    return session_id


def end_session(store: Store, session_id: str) -> None:
    store.sessions.delete_one({"_id": _digest(session_id)})


def session_user(store: Store, session_id: str | None) -> dict[str, Any] | None:
    if not session_id:
        return None
    session = store.sessions.find_one({"_id": _digest(session_id)})
    return get_user(store, session["user_id"]) if session else None


def create_token(store: Store, actor: Actor, name: str) -> tuple[str, dict[str, Any]]:
    """Return the token (shown once) and its record; only the token's SHA-256 is stored."""
    if not name or len(name) > 100:
        raise Invalid("the token needs a name", {"name": ["1 to 100 characters"]})
    token = "wap_" + secrets.token_urlsafe(32)
    record = {
        "_id": uuid.uuid4().hex,
        "user_id": actor.user_id,
        "name": name,
        "prefix": token[:8],
        "token_hash": _digest(token),
        "created_at": now(),
        "last_used_at": None,
    }
    store.tokens.insert_one(record)
    audit.record(store, actor, "token.create", name)
    del record["token_hash"]
    return token, record


def list_tokens(store: Store, user_id: str) -> list[dict[str, Any]]:
    return list(store.tokens.find({"user_id": user_id}, {"token_hash": 0}).sort("created_at", -1))


def revoke_token(store: Store, actor: Actor, token_id: str) -> None:
    query: dict[str, Any] = {"_id": token_id}
    if not actor.is_admin:
        query["user_id"] = actor.user_id
    token = store.tokens.find_one_and_delete(query)
    if not token:
        raise NotFound("no such token")
    audit.record(store, actor, "token.revoke", token["name"])


def token_user(store: Store, token: str) -> dict[str, Any] | None:
    record = store.tokens.find_one({"token_hash": _digest(token)})
    if not record:
        return None
    store.tokens.update_one({"_id": record["_id"]}, {"$set": {"last_used_at": now()}})
    return get_user(store, record["user_id"])
