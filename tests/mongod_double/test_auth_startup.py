"""Security at start-up: keyFile rules and internal authentication, access control switches,
--outputConfig, and the localhost exception seen from a non-localhost address (a lab host)."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest
import yaml
from pymongo.errors import OperationFailure

KEY = "c2VjcmV0LWtleWZpbGUtY29udGVudHMtZm9yLXdhcA=="


def _keyfile(tmp_path, content: str = KEY, mode: int = 0o400):
    path = tmp_path / "keyfile"
    path.write_text(content)
    path.chmod(mode)
    return path


def _start_failure(launcher, *args) -> tuple[int, str]:
    result = launcher.run(
        "--port", str(launcher.free_port()), "--dbpath", str(launcher.tmp_path), *args
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("mode", "content", "message"),
    [
        (0o644, KEY, "permissions on {path} are too open"),
        (0o440, KEY, "permissions on {path} are too open"),
        (0o400, "abc", "has length 3, must be between 6 and 1024 chars"),
        (0o400, "x" * 1025, "has length 1025, must be between 6 and 1024 chars"),
        (0o400, "not base64!", "invalid char in key file {path}: !"),
    ],
)
def test_keyfile_refused_at_start(launcher, tmp_path, mode, content, message):
    """mongod refuses a keyFile with group/world permissions, or whose content (whitespace
    ignored) is not 6 to 1024 base64 characters.

    Source: https://www.mongodb.com/docs/manual/core/security-internal-authentication/#keyfiles
    ("The content of the keyfile must be between 6 and 1024 characters ... only characters in
    the base64 set ... On UNIX systems, the keyfile must not have group or world permissions")
    """
    path = _keyfile(tmp_path, content, mode)
    code, output = _start_failure(launcher, "--keyFile", str(path))
    assert code == 1
    assert message.format(path=path) in output
    missing_code, missing = _start_failure(launcher, "--keyFile", str(tmp_path / "nope"))
    assert missing_code == 1 and "Error reading file" in missing


def test_keyfile_turns_on_access_control_and_authenticates_system(launcher, tmp_path):
    """A keyFile implies authorization; ``__system@local`` with the keyFile content (whitespace
    removed) authenticates with SCRAM-SHA-1 and SCRAM-SHA-256 and may do anything.

    Source: https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-security.keyFile
    ("Enables authorization") and
    https://www.mongodb.com/docs/manual/core/security-internal-authentication/
    """
    path = _keyfile(tmp_path, "\n".join(KEY[i : i + 8] for i in range(0, len(KEY), 8)) + "\n")
    node = launcher.start("--keyFile", str(path))
    with pytest.raises(OperationFailure) as info:
        node.client().test.c.insert_one({})
    assert info.value.code == 13
    assert not any("Access control is not enabled" in line for line in node.log_lines())
    for mechanism in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        system = node.client(
            username="__system", password=KEY, authSource="local", authMechanism=mechanism
        )
        system.test.c.insert_one({"by": mechanism})
        system.admin.command("serverStatus")
        system.admin.command("createUser", "admin-" + mechanism, pwd="p", roles=["root"])
    listed = node.client(username="admin-SCRAM-SHA-1", password="p").admin.command("usersInfo", 1)
    assert "__system" not in [u["user"] for u in listed["users"]]


def test_authorization_disabled_and_transition_to_auth_turn_it_off(launcher, tmp_path):
    """``security.authorization: disabled`` or transitionToAuth with a keyFile: commands run
    without authentication, while __system can still authenticate.

    Source: https://www.mongodb.com/docs/manual/reference/configuration-options/#mongodb-setting-security.transitionToAuth
    """
    path = _keyfile(tmp_path)
    node = launcher.start("--keyFile", str(path), "--transitionToAuth")
    node.client().test.c.insert_one({})
    node.client(username="__system", password=KEY, authSource="local").test.c.find_one()


def test_output_config_prints_yaml_and_exits(launcher, tmp_path):
    """``--outputConfig`` prints the effective options (config file merged with the command
    line, ``outputConfig: true`` included) as YAML on stdout and exits 0 without starting;
    a bad config exits 2 with mongod's error.

    Source: https://www.mongodb.com/docs/manual/tutorial/convert-command-line-options-to-yaml/
    """
    config = tmp_path / "mongod.conf"
    config.write_text(
        textwrap.dedent(
            """\
            net: {port: 27999, bindIp: "127.0.0.1,10.0.0.5", tls: {mode: requireTLS,
                  certificateKeyFile: /etc/ssl/m.pem, CAFile: /etc/ssl/ca.pem}}
            security: {authorization: enabled, keyFile: /etc/mongodb/keyfile}
            replication: {replSetName: rs0}
            storage: {dbPath: /nonexistent/db}
            """
        )
    )
    result = launcher.run("--config", str(config), "--fork", "--outputConfig")
    assert result.returncode == 0, result.stderr
    out = yaml.safe_load(result.stdout)
    assert out["outputConfig"] is True
    assert out["net"]["tls"] == {
        "mode": "requireTLS",
        "certificateKeyFile": "/etc/ssl/m.pem",
        "CAFile": "/etc/ssl/ca.pem",
    }
    assert out["security"]["keyFile"] == "/etc/mongodb/keyfile"
    assert out["processManagement"] == {"fork": True}
    assert list(out) == sorted(out)
    config.write_text("net:\n  port: 27999\n  bindIpp: 127.0.0.1\n")
    bad = launcher.run("--config", str(config), "--outputConfig")
    assert bad.returncode == 2
    assert "Unrecognized option: net.bindIpp" in bad.stderr
    assert bad.stdout == ""


def test_localhost_exception_never_applies_to_a_remote_client(launcher, make_lab):
    """From another host's address the localhost exception does not apply even with no users:
    createUser fails "requires authentication" (pymongo 3.11 on a lab host), while the same
    command from 127.0.0.1 succeeds.

    Source: https://www.mongodb.com/docs/manual/core/localhost-exception/
    """
    lab = make_lab(1)
    host_ip = lab.hosts["lab1"]
    gateway = str(ipaddress.ip_interface(f"{host_ip}/24").network.network_address + 1)
    node = launcher.start("--auth", "--bind_ip", f"127.0.0.1,{gateway}")
    script = textwrap.dedent(
        f"""\
        import pymongo
        from pymongo.errors import OperationFailure
        c = pymongo.MongoClient("{gateway}", {node.port}, serverSelectionTimeoutMS=5000)
        try:
            c.admin.command("createUser", "remote", pwd="p", roles=["root"])
            print("CREATED")
        except OperationFailure as e:
            print("REFUSED", e.code, e.details["errmsg"])
        """
    )
    result = lab.ssh("lab1", f"python3 -c '{script}'")
    assert result.stdout.strip() == "REFUSED 13 Command createUser requires authentication"
    node.client().admin.command("createUser", "local", pwd="p", roles=["root"])
    assert [u["user"] for u in node.client(username="local", password="p").admin.command(
        "usersInfo", 1)["users"]] == ["local"]  # fmt: skip
