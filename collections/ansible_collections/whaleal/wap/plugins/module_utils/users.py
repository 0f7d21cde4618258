# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Users and roles: pure comparison of what MongoDB has with what is wanted."""

from __future__ import annotations


def normalize_roles(roles: list, database: str) -> list[dict]:
    """Role grants as ``{"role", "db"}`` dicts, sorted; a bare name is a role of ``database``."""
    out = []
    for role in roles or []:
        if isinstance(role, str):
            out.append({"role": role, "db": database})
        else:
            out.append({"role": str(role["role"]), "db": str(role.get("db", database))})
    unique = {(r["db"], r["role"]): r for r in out}
    return [unique[k] for k in sorted(unique)]


def user_changes(
    current: dict | None, roles: list[dict], password_matches: bool | None, update_password: str
) -> dict:
    """The ``createUser`` / ``updateUser`` fields to send, or ``{}`` when nothing changes.

    ``password_matches`` is None when no password is wanted, else whether the wanted password
    authenticates the existing user. With ``update_password='on_create'`` an existing user's
    password is left alone.
    """
    if current is None:
        return {"create": True, "roles": roles, "password": password_matches is not None}
    changes = {}
    have = normalize_roles(current.get("roles") or [], current.get("db", "admin"))
    if have != roles:
        changes["roles"] = roles
    if password_matches is False and update_password == "always":
        changes["password"] = True
    return changes


def normalize_privileges(privileges: list[dict]) -> list[dict]:
    """Privileges with sorted actions, in a stable order (MongoDB returns them in any order)."""
    out = []
    for privilege in privileges or []:
        resource = {str(k): v for k, v in sorted(privilege["resource"].items())}
        out.append({"resource": resource, "actions": sorted(set(privilege["actions"]))})
    return sorted(out, key=lambda p: (sorted(p["resource"].items(), key=str), p["actions"]))


def role_changes(current: dict | None, privileges: list[dict], roles: list[dict]) -> dict:
    """The ``createRole`` / ``updateRole`` fields to send, or ``{}`` when nothing changes."""
    if current is None:
        return {"create": True, "privileges": privileges, "roles": roles}
    changes = {}
    if normalize_privileges(current.get("privileges") or []) != privileges:
        changes["privileges"] = privileges
    if normalize_roles(current.get("roles") or [], current.get("db", "admin")) != roles:
        changes["roles"] = roles
    return changes
