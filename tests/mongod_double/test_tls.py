"""TLS in the double: net.tls modes on one port, CA and client certificates, start-up refusals,
keyFile member authentication over TLS as replica set peers do it, and MONGODB-X509."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import socket
import ssl
from dataclasses import dataclass

import pymongo
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pymongo.errors import OperationFailure, PyMongoError

KEY = "d2FwLWxhYi1rZXlmaWxlLWZvci10ZXN0cw=="


@dataclass
class Pki:
    ca: pathlib.Path
    server: pathlib.Path  # certificate + key, O=WAP OU=Members (also a member certificate)
    member: pathlib.Path  # another member's certificate + key
    client: pathlib.Path  # an application's certificate + key, O=WAP OU=Apps
    other_ca: pathlib.Path


def _name(cn: str, ou: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "WAP"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write(path: pathlib.Path, cert: x509.Certificate, key=None) -> pathlib.Path:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    path.write_bytes(data)
    return path


def _ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, "CA"))
        .issuer_name(_name(cn, "CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca_cert, ca_key, cn: str, ou: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, ou))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A CA, server/member certificates with 127.0.0.1 and localhost SANs, a client
    certificate, and an unrelated CA (generated with cryptography)."""
    root = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _ca("WAP test CA")
    other_cert, _ = _ca("Someone else's CA")
    return Pki(
        ca=_write(root / "ca.pem", ca_cert),
        server=_write(root / "server.pem", *_leaf(ca_cert, ca_key, "localhost", "Members")),
        member=_write(root / "member.pem", *_leaf(ca_cert, ca_key, "lab2", "Members")),
        client=_write(root / "client.pem", *_leaf(ca_cert, ca_key, "reporting", "Apps")),
        other_ca=_write(root / "other-ca.pem", other_cert),
    )


def _tls_args(pki: Pki, mode: str = "requireTLS", *extra: str) -> list[str]:
    return ["--tlsMode", mode, "--tlsCertificateKeyFile", str(pki.server),
            "--tlsCAFile", str(pki.ca), *extra]  # fmt: skip


def _tls_client(node, pki: Pki, cert: pathlib.Path | None = None, **kwargs):
    kwargs.setdefault("serverSelectionTimeoutMS", 3000)
    if cert is not None:
        kwargs["tlsCertificateKeyFile"] = str(cert)
    return node.client(tls=True, tlsCAFile=str(pki.ca), **kwargs)


def test_require_tls_refuses_plain_connections(launcher, pki):
    """requireTLS: TLS clients verified against the CA work; a plain connection is closed after
    its first message, and mongod logs why.

    Source: https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-net.tls.mode
    and https://www.mongodb.com/docs/manual/tutorial/configure-ssl/
    """
    node = launcher.start(*_tls_args(pki, "requireTLS", "--tlsAllowConnectionsWithoutCertificates"))
    client = _tls_client(node, pki)
    client.test.c.insert_one({"secure": True})
    assert client.test.c.find_one()["secure"] is True
    with pytest.raises(PyMongoError):
        node.client(serverSelectionTimeoutMS=1500).admin.command("ping")
    assert any("only allow SSL connections" in line for line in node.log_lines())
    assert any('"ssl":"on"' in line for line in node.log_lines())


@pytest.mark.parametrize("mode", ["allowTLS", "preferTLS"])
def test_allow_and_prefer_tls_accept_both_on_one_port(launcher, pki, mode):
    """allowTLS / preferTLS accept TLS and plain connections on the same port.

    Source: https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-net.tls.mode
    """
    node = launcher.start(*_tls_args(pki, mode, "--tlsAllowConnectionsWithoutCertificates"))
    _tls_client(node, pki).test.c.insert_one({"via": "tls"})
    assert node.client().test.c.find_one({"via": "tls"}) is not None


def test_client_certificate_required_with_a_ca_file(launcher, pki):
    """With a CA file and no allowConnectionsWithoutCertificates, clients must present a
    certificate signed by that CA; one from another CA is refused too.

    Source: https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-net.tls.allowConnectionsWithoutCertificates
    """
    node = launcher.start(*_tls_args(pki))
    with pytest.raises(PyMongoError):
        _tls_client(node, pki, serverSelectionTimeoutMS=1500).admin.command("ping")
    assert _tls_client(node, pki, cert=pki.client).admin.command("ping")["ok"] == 1
    with socket.create_connection(("127.0.0.1", node.port)) as raw:
        context = ssl.create_default_context(cafile=str(pki.other_ca))
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize(
    ("version", "starts"), [("8.0.4", False), ("7.0.14", False), ("6.0.13", True)]
)
def test_tls_without_ca_file(launcher, pki, version, starts):
    """From 6.0.14 / 7.0.6 / 8.0, TLS without a CA file stops start-up ("The use of TLS without
    specifying a chain of trust is no longer supported"); older releases start.

    Source: https://jira.mongodb.org/browse/SERVER-72839 and
    https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-net.tls.CAFile
    """
    args = ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", str(pki.server)]
    if starts:
        node = launcher.start(*args, version=version)
        context = ssl.create_default_context(cafile=str(pki.ca))
        with socket.create_connection(("127.0.0.1", node.port)) as raw:
            context.wrap_socket(raw, server_hostname="localhost").close()
        return
    result = launcher.run(
        "--port", str(launcher.free_port()), "--dbpath", str(launcher.tmp_path), *args,
        version=version,
    )  # fmt: skip
    assert result.returncode == 2
    assert "chain of trust is no longer supported" in result.stdout + result.stderr


def test_keyfile_member_authentication_over_tls(launcher, pki, tmp_path):
    """A replica set peer's client (``__system`` on ``local``, the keyFile as password,
    SCRAM-SHA-256, TLS with the member certificate and CA) authenticates with all privileges.

    Source: https://www.mongodb.com/docs/manual/core/security-internal-authentication/ and
    https://www.mongodb.com/docs/manual/tutorial/deploy-replica-set-with-keyfile-access-control/
    """
    keyfile = tmp_path / "keyfile"
    keyfile.write_text(KEY[:20] + "\n  " + KEY[20:] + "\n")
    keyfile.chmod(0o400)
    node = launcher.start("--keyFile", str(keyfile), "--replSet", "rs0", *_tls_args(pki))
    peer = _tls_client(
        node, pki, cert=pki.member, username="__system", password=KEY, authSource="local",
        authMechanism="SCRAM-SHA-256",
    )  # fmt: skip
    status = peer.admin.command("connectionStatus")["authInfo"]
    assert status["authenticatedUsers"] == [{"user": "__system", "db": "local"}]
    assert status["authenticatedUserRoles"] == [{"role": "__system", "db": "admin"}]
    peer.admin.command("replSetInitiate")
    peer.local.scratch.insert_one({})
    wrong = _tls_client(
        node, pki, cert=pki.member, username="__system", password="not-the-key",
        authSource="local", serverSelectionTimeoutMS=1500,
    )  # fmt: skip
    with pytest.raises(OperationFailure) as info:
        wrong.admin.command("ping")
    assert info.value.code == 18


def test_x509_user_and_member_authentication(launcher, pki):
    """MONGODB-X509: a client certificate's subject authenticates as the $external user of that
    name; with clusterAuthMode x509 a certificate with the server's O/OU is a cluster member.

    Source: https://www.mongodb.com/docs/manual/tutorial/configure-x509-client-authentication/
    and https://www.mongodb.com/docs/manual/tutorial/configure-x509-member-authentication/
    """
    node = launcher.start(*_tls_args(pki, "requireTLS", "--clusterAuthMode", "x509"))
    subject = "CN=reporting,OU=Apps,O=WAP,C=US"
    _tls_client(node, pki, cert=pki.client).admin.command(
        "createUser", "root", pwd="pw", roles=["root"]
    )
    root = _tls_client(node, pki, cert=pki.client, username="root", password="pw")
    root["$external"].command("createUser", subject, roles=[{"role": "read", "db": "app"}])
    app = _tls_client(node, pki, cert=pki.client, authMechanism="MONGODB-X509")
    info = app.admin.command("connectionStatus")["authInfo"]
    assert info["authenticatedUsers"] == [{"user": subject, "db": "$external"}]
    app.app.c.find_one()
    with pytest.raises(OperationFailure):
        app.app.c.insert_one({})
    member = _tls_client(node, pki, cert=pki.member, authMechanism="MONGODB-X509")
    roles = member.admin.command("connectionStatus")["authInfo"]["authenticatedUserRoles"]
    assert roles == [{"role": "__system", "db": "admin"}]


def test_plain_pymongo_cannot_talk_to_tls_disabled_server_with_tls(launcher, pki):
    """With TLS disabled the server never answers a TLS handshake.

    Source: https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-net.tls.mode
    """
    node = launcher.start()
    with pytest.raises(PyMongoError):
        pymongo.MongoClient(
            node.uri, tls=True, tlsCAFile=str(pki.ca), serverSelectionTimeoutMS=1500
        ).admin.command("ping")
