"""Credentials (AWS keys, SSH private keys, MongoDB passwords), encrypted at rest with Fernet.

The key comes from configuration (WAP_CREDENTIAL_KEY, or the one kept in the data dir). Secret
fields are decrypted only by `reveal`, which only the job worker calls; nothing returns them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from pymongo.errors import DuplicateKeyError

from webui.config import Settings
from webui.services import audit, endpoints, projects
from webui.services.audit import Actor
from webui.services.errors import Conflict, Invalid, NotFound
from webui.store import Store, now

# kind -> (public fields, secret fields): public fields are shown, secret ones never leave the store
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aws": ((), ("access_key_id", "secret_access_key")),
    "ssh_key": (("username",), ("private_key",)),
    "mongodb": (("username",), ("password",)),
}
# kind -> optional fields: public ones given or not; `passphrase` is secret
OPTIONAL: dict[str, tuple[str, ...]] = {"aws": ("endpoint_url",), "ssh_key": ("passphrase",)}
SECRET_OPTIONAL = ("passphrase",)
PUBLIC_FIELDS = ("_id", "project_id", "name", "kind", "public", "created_at")


class CredentialKeyError(RuntimeError):
    """The configured credential key is unusable, or not the one the secrets were sealed with."""


def fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:
        raise CredentialKeyError(
            "WAP_CREDENTIAL_KEY is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None


def validate(
    settings: Settings, kind: str, name: str, fields: dict[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    errors: dict[str, list[str]] = {}
    if kind not in KINDS:
        errors["kind"] = [f"one of {', '.join(KINDS)}"]
    if not projects.NAME_RE.match(name or ""):
        errors["name"] = ["1 to 63 letters, digits, '.', '-' or '_'"]
    public_names, secret_names = KINDS.get(kind, ((), ()))
    for field in (*public_names, *secret_names):
        value = fields.get(field)
        if not isinstance(value, str) or not value.strip() or len(value) > 16384:
            errors[field] = ["required, at most 16384 characters"]
    optional = {
        f: str(fields[f]).strip()
        for f in OPTIONAL.get(kind, ())
        if isinstance(fields.get(f), str) and fields[f].strip()
    }
    endpoint = optional.get("endpoint_url")
    if endpoint is not None:
        why = endpoints.endpoint_error(settings, endpoint)
        if why:
            errors["endpoint_url"] = [why]
    public = {f: str(fields[f]).strip() for f in public_names}
    secret = {f: str(fields[f]).strip() for f in secret_names}
    if kind == "ssh_key" and "private_key" not in errors:
        # browsers send a textarea's lines with CRLF; ssh-add wants LF
        secret["private_key"] = secret["private_key"].replace("\r\n", "\n") + "\n"
        try:
            public["public_key"] = public_key(secret["private_key"], optional.get("passphrase"))
        except ValueError as exc:
            errors["private_key"] = [str(exc)]
    if errors:
        raise Invalid("the credential cannot be stored as given", errors)
    for name, value in optional.items():
        (secret if name in SECRET_OPTIONAL else public)[name] = value
    return public, secret


def public_key(private_key: str, passphrase: str | None = None) -> str:
    """The OpenSSH public key of a PEM or OpenSSH private key (which a cloud key pair needs);
    ValueError says what is wrong with the key, never what it holds."""
    data, password = private_key.encode(), passphrase.encode() if passphrase else None
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password)
        else:
            key = serialization.load_pem_private_key(data, password)
    except TypeError:  # encrypted without a passphrase, or a passphrase for a plain key
        if password is None:
            raise ValueError("the key is encrypted: give its passphrase") from None
        raise ValueError("the key is not encrypted: leave the passphrase empty") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            "not a private key this platform can read (PEM or OpenSSH; RSA, ECDSA or Ed25519),"
            " or a wrong passphrase"
        ) from None
    try:
        line = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    except (ValueError, TypeError):
        raise ValueError("a key type OpenSSH does not take (use RSA, ECDSA or Ed25519)") from None
    return line.decode()


def create(
    store: Store,
    settings: Settings,
    actor: Actor,
    project_id: str,
    kind: str,
    name: str,
    fields: dict[str, Any],
) -> dict[str, Any]:
    project = projects.require(store, actor, project_id, "owner")
    public, secret = validate(settings, kind, name, fields)
    record = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        "name": name,
        "kind": kind,
        "public": public,
        "sealed": fernet(settings.credential_key).encrypt(json.dumps(secret).encode()).decode(),
        "created_at": now(),
    }
    try:
        store.credentials.insert_one(record)
    except DuplicateKeyError:
        raise Conflict(f"a credential named {name!r} exists", {"name": ["already taken"]}) from None
    audit.record(
        store, actor, "credential.create", f"{project['name']}/{name}", detail={"kind": kind}
    )
    return {k: record[k] for k in PUBLIC_FIELDS}


def list_public(store: Store, project_id: str) -> list[dict[str, Any]]:
    return list(
        store.credentials.find({"project_id": project_id}, dict.fromkeys(PUBLIC_FIELDS, 1)).sort(
            "name", 1
        )
    )


def delete(store: Store, actor: Actor, project_id: str, credential_id: str) -> None:
    project = projects.require(store, actor, project_id, "owner")
    record = store.credentials.find_one_and_delete({"_id": credential_id, "project_id": project_id})
    if not record:
        raise NotFound("no such credential")
    audit.record(store, actor, "credential.delete", f"{project['name']}/{record['name']}")


def reveal(store: Store, key: str, credential_id: str) -> dict[str, Any]:
    """Kind, public and secret fields of one credential: for the job worker only."""
    record = store.credentials.find_one({"_id": credential_id})
    if not record:
        raise NotFound(f"credential {credential_id} no longer exists")
    try:
        secret = json.loads(fernet(key).decrypt(record["sealed"].encode()))
    except InvalidToken:
        raise CredentialKeyError(
            f"credential {record['name']!r} was sealed with another key than WAP_CREDENTIAL_KEY"
        ) from None
    return {"kind": record["kind"], "name": record["name"], **record["public"], **secret}
