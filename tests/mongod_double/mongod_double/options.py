"""mongod's command line and YAML configuration file.

Both are merged into one tree shaped like the YAML file (the ``parsed`` part of getCmdLineOpts);
command-line values win. Errors print mongod's messages on stderr and exit with code 2
(EXIT_BADOPTIONS), as mongod does.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml

from mongod_double.version import Version

EXIT_BADOPTIONS = 2

# YAML option path -> type. "str", "int", "float", "bool", "map", "list" or a tuple of enum values.
YAML_OPTIONS: dict[str, Any] = {
    "net.port": "int",
    "net.bindIp": "str",
    "net.bindIpAll": "bool",
    "net.ipv6": "bool",
    "net.maxIncomingConnections": "int",
    "net.unixDomainSocket.enabled": "bool",
    "net.tls.mode": ("disabled", "allowTLS", "preferTLS", "requireTLS"),
    "net.tls.certificateKeyFile": "str",
    "net.tls.certificateKeyFilePassword": "str",
    "net.tls.CAFile": "str",
    "net.tls.allowConnectionsWithoutCertificates": "bool",
    "net.tls.allowInvalidCertificates": "bool",
    "net.tls.allowInvalidHostnames": "bool",
    "net.compression.compressors": "str",
    "storage.dbPath": "str",
    "storage.engine": ("wiredTiger",),
    "storage.directoryPerDB": "bool",
    "storage.syncPeriodSecs": "float",
    "storage.wiredTiger.engineConfig.cacheSizeGB": "float",
    "storage.oplogMinRetentionHours": "float",
    "replication.replSetName": "str",
    "replication.oplogSizeMB": "int",
    "sharding.clusterRole": ("configsvr", "shardsvr"),
    "security.authorization": ("enabled", "disabled"),
    "security.keyFile": "str",
    "security.clusterAuthMode": ("keyFile", "sendKeyFile", "sendX509", "x509"),
    "security.transitionToAuth": "bool",
    "systemLog.destination": ("file", "syslog"),
    "systemLog.path": "str",
    "systemLog.logAppend": "bool",
    "systemLog.logRotate": ("rename", "reopen"),
    "systemLog.quiet": "bool",
    "systemLog.verbosity": "int",
    "systemLog.timeStampFormat": ("iso8601-utc", "iso8601-local"),
    "processManagement.fork": "bool",
    "processManagement.pidFilePath": "str",
    "processManagement.timeZoneInfo": "str",
    "operationProfiling.mode": ("off", "slowOp", "all"),
    "operationProfiling.slowOpThresholdMs": "int",
    "operationProfiling.slowOpSampleRate": "float",
    "setParameter": "map",
}
# storage.journal.enabled was removed in 6.1: later releases reject it as unrecognized.
JOURNAL_OPTION = "storage.journal.enabled"

# Command-line option -> (YAML path, type, value for flags).
CLI_OPTIONS: dict[str, tuple[str, Any, Any]] = {
    "port": ("net.port", "int", None),
    "bind_ip": ("net.bindIp", "str", None),
    "bind_ip_all": ("net.bindIpAll", "flag", True),
    "ipv6": ("net.ipv6", "flag", True),
    "maxConns": ("net.maxIncomingConnections", "int", None),
    "tlsMode": ("net.tls.mode", YAML_OPTIONS["net.tls.mode"], None),
    "tlsCertificateKeyFile": ("net.tls.certificateKeyFile", "str", None),
    "tlsCAFile": ("net.tls.CAFile", "str", None),
    "tlsCertificateKeyFilePassword": ("net.tls.certificateKeyFilePassword", "str", None),
    "tlsAllowConnectionsWithoutCertificates": (
        "net.tls.allowConnectionsWithoutCertificates",
        "flag",
        True,
    ),
    "tlsAllowInvalidCertificates": ("net.tls.allowInvalidCertificates", "flag", True),
    "tlsAllowInvalidHostnames": ("net.tls.allowInvalidHostnames", "flag", True),
    "clusterAuthMode": ("security.clusterAuthMode", YAML_OPTIONS["security.clusterAuthMode"], None),
    "transitionToAuth": ("security.transitionToAuth", "flag", True),
    "outputConfig": ("outputConfig", "flag", True),
    "dbpath": ("storage.dbPath", "str", None),
    "wiredTigerCacheSizeGB": ("storage.wiredTiger.engineConfig.cacheSizeGB", "float", None),
    "replSet": ("replication.replSetName", "str", None),
    "oplogSize": ("replication.oplogSizeMB", "int", None),
    "configsvr": ("sharding.clusterRole", "flag", "configsvr"),
    "shardsvr": ("sharding.clusterRole", "flag", "shardsvr"),
    "keyFile": ("security.keyFile", "str", None),
    "auth": ("security.authorization", "flag", "enabled"),
    "noauth": ("security.authorization", "flag", "disabled"),
    "fork": ("processManagement.fork", "flag", True),
    "pidfilepath": ("processManagement.pidFilePath", "str", None),
    "logpath": ("systemLog.path", "str", None),
    "logappend": ("systemLog.logAppend", "flag", True),
    "quiet": ("systemLog.quiet", "flag", True),
    "profile": ("operationProfiling.mode", "int", None),
    "slowms": ("operationProfiling.slowOpThresholdMs", "int", None),
}
PROFILE_MODES = {0: "off", 1: "slowOp", 2: "all"}
# Options mongos does not have (it keeps no data and is no replica set member): it rejects them
# as unrecognised. Source: https://www.mongodb.com/docs/manual/reference/program/mongos/
MONGOD_ONLY_SECTIONS = (
    "storage.",
    "replication.",
    "sharding.clusterRole",
    "security.authorization",
    "operationProfiling.mode",
)


class OptionsExit(SystemExit):
    """Option handling ends the process (bad option, --version, --help)."""


def fail(message: str, program: str = "mongod", hint: bool = True) -> NoReturn:
    print(message, file=sys.stderr)
    if hint:
        print(f"try '{program} --help' for more information", file=sys.stderr)
    raise OptionsExit(EXIT_BADOPTIONS)


def _convert(path: str, kind: Any, value: Any, source: str, program: str) -> Any:
    if isinstance(kind, tuple):
        if value not in kind:
            fail(
                f"BadValue: Invalid value for {path}: '{value}'; expected one of {list(kind)}",
                program,
                hint=False,
            )
        return value
    if kind == "int":
        if isinstance(value, bool):
            value = str(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            if source == "cli":
                fail(
                    f"Error parsing command line: the argument ('{value}') for option "
                    f"'--{path}' is invalid",
                    program,
                )
            fail(
                f'Error parsing option "{path}" as int: Bad digit while parsing {value}',
                program,
                hint=False,
            )
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            fail(f'Error parsing option "{path}" as double in: {value}', program, hint=False)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        fail(f'Error parsing option "{path}" as bool: {value}', program, hint=False)
    if kind == "map":
        if not isinstance(value, dict):
            fail(f'Error parsing option "{path}": expected a mapping', program, hint=False)
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (dict, list)):
        fail(f'Error parsing option "{path}" as string: expected a scalar', program, hint=False)
    return str(value) if not isinstance(value, bool) else ("true" if value else "false")


def _set(tree: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _get(tree: dict, path: str, default: Any = None) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "setParameter":
            out.extend(_flatten(value, path + "."))
        else:
            out.append((path, value))
    return out


def load_config_file(path: str, version: Version, program: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except OSError as exc:
        fail(f"Error reading config file: {exc.strerror}", program, hint=False)
    except yaml.YAMLError as exc:
        fail(f"Error parsing YAML config file: {exc}", program, hint=False)
    if not isinstance(raw, dict):
        fail("Error parsing YAML config file: the top level must be a mapping", program, hint=False)
    known = dict(YAML_OPTIONS)
    if version.series == (6, 0):
        known[JOURNAL_OPTION] = "bool"
    if program == "mongos":
        known = {k: v for k, v in known.items() if not k.startswith(MONGOD_ONLY_SECTIONS)}
        known["sharding.configDB"] = "str"
    tree: dict = {}
    for path, value in _flatten(raw):
        if path not in known:
            fail(f"Unrecognized option: {path}", program)
        _set(tree, path, _convert(path, known[path], value, "yaml", program))
    return tree


@dataclass
class ParsedCommandLine:
    argv: list[str]
    parsed: dict
    show_version: bool = False
    show_help: bool = False


def parse_command_line(argv: list[str], version: Version, program: str = "mongod"):
    """Parse ``argv`` (without the program name) into mongod's parsed option tree."""
    cli: dict = {}
    set_parameters: dict = {}
    config_path = None
    show_version = show_help = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("-f", "--config"):
            if i >= len(args):
                fail(
                    f"Error parsing command line: the required argument for option "
                    f"'{arg}' is missing",
                    program,
                )
            config_path = args[i]
            i += 1
            continue
        if arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
            continue
        if arg in ("--version", "-version"):
            show_version = True
            continue
        if arg in ("--help", "-h"):
            show_help = True
            continue
        if not arg.startswith("--"):
            fail(
                "Error parsing command line: too many positional options have been specified "
                "on the command line",
                program,
            )
        name, eq, inline = arg[2:].partition("=")
        options = dict(CLI_OPTIONS)
        if program == "mongos":
            options = {
                k: v for k, v in options.items() if not v[0].startswith(MONGOD_ONLY_SECTIONS)
            }
            options["configdb"] = ("sharding.configDB", "str", None)
        if name == "setParameter":
            if eq:
                raw = inline
            elif i < len(args):
                raw = args[i]
                i += 1
            else:
                fail(
                    "Error parsing command line: the required argument for option "
                    "'--setParameter' is missing",
                    program,
                )
            key, sep, value = raw.partition("=")
            if not sep:
                fail(f'Illegal option assignment: "{raw}"', program, hint=False)
            set_parameters[key] = value
            continue
        if name not in options:
            fail(f"Error parsing command line: unrecognised option '--{name}'", program)
        path, kind, flag_value = options[name]
        if kind == "flag":
            if eq:
                fail(
                    f"Error parsing command line: option '--{name}' does not take any arguments",
                    program,
                )
            _set(cli, path, flag_value)
            continue
        if eq:
            value = inline
        elif i < len(args):
            value = args[i]
            i += 1
        else:
            fail(
                f"Error parsing command line: the required argument for option '--{name}' "
                "is missing",
                program,
            )
        if kind == "int":
            try:
                converted: Any = int(value)
            except ValueError:
                fail(
                    f"Error parsing command line: the argument ('{value}') for option "
                    f"'--{name}' is invalid",
                    program,
                )
        else:
            converted = _convert(path, kind, value, "cli", program)
        if name == "profile":
            if converted not in PROFILE_MODES:
                fail(
                    f"Error parsing command line: the argument ('{value}') for option "
                    "'--profile' is invalid",
                    program,
                )
            converted = PROFILE_MODES[converted]
        _set(cli, path, converted)
        if name == "logpath":
            _set(cli, "systemLog.destination", "file")

    parsed: dict = {}
    if config_path is not None and not show_version:
        parsed = load_config_file(config_path, version, program)
        parsed["config"] = config_path
    for path, value in _flatten(cli):
        _set(parsed, path, value)
    if set_parameters:
        parsed.setdefault("setParameter", {}).update(set_parameters)
    return ParsedCommandLine(list(argv), parsed, show_version, show_help)


class ServerOptions:
    """Typed access to the parsed option tree, with mongod's defaults."""

    def __init__(self, parsed: dict, argv: list[str], program: str = "mongod") -> None:
        self.parsed = copy.deepcopy(parsed)
        self.argv = argv
        self.program = program

    def get(self, path: str, default: Any = None) -> Any:
        return _get(self.parsed, path, default)

    @property
    def cluster_role(self) -> str | None:
        return self.get("sharding.clusterRole")

    @property
    def port(self) -> int:
        default = {"configsvr": 27019, "shardsvr": 27018}.get(self.cluster_role or "", 27017)
        return self.get("net.port", default)

    @property
    def bind_ips(self) -> list[str]:
        if self.get("net.bindIpAll"):
            return ["0.0.0.0"]
        raw = self.get("net.bindIp", "localhost")
        return [part.strip() for part in raw.split(",") if part.strip()]

    @property
    def dbpath(self) -> str:
        default = "/data/configdb" if self.cluster_role == "configsvr" else "/data/db"
        return self.get("storage.dbPath", default)

    @property
    def repl_set_name(self) -> str | None:
        return self.get("replication.replSetName")

    @property
    def fork(self) -> bool:
        return bool(self.get("processManagement.fork", False))

    @property
    def pid_file(self) -> str | None:
        return self.get("processManagement.pidFilePath")

    @property
    def log_path(self) -> str | None:
        if self.get("systemLog.destination") == "file" or self.get("systemLog.path"):
            return self.get("systemLog.path")
        return None

    @property
    def log_append(self) -> bool:
        return bool(self.get("systemLog.logAppend", False))

    @property
    def oplog_size_mb(self) -> int:
        return self.get("replication.oplogSizeMB", 990)

    @property
    def cache_size_bytes(self) -> int:
        gb = self.get("storage.wiredTiger.engineConfig.cacheSizeGB")
        return int(gb * 1024**3) if gb else 256 * 1024 * 1024


def validate(options: ServerOptions) -> None:
    """Cross-option rules mongod applies before starting."""
    program = options.program
    port = options.port
    if not 0 <= port <= 65535:
        fail(f"BadValue: port number must be between 0 and 65535, got {port}", program, hint=False)
    if options.cluster_role and not options.repl_set_name:
        role = options.cluster_role
        fail(
            f"BadValue: Cannot start a {role} as a standalone server. Please use the option "
            "--replSet to start the node as a replica set.",
            program,
            hint=False,
        )
    if options.fork and not options.log_path and options.get("systemLog.destination") != "syslog":
        fail("BadValue: --fork has to be used with --logpath or --syslog", program, hint=False)
    if options.get("systemLog.destination") == "file" and not options.get("systemLog.path"):
        fail(
            "BadValue: systemLog.path is required if systemLog.destination is to a file",
            program,
            hint=False,
        )
