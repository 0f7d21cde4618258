"""SCRAM-SHA-1 and SCRAM-SHA-256, server side (RFC 5802 / RFC 7677 as MongoDB uses them).

MongoDB's specifics (auth spec for drivers, "SCRAM-SHA-1" and "SCRAM-SHA-256" sections):
SCRAM-SHA-1 hashes ``md5("<user>:mongo:<password>")`` (hex) instead of the password itself;
SCRAM-SHA-256 hashes the SASLprep'ed password. Credentials are stored as
``{iterationCount, salt, storedKey, serverKey}`` (base64), never the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from pymongo.saslprep import saslprep

SHA1, SHA256 = "SCRAM-SHA-1", "SCRAM-SHA-256"
MECHANISMS = (SHA1, SHA256)
# MongoDB's defaults: scramIterationCount 10000, scramSHA256IterationCount 15000; salt sizes
# of 16 (SHA-1) and 28 (SHA-256) bytes.
ITERATIONS = {SHA1: 10000, SHA256: 15000}
SALT_BYTES = {SHA1: 16, SHA256: 28}
DIGEST = {SHA1: hashlib.sha1, SHA256: hashlib.sha256}
NONCE_BYTES = 24


class ScramError(Exception):
    """The conversation cannot go on (malformed message, wrong proof)."""


def password_digest(user: str, password: str) -> str:
    """MongoDB's legacy password digest, the SCRAM-SHA-1 "password"."""
    return hashlib.md5(f"{user}:mongo:{password}".encode()).hexdigest()


def _hashed_secret(mechanism: str, user: str, password: str) -> bytes:
    if mechanism == SHA1:
        return password_digest(user, password).encode()
    return saslprep(password).encode()


def make_credentials(mechanism: str, user: str, password: str) -> dict:
    """Stored credentials for one mechanism, as in ``admin.system.users``."""
    salt = os.urandom(SALT_BYTES[mechanism])
    iterations = ITERATIONS[mechanism]
    digest = DIGEST[mechanism]
    salted = hashlib.pbkdf2_hmac(
        digest().name, _hashed_secret(mechanism, user, password), salt, iterations
    )
    client_key = hmac.digest(salted, b"Client Key", digest)
    server_key = hmac.digest(salted, b"Server Key", digest)
    return {
        "iterationCount": iterations,
        "salt": base64.b64encode(salt).decode(),
        "storedKey": base64.b64encode(digest(client_key).digest()).decode(),
        "serverKey": base64.b64encode(server_key).decode(),
    }


def _parse(message: bytes) -> dict[str, str]:
    fields = {}
    for part in message.decode("utf-8").split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError(f"Invalid SCRAM message: {message!r}")
        fields.setdefault(key, value)
    return fields


def decode_username(raw: str) -> str:
    """``=2C`` / ``=3D`` escapes of a SCRAM ``n=`` attribute."""
    return raw.replace("=2C", ",").replace("=3D", "=")


@dataclass
class ClientFirst:
    user: str
    nonce: str
    bare: bytes


def parse_client_first(payload: bytes) -> ClientFirst:
    """``n,,n=user,r=nonce`` (no channel binding, no authzid, as MongoDB requires)."""
    if not payload.startswith((b"n,", b"y,")):
        raise ScramError("Incorrect SCRAM client|server first message: gs2 header")
    _gs2, _, rest = payload.partition(b",")
    authzid, _, bare = rest.partition(b",")
    if authzid:
        raise ScramError("SCRAM authzid is not supported")
    fields = _parse(bare)
    if "n" not in fields or "r" not in fields:
        raise ScramError("Invalid SCRAM client first message")
    return ClientFirst(decode_username(fields["n"]), fields["r"], bare)


class ServerConversation:
    """One SCRAM conversation: client-first -> server-first -> client-final -> server-final."""

    def __init__(self, mechanism: str, first: ClientFirst, credentials: dict | None) -> None:
        self.mechanism = mechanism
        self.first = first
        # An unknown user still gets a (random) server-first message; the proof then fails, so
        # the reply does not tell whether the user exists.
        decoy = os.urandom(8).hex()
        self.credentials = credentials or make_credentials(mechanism, first.user, decoy)
        self.known = credentials is not None
        self.nonce = first.nonce + base64.b64encode(os.urandom(NONCE_BYTES)).decode()
        self.server_first = (
            f"r={self.nonce},s={self.credentials['salt']},i={self.credentials['iterationCount']}"
        ).encode()

    def verify_final(self, payload: bytes) -> bytes:
        """Check the client proof; return the server-final message ``v=...``."""
        without_proof, sep, proof_part = payload.rpartition(b",p=")
        if not sep:
            raise ScramError("Incorrect number of arguments for SCRAM client final message")
        fields = _parse(without_proof)
        if fields.get("r") != self.nonce:
            raise ScramError("Unshared nonce")
        if fields.get("c") not in ("biws", "eSws"):  # base64 of "n,," / "y,,"
            raise ScramError("Incorrect channel binding")
        digest = DIGEST[self.mechanism]
        auth_message = b",".join((self.first.bare, self.server_first, without_proof))
        stored_key = base64.b64decode(self.credentials["storedKey"])
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError as exc:
            raise ScramError("Invalid client proof encoding") from exc
        signature = hmac.digest(stored_key, auth_message, digest)
        if len(proof) != len(signature):
            raise ScramError("Invalid client proof length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not self.known or not hmac.compare_digest(digest(client_key).digest(), stored_key):
            raise ScramError("SCRAM authentication failed, storedKey mismatch")
        server_key = base64.b64decode(self.credentials["serverKey"])
        return b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, digest))
