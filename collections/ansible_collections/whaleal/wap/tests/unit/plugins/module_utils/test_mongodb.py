"""Client options from module parameters, and error classification."""

from ansible_collections.whaleal.wap.plugins.module_utils import mongodb as m
from pymongo.errors import AutoReconnect, OperationFailure

BASE = {
    "login_host": "localhost",
    "login_port": 27017,
    "login_user": None,
    "login_password": None,
    "login_database": "admin",
    "replica_set": None,
    "direct_connection": True,
    "tls": False,
    "tls_ca_file": None,
    "tls_certificate_key_file": None,
    "tls_allow_invalid_hostnames": False,
    "connect_timeout": 5,
}


def test_direct_unauthenticated_by_default():
    options = m.client_options(BASE)
    assert options["directConnection"] is True
    assert "username" not in options and "tls" not in options
    assert options["serverSelectionTimeoutMS"] == 5000


def test_credentials_and_tls():
    params = dict(
        BASE,
        login_user="admin",
        login_password="pw",
        tls_ca_file="/ca.pem",
        tls_allow_invalid_hostnames=True,
    )
    options = m.client_options(params)
    assert (options["username"], options["password"], options["authSource"]) == (
        "admin",
        "pw",
        "admin",
    )
    assert options["tls"] and options["tlsCAFile"] == "/ca.pem"
    assert options["tlsAllowInvalidHostnames"]
    assert "username" not in m.client_options(params, authenticate=False)


def test_replica_set_discovery_and_member_connections():
    params = dict(BASE, replica_set="rs0")
    assert m.client_options(params)["replicaSet"] == "rs0"
    member = m.client_options(params, host="db2", port=27018)
    assert member["directConnection"] and "replicaSet" not in member
    assert (member["host"], member["port"]) == ("db2", 27018)


def test_x509():
    params = dict(
        BASE,
        login_user="CN=admin",
        login_database="$external",
        tls_certificate_key_file="/client.pem",
    )
    options = m.client_options(params)
    assert options["authMechanism"] == "MONGODB-X509" and "password" not in options


def test_retryable_errors():
    assert m.is_retryable(OperationFailure("not primary", code=10107))
    assert m.is_retryable(OperationFailure("stepped down", code=189))
    assert m.is_retryable(AutoReconnect("gone"))
    assert not m.is_retryable(OperationFailure("unauthorized", code=13))


def test_run_with_retries_retries_then_gives_up():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationFailure("not primary", code=10107)
        return "ok"

    assert m.run_with_retries(flaky, retries=5, delay=0) == "ok"
    calls.clear()
    try:
        m.run_with_retries(flaky, retries=1, delay=0)
    except OperationFailure:
        pass
    else:
        raise AssertionError("expected the error after the retries")
    assert len(calls) == 2
