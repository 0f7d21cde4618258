# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Connection code shared by the whaleal.wap MongoDB modules.

Modules never build clients themselves: they take ``mongodb_argument_spec()`` into their argument
spec, document it with the ``whaleal.wap.mongodb`` doc fragment and call ``connect(module)``.
"""

from __future__ import annotations

import time
import traceback

from ansible.module_utils.basic import missing_required_lib

PYMONGO_IMPORT_ERROR = None
try:
    from pymongo import MongoClient
    from pymongo.errors import (
        AutoReconnect,
        ConnectionFailure,
        OperationFailure,
        PyMongoError,
    )
except ImportError:
    PYMONGO_IMPORT_ERROR = traceback.format_exc()
    MongoClient = None

    class PyMongoError(Exception):
        """Stand-in so that the modules' except clauses work without pymongo."""

    class ConnectionFailure(PyMongoError):
        """Stand-in for pymongo.errors.ConnectionFailure."""

    class AutoReconnect(ConnectionFailure):
        """Stand-in for pymongo.errors.AutoReconnect."""

    class OperationFailure(PyMongoError):
        """Stand-in for pymongo.errors.OperationFailure."""


# MongoDB error codes the modules react to (src/mongo/base/error_codes.yml).
UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18
NOT_YET_INITIALIZED = 94
NOT_WRITABLE_PRIMARY = 10107
PRIMARY_STEPPED_DOWN = 189
NOT_PRIMARY_NO_SECONDARY_OK = 13435
NOT_PRIMARY_OR_SECONDARY = 13436
INTERRUPTED_DUE_TO_REPL_STATE_CHANGE = 11602
CONFIGURATION_IN_PROGRESS = 109
CURRENT_CONFIG_NOT_COMMITTED_YET = 308

# Errors after which the same command succeeds once the set has (again) a primary.
RETRYABLE_CODES = frozenset(
    (
        NOT_WRITABLE_PRIMARY,
        PRIMARY_STEPPED_DOWN,
        NOT_PRIMARY_NO_SECONDARY_OK,
        NOT_PRIMARY_OR_SECONDARY,
        INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
        CONFIGURATION_IN_PROGRESS,
        CURRENT_CONFIG_NOT_COMMITTED_YET,
    )
)

LOCAL_HOSTS = frozenset(("localhost", "127.0.0.1", "::1", "[::1]"))


def mongodb_argument_spec(**extra) -> dict:
    """The connection options of every MongoDB module, plus the module's own ``extra`` options."""
    spec = dict(
        login_host=dict(type="str", default="localhost"),
        login_port=dict(type="int", default=27017),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_database=dict(type="str", default="admin"),
        localhost_exception=dict(type="bool", default=False),
        replica_set=dict(type="str"),
        direct_connection=dict(type="bool", default=True),
        tls=dict(type="bool", default=False),
        tls_ca_file=dict(type="path"),
        tls_certificate_key_file=dict(type="path"),
        tls_allow_invalid_hostnames=dict(type="bool", default=False),
        connect_timeout=dict(type="int", default=10),
    )
    spec.update(extra)
    return spec


MONGODB_REQUIRED_TOGETHER = [["login_user", "login_password"]]


def require_pymongo(module) -> None:
    """Fail the module with Ansible's usual message when pymongo is not importable."""
    if PYMONGO_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("pymongo"), exception=PYMONGO_IMPORT_ERROR)


def client_options(
    params: dict, host: str | None = None, port: int | None = None, authenticate: bool = True
) -> dict:
    """Keyword arguments for ``MongoClient`` from the module's parameters (pure, unit-tested)."""
    timeout_ms = max(1, int(params.get("connect_timeout") or 10)) * 1000
    options = dict(
        host=host or params["login_host"],
        port=port or params["login_port"],
        connectTimeoutMS=timeout_ms,
        serverSelectionTimeoutMS=timeout_ms,
        appname="whaleal.wap",
    )
    if params.get("replica_set") and host is None:
        options["replicaSet"] = params["replica_set"]
    else:
        options["directConnection"] = (
            bool(params.get("direct_connection", True)) or host is not None
        )
    if params.get("tls") or params.get("tls_ca_file") or params.get("tls_certificate_key_file"):
        options["tls"] = True
        if params.get("tls_ca_file"):
            options["tlsCAFile"] = params["tls_ca_file"]
        if params.get("tls_certificate_key_file"):
            options["tlsCertificateKeyFile"] = params["tls_certificate_key_file"]
        if params.get("tls_allow_invalid_hostnames"):
            options["tlsAllowInvalidHostnames"] = True
    if authenticate and params.get("login_user"):
        options["username"] = params["login_user"]
        options["password"] = params["login_password"]
        options["authSource"] = params.get("login_database") or "admin"
    if params.get("login_database") == "$external" and params.get("login_user"):
        options["authMechanism"] = "MONGODB-X509"
        options.pop("password", None)
    return options


def error_code(exc: BaseException) -> int | None:
    """The MongoDB error code carried by a pymongo exception, if any."""
    code = getattr(exc, "code", None)
    if code is None:
        details = getattr(exc, "details", None) or {}
        code = details.get("code") if isinstance(details, dict) else None
    return code


def is_retryable(exc: BaseException) -> bool:
    """True for the errors of a set between primaries: retry the command after a pause."""
    return isinstance(exc, AutoReconnect) or error_code(exc) in RETRYABLE_CODES


class MongoConnection:
    """A client plus what the module learnt while connecting (who we are, which exception)."""

    def __init__(self, module, client, authenticated: bool, localhost_exception: bool):
        self.module = module
        self.client = client
        self.authenticated = authenticated
        self.localhost_exception = localhost_exception

    def close(self) -> None:
        self.client.close()

    def admin_command(self, command, retries: int = 0, delay: float = 1.0, **kwargs):
        """Run an admin command, retrying ``retries`` times on errors that a new primary fixes."""
        return run_with_retries(
            lambda: self.client.admin.command(command, **kwargs), retries=retries, delay=delay
        )

    def member_client(self, host_port: str, authenticate: bool | None = None):
        """A direct connection to one member of the set, with the same credentials (unless
        ``authenticate`` is False: an arbiter holds no users) and TLS."""
        host, port = host_port.rsplit(":", 1)
        options = client_options(
            self.module.params,
            host=host.strip("[]"),
            port=int(port),
            authenticate=self.authenticated if authenticate is None else authenticate,
        )
        return MongoClient(**options)


def run_with_retries(call, retries: int = 0, delay: float = 1.0):
    """Call ``call()``; on NotWritablePrimary, PrimarySteppedDown and the like, retry."""
    attempt = 0
    while True:
        try:
            return call()
        except (OperationFailure, ConnectionFailure) as exc:
            if attempt >= retries or not is_retryable(exc):
                raise
            attempt += 1
            time.sleep(delay)


def connect(module) -> MongoConnection:
    """Connect and authenticate as the module's parameters say, or fail the module clearly.

    With ``localhost_exception`` set and a local ``login_host``, credentials that do not
    authenticate (the user does not exist yet) leave the connection unauthenticated, so that
    MongoDB's localhost exception applies; the commands then fail with Unauthorized when
    users already exist, which the modules turn into a message about the password.
    """
    require_pymongo(module)
    params = module.params
    where = f"{params['login_host']}:{params['login_port']}"
    try:
        client = MongoClient(**client_options(params))
        client.admin.command("ping")
        return MongoConnection(module, client, bool(params.get("login_user")), False)
    except OperationFailure as exc:
        if error_code(exc) != AUTHENTICATION_FAILED:
            module.fail_json(msg=f"Unable to connect to MongoDB at {where}: {exc}")
        if not (params.get("localhost_exception") and params["login_host"] in LOCAL_HOSTS):
            module.fail_json(
                msg=f"Authentication as {params.get('login_user')} on database "
                f"{params.get('login_database')} failed: check login_user and login_password "
                "(or set localhost_exception to bootstrap the first user)"
            )
    except PyMongoError as exc:
        module.fail_json(
            msg=f"Unable to connect to MongoDB at {where}: {exc}. Check that mongod runs and "
            "listens there, and that the TLS options match its net.tls settings"
        )
    try:
        client = MongoClient(**client_options(params, authenticate=False))
        client.admin.command("ping")
    except PyMongoError as exc:
        module.fail_json(msg=f"Unable to connect to MongoDB at {where}: {exc}")
    return MongoConnection(module, client, False, True)


def unauthorized_message(conn: MongoConnection, what: str) -> str:
    """The message for an Unauthorized error, saying which trap the user fell in."""
    user = conn.module.params.get("login_user")
    if conn.localhost_exception:
        return (
            f"{what} was refused: the credentials of {user or 'the login user'} do not "
            "authenticate and the localhost exception no longer applies because users exist. "
            "Check login_password."
        )
    return f"{what} was refused: the login user lacks the privilege ({user or 'no login_user'})"


def wait_for(predicate, timeout: float, interval: float = 1.0):
    """Poll ``predicate()`` until it returns a true value or ``timeout`` seconds pass.

    Returns the last value (true on success, false on timeout). Connection errors and
    retryable command errors count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OperationFailure, ConnectionFailure) as exc:
            if not is_retryable(exc) and not isinstance(exc, ConnectionFailure):
                raise
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def to_plain(value):
    """BSON values (ObjectId, Timestamp, datetime, Int64) turned into JSON-friendly ones."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
