"""Start-up security settings: access control, the keyFile (internal ``__system`` user) and TLS.

keyFile rules are mongod's (``readSecurityFile`` / security_key): the file must exist and have
no group or world permission bits ("permissions on F are too open"); whitespace is ignored; the
rest must be 6 to 1024 base64 characters. Members authenticate to each other as ``__system`` on
``local`` with that string as the password (SCRAM-SHA-1 or SCRAM-SHA-256).
"""

from __future__ import annotations

import os
import re
import ssl
import stat
import threading
from dataclasses import dataclass, field

from mongod_double import scram
from mongod_double.errors import StartupError
from mongod_double.options import ServerOptions
from mongod_double.version import Version

EXIT_FAILURE = 1
BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=]*$")
SYSTEM_USER = {"user": "__system", "db": "local"}
SYSTEM_ROLES = [{"role": "__system", "db": "admin"}]


def _keyfile_error(message: str) -> StartupError:
    return StartupError(
        EXIT_FAILURE,
        20255,
        "Read security file failed",
        {"error": message, "detail": "Unable to acquire security key[s]"},
    )


def read_keyfile(path: str) -> str:
    """The key: the file's content without whitespace. Raises StartupError as mongod exits."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _keyfile_error(f"InvalidPath: Error reading file {path}: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _keyfile_error(f"InvalidPath: permissions on {path} are too open")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise _keyfile_error(f"InvalidPath: error opening file: {path}: {exc.strerror}") from exc
    key = re.sub(rb"[\x09-\x0d ]", b"", raw).decode("latin-1")
    if not BASE64_CHARS.match(key):
        bad = next(ch for ch in key if not BASE64_CHARS.match(ch))
        raise _keyfile_error(f"UnsupportedFormat: invalid char in key file {path}: {bad}")
    if not 6 <= len(key) <= 1024:
        raise _keyfile_error(
            f"BadValue: security key in {path} has length {len(key)}, must be between 6 and "
            "1024 chars"
        )
    return key


def auth_enabled(options: ServerOptions) -> bool:
    """mongod's rule: --auth, a keyFile or a clusterAuthMode turn access control on;
    ``authorization: disabled`` or transitionToAuth turn it off again."""
    if options.get("security.transitionToAuth") or (
        options.get("security.authorization") == "disabled"
    ):
        return False
    return bool(
        options.get("security.authorization") == "enabled"
        or options.get("security.keyFile")
        or options.get("security.clusterAuthMode")
    )


@dataclass
class Security:
    """What the server enforces; built once at start-up from the options."""

    auth_enabled: bool = False
    keyfile: str | None = None
    # __system@local's credentials, derived from the keyFile.
    system_credentials: dict = field(default_factory=dict)
    tls_mode: str = "disabled"
    tls_context: ssl.SSLContext | None = None
    cluster_auth_mode: str = "keyFile"
    # O/OU/DC of the server's own certificate: a peer certificate with the same ones is a
    # cluster member (x.509 membership authentication).
    member_attributes: tuple = ()
    # Bumped on every change to users or roles: sessions then re-resolve their privileges.
    generation: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def users_changed(self) -> None:
        with self._lock:
            self.generation += 1

    def is_cluster_member(self, ctx) -> bool:
        if self.cluster_auth_mode not in ("sendX509", "x509") or not self.member_attributes:
            return False
        return member_attributes(ctx.tls_peer_rdns) == self.member_attributes

    @classmethod
    def from_options(cls, options: ServerOptions, version: Version) -> Security:
        security = cls()
        keyfile = options.get("security.keyFile")
        security.auth_enabled = auth_enabled(options)
        if keyfile:
            security.keyfile = keyfile
            key = read_keyfile(keyfile)
            security.system_credentials = {
                mech: scram.make_credentials(mech, "__system", key) for mech in scram.MECHANISMS
            }
        security.tls_mode = options.get("net.tls.mode", "disabled")
        security.cluster_auth_mode = options.get("security.clusterAuthMode", "keyFile")
        if security.tls_mode != "disabled":
            security.tls_context = tls_context(options, version)
            security.member_attributes = member_attributes(
                certificate_rdns(options.get("net.tls.certificateKeyFile"))
            )
        return security


# RFC 2253 short names, as MongoDB prints certificate subjects.
SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "streetAddress": "STREET",
    "userId": "UID",
}


def rdns_from_peercert(cert: dict) -> list[tuple[str, str]]:
    """``getpeercert()``'s subject as (short name, value) pairs, most general first."""
    out = []
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            out.append((SHORT_NAMES.get(name, name), value))
    return out


def subject_text(rdns: list[tuple[str, str]]) -> str:
    """RFC 2253 text, most specific first: ``CN=client,OU=apps,O=WAP,C=US``."""

    def escape(value: str) -> str:
        out = re.sub(r'([,+"\\<>;])', r"\\\1", value)
        if out.startswith(("#", " ")):
            out = "\\" + out
        return out

    return ",".join(f"{name}={escape(value)}" for name, value in reversed(rdns))


def member_attributes(rdns) -> tuple:
    return tuple(sorted((n, v) for n, v in rdns or () if n in ("O", "OU", "DC")))


def certificate_rdns(path: str | None) -> list[tuple[str, str]]:
    """The subject of a PEM certificate file (the server's own), without a third-party library."""
    if not path:
        return []
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ssl.SSLError):
        return []
    return rdns_from_peercert(decoded)


def requires_chain_of_trust(version: Version) -> bool:
    """From 6.0.14, 7.0.6 and 8.0 (SERVER-72839), TLS without a CA file refuses to start."""
    minimum = {(6, 0): 14, (7, 0): 6}.get(version.series)
    return minimum is None or version.patch >= minimum


def _global_init_error(message: str) -> StartupError:
    return StartupError(2, 20574, "Error during global initialization", {"error": message})


def tls_context(options: ServerOptions, version: Version) -> ssl.SSLContext:
    """The server's TLS context from ``net.tls.*``; mongod's start-up errors when unusable."""
    cert = options.get("net.tls.certificateKeyFile")
    ca_file = options.get("net.tls.CAFile")
    if not cert:
        raise _global_init_error(
            "BadValue: need tlsCertificateKeyFile or certificateSelector when TLS is enabled"
        )
    if not ca_file and requires_chain_of_trust(version):
        raise _global_init_error(
            "BadValue: The use of TLS without specifying a chain of trust is no longer supported"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, password=options.get("net.tls.certificateKeyFilePassword"))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(
            EXIT_FAILURE,
            23248,
            "Cannot read certificate file",
            {"keyFile": cert, "error": str(exc)},
        ) from exc
    if options.get("net.tls.allowInvalidCertificates"):
        # Python's ssl cannot ask for a certificate and then ignore its validity: the double
        # does not ask at all (so no MONGODB-X509 with this option).
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(
                EXIT_FAILURE, 23251, "Cannot read certificate authority file",
                {"CAFile": ca_file, "error": str(exc)},
            ) from exc  # fmt: skip
        without_cert = options.get("net.tls.allowConnectionsWithoutCertificates")
        context.verify_mode = ssl.CERT_OPTIONAL if without_cert else ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE  # 6.0.0-6.0.13, 7.0.0-7.0.5: no CA, no client check
    return context
