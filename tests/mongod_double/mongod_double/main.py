"""Entry points: ``mongod`` and ``mongos`` as MongoDB starts them.

Parse options, print ``--version``, fork if asked (mongod's three lines, the parent exits 0 only
once the child listens), write the pid file, start the server, and shut down cleanly on
SIGTERM / SIGINT or the shutdown command.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import socket
import sys

import yaml

from mongod_double import version as version_module
from mongod_double.errors import StartupError
from mongod_double.logs import log
from mongod_double.options import (
    EXIT_BADOPTIONS,
    OptionsExit,
    ServerOptions,
    parse_command_line,
    validate,
)
from mongod_double.security import auth_enabled

EXIT_CLEAN = 0


def print_version(program: str) -> None:
    version = version_module.current()
    label = "db version" if program == "mongod" else "mongos version"
    print(f"{label} v{version.text}")
    info = {
        "version": version.text,
        "gitVersion": version.git_version,
        "openSSLVersion": "disabled",
        "modules": [],
        "allocator": "tcmalloc",
        "environment": {"distmod": "debian12", "distarch": "x86_64", "target_arch": "x86_64"},
    }
    print("Build Info: " + json.dumps(info, indent=4))


def print_help(program: str) -> None:
    print(
        f"Usage: {program} [options]\n\nOptions understood by the mongod double: --config/-f, "
        "--port, --bind_ip, --bind_ip_all, --dbpath, --replSet, --configsvr, --shardsvr, "
        "--keyFile, --auth, --tlsMode, --tlsCertificateKeyFile, --tlsCAFile, --fork, "
        "--pidfilepath, --logpath, --logappend, --setParameter, --version (see README.md)"
    )


def main(argv: list[str] | None = None, program: str = "mongod") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    version = version_module.current()
    try:
        parsed = parse_command_line(argv, version, program)
        if parsed.show_version:
            print_version(program)
            return EXIT_CLEAN
        if parsed.show_help:
            print_help(program)
            return EXIT_CLEAN
        options = ServerOptions(parsed.parsed, argv, program)
        if options.get("outputConfig"):
            return output_config(options)
        if program == "mongos":
            from mongod_double.mongos import validate_router_options

            validate_router_options(options)
        validate(options)
    except OptionsExit as exc:
        return int(exc.code or EXIT_BADOPTIONS)
    if options.fork:
        return _fork_and_run(options, version)
    return run(options, version, ready_fd=None)


def output_config(options: ServerOptions) -> int:
    """``--outputConfig``: once the options parsed and validated, print them as YAML (keys
    sorted, as mongod's option environment prints them) and exit 0, before any start-up step."""
    from mongod_double.parameters import Parameters

    error = Parameters().set_at_startup(options.get("setParameter", {}))
    if error:
        print(error, file=sys.stderr)
        return EXIT_BADOPTIONS
    print(yaml.safe_dump(options.parsed, default_flow_style=False, sort_keys=True), end="")
    return EXIT_CLEAN


def _fork_and_run(options: ServerOptions, version) -> int:
    """mongod --fork: the parent reports the daemon's pid and waits until it listens."""
    print("about to fork child process, waiting until server is ready for connections.", flush=True)
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(read_fd)
        os.setsid()
        second = os.fork()
        if second != 0:
            os.write(write_fd, f"{second}\n".encode())
            os._exit(0)
        _detach_stdio()
        code = 1
        try:
            code = run(options, version, ready_fd=write_fd)
        finally:
            os._exit(code)
    os.close(write_fd)
    os.waitpid(first, 0)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read().decode()
    lines = data.split("\n")
    pid = lines[0].strip()
    print(f"forked process: {pid}", flush=True)
    status = lines[1].strip() if len(lines) > 1 else ""
    if status == "ready":
        print("child process started successfully, parent exiting", flush=True)
        return EXIT_CLEAN
    code = int(status) if status.isdigit() else 1
    print(f"ERROR: child process failed, exited with error number {code}", flush=True)
    print(
        'To see additional information in this output, start without the "--fork" option.',
        flush=True,
    )
    return code


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _signal_ready(ready_fd: int | None, status: str) -> None:
    if ready_fd is not None:
        try:
            os.write(ready_fd, f"{status}\n".encode())
            os.close(ready_fd)
        except OSError:
            pass


def run(options: ServerOptions, version, ready_fd: int | None) -> int:
    from mongod_double.commands.handshake import build_info
    from mongod_double.server import Server

    if options.log_path:
        try:
            log.to_file(options.log_path, options.log_append)
        except OSError as exc:
            print(f"Failed to open {options.log_path}: {exc.strerror}", file=sys.stderr)
            _signal_ready(ready_fd, str(EXIT_BADOPTIONS))
            return EXIT_BADOPTIONS
        log.info("CONTROL", 20698, "***** SERVER RESTARTED *****", ctx="main")
    if options.program == "mongos":
        from mongod_double.mongos import Router

        server = Router(options, version)
    else:
        server = Server(options, version)
    log.info(
        "CONTROL",
        4615611,
        "MongoDB starting",
        {
            "pid": os.getpid(),
            "port": options.port,
            "dbPath": options.dbpath,
            "architecture": "64-bit",
            "host": socket.gethostname(),
        },
        ctx="initandlisten",
    )
    log.info("CONTROL", 23403, "Build Info", {"buildInfo": build_info(server)}, ctx="initandlisten")
    log.info(
        "CONTROL",
        21951,
        "Options set by command line",
        {"options": options.parsed},
        ctx="initandlisten",
    )
    if not auth_enabled(options):
        log.warning(
            "CONTROL",
            22120,
            "Access control is not enabled for the database. Read and "
            "write access to data and configuration is unrestricted",
            {},
            ctx="initandlisten",
        )
    stop = server.request_shutdown

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        log.info(
            "CONTROL",
            23377,
            "Received signal",
            {
                "signal": signum,
                "error": {"SIGTERM": "Terminated", "SIGINT": "Interrupt"}.get(name, name),
            },
            ctx="SignalHandler",
        )
        stop(name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Test equipment's own diagnostic (mongod does not handle SIGUSR2): every thread's stack to
    # standard error, so that a test can show where a member that stopped answering is stuck.
    faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True)
    try:
        server.start()
    except StartupError as exc:
        severity = "F" if exc.log_id in (20573, 20574) else "E"
        log.log(
            severity,
            "CONTROL" if exc.log_id != 20568 else "NETWORK",
            exc.log_id,
            exc.msg,
            exc.attr,
            ctx="initandlisten",
        )
        log.info("CONTROL", 20565, "Now exiting", ctx="initandlisten")
        log.info(
            "CONTROL", 23138, "Shutting down", {"exitCode": exc.exit_code}, ctx="initandlisten"
        )
        server.storage.close()
        _signal_ready(ready_fd, str(exc.exit_code))
        return exc.exit_code
    if options.pid_file:
        try:
            with open(options.pid_file, "w", encoding="ascii") as handle:
                handle.write(f"{os.getpid()}\n")
        except OSError as exc:
            log.error(
                "CONTROL",
                23318,
                "Failed to write pid file",
                {"error": exc.strerror},
                ctx="initandlisten",
            )
            server.storage.close()
            _signal_ready(ready_fd, "1")
            return 1
    _signal_ready(ready_fd, "ready")
    server.serve()
    return EXIT_CLEAN


def mongod() -> None:
    sys.exit(main(program="mongod"))


def mongos() -> None:
    sys.exit(main(program="mongos"))
