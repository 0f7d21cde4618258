"""What a cluster's deploy job gets for its agents (webui.services.deployments.agent_vars and
webui.jobs.agents): the platform's URL, wheelhouse and pinned CA only when it can serve agents,
a token per host only as a lookup of the run's environment, and one playbook importing the
deploy playbook then deploy_agent.yml; and deploy_agent.yml's refusal, before it changes
anything, to go on without an administrator where access control is on; the agent.ini the role
writes, whose allow-list names backup and restore only when asked. The whole path runs on lab
hosts in tests/webui/test_deploy_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.labhosts import REPO, VENV_BIN, ansible_env
from wap_agent.config import load as load_agent_config
from webui.config import Settings, SettingsError, load_settings
from webui.jobs import agents
from webui.jobs.runner import extra_vars_file, extra_vars_for
from webui.services.deployments import agent_vars


def settings_with(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"WAP_DATA_DIR": str(tmp_path / "data"), **env})


def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "wap_agent-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    return folder


def test_no_agents_without_a_public_url_or_a_wheelhouse(tmp_path: Path) -> None:
    assert agent_vars(settings_with(tmp_path)) == {}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert agent_vars(settings_with(tmp_path, WAP_PUBLIC_URL="http://10.1.0.1:8080",
                                    WAP_AGENT_WHEELHOUSE=str(empty))) == {}  # fmt: skip
    found = agent_vars(settings_with(tmp_path, WAP_PUBLIC_URL="http://10.1.0.1:8080/",
                                     WAP_AGENT_WHEELHOUSE=str(wheelhouse(tmp_path))))  # fmt: skip
    assert found == {"wap_agent_platform_url": "http://10.1.0.1:8080",
                     "wap_agent_wheelhouse": str(tmp_path / "wheels")}  # fmt: skip


def test_the_ca_is_pinned_under_tls(tmp_path: Path) -> None:
    found = agent_vars(settings_with(tmp_path, WAP_TLS="auto", WAP_PUBLIC_URL="https://wap:8443",
                                     WAP_AGENT_WHEELHOUSE=str(wheelhouse(tmp_path))))  # fmt: skip
    assert found["wap_agent_platform_ca"] == str(tmp_path / "data" / "tls" / "ca.pem")


@pytest.mark.parametrize("url", ["wap.example.com", "ftp://wap:21", "https://wap:8443/api"])
def test_a_public_url_with_more_than_scheme_host_and_port_is_refused(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(SettingsError, match="WAP_PUBLIC_URL"):
        settings_with(tmp_path, WAP_PUBLIC_URL=url)


def test_the_token_is_a_lookup_of_the_environment_never_a_value(tmp_path: Path) -> None:
    job = {"_id": "j1", "cluster_id": "c1", "playbook": "deploy_replicaset.yml",
           "extra_vars": {"wap_agent_platform_url": "http://10.1.0.1:8080"}}  # fmt: skip
    extra = extra_vars_for(job, {"ssh_key"})
    assert extra["wap_agent_token"] == agents.TOKEN_VARS["wap_agent_token"]
    assert "WAP_AGENT_TOKENS" in extra["wap_agent_token"]
    written = yaml.safe_load(extra_vars_file(job, {"ssh_key"}))  # a template there, not !unsafe
    assert written["wap_agent_token"] == agents.TOKEN_VARS["wap_agent_token"]
    # A job the platform did not give the agent's variables gets no token, nor a job that an
    # operator gave them to without a cluster.
    assert "wap_agent_token" not in extra_vars_for({**job, "extra_vars": {}}, set())
    assert not agents.wanted({**job, "cluster_id": None})


def test_one_playbook_runs_the_deploy_then_the_agents(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    path = Path(agents.playbook(tmp_path, settings, "deploy_replicaset.yml"))
    plays = yaml.safe_load(path.read_text())
    assert [p["ansible.builtin.import_playbook"] for p in plays] == [
        str(settings.playbooks_dir / "deploy_replicaset.yml"),
        str(settings.playbooks_dir / "deploy_agent.yml"),
    ]
    assert all(Path(p["ansible.builtin.import_playbook"]).is_file() for p in plays)
    assert json.loads(path.read_text()) == plays
    # The agents' job of a cluster WAP took over runs deploy_agent.yml once, as it is.
    assert agents.playbook(tmp_path, settings, "deploy_agent.yml") == "deploy_agent.yml"


def test_deploy_agent_refuses_access_control_without_an_administrator(tmp_path: Path) -> None:
    """The agent's MongoDB user is made by an administrator: without one the run stops at once,
    saying which processes have access control and what to give (this machine as the host, in
    check mode and the configure phase alone, so nothing is installed here)."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"db1 ansible_connection=local ansible_python_interpreter="
                         f"{sys.executable}\n")  # fmt: skip
    secured = {"port": 27018, "replica_set": "rs0", "auth": True}
    extra = {"ansible_become": False, "wap_agent_config_dir": str(tmp_path / "etc"),
             "wap_agent_mongodb_processes": [secured]}  # fmt: skip
    run = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/deploy_agent.yml",
         "--check", "--tags", "wap_agent_configure", "-e", json.dumps(extra)],
        capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout[-3000:]
    assert "Access control is on for 27018" in run.stdout
    assert "wap_agent_mongodb_login_password" in run.stdout
    assert "changed=0" in run.stdout and "failed=1" in run.stdout


def test_backup_and_restore_are_allowed_only_when_asked(tmp_path: Path) -> None:
    """The role's agent.ini, rendered by Ansible with the role's defaults, read by the agent's own
    configuration loader: ping and collect by default; backup and restore as well with
    wap_agent_backup_commands (a -e true arrives as text)."""
    role = REPO / "collections/ansible_collections/whaleal/wap/roles/wap_agent"
    template = str(role / "templates/agent.ini.j2")
    play = [{
        "hosts": "db1", "gather_facts": False, "vars_files": [str(role / "defaults/main.yml")],
        "tasks": [
            {"ansible.builtin.template": {"src": template, "dest": f"{tmp_path}/default.ini"}},
            {"ansible.builtin.template": {"src": template, "dest": f"{tmp_path}/asked.ini"},
             "vars": {"wap_agent_backup_commands": "true"}},
        ],
    }]  # fmt: skip
    (tmp_path / "play.yml").write_text(json.dumps(play))
    extra = {"wap_agent_platform_url": "http://10.1.0.1:8080",
             "_wap_agent_processes": [{"port": 27017, "auth": True, "tls": False}],
             "_wap_agent_mongodb_password": "pw"}  # fmt: skip
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"db1 ansible_connection=local ansible_python_interpreter="
                         f"{sys.executable}\n")  # fmt: skip
    run = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(tmp_path / "play.yml"),
         "-e", json.dumps(extra)],
        capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    default = load_agent_config(tmp_path / "default.ini")
    asked = load_agent_config(tmp_path / "asked.ini")
    assert default.commands_allow == ("ping", "collect")
    assert asked.commands_allow == ("ping", "collect", "backup", "restore")
    assert default.mongodb_uris == asked.mongodb_uris == (
        "mongodb://wap-agent-db1:pw@localhost:27017/?authSource=admin",)  # fmt: skip
