"""Starting, logging and stopping like mongod: options, YAML config, --fork, signals, lock file."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest


def test_version_prints_db_version_and_build_info(launcher):
    """``mongod --version`` prints "db version vX.Y.Z" and a Build Info JSON block.

    Source: https://www.mongodb.com/docs/manual/reference/program/mongod/#std-option-mongod.--version
    """
    result = launcher.run("--version", version="8.0.4")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "db version v8.0.4"
    info = json.loads(result.stdout.split("Build Info: ", 1)[1])
    assert info["version"] == "8.0.4"
    assert info["environment"]["distmod"] == "debian12"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nonsense"], "Error parsing command line: unrecognised option '--nonsense'"),
        (
            ["--port", "abc"],
            "Error parsing command line: the argument ('abc') for option '--port' is invalid",
        ),
        (
            ["--port"],
            "Error parsing command line: the required argument for option '--port' is missing",
        ),
        (["--tlsMode", "sometimes"], "BadValue: Invalid value for net.tls.mode: 'sometimes'"),
        (["--fork"], "BadValue: --fork has to be used with --logpath or --syslog"),
        (["--configsvr"], "Cannot start a configsvr as a standalone server"),
    ],
)
def test_bad_options_exit_2(launcher, args, message):
    """Bad options print mongod's error and exit with 2 (EXIT_BADOPTIONS).

    Source: https://www.mongodb.com/docs/manual/reference/exit-codes/ (2: "Returned by mongod if
    the specified options are in error or are incompatible with other options").
    """
    result = launcher.run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_yaml_config_unknown_option_and_removed_journal_option(launcher, tmp_path):
    """Unknown YAML options stop mongod; storage.journal.enabled was removed in 6.1.

    Source: https://www.mongodb.com/docs/manual/reference/configuration-options/ and
    https://www.mongodb.com/docs/manual/release-notes/6.1/ (storage.journal.enabled removed).
    """
    config = tmp_path / "bad.conf"
    config.write_text("net:\n  port: 27017\n  colour: blue\n")
    result = launcher.run("--config", str(config))
    assert result.returncode == 2
    assert "Unrecognized option: net.colour" in result.stderr
    config.write_text("storage:\n  journal:\n    enabled: true\n")
    assert launcher.run("-f", str(config), "--version").returncode == 0
    assert launcher.run("-f", str(config), version="7.0.14").returncode == 2
    missing = launcher.run("--config", str(tmp_path / "absent.conf"))
    assert missing.returncode == 2 and "Error reading config file" in missing.stderr


def test_yaml_config_start_and_get_cmd_line_opts(launcher, tmp_path):
    """A YAML config starts the server; getCmdLineOpts shows argv and the parsed tree.

    Source: https://www.mongodb.com/docs/manual/reference/command/getCmdLineOpts/
    """
    dbpath = tmp_path / "cfgdb"
    dbpath.mkdir()
    port = launcher.free_port()
    log = tmp_path / "cfg.log"
    config = tmp_path / "mongod.conf"
    config.write_text(
        f"net:\n  port: {port}\n  bindIp: 127.0.0.1\nstorage:\n  dbPath: {dbpath}\n"
        f"systemLog:\n  destination: file\n  path: {log}\n  logAppend: true\n"
        "setParameter:\n  cursorTimeoutMillis: 1000\n"
    )
    node = launcher.start("--config", str(config), dbpath=dbpath, port=port, log=False)
    client = node.client()
    opts = client.admin.command("getCmdLineOpts")
    assert opts["parsed"]["net"]["port"] == port
    assert opts["parsed"]["storage"]["dbPath"] == str(dbpath)
    assert opts["parsed"]["config"] == str(config)
    assert "--config" in opts["argv"]
    assert (
        client.admin.command("getParameter", 1, cursorTimeoutMillis=1)["cursorTimeoutMillis"]
        == 1000
    )
    first = json.loads(log.read_text().splitlines()[0])
    assert set(first) >= {"t", "s", "c", "id", "ctx", "msg"} and "$date" in first["t"]


def test_structured_log_and_clean_shutdown_on_sigterm(node):
    """Logs are MongoDB's JSON lines ("Waiting for connections", id 23016); SIGTERM shuts down
    cleanly (exit 0), keeping the pid file and emptying mongod.lock.

    Source: https://www.mongodb.com/docs/manual/reference/log-messages/ (structured logging) and
    https://www.mongodb.com/docs/manual/tutorial/manage-mongodb-processes/#stop-mongod-processes
    """
    waiting = [json.loads(line) for line in node.log_lines() if '"id":23016' in line]
    assert waiting and waiting[0]["msg"] == "Waiting for connections"
    assert waiting[0]["c"] == "NETWORK" and waiting[0]["attr"]["port"] == node.port
    assert node.log_lines()[0].startswith('{"t":{"$date":"')
    assert (node.dbpath / "mongod.lock").read_text().strip() == str(node.proc.pid)
    assert node.stop(signal.SIGTERM) == 0
    assert (node.dbpath / "mongod.lock").read_text() == ""
    last = json.loads(node.log_lines()[-1])
    assert last["msg"] == "Shutting down" and last["attr"] == {"exitCode": 0}


def test_second_mongod_on_same_dbpath_refuses(launcher, node):
    """A second mongod on a dbPath in use exits with DBPathInUse (exit code 100).

    Source: https://www.mongodb.com/docs/manual/reference/exit-codes/ (100) and mongod's
    "Unable to lock the lock file ... Another mongod instance is already running" message.
    """
    second = launcher.start(dbpath=node.dbpath, wait=False)
    assert second.proc.wait(15) == 100
    text = "\n".join(second.log_lines())
    assert "DBPathInUse: Unable to lock the lock file" in text
    assert f"Another mongod instance is already running on the {node.dbpath} directory" in text


def test_missing_dbpath_and_port_in_use(launcher, node, tmp_path):
    """A missing dbPath exits 100 (NonExistentPath); a busy port exits 48.

    Source: https://www.mongodb.com/docs/manual/reference/exit-codes/ (48, 100)
    """
    gone = launcher.start(dbpath=tmp_path / "absent", wait=False)
    assert gone.proc.wait(15) == 100
    assert "NonExistentPath: Data directory" in "\n".join(gone.log_lines())
    busy = launcher.start(port=node.port, wait=False)
    assert busy.proc.wait(15) == 48


def test_fork_reports_child_and_parent_exits_when_ready(launcher, tmp_path):
    """--fork prints mongod's three lines and returns once the child accepts connections.

    Source: https://www.mongodb.com/docs/manual/tutorial/manage-mongodb-processes/
    #start-mongod-as-a-daemon
    """
    dbpath = tmp_path / "forked"
    dbpath.mkdir()
    port = launcher.free_port()
    pidfile = tmp_path / "mongod.pid"
    result = launcher.run(
        "--fork",
        "--port",
        str(port),
        "--bind_ip",
        "127.0.0.1",
        "--dbpath",
        str(dbpath),
        "--logpath",
        str(tmp_path / "fork.log"),
        "--pidfilepath",
        str(pidfile),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "about to fork child process, waiting until server is ready for connections."
    )
    assert lines[1] == f"forked process: {pidfile.read_text().strip()}"
    assert lines[2] == "child process started successfully, parent exiting"
    pid = int(pidfile.read_text())
    try:
        import pymongo

        client = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=3000
        )
        assert client.admin.command("ping")["ok"] == 1
        client.close()
        failed = launcher.run(
            "--fork",
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--dbpath",
            str(dbpath),
            "--logpath",
            str(tmp_path / "f2.log"),
        )
        assert failed.returncode == 100
        assert "ERROR: child process failed, exited with error number 100" in failed.stdout
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    assert pidfile.exists()  # mongod leaves its pid file behind
