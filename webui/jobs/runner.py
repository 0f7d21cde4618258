"""One running job: ansible-runner's callbacks, as AWX's RunnerCallback holds them.

- `event_handler` stores the trimmed event with its counter first, then publishes it; it returns
  False so that ansible-runner writes no event file of its own.
- `cancel_callback` reads a flag set by the heartbeat (cooperative cancel: ansible-runner stops
  ansible-playbook itself, nothing is orphaned).
- `status_handler` forwards only the status name: the `starting` payload holds the environment.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import psutil

from webui.config import Settings
from webui.jobs import agents
from webui.jobs import store as records
from webui.jobs.events import Redactor, trim
from webui.jobs.publish import Publisher
from webui.jobs.sink import EventSink
from webui.services import cloud, credentials, deployments, member_ops, variables
from webui.services.jobs import CLUSTER_GROUP
from webui.store import Store

log = logging.getLogger(__name__)

RUNNER_STATUS = {
    "successful": "successful",
    "failed": "failed",
    "canceled": "canceled",
    "timeout": "failed",
}


# Playbook variables that a MongoDB credential fills. Their values are lookups of the job's
# environment, so the secret itself is never in the extra vars (or ansible-playbook's command line).
MONGODB_CREDENTIAL_VARS = {
    "mongodb_security_admin_user": "WAP_MONGODB_USERNAME",
    "mongodb_security_admin_password": "WAP_MONGODB_PASSWORD",
    "mongodb_replicaset_login_user": "WAP_MONGODB_USERNAME",
    "mongodb_replicaset_login_password": "WAP_MONGODB_PASSWORD",
    "mongodb_users_login_user": "WAP_MONGODB_USERNAME",
    "mongodb_users_login_password": "WAP_MONGODB_PASSWORD",
}


def extra_vars_for(job: dict[str, Any], kinds: set[str]) -> dict[str, Any]:
    """The job's own variables, plus (where it set none) the ones its credentials fill."""
    extra = dict(job.get("extra_vars") or {})
    if "mongodb" in kinds:
        for name, env in MONGODB_CREDENTIAL_VARS.items():
            extra.setdefault(name, f"{{{{ lookup('ansible.builtin.env', '{env}') }}}}")
    if agents.wanted(job):
        for name, value in agents.TOKEN_VARS.items():
            extra.setdefault(name, value)
    return extra


def extra_vars_file(job: dict[str, Any], kinds: set[str]) -> str:
    """The vars file ansible-playbook gets with `-e @`: the job's variables are data (every string
    `!unsafe`, never rendered); only the lookups the platform adds for credentials are templates."""
    data = dict(job.get("extra_vars") or {})
    trusted = {k: v for k, v in extra_vars_for(job, kinds).items() if k not in data}
    return variables.unsafe_yaml(data, trusted)


def inventory_for(
    hosts: list[dict[str, Any]], cluster: dict[str, Any] | None = None
) -> dict[str, Any]:
    """All the job's hosts; a cluster's hosts also form the `mongodb` group, with its name."""
    entries = {}
    for host in hosts:
        entry: dict[str, Any] = {"ansible_host": host["address"], "ansible_user": host["user"]}
        if host["connection"] == "local":
            entry["ansible_connection"] = "local"
            entry["ansible_python_interpreter"] = sys.executable
        else:
            entry["ansible_port"] = host["port"]
        entries[host["name"]] = entry
    inventory: dict[str, Any] = {"all": {"hosts": entries}}
    if cluster is not None:
        inventory["all"]["children"] = {
            CLUSTER_GROUP: {
                "hosts": dict.fromkeys(entries),
                "vars": {"wap_cluster_name": cluster["name"]},
            }
        }
    return inventory


# ssh-add's question when the key ansible-runner pipes to it is encrypted: "Enter passphrase for
# <private dir>/artifacts/<ident>/ssh_key_data: ". ansible-runner matches prompts in the last 100
# characters of output only, and our private dir makes the question longer: match its end.
SSH_PASSPHRASE_PROMPT = r"/ssh_key_data: *$"


def secret_environment(
    revealed: list[dict[str, Any]],
) -> tuple[dict[str, str], str | None, dict[str, str], list[str]]:
    """Environment variables, SSH key, answers to prompts (the key's passphrase, in memory only)
    and the secret values to mask, from decrypted credentials."""
    env: dict[str, str] = {}
    ssh_key = None
    prompts: dict[str, str] = {}
    values: list[str] = []
    for cred in revealed:
        if cred["kind"] == "aws":
            env["AWS_ACCESS_KEY_ID"] = cred["access_key_id"]
            env["AWS_SECRET_ACCESS_KEY"] = cred["secret_access_key"]
            values += [cred["access_key_id"], cred["secret_access_key"]]
        elif cred["kind"] == "mongodb":
            env["WAP_MONGODB_USERNAME"] = cred["username"]
            env["WAP_MONGODB_PASSWORD"] = cred["password"]
            values.append(cred["password"])
        elif cred["kind"] == "ssh_key":
            ssh_key = cred["private_key"]
            values.append(cred["private_key"])
            if cred.get("passphrase"):
                prompts[SSH_PASSPHRASE_PROMPT] = cred["passphrase"]
                values.append(cred["passphrase"])
    return env, ssh_key, prompts, values


@contextlib.contextmanager
def platform_settings_hidden() -> Iterator[None]:
    """The platform's own settings (WAP_*: the credential key, the store and Redis addresses)
    out of the environment ansible-runner copies into ansible-playbook's, for the run's length."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WAP_")}
    try:
        yield
    finally:
        os.environ.update(saved)


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans of the run (ansible-core's task workers detach with setsid and outlive a SIGKILL of
    ansible-playbook's process group) become our children instead of init's, so we can end them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)


def end_leftovers(grace: float = 3.0) -> int:
    """Terminate whatever the run left behind (all our child processes); return how many."""
    leftovers = psutil.Process().children(recursive=True)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return len(leftovers)


class JobRun:
    def __init__(
        self, store: Store, publisher: Publisher, settings: Settings, job: dict[str, Any]
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.job = job
        self.job_id: str = job["_id"]
        self.last_counter = int(job.get("last_counter") or 0)
        self.cancel_requested = threading.Event()
        self.redact = Redactor([])
        self.private_dir: Path | None = None
        self.ssh_dir: str | None = None
        self.sink: EventSink | None = None

    # ansible-runner callbacks -------------------------------------------------------------------
    def event_handler(self, event: dict[str, Any]) -> bool:
        if self.sink is None:
            self.sink = EventSink(self.store, self.publisher, self.job_id)
        doc = trim(event, self.redact)
        self.last_counter = max(self.last_counter, doc["counter"])
        self.sink.put(doc)  # stored, then published, in order (webui.jobs.sink)
        return False

    def close(self) -> None:
        """Wait until every event handed over is stored and published."""
        if self.sink is not None:
            self.sink.close()

    def cancel_callback(self) -> bool:
        return self.cancel_requested.is_set()

    def status_handler(self, data: dict[str, Any], runner_config: Any) -> None:
        status = data.get("status")
        if status == "running" and runner_config is not None:
            # ansible-runner has just written the whole environment to artifacts/<ident>/command
            Path(runner_config.artifact_dir, "command").unlink(missing_ok=True)
        log.debug("job %s: runner %s", self.job_id, status)

    # the run --------------------------------------------------------------------------------------
    def execute(self) -> tuple[str, str, int | None, dict[str, Any] | None]:
        """Run the playbook; return (status, reason, rc, stats)."""
        hosts = records.hosts(self.store, self.job["host_ids"])
        cluster = records.cluster(self.store, self.job.get("cluster_id"))
        revealed = [
            credentials.reveal(self.store, self.settings.credential_key, c)
            for c in self.job["credential_ids"]
        ]
        secret_env, ssh_key, prompts, secret_values = secret_environment(revealed)
        with_agents = agents.wanted(self.job)
        if with_agents:  # tokens issued now, kept in memory and the run's environment only
            tokens = agents.issue_tokens(self.store, self.job, hosts)
            secret_env[agents.TOKENS_ENV] = json.dumps(tokens)
            secret_values += list(tokens.values())
        self.redact = Redactor(secret_values)
        self.settings.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.private_dir = Path(
            tempfile.mkdtemp(prefix=f"job-{self.job_id}-", dir=self.settings.runtime_dir)
        )
        os.chmod(self.private_dir, 0o700)
        # SSH's connection sharing, per job: a master opened with one project's key is never
        # reused by another job to the same host, and the socket's path stays short (Ansible's
        # default is under HOME, and a Unix socket's path may not exceed 107 bytes).
        self.ssh_dir = tempfile.mkdtemp(prefix="wap-ssh-")
        env = {
            "PATH": os.pathsep.join(
                (str(Path(sys.executable).parent), os.environ.get("PATH", "/bin"))
            ),
            "ANSIBLE_FORCE_COLOR": "1",
            "ANSIBLE_NOCOLOR": "0",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": self.ssh_dir,
            **secret_env,
        }
        if self.settings.ansible_config:
            env["ANSIBLE_CONFIG"] = str(self.settings.ansible_config)
        # No stdout file (it would hold unmasked output); as a file, because ansible-runner 2.4
        # drops a `settings=` dict when env/settings is absent. Nothing secret in it.
        (self.private_dir / "env").mkdir(mode=0o700)
        (self.private_dir / "env" / "settings").write_text(
            json.dumps({"suppress_output_file": True})
        )
        playbook = self.job["playbook"]
        if with_agents:
            playbook = agents.playbook(self.private_dir, self.settings, playbook)
        vars_file = self.private_dir / "variables.yml"
        vars_file.write_text(extra_vars_file(self.job, {c["kind"] for c in revealed}))
        become_subreaper()
        try:
            with platform_settings_hidden():
                runner = ansible_runner.run(
                    private_data_dir=str(self.private_dir),
                    project_dir=str(self.settings.playbooks_dir),
                    playbook=playbook,
                    inventory=inventory_for(hosts, cluster),
                    extravars=str(vars_file),
                    envvars=env,
                    ssh_key=ssh_key,
                    passwords=prompts or None,
                    suppress_env_files=True,
                    # facts in memory, as ansible-playbook keeps them by default: ansible-runner's
                    # jsonfile cache writes every host's facts to a file the run never reads
                    fact_cache_type="memory",
                    ident="run",
                    quiet=True,
                    timeout=self.settings.job_timeout,
                    event_handler=self.event_handler,
                    cancel_callback=self.cancel_callback,
                    status_handler=self.status_handler,
                )
        finally:
            self.close()
            left = end_leftovers()
            if left:
                log.warning("job %s: ended %d process(es) the run left behind", self.job_id, left)
            shutil.rmtree(self.private_dir, ignore_errors=True)
            shutil.rmtree(self.ssh_dir, ignore_errors=True)
        stats = self._recap()
        status = RUNNER_STATUS.get(runner.status, "failed")
        if runner.status == "timeout":
            reason = f"timed out after {self.settings.job_timeout} s (WAP_JOB_TIMEOUT)"
        elif runner.status == "canceled":
            job = records.job(self.store, self.job_id) or {}
            if job.get("status") == "lost":  # the reaper gave up on us meanwhile: say so, stop
                return (
                    "lost",
                    f"{job.get('reason')}; the worker then stopped the run",
                    runner.rc,
                    stats,
                )
            reason = f"canceled by {job.get('cancel_by') or 'request'}"
        elif status == "failed":
            reason = f"ansible-playbook exited with rc {runner.rc}"
        else:
            reason = ""
        return status, reason, runner.rc, stats

    def _recap(self) -> dict[str, Any] | None:
        doc = records.recap(self.store, self.job_id)
        return doc.get("stats") if doc else None


def finish(
    store: Store, publisher: Publisher, job_id: str, status: str, reason: str, **extra: Any
) -> None:
    """Record a job's end (unless it already ended otherwise) and tell the browsers."""
    job = records.end(store, job_id, status, reason, among=("queued", "running", "lost"), **extra)
    if job:
        cloud.job_finished(store, job)  # before browsers hear of the end: they may look next
        deployments.topology_job_finished(store, job)
        member_ops.security_job_finished(store, job)
        publisher.status(job_id, job)
