"""The agents a cluster's deploy job leaves on its hosts (issue 13): the deploy playbook, then
deploy_agent.yml, in one ansible-playbook run (one event stream, one recap, the members' report
kept), with a token per host that the platform issues as the run starts.

The tokens travel like credentials: in the run's environment (WAP_AGENT_TOKENS, JSON by host
name), masked in every event; the one variable the play gets is a lookup of that environment,
never a token. Issuing replaces a host's earlier token, so each deploy rotates them; an agent
reads its token file at every request and needs no restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from webui.config import Settings
from webui.services import agents
from webui.services.audit import Actor
from webui.store import Store

PLAYBOOK = "deploy_agent.yml"
TOKENS_ENV = "WAP_AGENT_TOKENS"
URL_VAR = "wap_agent_platform_url"  # set by webui.services.deployments.agent_vars
# The play's token per host, from the environment (a template the platform adds, as it adds the
# lookups of a MongoDB credential).
TOKEN_VARS = {
    "wap_agent_token": (
        f"{{{{ (lookup('ansible.builtin.env', '{TOKENS_ENV}') | from_json)"
        "[inventory_hostname] | default('') }}"
    )
}


def wanted(job: dict[str, Any]) -> bool:
    """Does the job end with the agents? (A cluster's deploy job that the platform gave the
    agent's variables.)"""
    return bool(job.get("cluster_id")) and URL_VAR in (job.get("extra_vars") or {})


def playbook(private_dir: Path, settings: Settings, first: str) -> str:
    """A playbook in the job's private directory that imports `first`, then deploy_agent.yml;
    deploy_agent.yml alone when it is `first` (the agents of a cluster WAP took over)."""
    if first == PLAYBOOK:
        return first
    plays = [
        {"name": name, "ansible.builtin.import_playbook": str(settings.playbooks_dir / file)}
        for name, file in ((f"Run {first}", first), ("Deploy the agents", PLAYBOOK))
    ]
    path = private_dir / "with-agents.yml"
    path.write_text(json.dumps(plays))  # JSON is YAML
    return str(path)


def issue_tokens(store: Store, job: dict[str, Any], hosts: list[dict[str, Any]]) -> dict[str, str]:
    """A new token for each of the job's hosts, by host name (audited as the job's)."""
    actor = Actor(user_id=None, username="system", role="admin", source=f"job {job['_id']}")
    return {
        host["name"]: agents.create_token(store, actor, job["project_id"], host["_id"])[0]
        for host in hosts
    }
