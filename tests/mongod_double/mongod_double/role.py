"""Which kind of server this process is: the single place the server's role is decided."""

from __future__ import annotations

import enum

from mongod_double.options import ServerOptions


class Role(enum.Enum):
    STANDALONE = "standalone"
    REPLICA_SET_MEMBER = "replica set member"
    CONFIG_SERVER = "configsvr"
    SHARD_SERVER = "shardsvr"
    MONGOS = "mongos"

    @property
    def is_replicated(self) -> bool:
        return self in (Role.REPLICA_SET_MEMBER, Role.CONFIG_SERVER, Role.SHARD_SERVER)


def role_from_options(options: ServerOptions) -> Role:
    if options.program == "mongos":
        return Role.MONGOS
    if options.cluster_role == "configsvr":
        return Role.CONFIG_SERVER
    if options.cluster_role == "shardsvr":
        return Role.SHARD_SERVER
    if options.repl_set_name:
        return Role.REPLICA_SET_MEMBER
    return Role.STANDALONE
