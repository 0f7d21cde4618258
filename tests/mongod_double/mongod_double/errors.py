"""MongoDB error codes and the exception that carries them to the client.

Codes and names are those of MongoDB's ``src/mongo/base/error_codes.yml``.
"""

from __future__ import annotations

CODE_NAMES: dict[int, str] = {
    1: "InternalError",
    2: "BadValue",
    4: "NoSuchKey",
    9: "FailedToParse",
    11: "UserNotFound",
    13: "Unauthorized",
    16: "InvalidLength",
    17: "ProtocolError",
    18: "AuthenticationFailed",
    31: "RoleNotFound",
    141: "SSLHandshakeFailed",
    334: "MechanismUnavailable",
    14: "TypeMismatch",
    20: "IllegalOperation",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    40: "ConflictingUpdateOperators",
    43: "CursorNotFound",
    48: "NamespaceExists",
    50: "MaxTimeMSExpired",
    52: "DollarPrefixedFieldName",
    59: "CommandNotFound",
    66: "ImmutableField",
    67: "CannotCreateIndex",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    74: "NodeNotFound",
    76: "NoReplicationEnabled",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    91: "ShutdownInProgress",
    93: "InvalidReplicaSetConfig",
    94: "NotYetInitialized",
    95: "NotSecondary",
    64: "WriteConcernFailed",
    79: "UnknownReplWriteConcern",
    100: "UnsatisfiableWriteConcern",
    125: "CommandFailed",
    185: "InconsistentReplicaSetNames",
    262: "ExceededTimeLimit",
    308: "CurrentConfigNotCommittedYet",
    11602: "InterruptedDueToReplStateChange",
    13436: "NotPrimaryOrSecondary",
    96: "OperationFailed",
    98: "DBPathInUse",
    103: "NewReplicaSetConfigurationIncompatible",
    115: "CommandNotSupported",
    117: "ConflictingOperationInProgress",
    136: "CappedPositionLost",
    186: "ClientMetadataCannotBeMutated",
    352: "UnsupportedOpQueryCommand",
    7369100: "Location7369100",
    51024: "Location51024",
    5: "GraphContainsCycle",
    165: "ViewDepthLimitExceeded",
    166: "CommandNotSupportedOnView",
    167: "OptionNotSupportedOnView",
    168: "InvalidPipelineOperator",
    197: "InvalidIndexSpecificationOption",
    238: "NotImplemented",
    10107: "NotWritablePrimary",
    11000: "DuplicateKey",
    11600: "InterruptedAtShutdown",
    11601: "Interrupted",
    13297: "DatabaseDifferCase",
    13435: "NotPrimaryNoSecondaryOk",
}

BAD_VALUE = 2
NO_SUCH_KEY = 4
FAILED_TO_PARSE = 9
TYPE_MISMATCH = 14
ILLEGAL_OPERATION = 20
NAMESPACE_NOT_FOUND = 26
INDEX_NOT_FOUND = 27
CURSOR_NOT_FOUND = 43
NAMESPACE_EXISTS = 48
COMMAND_NOT_FOUND = 59
INVALID_OPTIONS = 72
INVALID_NAMESPACE = 73
NODE_NOT_FOUND = 74
NO_REPLICATION_ENABLED = 76
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
CANNOT_CREATE_INDEX = 67
INVALID_REPL_SET_CONFIG = 93
NOT_YET_INITIALIZED = 94
DB_PATH_IN_USE = 98
ALREADY_INITIALIZED = 23
NOT_IMPLEMENTED = 238
NOT_WRITABLE_PRIMARY = 10107
DUPLICATE_KEY = 11000
INTERRUPTED = 11601

CODE_NAMES[ALREADY_INITIALIZED] = "AlreadyInitialized"


def code_name(code: int) -> str:
    return CODE_NAMES.get(code, f"Location{code}")


class CommandError(Exception):
    """A command failed: becomes ``{ok: 0, errmsg, code, codeName}`` on the wire."""

    def __init__(self, code: int, errmsg: str, **extra: object) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def to_reply(self) -> dict:
        reply: dict = {"ok": 0.0, "errmsg": self.errmsg, "code": self.code}
        reply["codeName"] = code_name(self.code)
        reply.update(self.extra)
        return reply


class StartupError(Exception):
    """mongod cannot start: log ``msg`` with ``log_id`` and exit with ``exit_code``."""

    def __init__(self, exit_code: int, log_id: int, msg: str, attr: dict) -> None:
        super().__init__(msg)
        self.exit_code = exit_code
        self.log_id = log_id
        self.msg = msg
        self.attr = attr


class CloseConnection(Exception):
    """Close the client connection without replying (the shutdown command does this)."""
