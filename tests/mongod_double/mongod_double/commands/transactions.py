"""commitTransaction and abortTransaction (admin), from MongoDB's command pages: they end the
transaction their ``lsid``/``txnNumber`` name (see :mod:`mongod_double.transactions`); any
authenticated user may run them, as mongod requires no privilege for them."""

from __future__ import annotations

from mongod_double import authz
from mongod_double.commands import Invocation, command
from mongod_double.errors import INVALID_OPTIONS, CommandError
from mongod_double.transactions import sessions_of

COMMIT_FIELDS = {"commitTransaction", "recoveryToken"}


def _in_transaction(inv: Invocation) -> None:
    if inv.body.get("autocommit") is not False:
        raise CommandError(INVALID_OPTIONS, f"{inv.name} must be run within a transaction")


@command("commitTransaction", admin_only=True, write=True)
def commit_transaction(inv: Invocation) -> dict:
    _in_transaction(inv)
    users = inv.ctx.authenticated_users
    user = f"{users[0]['user']}@{users[0]['db']}" if users else ""
    sessions_of(inv.server).commit(inv.body, user)
    return {}


@command("abortTransaction", admin_only=True, write=True)
def abort_transaction(inv: Invocation) -> dict:
    _in_transaction(inv)
    sessions_of(inv.server).abort_command(inv.body)
    return {}


for _name in ("commitTransaction", "abortTransaction"):
    authz.REQUIREMENTS[_name] = lambda inv: []
