"""Authentication and user management: saslStart/saslContinue (SCRAM-SHA-1, SCRAM-SHA-256),
speculative authentication and saslSupportedMechs in hello, MONGODB-X509, logout, and the user
and role commands (createUser, updateUser, dropUser, dropAllUsersFromDatabase, usersInfo,
grantRolesToUser, revokeRolesFromUser, createRole, updateRole, dropRole, rolesInfo).

Users live in ``admin.system.users`` and roles in ``admin.system.roles`` in MongoDB's document
shapes, written through ``Storage`` like any collection (journaled, in the oplog, replicated).
Privilege checks are not here: the dispatcher asks ``authz.check`` before any command runs.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

from bson.binary import Binary, UuidRepresentation

from mongod_double import authz, scram
from mongod_double.commands import Invocation, command
from mongod_double.errors import BAD_VALUE, TYPE_MISMATCH, CommandError
from mongod_double.logs import log
from mongod_double.security import SYSTEM_ROLES

AUTHENTICATION_FAILED = 18
USER_NOT_FOUND = 11
ROLE_NOT_FOUND = 31
PROTOCOL_ERROR = 17
MECHANISM_UNAVAILABLE = 334
USER_EXISTS = 51003
ROLE_EXISTS = 51002
X509 = "MONGODB-X509"
USERS_NS, ROLES_NS = authz.USERS_NS, authz.ROLES_NS


# -- authentication ---------------------------------------------------------------------------


@dataclass
class Conversation:
    id: int
    db: str
    mechanism: str
    scram: scram.ServerConversation
    skip_empty: bool
    speculative: bool = False
    step: int = 1


def _auth_failed(inv: Invocation, user: str, db: str, mechanism: str, why: str) -> CommandError:
    log.info(
        "ACCESS",
        20249,
        "Authentication failed",
        {
            "mechanism": mechanism,
            "user": user,
            "db": db,
            "client": inv.ctx.peer_text,
            "result": f"AuthenticationFailed: {why}",
        },
        ctx=inv.ctx.thread_name,
    )
    return CommandError(AUTHENTICATION_FAILED, "Authentication failed.")


def user_document(server, user: str, db: str) -> dict | None:
    storage = server.storage
    with storage.lock:
        if not storage.exists(USERS_NS):
            return None
        return storage.collection(USERS_NS).find_one({"_id": f"{db}.{user}"})


def credentials_for(server, user: str, db: str, mechanism: str) -> dict | None:
    security = server.security
    if (user, db) == ("__system", "local"):
        return security.system_credentials.get(mechanism)
    doc = user_document(server, user, db)
    if doc is None:
        return None
    return (doc.get("credentials") or {}).get(mechanism)


def _payload(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):  # some clients send base64 text
        return base64.b64decode(value)
    raise CommandError(TYPE_MISMATCH, "SASL payload must be BinData or a base64 string")


def _login(inv: Invocation, user: str, db: str, mechanism: str, speculative: bool = False) -> None:
    ctx = inv.ctx
    if (user, db) == ("__system", "local"):
        roles = list(SYSTEM_ROLES)
        ctx.is_internal_client = True
    else:
        doc = user_document(inv.server, user, db) or {}
        roles = [{"role": r["role"], "db": r["db"]} for r in doc.get("roles", [])]
    ctx.authenticated_users = [{"user": user, "db": db}]
    ctx.authenticated_roles = roles
    ctx.privileges_cache = None
    log.info(
        "ACCESS",
        20250,
        "Authentication succeeded",
        {
            "mechanism": mechanism,
            "speculative": speculative,
            "principalName": user,
            "authenticationDatabase": db,
            "remote": inv.ctx.peer_text,
        },
        ctx=ctx.thread_name,
    )


def sasl_start(inv: Invocation, body: dict, db: str, speculative: bool = False) -> dict:
    """The saslStart reply (without ``ok``); also used for speculative authentication."""
    mechanism = body.get("mechanism")
    enabled = inv.server.parameters.get("authenticationMechanisms")
    if mechanism not in scram.MECHANISMS or mechanism not in enabled:
        raise CommandError(
            MECHANISM_UNAVAILABLE,
            f"Received authentication for mechanism {mechanism} which is not enabled",
        )
    try:
        first = scram.parse_client_first(_payload(body.get("payload", b"")))
    except scram.ScramError as exc:
        raise CommandError(BAD_VALUE, str(exc)) from exc
    credentials = credentials_for(inv.server, first.user, db, mechanism)
    conversation = Conversation(
        id=1,
        db=db,
        mechanism=mechanism,
        scram=scram.ServerConversation(mechanism, first, credentials),
        skip_empty=bool((body.get("options") or {}).get("skipEmptyExchange")),
        speculative=speculative,
    )
    inv.ctx.sasl = conversation
    return {
        "conversationId": conversation.id,
        "done": False,
        "payload": Binary(conversation.scram.server_first),
    }


@command("saslStart")
def sasl_start_command(inv: Invocation) -> dict:
    return sasl_start(inv, inv.body, inv.db)


@command("saslContinue")
def sasl_continue(inv: Invocation) -> dict:
    conversation = inv.ctx.sasl
    if not isinstance(conversation, Conversation) or inv.body.get("conversationId") != (
        conversation.id
    ):
        raise CommandError(PROTOCOL_ERROR, "No SASL session state found")  # mongod: ProtocolError
    if conversation.db != inv.db:
        raise CommandError(PROTOCOL_ERROR, "Attempt to switch database target during SASL")
    user = conversation.scram.first.user
    payload = _payload(inv.body.get("payload", b""))
    if conversation.step == 1:
        try:
            final = conversation.scram.verify_final(payload)
        except scram.ScramError as exc:
            inv.ctx.sasl = None
            raise _auth_failed(inv, user, inv.db, conversation.mechanism, str(exc)) from exc
        if conversation.skip_empty:
            inv.ctx.sasl = None
            _login(inv, user, inv.db, conversation.mechanism, conversation.speculative)
            return {"conversationId": conversation.id, "done": True, "payload": Binary(final)}
        conversation.step = 2
        return {"conversationId": conversation.id, "done": False, "payload": Binary(final)}
    inv.ctx.sasl = None
    _login(inv, user, inv.db, conversation.mechanism, conversation.speculative)
    return {"conversationId": conversation.id, "done": True, "payload": Binary(b"")}


def _x509_subject(inv: Invocation) -> str:
    subject = inv.ctx.tls_peer_subject
    if not subject:
        raise CommandError(
            AUTHENTICATION_FAILED,
            "No verified subject name available from client",
        )
    return subject


def x509_authenticate(inv: Invocation, body: dict, db: str) -> dict:
    """MONGODB-X509: the client certificate's subject is the user in ``$external``; a member
    certificate (same O/OU/DC as the server's, clusterAuthMode x509) is ``__system``."""
    if db != "$external":
        raise CommandError(
            AUTHENTICATION_FAILED,
            "X.509 authentication must always use the $external database.",
        )
    subject = _x509_subject(inv)
    claimed = body.get("user")
    if claimed and claimed != subject:
        raise _auth_failed(inv, claimed, db, X509, "There is no x.509 client certificate "
                           "matching the user.")  # fmt: skip
    if inv.server.security.is_cluster_member(inv.ctx):
        inv.ctx.authenticated_users = [{"user": subject, "db": db}]
        inv.ctx.authenticated_roles = list(SYSTEM_ROLES)
        inv.ctx.privileges_cache = None
        inv.ctx.is_internal_client = True
        return {"dbname": db, "user": subject}
    if user_document(inv.server, subject, db) is None:
        raise _auth_failed(inv, subject, db, X509, "UserNotFound: Could not find user")
    _login(inv, subject, db, X509)
    return {"dbname": db, "user": subject}


@command("authenticate")
def authenticate(inv: Invocation) -> dict:
    mechanism = inv.body.get("mechanism")
    if mechanism != X509:
        raise CommandError(
            MECHANISM_UNAVAILABLE,
            f"Unsupported mechanism '{mechanism}' on authentication database '{inv.db}'",
        )
    if X509 not in inv.server.parameters.get("authenticationMechanisms"):
        raise CommandError(
            MECHANISM_UNAVAILABLE, f"Received authentication for mechanism {X509} which is not "
            "enabled",
        )  # fmt: skip
    return x509_authenticate(inv, inv.body, inv.db)


def hello_fields(inv: Invocation) -> dict:
    """``saslSupportedMechs`` and ``speculativeAuthenticate`` for a hello reply."""
    out: dict = {}
    name = inv.body.get("saslSupportedMechs")
    if isinstance(name, str) and "." in name:
        db, user = name.split(".", 1)
        enabled = inv.server.parameters.get("authenticationMechanisms")
        if (user, db) == ("__system", "local"):
            mechs = list(inv.server.security.system_credentials)
        else:
            doc = user_document(inv.server, user, db)
            mechs = list((doc or {}).get("credentials") or {}) if doc else None
        if mechs is not None:
            out["saslSupportedMechs"] = [m for m in mechs if m in enabled]
    speculative = inv.body.get("speculativeAuthenticate")
    if isinstance(speculative, dict):
        db = speculative.get("db", "admin")
        try:
            if "saslStart" in speculative:
                out["speculativeAuthenticate"] = sasl_start(inv, speculative, db, True)
            elif speculative.get("mechanism") == X509:
                out["speculativeAuthenticate"] = x509_authenticate(inv, speculative, db)
        except CommandError:
            # A failed speculative attempt is left out of the reply; the driver then
            # authenticates the long way and gets the error there.
            inv.ctx.sasl = None
    return out


@command("logout")
def logout(inv: Invocation) -> dict:
    ctx = inv.ctx
    ctx.authenticated_users = [u for u in ctx.authenticated_users if u["db"] != inv.db]
    if not ctx.authenticated_users:
        ctx.authenticated_roles = []
    ctx.privileges_cache = None
    return {}


# -- users ------------------------------------------------------------------------------------


def _user_name(inv: Invocation) -> str:
    name = inv.arg
    if not isinstance(name, str):
        raise CommandError(TYPE_MISMATCH, f"BSON field '{inv.name}.{inv.name}' is the wrong type")
    if not name:
        raise CommandError(BAD_VALUE, "User name must be non-empty")
    return name


def _roles(inv: Invocation, value: object, field: str = "roles") -> list[dict]:
    if not isinstance(value, list):
        raise CommandError(TYPE_MISMATCH, f"BSON field '{inv.name}.{field}' is the wrong type")
    resolver = authz.role_resolver(inv.server)
    out: list[dict] = []
    for item in value:
        if isinstance(item, str):
            role = {"role": item, "db": inv.db}
        elif isinstance(item, dict) and isinstance(item.get("role"), str):
            role = {"role": item["role"], "db": item.get("db", inv.db)}
        else:
            raise CommandError(BAD_VALUE, "Role names must be either strings or objects")
        if not resolver.exists(role["role"], role["db"]):
            raise CommandError(ROLE_NOT_FOUND, f"Could not find role: {role['role']}@{role['db']}")
        if role not in out:
            out.append(role)
    return out


def _mechanisms(inv: Invocation) -> list[str]:
    mechanisms = inv.body.get("mechanisms", list(scram.MECHANISMS))
    if not isinstance(mechanisms, list) or not mechanisms:
        raise CommandError(BAD_VALUE, "mechanisms field must not be empty")
    for mech in mechanisms:
        if mech not in scram.MECHANISMS:
            raise CommandError(BAD_VALUE, f"Unknown auth mechanism '{mech}'")
    return mechanisms


def _credentials(inv: Invocation, user: str, mechanisms: list[str]) -> dict:
    pwd = inv.body.get("pwd")
    if not isinstance(pwd, str):
        raise CommandError(TYPE_MISMATCH, f"BSON field '{inv.name}.pwd' is the wrong type")
    if not pwd:
        raise CommandError(BAD_VALUE, "Password cannot be empty")
    if inv.body.get("digestPassword") is False:
        raise CommandError(BAD_VALUE, "Use of SCRAM-SHA-256 requires undigested passwords")
    return {mech: scram.make_credentials(mech, user, pwd) for mech in mechanisms}


def _require_user(inv: Invocation, user: str, db: str) -> dict:
    doc = user_document(inv.server, user, db)
    if doc is None:
        raise CommandError(USER_NOT_FOUND, f"User '{user}@{db}' not found")
    return doc


def _save_user(inv: Invocation, doc: dict) -> None:
    storage = inv.server.storage
    with storage.lock:
        if storage.exists(USERS_NS) and storage.collection(USERS_NS).find_one({"_id": doc["_id"]}):
            storage.replace(USERS_NS, doc["_id"], doc)
        else:
            storage.insert(USERS_NS, doc)
    inv.server.security.users_changed()


def _public(doc: dict, show_credentials: bool) -> dict:
    out = {k: doc[k] for k in ("_id", "userId", "user", "db") if k in doc}
    if show_credentials:
        out["credentials"] = doc.get("credentials", {})
    if "customData" in doc:
        out["customData"] = doc["customData"]
    out["roles"] = doc.get("roles", [])
    out["mechanisms"] = list(doc.get("credentials") or {})
    return out


@command("createUser", write=True)
def create_user(inv: Invocation) -> dict:
    user = _user_name(inv)
    if inv.db == "local":
        raise CommandError(BAD_VALUE, "Cannot create users in the local database")
    if "roles" not in inv.body:
        raise CommandError(40414, "BSON field 'createUser.roles' is missing but a required field")
    roles = _roles(inv, inv.body["roles"])
    doc: dict = {
        "_id": f"{inv.db}.{user}",
        "userId": Binary.from_uuid(uuid.uuid4(), UuidRepresentation.STANDARD),
        "user": user,
        "db": inv.db,
    }
    if inv.db == "$external":
        doc["credentials"] = {"external": True}
    else:
        doc["credentials"] = _credentials(inv, user, _mechanisms(inv))
    if "customData" in inv.body:
        doc["customData"] = inv.body["customData"]
    doc["roles"] = roles
    if user_document(inv.server, user, inv.db) is not None:
        raise CommandError(USER_EXISTS, f'User "{user}@{inv.db}" already exists')
    _save_user(inv, doc)
    return {}


@command("updateUser", write=True)
def update_user(inv: Invocation) -> dict:
    user = _user_name(inv)
    fields = [f for f in ("pwd", "customData", "roles", "mechanisms") if f in inv.body]
    if not fields:
        raise CommandError(BAD_VALUE, "Must specify at least one field to update in updateUser")
    doc = dict(_require_user(inv, user, inv.db))
    if "roles" in inv.body:
        doc["roles"] = _roles(inv, inv.body["roles"])
    if "customData" in inv.body:
        doc["customData"] = inv.body["customData"]
    if "pwd" in inv.body:
        doc["credentials"] = _credentials(inv, user, _mechanisms(inv))
    elif "mechanisms" in inv.body:
        keep = _mechanisms(inv)
        doc["credentials"] = {k: v for k, v in doc["credentials"].items() if k in keep}
    _save_user(inv, doc)
    return {}


def _delete_users(inv: Invocation, query: dict) -> int:
    storage = inv.server.storage
    with storage.lock:
        if not storage.exists(USERS_NS):
            return 0
        ids = [d["_id"] for d in storage.collection(USERS_NS).find(query, {"_id": 1})]
        for _id in ids:
            storage.delete(USERS_NS, _id)
    inv.server.security.users_changed()
    return len(ids)


@command("dropUser", write=True)
def drop_user(inv: Invocation) -> dict:
    user = _user_name(inv)
    _require_user(inv, user, inv.db)
    _delete_users(inv, {"_id": f"{inv.db}.{user}"})
    return {}


@command("dropAllUsersFromDatabase", write=True)
def drop_all_users(inv: Invocation) -> dict:
    return {"n": _delete_users(inv, {"db": inv.db})}


def _change_roles(inv: Invocation, grant: bool) -> dict:
    user = _user_name(inv)
    if "roles" not in inv.body:
        raise CommandError(40414, f"BSON field '{inv.name}.roles' is missing but a required field")
    doc = dict(_require_user(inv, user, inv.db))
    changes = _roles(inv, inv.body["roles"])
    roles = [r for r in doc.get("roles", []) if grant or r not in changes]
    if grant:
        roles += [r for r in changes if r not in roles]
    doc["roles"] = roles
    _save_user(inv, doc)
    return {}


@command("grantRolesToUser", write=True)
def grant_roles_to_user(inv: Invocation) -> dict:
    return _change_roles(inv, grant=True)


@command("revokeRolesFromUser", write=True)
def revoke_roles_from_user(inv: Invocation) -> dict:
    return _change_roles(inv, grant=False)


def _user_query(inv: Invocation) -> dict:
    arg = inv.arg
    if arg == 1 or (isinstance(arg, float) and arg == 1.0):
        return {"db": inv.db}
    if isinstance(arg, dict) and arg.get("forAllDBs"):
        return {}
    items = arg if isinstance(arg, list) else [arg]
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(f"{inv.db}.{item}")
        elif isinstance(item, dict) and isinstance(item.get("user"), str):
            ids.append(f"{item.get('db', inv.db)}.{item['user']}")
        else:
            raise CommandError(BAD_VALUE, "User name must be a string or {user, db} document")
    return {"_id": {"$in": ids}}


@command("usersInfo")
def users_info(inv: Invocation) -> dict:
    """Users without credentials unless ``showCredentials: true``."""
    query = _user_query(inv)
    extra = inv.body.get("filter")
    if isinstance(extra, dict) and extra:
        query = {"$and": [query, extra]}
    storage = inv.server.storage
    with storage.lock:
        docs = list(storage.collection(USERS_NS).find(query)) if storage.exists(USERS_NS) else []
    docs.sort(key=lambda d: (d["db"], d["user"]))
    users = [_public(d, bool(inv.body.get("showCredentials"))) for d in docs]
    if inv.body.get("showPrivileges"):
        resolver = authz.role_resolver(inv.server)
        for user in users:
            user["inheritedRoles"] = resolver.inherited_roles(user["roles"])
            user["inheritedPrivileges"] = privilege_documents(resolver.privileges(user["roles"]))
    return {"users": users}


# -- roles ------------------------------------------------------------------------------------


def privilege_documents(privileges: authz.Privileges) -> list[dict]:
    merged: dict[tuple, list[str]] = {}
    for pattern, actions in privileges:
        bucket = merged.setdefault(pattern, [])
        bucket.extend(a for a in actions if a not in bucket)
    return [
        {"resource": authz.pattern_document(p), "actions": sorted(a)} for p, a in merged.items()
    ]


def _builtin_role_doc(role: str, db: str, show_privileges: bool) -> dict:
    doc: dict = {
        "_id": f"{db}.{role}",
        "role": role,
        "db": db,
        "isBuiltin": True,
        "roles": authz.builtin_subroles(role, db),
    }
    doc["inheritedRoles"] = authz.RoleResolver([]).inherited_roles(doc["roles"])
    if show_privileges:
        own = [
            (tuple(db if part is None else part for part in p), a)
            for p, a in authz.BUILTIN_ROLES[role]["privileges"]
        ]
        doc["privileges"] = privilege_documents(own)
        doc["inheritedPrivileges"] = privilege_documents(authz.builtin_privileges(role, db))
    return doc


def _custom_role_doc(doc: dict, resolver: authz.RoleResolver, show_privileges: bool) -> dict:
    out = {
        "_id": doc["_id"],
        "role": doc["role"],
        "db": doc["db"],
        "isBuiltin": False,
        "roles": doc.get("roles", []),
        "inheritedRoles": resolver.inherited_roles(doc.get("roles", [])),
    }
    if show_privileges:
        out["privileges"] = doc.get("privileges", [])
        out["inheritedPrivileges"] = privilege_documents(
            resolver.privileges([{"role": doc["role"], "db": doc["db"]}])
        )
    return out


@command("rolesInfo")
def roles_info(inv: Invocation) -> dict:
    arg = inv.arg
    show_privileges = bool(inv.body.get("showPrivileges"))
    resolver = authz.role_resolver(inv.server)
    wanted: list[tuple[str, str]] = []
    if arg == 1 or (isinstance(arg, float) and arg == 1.0):
        wanted = sorted(k for k in resolver.custom if k[1] == inv.db)
        if inv.body.get("showBuiltinRoles"):
            wanted = (
                sorted((r, inv.db) for r in authz.BUILTIN_ROLES if authz.is_builtin(r, inv.db))
                + wanted
            )
    else:
        for item in arg if isinstance(arg, list) else [arg]:
            if isinstance(item, str):
                wanted.append((item, inv.db))
            elif isinstance(item, dict) and isinstance(item.get("role"), str):
                wanted.append((item["role"], item.get("db", inv.db)))
            else:
                raise CommandError(BAD_VALUE, "Role names must be either strings or objects")
    roles = []
    for role, db in wanted:
        if authz.is_builtin(role, db):
            roles.append(_builtin_role_doc(role, db, show_privileges))
        elif (role, db) in resolver.custom:
            roles.append(_custom_role_doc(resolver.custom[(role, db)], resolver, show_privileges))
    return {"roles": roles}


@command("createRole", write=True)
def create_role(inv: Invocation) -> dict:
    role = inv.arg
    if not isinstance(role, str) or not role:
        raise CommandError(BAD_VALUE, "Role name must be non-empty")
    if role in authz.BUILTIN_ROLES:
        raise CommandError(BAD_VALUE, f"Cannot create roles with the same name as a built-in "
                           f"role: {role}@{inv.db}")  # fmt: skip
    privileges = inv.body.get("privileges")
    if "roles" not in inv.body or privileges is None:
        missing = "privileges" if privileges is None else "roles"
        raise CommandError(40414, f"BSON field 'createRole.{missing}' is missing but a required "
                           "field")  # fmt: skip
    for privilege in privileges:
        if not isinstance(privilege, dict) or not isinstance(privilege.get("resource"), dict):
            raise CommandError(BAD_VALUE, "Privileges must have a resource and actions")
    roles = _roles(inv, inv.body["roles"])
    resolver = authz.role_resolver(inv.server)
    if (role, inv.db) in resolver.custom:
        raise CommandError(ROLE_EXISTS, f'Role "{role}@{inv.db}" already exists')
    doc = {
        "_id": f"{inv.db}.{role}",
        "role": role,
        "db": inv.db,
        "privileges": privileges,
        "roles": roles,
    }
    storage = inv.server.storage
    with storage.lock:
        storage.insert(ROLES_NS, doc)
    inv.server.security.users_changed()
    return {}


@command("updateRole", write=True)
def update_role(inv: Invocation) -> dict:
    """A custom role's privileges and inherited roles replaced (each given field replaces the
    role's own), as https://www.mongodb.com/docs/manual/reference/command/updateRole/ says."""
    role = inv.arg
    if not isinstance(role, str) or not role:
        raise CommandError(BAD_VALUE, "Role name must be non-empty")
    if "privileges" not in inv.body and "roles" not in inv.body:
        raise CommandError(BAD_VALUE, "Must specify at least one field to update in updateRole")
    privileges = inv.body.get("privileges")
    for privilege in privileges or []:
        if not isinstance(privilege, dict) or not isinstance(privilege.get("resource"), dict):
            raise CommandError(BAD_VALUE, "Privileges must have a resource and actions")
    resolver = authz.role_resolver(inv.server)
    if (role, inv.db) not in resolver.custom:
        raise CommandError(ROLE_NOT_FOUND, f"Role '{role}@{inv.db}' not found")
    storage = inv.server.storage
    with storage.lock:
        doc = dict(storage.collection(ROLES_NS).find_one({"_id": f"{inv.db}.{role}"}))
        if privileges is not None:
            doc["privileges"] = privileges
        if "roles" in inv.body:
            doc["roles"] = _roles(inv, inv.body["roles"])
        storage.replace(ROLES_NS, doc["_id"], doc)
    inv.server.security.users_changed()
    return {}


@command("dropRole", write=True)
def drop_role(inv: Invocation) -> dict:
    role = inv.arg
    resolver = authz.role_resolver(inv.server)
    if (role, inv.db) not in resolver.custom:
        raise CommandError(ROLE_NOT_FOUND, f"Role '{role}@{inv.db}' not found")
    storage = inv.server.storage
    with storage.lock:
        storage.delete(ROLES_NS, f"{inv.db}.{role}")
    inv.server.security.users_changed()
    return {}
