"""Projects, their members (owner / operator / read-only), hosts and clusters.

Access is checked here, once, for pages, API calls and Socket.IO rooms alike: a project a user is
not a member of does not exist for them (NotFound); a member without the role gets Forbidden.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Any

from pymongo.errors import DuplicateKeyError

from webui.services import audit
from webui.services.accounts import normalize_username
from webui.services.audit import Actor
from webui.services.errors import Conflict, Forbidden, Invalid, NotFound
from webui.store import Store, now

PROJECT_ROLES = ("read-only", "operator", "owner")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
CONNECTIONS = ("ssh", "local")


def _check_name(name: str, field: str = "name") -> None:
    if not NAME_RE.match(name or ""):
        raise Invalid(
            f"{field} {name!r} is not valid",
            {field: ["1 to 63 letters, digits, '.', '-' or '_', starting with a letter or digit"]},
        )


def role_in(store: Store, actor: Actor, project_id: str) -> str | None:
    """The actor's role in the project (admins are owners everywhere), None when not a member."""
    if actor.is_admin:
        return "owner"
    membership = store.memberships.find_one({"project_id": project_id, "user_id": actor.user_id})
    return membership["role"] if membership else None


def require(store: Store, actor: Actor, project_id: str, needed: str) -> dict[str, Any]:
    """Return the project when the actor holds at least `needed` in it."""
    project = store.projects.find_one({"_id": project_id})
    role = role_in(store, actor, project_id) if project else None
    if project is None or role is None:
        raise NotFound("no such project (or you are not a member of it)")
    if PROJECT_ROLES.index(role) < PROJECT_ROLES.index(needed):
        raise Forbidden(
            f"this needs the {needed} role in project {project['name']!r}; you are {role}"
        )
    return project


def create_project(store: Store, actor: Actor, name: str) -> dict[str, Any]:
    if not actor.is_admin:
        raise Forbidden("only admins can create projects")
    _check_name(name)
    project = {
        "_id": uuid.uuid4().hex,
        "name": name,
        "created_at": now(),
        "created_by": actor.username,
    }
    try:
        store.projects.insert_one(project)
    except DuplicateKeyError:
        raise Conflict(f"a project named {name!r} exists", {"name": ["already taken"]}) from None
    audit.record(store, actor, "project.create", name)
    return project


def list_projects(store: Store, actor: Actor) -> list[dict[str, Any]]:
    if actor.is_admin:
        return list(store.projects.find().sort("name", 1))
    ids = [m["project_id"] for m in store.memberships.find({"user_id": actor.user_id})]
    return list(store.projects.find({"_id": {"$in": ids}}).sort("name", 1))


def set_member(store: Store, actor: Actor, project_id: str, username: str, role: str) -> None:
    project = require(store, actor, project_id, "owner")
    if role not in (*PROJECT_ROLES, "none"):
        raise Invalid("unknown role", {"role": [f"one of {', '.join(PROJECT_ROLES)} or none"]})
    username = normalize_username(username)
    user = store.users.find_one({"username": username})
    if not user:
        raise Invalid(f"no user named {username!r}", {"username": ["no such user"]})
    key = {"project_id": project_id, "user_id": user["_id"]}
    if role == "none":
        store.memberships.delete_one(key)
    else:
        store.memberships.update_one(key, {"$set": {"role": role}}, upsert=True)
    audit.record(
        store, actor, "project.member", f"{project['name']}/{username}", detail={"role": role}
    )


def members(store: Store, project_id: str) -> list[dict[str, Any]]:
    rows = list(store.memberships.find({"project_id": project_id}))
    names = {
        u["_id"]: u["username"]
        for u in store.users.find({"_id": {"$in": [r["user_id"] for r in rows]}})
    }
    return sorted(
        ({"username": names.get(r["user_id"], "?"), "role": r["role"]} for r in rows),
        key=lambda m: m["username"],
    )


def validate_host(data: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, list[str]] = {}
    name, address = str(data.get("name", "")), str(data.get("address", ""))
    if not NAME_RE.match(name):
        fields["name"] = ["1 to 63 letters, digits, '.', '-' or '_'"]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not HOSTNAME_RE.match(address):
            fields["address"] = ["an IP address or a DNS name"]
    port = data.get("port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        fields["port"] = ["a port number, 1 to 65535"]
    user = str(data.get("user") or "root")
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user):
        fields["user"] = ["a Unix user name"]
    connection = data.get("connection") or "ssh"
    if connection not in CONNECTIONS:
        fields["connection"] = [f"one of {', '.join(CONNECTIONS)}"]
    if fields:
        raise Invalid("the host cannot be registered as given", fields)
    return {"name": name, "address": address, "port": port, "user": user, "connection": connection}


def add_host(store: Store, actor: Actor, project_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Register a host. A `local` one is the platform machine itself (its jobs run on the worker):
    an admin's decision only, and on the record."""
    project = require(store, actor, project_id, "operator")
    checked = validate_host(data)
    if checked["connection"] == "local" and not actor.is_admin:
        raise Forbidden(
            "a host with connection local is the platform machine itself: only an admin may"
            " register one; register the host by its address with connection ssh"
        )
    host = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        **checked,
        "created_at": now(),
    }
    try:
        store.hosts.insert_one(host)
    except DuplicateKeyError:
        raise Conflict(
            f"host {host['name']!r} is already registered", {"name": ["already taken"]}
        ) from None
    audit.record(
        store,
        actor,
        "host.add",
        f"{project['name']}/{host['name']}",
        detail={"address": host["address"], "connection": host["connection"]},
    )
    return host


def remove_host(store: Store, actor: Actor, project_id: str, host_id: str) -> None:
    project = require(store, actor, project_id, "operator")
    host = store.hosts.find_one_and_delete({"_id": host_id, "project_id": project_id})
    if not host:
        raise NotFound("no such host")
    store.agent_tokens.delete_many({"host_id": host_id})  # its agent's token goes with it
    audit.record(store, actor, "host.remove", f"{project['name']}/{host['name']}")


def list_hosts(store: Store, project_id: str) -> list[dict[str, Any]]:
    return list(store.hosts.find({"project_id": project_id}).sort("name", 1))


def create_cluster(
    store: Store, actor: Actor, project_id: str, name: str, host_ids: list[str], playbook: str
) -> dict[str, Any]:
    project = require(store, actor, project_id, "operator")
    _check_name(name)
    known = {
        h["_id"] for h in store.hosts.find({"project_id": project_id, "_id": {"$in": host_ids}})
    }
    if not host_ids or known != set(host_ids):
        raise Invalid("pick hosts of this project", {"host_ids": ["unknown or empty host list"]})
    cluster = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        "name": name,
        "host_ids": host_ids,
        "playbook": playbook,
        "created_at": now(),
    }
    try:
        store.clusters.insert_one(cluster)
    except DuplicateKeyError:
        raise Conflict(f"a cluster named {name!r} exists", {"name": ["already taken"]}) from None
    audit.record(store, actor, "cluster.create", f"{project['name']}/{name}")
    return cluster


def list_clusters(store: Store, project_id: str) -> list[dict[str, Any]]:
    return list(store.clusters.find({"project_id": project_id}).sort("name", 1))
