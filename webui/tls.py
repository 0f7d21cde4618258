"""HTTPS for `wap up` and `wap web`: the certificate and key (given, or issued by a CA that WAP
generates into the data dir), checked before anything starts, and the server that speaks TLS.

`WAP_TLS=auto` keeps, under `<data dir>/tls/`, a CA (`ca.pem`, `ca.key`) made on first start and a
server certificate it issues (`server.pem`, `server.key`) for 127.0.0.1, ::1, localhost, this
host's name, the bind address and `WAP_TLS_NAMES`. The CA is kept for good (agents pin it); the
server certificate is issued again from it when it no longer covers those names or nears its end.

The server takes plain HTTP on the same port too, and answers it without acting on it: GET and
HEAD are redirected (301) to the same URL over https, anything else is refused (400), so a write
sent in clear is never carried out.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from werkzeug.serving import ThreadedWSGIServer

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

    from webui.config import Settings

CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=30)
HANDSHAKE_TIMEOUT = 10.0  # a client that connects and says nothing holds one thread this long
PLAIN_HEAD_LIMIT = 8192


class TlsError(ValueError):
    """A certificate or key that cannot be served; the message names the file and what to do."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None  # the bundle that `/ca.pem` offers, when known

    def describe(self, url: str) -> str:
        """What `wap up` / `wap web` print about it: where the CA is and how to check it."""
        if self.ca is None:
            return f"TLS: certificate {self.cert} (no WAP_TLS_CA set, so {url}/ca.pem is empty)"
        return (
            f"TLS: certificates from the CA in {self.ca}\n"
            f"     its SHA-256 fingerprint: {fingerprint(self.ca)}\n"
            f"     clients trust that file, or fetch it from {url}/ca.pem and check the fingerprint"
        )


def auto_dir(data_dir: Path) -> Path:
    return data_dir / "tls"


def fingerprint(path: Path) -> str:
    """SHA-256 of the (first) certificate in a PEM file, as `openssl x509 -fingerprint -sha256`
    prints it."""
    cert = _load_cert(path, "the CA certificate")
    from cryptography.hazmat.primitives import serialization

    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def server_names(settings: Settings) -> list[str]:
    """The names and addresses the automatic server certificate covers."""
    names = ["127.0.0.1", "::1", "localhost", socket.gethostname(), socket.getfqdn()]
    if settings.host not in ("0.0.0.0", "::", ""):
        names.append(settings.host)
    names.extend(settings.tls_names)
    unique: list[str] = []
    for name in names:
        if name and name.lower() not in (n.lower() for n in unique):
            unique.append(name)
    return unique


def prepare(settings: Settings) -> TlsFiles | None:
    """The files to serve with, made first when `WAP_TLS=auto`, checked either way: a missing,
    unreadable or mismatched certificate or key is a `TlsError` before any server starts."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    if settings.tls_auto:
        ensure_auto(auto_dir(settings.data_dir), server_names(settings))
    check_pair(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        _load_cert(settings.tls_ca, "WAP_TLS_CA")
    return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_ca)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context


# Checking given files


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TlsError(f"{what} {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise TlsError(
            f"{what} {path} cannot be read: {exc.strerror} (the web server runs as uid "
            f"{os.geteuid()})"
        ) from None


def _load_cert(path: Path, what: str) -> x509.Certificate:
    from cryptography import x509

    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError(
            f"{what} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ) from None


def check_pair(cert_path: Path, key_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    cert = _load_cert(cert_path, "WAP_TLS_CERT")
    data = _read(key_path, "WAP_TLS_KEY")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsError(
            f"WAP_TLS_KEY {key_path} is encrypted: give the key without a passphrase "
            "(readable by the web server's user only)"
        ) from None
    except ValueError:
        raise TlsError(
            f"WAP_TLS_KEY {key_path} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
        ) from None
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        raise TlsError(
            f"WAP_TLS_KEY {key_path} is not the key of the certificate WAP_TLS_CERT {cert_path} "
            f"({cert.subject.rfc4514_string()}): give the key that certificate was issued for"
        )
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise TlsError(
            f"WAP_TLS_CERT {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}: renew it"
        )


# The automatic CA


def ensure_auto(directory: Path, names: list[str]) -> None:
    """Make the CA on first use and keep it; issue the server certificate again when it does not
    cover `names` or ends within RENEW_BEFORE."""
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    ca_pem, ca_key_path = directory / "ca.pem", directory / "ca.key"
    if not ca_pem.exists() or not ca_key_path.exists():
        ca_key = _new_key()
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_pem, _pem(_ca_certificate(ca_key)), 0o644)
    ca_cert = _load_cert(ca_pem, "the CA certificate")
    try:
        ca_key = serialization.load_pem_private_key(_read(ca_key_path, "the CA key"), None)
    except (TypeError, ValueError):
        raise TlsError(
            f"{ca_key_path} holds no usable key: move {directory} away to start anew"
        ) from None
    server_pem, server_key = directory / "server.pem", directory / "server.key"
    if server_pem.exists() and server_key.exists() and _covers(server_pem, ca_cert, names):
        return
    key = _new_key()
    _write(server_key, _key_pem(key), 0o600)
    _write(server_pem, _pem(_server_certificate(key, ca_cert, ca_key, names)), 0o644)


def _covers(path: Path, ca: x509.Certificate, names: list[str]) -> bool:
    from cryptography import x509

    try:
        cert = _load_cert(path, "the server certificate")
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (TlsError, x509.ExtensionNotFound):
        return False
    have = {str(n).lower() for n in sans.get_values_for_type(x509.DNSName)}
    have |= {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
    wanted = {str(_general_name(n).value).lower() for n in names}
    fresh = cert.not_valid_after_utc - RENEW_BEFORE > datetime.datetime.now(datetime.UTC)
    return cert.issuer == ca.subject and wanted <= have and fresh


def _new_key() -> CertificateIssuerPrivateKeyTypes:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _general_name(name: str) -> x509.GeneralName:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _ca_key_usage() -> x509.KeyUsage:
    from cryptography import x509

    signs = {"key_cert_sign", "crl_sign", "digital_signature"}
    flags = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{flag: flag in signs for flag in flags})


def _ca_certificate(key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "WAP"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"WAP CA on {socket.gethostname()}"[:64]),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: CertificateIssuerPrivateKeyTypes,
    ca: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    names: list[str],
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    first_dns = next((n for n in names if isinstance(_general_name(n), x509.DNSName)), "localhost")
    now = datetime.datetime.now(datetime.UTC)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first_dns[:64])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(ca_key, hashes.SHA256())
    )


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a new file renamed into place, so no reader sees half a key or certificate."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


# Serving


HOST_HEADER = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


class TlsServer(ThreadedWSGIServer):
    """Werkzeug's threaded server, with the TLS handshake in each connection's own thread (Werkzeug
    wraps the listening socket, so its handshakes run in the accepting thread: one silent client
    stalls every other) and plain HTTP answered by a redirect or a refusal."""

    def __init__(self, host: str, port: int, app: object, context: ssl.SSLContext) -> None:
        super().__init__(host, port, app)  # type: ignore[arg-type]
        self.ssl_context = context  # https in the WSGI environ; the socket stays plain

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            first = request.recv(1, socket.MSG_PEEK)
            if first == b"\x16":  # a TLS handshake record
                request = self.ssl_context.wrap_socket(request, server_side=True)  # type: ignore[union-attr]
                request.settimeout(None)
                self.finish_request(request, client_address)  # type: ignore[arg-type]
            elif first:
                self._answer_plain_http(request)
        except (OSError, ValueError):
            pass  # a failed handshake, a client gone: nothing to answer
        except Exception:
            self.handle_error(request, client_address)  # type: ignore[arg-type]
        finally:
            self.shutdown_request(request)

    def _answer_plain_http(self, sock: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < PLAIN_HEAD_LIMIT:
            chunk = sock.recv(PLAIN_HEAD_LIMIT - len(head))
            if not chunk:
                break
            head += chunk
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0]
        if not path.startswith("/") or any(c in path for c in "\r\n\t "):
            path = "/"
        hosts = [line[5:].strip() for line in lines[1:] if line.lower().startswith("host:")]
        host = hosts[0] if hosts else ""
        if not HOST_HEADER.match(host):
            host = f"{'127.0.0.1' if self.host in ('0.0.0.0', '') else self.host}:{self.port}"
        target = f"https://{host}{path}"
        if method in ("GET", "HEAD"):
            status = "301 Moved Permanently"
            body = f"This server speaks HTTPS: {target}\n"
            extra = f"Location: {target}\r\n"
        else:
            status = "400 Bad Request"
            body = (
                f"This server speaks HTTPS only; nothing sent over plain HTTP is acted on. "
                f"Send the request to {target}\n"
            )
            extra = ""
        payload = body.encode() if method != "HEAD" else b""
        sock.sendall(
            f"HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
