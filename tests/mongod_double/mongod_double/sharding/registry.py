"""The router's command set.

mongos has its own commands: the modules ``commands/mongos_*.py`` register their handlers here
with ``@router_command(...)`` (the same :class:`Invocation` as mongod's commands, with
``inv.server`` the :class:`~mongod_double.mongos.Router`), and mongod's dispatcher
(:func:`mongod_double.commands.dispatch`) runs them. A name nobody registered answers
CommandNotFound (59), as on mongod; errors a shard or the config servers return are relayed with
their own code and message (:func:`mongod_double.commands.remote_error`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from mongod_double.commands import (
    CommandSpec,
    Handler,
)

if TYPE_CHECKING:
    pass

ROUTER_MODULES = ("mongos_handshake", "mongos_admin", "mongos_crud", "mongos_ddl", "mongos_zones")
ROUTER_REGISTRY: dict[str, CommandSpec] = {}


def router_command(
    name: str, *aliases: str, admin_only: bool = False, profile_op: str = "command"
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for each in (name, *aliases):
            if each in ROUTER_REGISTRY:
                raise RuntimeError(f"router command {each!r} registered twice")
            ROUTER_REGISTRY[each] = CommandSpec(each, handler, admin_only, profile_op=profile_op)
        return handler

    return register


def load_router_commands() -> None:
    for module in ROUTER_MODULES:
        importlib.import_module(f"mongod_double.commands.{module}")
