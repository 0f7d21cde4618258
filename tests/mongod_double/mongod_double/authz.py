"""Authorization: built-in roles, privileges, and what each command requires.

The single place privileges are decided. ``check(inv)`` is called by the dispatcher for every
command when access control is on (``--auth``, ``security.authorization: enabled`` or a
keyFile); commands never check privileges themselves.

Roles and their privileges follow MongoDB's built-in roles ("Built-In Roles" in the manual,
``src/mongo/db/auth/builtin_roles.yml``); resources match as MongoDB's ResourcePattern does:
``anyResource``, the cluster, any normal resource (not ``local``/``config``, not ``system.*``),
a database, a collection name in any database, an exact namespace.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bson.binary import Binary
from bson.objectid import ObjectId

from mongod_double.errors import CommandError

if TYPE_CHECKING:
    from mongod_double.commands import Invocation
    from mongod_double.context import ConnectionContext

UNAUTHORIZED = 13
USERS_NS = "admin.system.users"
ROLES_NS = "admin.system.roles"

# -- built-in roles ---------------------------------------------------------------------------

READ = [
    "changeStream",
    "collStats",
    "dbHash",
    "dbStats",
    "find",
    "killCursors",
    "listCollections",
    "listIndexes",
    "listSearchIndexes",
    "planCacheRead",
]
READ_WRITE = [
    *READ,
    "convertToCapped",
    "createCollection",
    "createIndex",
    "createSearchIndexes",
    "dropCollection",
    "dropIndex",
    "dropSearchIndex",
    "insert",
    "remove",
    "renameCollectionSameDB",
    "update",
    "updateSearchIndex",
]
USER_ADMIN = [
    "changeCustomData",
    "changePassword",
    "createUser",
    "createRole",
    "dropUser",
    "dropRole",
    "grantRole",
    "revokeRole",
    "setAuthenticationRestriction",
    "viewUser",
    "viewRole",
]
DB_ADMIN = [
    "analyze",
    "bypassDocumentValidation",
    "collMod",
    "collStats",
    "compact",
    "convertToCapped",
    "createCollection",
    "dbStats",
    "dropCollection",
    "dropDatabase",
    "dropIndex",
    "dropSearchIndex",
    "createIndex",
    "createSearchIndexes",
    "enableProfiler",
    "listCollections",
    "listIndexes",
    "listSearchIndexes",
    "updateSearchIndex",
    "planCacheIndexFilter",
    "planCacheRead",
    "planCacheWrite",
    "reIndex",
    "renameCollectionSameDB",
    "storageDetails",
    "validate",
]
CLUSTER_MONITOR = [
    "connPoolStats",
    "getCmdLineOpts",
    "getDefaultRWConcern",
    "getLog",
    "getParameter",
    "getShardMap",
    "hostInfo",
    "listDatabases",
    "listSessions",
    "listShards",
    "netstat",
    "replSetGetConfig",
    "replSetGetStatus",
    "serverStatus",
    "top",
    "useUUID",
    "inprog",
    "shardingState",
]
CLUSTER_MONITOR_DB = ["collStats", "dbStats", "getDatabaseVersion", "getShardVersion", "indexStats"]
HOST_MANAGER = [
    "applicationMessage",
    "connPoolSync",
    "dropConnections",
    "logRotate",
    "setParameter",
    "shutdown",
    "touch",
    "unlock",
    "flushRouterConfig",
    "fsync",
    "invalidateUserCache",
    "killAnyCursor",
    "killAnySession",
    "killop",
    "replSetResizeOplog",
    "resync",
    "rotateCertificates",
]
CLUSTER_MANAGER = [
    "appendOplogNote",
    "applicationMessage",
    "replSetConfigure",
    "replSetGetConfig",
    "replSetGetStatus",
    "replSetStateChange",
    "resync",
    "addShard",
    "removeShard",
    "listSessions",
    "listShards",
    "flushRouterConfig",
    "cleanupOrphaned",
    "getDefaultRWConcern",
    "setDefaultRWConcern",
    "setFeatureCompatibilityVersion",
    "setClusterParameter",
    "getClusterParameter",
]
CLUSTER_MANAGER_DB = [
    "clearJumboFlag",
    "splitChunk",
    "moveChunk",
    "enableSharding",
    "splitVector",
    "refineCollectionShardKey",
    "reshardCollection",
]
RESTORE_WRITE = [
    "bypassDocumentValidation",
    "collMod",
    "convertToCapped",
    "createCollection",
    "createIndex",
    "dropCollection",
    "insert",
]

# A pattern is ("any",), ("cluster",), ("anyNormal",), ("db", DB|None), ("coll", C),
# ("ns", DB|None, C); None means "the database the role is granted on".
Privileges = list[tuple[tuple, list[str]]]
BUILTIN_ROLES: dict[str, dict] = {
    "read": {"privileges": [(("db", None), READ), (("ns", None, "system.js"), READ)]},
    "readWrite": {
        "privileges": [(("db", None), READ_WRITE), (("ns", None, "system.js"), READ_WRITE)]
    },
    "userAdmin": {"privileges": [(("db", None), USER_ADMIN)]},
    "dbAdmin": {
        "privileges": [
            (("db", None), DB_ADMIN),
            (
                ("ns", None, "system.profile"),
                [*READ, "convertToCapped", "createCollection", "dropCollection"],
            ),
        ]
    },
    "dbOwner": {"roles": ["readWrite", "dbAdmin", "userAdmin"], "privileges": []},
    "readAnyDatabase": {
        "admin_only": True,
        "privileges": [
            (("anyNormal",), READ),
            (("cluster",), ["listDatabases"]),
            (("coll", "system.js"), READ),
        ],
    },
    "readWriteAnyDatabase": {
        "admin_only": True,
        "roles": ["readAnyDatabase"],
        "privileges": [(("anyNormal",), READ_WRITE), (("coll", "system.js"), READ_WRITE)],
    },
    "userAdminAnyDatabase": {
        "admin_only": True,
        "privileges": [
            (("anyNormal",), [*USER_ADMIN, "listCachedAndActiveUsers"]),
            (("db", "local"), USER_ADMIN),
            (("db", "config"), USER_ADMIN),
            (
                ("cluster",),
                ["listDatabases", "authSchemaUpgrade", "invalidateUserCache", "viewUser"],
            ),
            (("ns", "admin", "system.users"), [*READ, "createIndex", "dropIndex"]),
            (("ns", "admin", "system.roles"), [*READ, "createIndex", "dropIndex"]),
            (("coll", "system.users"), READ),
            (("ns", "admin", "system.version"), READ),
        ],
    },
    "dbAdminAnyDatabase": {
        "admin_only": True,
        "privileges": [
            (("cluster",), ["listDatabases", "applyOps"]),
            (("anyNormal",), DB_ADMIN),
            (
                ("coll", "system.profile"),
                [*READ, "convertToCapped", "createCollection", "dropCollection"],
            ),
        ],
    },
    "clusterMonitor": {
        "admin_only": True,
        "roles": [("read", "config"), ("read", "local")],
        "privileges": [
            (("cluster",), CLUSTER_MONITOR),
            (("anyNormal",), CLUSTER_MONITOR_DB),
            (("db", "config"), CLUSTER_MONITOR_DB),
            (("db", "local"), CLUSTER_MONITOR_DB),
            (("ns", "local", "system.replset"), ["find"]),
            (("coll", "system.profile"), ["find"]),
        ],
    },
    "hostManager": {
        "admin_only": True,
        "privileges": [(("cluster",), HOST_MANAGER), (("anyNormal",), ["killCursors"])],
    },
    "clusterManager": {
        "admin_only": True,
        "roles": [("read", "config")],
        "privileges": [
            (("cluster",), CLUSTER_MANAGER),
            (("anyNormal",), CLUSTER_MANAGER_DB),
            (("db", "config"), [*CLUSTER_MANAGER_DB, "insert", "update", "remove"]),
            (("db", "local"), [*CLUSTER_MANAGER_DB, "insert", "update", "remove"]),
            (("ns", "local", "system.replset"), READ),
        ],
    },
    "clusterAdmin": {
        "admin_only": True,
        "roles": ["clusterMonitor", "hostManager", "clusterManager"],
        "privileges": [(("anyNormal",), ["dropDatabase"])],
    },
    "backup": {
        "admin_only": True,
        "privileges": [
            (("any",), ["collStats", "listCollections", "listIndexes"]),
            (("anyNormal",), ["find"]),
            (
                ("cluster",),
                ["getParameter", "listDatabases", "useUUID", "appendOplogNote", "serverStatus"],
            ),
            (("db", "config"), ["find"]),
            (("db", "local"), ["find"]),
            (("coll", "system.js"), ["find"]),
            (("coll", "system.users"), ["find"]),
            (("coll", "system.profile"), ["find"]),
            (("ns", "admin", "system.roles"), ["find"]),
            (("ns", "admin", "system.version"), ["find"]),
        ],
    },
    "restore": {
        "admin_only": True,
        "privileges": [
            (("cluster",), ["getParameter", "forceUUID", "useUUID", "applyOps"]),
            (("db", "local"), RESTORE_WRITE),
            (("db", "config"), RESTORE_WRITE),
            (("ns", "local", "system.replset"), RESTORE_WRITE),
            (("any",), ["listCollections"]),
            (("anyNormal",), [*RESTORE_WRITE, *USER_ADMIN]),
            (("coll", "system.js"), RESTORE_WRITE),
            (("ns", "admin", "system.version"), [*RESTORE_WRITE, "find"]),
            (("coll", "system.users"), [*RESTORE_WRITE, "find", "update", "remove"]),
            (("ns", "admin", "system.roles"), ["createIndex"]),
        ],
    },
    "root": {
        "admin_only": True,
        "roles": [
            "clusterAdmin",
            "userAdminAnyDatabase",
            "dbAdminAnyDatabase",
            "readWriteAnyDatabase",
            "backup",
            "restore",
        ],
        "privileges": [(("any",), ["validate"])],
    },
    # __system: every action on every resource (special-cased by MongoDB as well).
    "__system": {"admin_only": True, "privileges": [(("any",), ["anyAction"])]},
}


def is_builtin(role: str, db: str) -> bool:
    spec = BUILTIN_ROLES.get(role)
    return spec is not None and (db == "admin" or not spec.get("admin_only"))


def builtin_privileges(role: str, db: str, seen: set | None = None) -> Privileges:
    """All privileges of a built-in role granted on ``db`` (sub-roles included)."""
    seen = set() if seen is None else seen
    if (role, db) in seen:
        return []
    seen.add((role, db))
    spec = BUILTIN_ROLES[role]
    out: Privileges = []
    for pattern, actions in spec["privileges"]:
        out.append((tuple(db if part is None else part for part in pattern), list(actions)))
    for sub in spec.get("roles", []):
        name, sub_db = (sub, db) if isinstance(sub, str) else sub
        out.extend(builtin_privileges(name, sub_db, seen))
    return out


def builtin_subroles(role: str, db: str) -> list[dict]:
    out = []
    for sub in BUILTIN_ROLES[role].get("roles", []):
        name, sub_db = (sub, db) if isinstance(sub, str) else sub
        out.append({"role": name, "db": sub_db})
    return out


def pattern_document(pattern: tuple) -> dict:
    """A privilege's resource as MongoDB shows it (rolesInfo showPrivileges)."""
    kind = pattern[0]
    if kind == "any":
        return {"anyResource": True}
    if kind == "cluster":
        return {"cluster": True}
    if kind == "anyNormal":
        return {"db": "", "collection": ""}
    if kind == "db":
        return {"db": pattern[1], "collection": ""}
    if kind == "coll":
        return {"db": "", "collection": pattern[1]}
    return {"db": pattern[1], "collection": pattern[2]}


def _pattern_from_document(resource: dict) -> tuple:
    if resource.get("anyResource"):
        return ("any",)
    if resource.get("cluster"):
        return ("cluster",)
    db, coll = resource.get("db", ""), resource.get("collection", "")
    if not db and not coll:
        return ("anyNormal",)
    if not coll:
        return ("db", db)
    if not db:
        return ("coll", coll)
    return ("ns", db, coll)


# -- resources and matching -------------------------------------------------------------------


def _normal_collection(coll: str) -> bool:
    return not coll.startswith("system.")


def search_list(resource: tuple) -> list[tuple]:
    """The patterns that can grant an action on ``resource`` (MongoDB's buildResourceSearchList)."""
    kind = resource[0]
    out: list[tuple] = [("any",)]
    if kind == "cluster":
        return [*out, ("cluster",)]
    if kind == "db":
        db = resource[1]
        out.append(("db", db))
        if db not in ("local", "config"):
            out.append(("anyNormal",))
        return out
    _, db, coll = resource
    out += [("ns", db, coll), ("coll", coll)]
    if _normal_collection(coll):
        out.append(("db", db))
        if db not in ("local", "config"):
            out.append(("anyNormal",))
    return out


def has_privilege(privileges: Privileges, resource: tuple, action: str) -> bool:
    wanted = set(search_list(resource))
    return any(
        pattern in wanted and (action in actions or "anyAction" in actions)
        for pattern, actions in privileges
    )


def has_any_action(privileges: Privileges, resource: tuple) -> bool:
    """Any action at all on ``resource`` (MongoDB's isAuthorizedForAnyActionOnResource)."""
    wanted = set(search_list(resource))
    return any(pattern in wanted and actions for pattern, actions in privileges)


def any_action_in_db(privileges: Privileges, db: str) -> bool:
    """Any privilege that reaches into ``db`` (MongoDB's isAuthorizedForAnyActionOnAnyResourceInDB):
    on the database, on any resource, on any normal resource (not local or config), on a
    collection name in every database, or on a namespace of ``db``."""
    for pattern, actions in privileges:
        if not actions:
            continue
        kind = pattern[0]
        if pattern in (("db", db), ("any",)) or kind == "coll":
            return True
        if kind == "anyNormal" and db not in ("local", "config"):
            return True
        if kind == "ns" and pattern[1] == db:
            return True
    return False


# -- users ------------------------------------------------------------------------------------


class RoleResolver:
    """Turns granted roles into privileges, with user-defined roles from ``admin.system.roles``."""

    def __init__(self, role_docs: Iterable[dict]) -> None:
        self.custom = {(d["role"], d["db"]): d for d in role_docs}

    def exists(self, role: str, db: str) -> bool:
        return is_builtin(role, db) or (role, db) in self.custom

    def privileges(self, roles: Iterable[dict]) -> Privileges:
        out: Privileges = []
        seen: set = set()
        for grant in roles:
            out.extend(self._role(grant["role"], grant["db"], seen))
        return out

    def _role(self, role: str, db: str, seen: set) -> Privileges:
        if is_builtin(role, db):
            return builtin_privileges(role, db, seen)
        doc = self.custom.get((role, db))
        if doc is None or (role, db) in seen:
            return []
        seen.add((role, db))
        out: Privileges = [
            (_pattern_from_document(p["resource"]), list(p["actions"]))
            for p in doc.get("privileges", [])
        ]
        for sub in doc.get("roles", []):
            out.extend(self._role(sub["role"], sub["db"], seen))
        return out

    def inherited_roles(self, roles: Iterable[dict]) -> list[dict]:
        out: list[dict] = []
        pending = [dict(r) for r in roles]
        while pending:
            grant = pending.pop(0)
            entry = {"role": grant["role"], "db": grant["db"]}
            if entry in out:
                continue
            out.append(entry)
            if is_builtin(grant["role"], grant["db"]):
                pending.extend(builtin_subroles(grant["role"], grant["db"]))
            else:
                doc = self.custom.get((grant["role"], grant["db"]), {})
                pending.extend(doc.get("roles", []))
        return out


def role_resolver(server) -> RoleResolver:
    storage = server.storage
    with storage.lock:
        docs = storage.documents(ROLES_NS) if storage.exists(ROLES_NS) else []
    return RoleResolver(docs)


def any_privilege_documents(server) -> bool:
    """True once any user or role exists (MongoDB's hasAnyPrivilegeDocuments)."""
    storage = server.storage
    with storage.lock:
        return storage.count(USERS_NS) > 0 or storage.count(ROLES_NS) > 0


def is_localhost(ctx: ConnectionContext) -> bool:
    try:
        address = ipaddress.ip_address(ctx.peer[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# -- what each command requires ---------------------------------------------------------------

# Commands that run without authentication (MongoDB's requiresAuth() == false).
NO_AUTH_COMMANDS = {
    "hello",
    "isMaster",
    "ismaster",
    "buildInfo",
    "buildinfo",
    "ping",
    "saslStart",
    "saslContinue",
    "authenticate",
    "logout",
    "whatsmyuri",
    "connectionStatus",
    "listCommands",
    "endSessions",
}
# What an unauthenticated localhost connection may do while no user or role exists (MongoDB's
# AuthorizationSession default privileges): create the first user (on admin or $external, with
# roles from admin), initiate the replica set, add a shard. Nothing else, not even createRole.
LOCALHOST_EXCEPTION_PRIVILEGES: Privileges = [
    (("db", "admin"), ["createUser", "grantRole"]),
    (("db", "$external"), ["createUser"]),
    (("cluster",), ["addShard", "replSetConfigure", "replSetGetStatus"]),
]

Requirement = list[tuple[tuple, str]]


def _ns(inv: Invocation, coll: object = None) -> tuple:
    coll = inv.arg if coll is None else coll
    if isinstance(coll, str) and coll:
        return ("ns", inv.db, coll)
    return ("db", inv.db)


def _db(inv: Invocation) -> tuple:
    return ("db", inv.db)


CLUSTER = ("cluster",)


def _on_ns(*actions: str) -> Callable[[Invocation], Requirement]:
    return lambda inv: [(_ns(inv), a) for a in actions]


def _on_db(*actions: str) -> Callable[[Invocation], Requirement]:
    return lambda inv: [(_db(inv), a) for a in actions]


def _on_cluster(*actions: str) -> Callable[[Invocation], Requirement]:
    return lambda inv: [(CLUSTER, a) for a in actions]


def _nothing(inv: Invocation) -> Requirement:
    return []


def _update(inv: Invocation) -> Requirement:
    out = [(_ns(inv), "update")]
    if any(isinstance(u, dict) and u.get("upsert") for u in inv.body.get("updates") or []):
        out.append((_ns(inv), "insert"))
    return out


def _find_and_modify(inv: Invocation) -> Requirement:
    out = [(_ns(inv), "find")]
    if inv.body.get("remove"):
        return [*out, (_ns(inv), "remove")]
    out.append((_ns(inv), "update"))
    if inv.body.get("upsert"):
        out.append((_ns(inv), "insert"))
    return out


# Stages that are their pipeline's source when first: they need their own action instead of find
# on the collection (MongoDB's LiteParsed...::requiredPrivileges; the manual's privilege actions:
# find is for "all pipeline operations except $collStats, $out, and $indexStats").
SOURCE_STAGE_ACTIONS = {"$collStats": "collStats", "$indexStats": "indexStats"}


def _aggregate(inv: Invocation) -> Requirement:
    pipeline = inv.body.get("pipeline") or []
    first = next(iter(pipeline[0]), None) if pipeline and isinstance(pipeline[0], dict) else None
    out = [(_ns(inv), SOURCE_STAGE_ACTIONS.get(first, "find"))]
    for stage in pipeline:
        if isinstance(stage, dict) and "$out" in stage:
            target = stage["$out"]
            if isinstance(target, dict):
                resource = ("ns", target.get("db", inv.db), target.get("coll", ""))
            else:
                resource = ("ns", inv.db, str(target))
            out += [(resource, "insert"), (resource, "remove")]
    return out


# What each command an applyOps entry carries ("c") needs on its namespace.
APPLY_OPS_COMMANDS = {
    "create": "createCollection",
    "drop": "dropCollection",
    "createIndexes": "createIndex",
    "dropIndexes": "dropIndex",
    "deleteIndexes": "dropIndex",
    "collMod": "collMod",
    "convertToCapped": "convertToCapped",
    "dropDatabase": "dropDatabase",
}
APPLY_OPS_CRUD = {"i": "insert", "u": "update", "d": "remove"}


def _apply_ops_entries(entries: object) -> Requirement:
    out: Requirement = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        ns = entry.get("ns")
        db, _, coll = ns.partition(".") if isinstance(ns, str) else ("", "", "")
        if entry.get("ui") is not None:  # an entry naming its collection by UUID
            out += [(CLUSTER, "useUUID"), (CLUSTER, "forceUUID")]
        op = entry.get("op")
        if op in APPLY_OPS_CRUD:
            out.append((("ns", db, coll), APPLY_OPS_CRUD[op]))
        elif op == "c":
            body = entry.get("o") if isinstance(entry.get("o"), dict) else {}
            name = next(iter(body), "")
            if name == "applyOps":
                out += _apply_ops_entries(body.get("applyOps"))
            elif name == "renameCollection":
                out += _renaming(str(body.get(name, "")), str(body.get("to", "")))
            elif name in APPLY_OPS_COMMANDS:
                target = body.get(name)
                resource = ("db", db) if name == "dropDatabase" else ("ns", db, str(target))
                out.append((resource, APPLY_OPS_COMMANDS[name]))
            else:  # another command: as mongod, only a user who may do anything
                out.append((CLUSTER, "internal"))
    return out


def _apply_ops(inv: Invocation) -> Requirement:
    """applyOps: the applyOps action on the cluster (MongoDB 4.0+, DOCS-14282: in
    dbAdminAnyDatabase and restore, and so root), and what each entry does needs its own
    privilege (SERVER-25994): insert, update or remove on its namespace, a command's action, and
    useUUID with forceUUID on the cluster for an entry that names its collection by UUID (the
    applyOps page's Required Access)."""
    return [(CLUSTER, "applyOps"), *_apply_ops_entries(inv.arg)]


def _list_collections(inv: Invocation) -> Requirement:
    """listCollections on the database, or, with ``authorizedCollections`` and ``nameOnly``, any
    privilege in the database (the reply then lists only the collections the user may act on:
    ``may_see_collection``), as mongod's checkAuthorizedToListCollections does."""
    body = inv.body
    if body.get("authorizedCollections") and body.get("nameOnly"):
        privileges = session_privileges(inv) if inv.ctx.authenticated_users else []
        if any_action_in_db(privileges, inv.db):
            return []
    return [(_db(inv), "listCollections")]


def _get_more(inv: Invocation) -> Requirement:
    return [(_ns(inv, inv.body.get("collection")), "find")]


def _rename(inv: Invocation) -> Requirement:
    return _renaming(str(inv.arg), str(inv.body.get("to", "")))


def _renaming(source: str, target: str) -> Requirement:
    src_db, _, src_coll = source.partition(".")
    dst_db, _, dst_coll = target.partition(".")
    if src_db == dst_db:
        return [(("ns", src_db, src_coll), "renameCollectionSameDB"),
                (("ns", dst_db, dst_coll), "renameCollectionSameDB")]  # fmt: skip
    return [
        (("ns", src_db, src_coll), "find"),
        (("ns", src_db, src_coll), "dropCollection"),
        (("ns", dst_db, dst_coll), "insert"),
        (("ns", dst_db, dst_coll), "createIndex"),
    ]


def _explain(inv: Invocation) -> Requirement:
    from mongod_double.commands import Invocation as Inv

    inner = inv.body.get("explain")
    if not isinstance(inner, dict) or not inner:
        return []
    name = next(iter(inner))
    sub = Inv(inv.server, inv.ctx, name, dict(inner), inv.db, inv.request)
    return requirements(sub)


def _role_grants(inv: Invocation, field: str, action: str) -> Requirement:
    out = []
    for role in inv.body.get(field) or []:
        db = role.get("db", inv.db) if isinstance(role, dict) else inv.db
        out.append((("db", db), action))
    return out


def _create_user(inv: Invocation) -> Requirement:
    return [(_db(inv), "createUser"), *_role_grants(inv, "roles", "grantRole")]


def _create_role(inv: Invocation) -> Requirement:
    return [(_db(inv), "createRole"), *_role_grants(inv, "roles", "grantRole")]


def _update_role(inv: Invocation) -> Requirement:
    """updateRole: revokeRole and grantRole where the role lives, grantRole on each role it is
    given (the updateRole page's Required Access)."""
    return [(_db(inv), "revokeRole"), (_db(inv), "grantRole"),
            *_role_grants(inv, "roles", "grantRole")]  # fmt: skip


def _update_user(inv: Invocation) -> Requirement:
    out = []
    if "pwd" in inv.body:
        out.append((_db(inv), "changePassword"))
    if "customData" in inv.body:
        out.append((_db(inv), "changeCustomData"))
    if "roles" in inv.body:
        out += _role_grants(inv, "roles", "grantRole") + _role_grants(inv, "roles", "revokeRole")
        out.append((_db(inv), "grantRole"))
    return out


def _is_self(inv: Invocation, names: list) -> bool:
    users = inv.ctx.authenticated_users
    return bool(names) and all(
        any(u["user"] == n.get("user") and u["db"] == n.get("db") for u in users) for n in names
    )


def _users_info(inv: Invocation) -> Requirement:
    arg = inv.arg
    items = arg if isinstance(arg, list) else [arg]
    names = []
    for item in items:
        if isinstance(item, str):
            names.append({"user": item, "db": inv.db})
        elif isinstance(item, dict) and "user" in item:
            names.append({"user": item["user"], "db": item.get("db", inv.db)})
        else:
            names = []
            break
    if _is_self(inv, names):  # anyone may view their own user
        return []
    if isinstance(arg, dict) and arg.get("forAllDBs"):
        return [(CLUSTER, "viewUser")]
    return [(("db", n["db"]), "viewUser") for n in names] or [(_db(inv), "viewUser")]


def _roles_info(inv: Invocation) -> Requirement:
    arg = inv.arg
    items = arg if isinstance(arg, list) else [arg]
    dbs = set()
    for item in items:
        if isinstance(item, dict) and "role" in item:
            dbs.add(item.get("db", inv.db))
        else:
            dbs.add(inv.db)
    return [(("db", db), "viewRole") for db in sorted(dbs)]


def _current_op(inv: Invocation) -> Requirement:
    return [] if inv.body.get("$ownOps") else [(CLUSTER, "inprog")]


# Commands not listed here need the "internal" action on the cluster: only __system has it.
REQUIREMENTS: dict[str, Callable[[Invocation], Requirement]] = {
    "find": _on_ns("find"),
    "count": _on_ns("find"),
    "distinct": _on_ns("find"),
    "aggregate": _aggregate,
    "getMore": _get_more,
    "killCursors": _on_ns("killCursors"),
    "insert": _on_ns("insert"),
    "update": _update,
    "delete": _on_ns("remove"),
    "findAndModify": _find_and_modify,
    "findandmodify": _find_and_modify,
    "create": _on_ns("createCollection"),
    "collMod": _on_ns("collMod"),
    "drop": _on_ns("dropCollection"),
    "dropDatabase": _on_db("dropDatabase"),
    "renameCollection": _rename,
    "listDatabases": _nothing,  # filtered to what the user may see (authorizedDatabases)
    "listCollections": _list_collections,
    "createIndexes": _on_ns("createIndex"),
    "listIndexes": _on_ns("listIndexes"),
    "dropIndexes": _on_ns("dropIndex"),
    "deleteIndexes": _on_ns("dropIndex"),
    "collStats": _on_ns("collStats"),
    "dbStats": _on_db("dbStats"),
    "dbstats": _on_db("dbStats"),
    "dbHash": _on_db("dbHash"),
    "dbhash": _on_db("dbHash"),
    "serverStatus": _on_cluster("serverStatus"),
    "hostInfo": _on_cluster("hostInfo"),
    "getCmdLineOpts": _on_cluster("getCmdLineOpts"),
    "getParameter": _on_cluster("getParameter"),
    "setParameter": _on_cluster("setParameter"),
    "setFeatureCompatibilityVersion": _on_cluster("setFeatureCompatibilityVersion"),
    "currentOp": _current_op,
    "killOp": _on_cluster("killop"),
    "profile": _on_db("enableProfiler"),
    "explain": _explain,
    "top": _on_cluster("top"),
    "getLog": _on_cluster("getLog"),
    "logRotate": _on_cluster("logRotate"),
    "shutdown": _on_cluster("shutdown"),
    "replSetInitiate": _on_cluster("replSetConfigure"),
    "replSetReconfig": _on_cluster("replSetConfigure"),
    "replSetGetStatus": _on_cluster("replSetGetStatus"),
    "replSetGetConfig": _on_cluster("replSetGetConfig"),
    "replSetStepDown": _on_cluster("replSetStateChange"),
    "replSetStepUp": _on_cluster("replSetStateChange"),
    "replSetFreeze": _on_cluster("replSetStateChange"),
    "replSetMaintenance": _on_cluster("replSetStateChange"),
    "replSetResizeOplog": _on_cluster("replSetResizeOplog"),
    "appendOplogNote": _on_cluster("appendOplogNote"),
    "applyOps": _apply_ops,
    "createUser": _create_user,
    "updateUser": _update_user,
    "dropUser": _on_db("dropUser"),
    "dropAllUsersFromDatabase": _on_db("dropUser"),
    "usersInfo": _users_info,
    "grantRolesToUser": lambda inv: _role_grants(inv, "roles", "grantRole"),
    "revokeRolesFromUser": lambda inv: _role_grants(inv, "roles", "revokeRole"),
    "rolesInfo": _roles_info,
    "createRole": _create_role,
    "updateRole": _update_role,
    "dropRole": _on_db("dropRole"),
}


def requirements(inv: Invocation) -> Requirement:
    rule = REQUIREMENTS.get(inv.name)
    if rule is None:
        return [(CLUSTER, "internal")]
    return rule(inv)


def session_privileges(inv: Invocation) -> Privileges:
    """The connection's privileges, re-resolved after any user or role changed (a dropped user
    is logged out, a revoked role stops counting), as MongoDB's user cache invalidation does."""
    ctx = inv.ctx
    security = inv.server.security
    generation = security.generation
    if ctx.privileges_cache is not None and ctx.privileges_cache[0] == generation:
        return ctx.privileges_cache[1]
    if not ctx.is_internal_client:
        from mongod_double.commands.auth import user_document

        kept, roles = [], []
        for user in ctx.authenticated_users:
            doc = user_document(inv.server, user["user"], user["db"])
            if doc is not None:
                kept.append(user)
                roles += [{"role": r["role"], "db": r["db"]} for r in doc.get("roles", [])]
        ctx.authenticated_users, ctx.authenticated_roles = kept, roles
    privileges = role_resolver(inv.server).privileges(ctx.authenticated_roles)
    ctx.privileges_cache = (generation, privileges)
    return privileges


def shell_text(value: object) -> str:
    """A value as MongoDB prints a command in error messages (``{ insert: "c", ... }``)."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k}: {shell_text(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[ " + ", ".join(shell_text(v) for v in value) + " ]" if value else "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, Binary) and value.subtype == 4:
        return f'UUID("{value.as_uuid()}")'
    if isinstance(value, bytes):
        return f"BinData(0, {base64.b64encode(value).decode()})"
    if isinstance(value, ObjectId):
        return f"ObjectId('{value}')"
    return str(value)


def localhost_exception_applies(inv: Invocation) -> bool:
    """The localhost exception: enabled, a loopback peer, and no user or role exists yet."""
    return (
        bool(inv.server.parameters.get("enableLocalhostAuthBypass"))
        and is_localhost(inv.ctx)
        and not any_privilege_documents(inv.server)
    )


def check(inv: Invocation) -> None:
    """Raise Unauthorized (13) unless the connection may run ``inv``; MongoDB's messages."""
    ctx = inv.ctx
    if inv.name in NO_AUTH_COMMANDS:
        return
    privileges = session_privileges(inv) if ctx.authenticated_users else []
    if not ctx.authenticated_users:  # never logged in, or the user has been dropped since
        if not localhost_exception_applies(inv):
            raise CommandError(UNAUTHORIZED, f"Command {inv.name} requires authentication")
        privileges = LOCALHOST_EXCEPTION_PRIVILEGES
    for resource, action in requirements(inv):
        if not has_privilege(privileges, resource, action):
            body = {inv.name: inv.body[inv.name], **{k: v for k, v in inv.body.items()
                                                     if k != inv.name}, "$db": inv.db}  # fmt: skip
            raise CommandError(
                UNAUTHORIZED,
                f"not authorized on {inv.db} to execute command {shell_text(body)}",
            )


def may_see_collection(inv: Invocation, db: str, coll: str) -> bool:
    """listCollections with authorizedCollections: a collection the user may do anything on."""
    if not inv.ctx.authenticated_users:
        return False
    return has_any_action(session_privileges(inv), ("ns", db, coll))


def may_see_database(inv: Invocation, db: str) -> bool:
    """listDatabases with authorizedDatabases: a database the user has any privilege on."""
    if not inv.ctx.authenticated_users:
        return False
    privileges = session_privileges(inv)
    if has_privilege(privileges, CLUSTER, "listDatabases"):
        return True
    for pattern, _actions in privileges:
        if pattern in (("any",), ("anyNormal",)) and (pattern == ("any",) or db not in (
                "local", "config")):  # fmt: skip
            return True
        if pattern[0] in ("db", "ns") and pattern[1] == db:
            return True
    return False
