"""AWS without AWS: moto's server on 127.0.0.1, an environment that cannot reach real AWS, the
provisioning playbooks run against it, and lab hosts standing in for the instances it runs."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import psutil
import yaml

from tests.labhosts import REPO, VENV_BIN, ansible_env
from tests.waiting import wait_until
from wap.lab import Lab, LabError

PROVISION = REPO / "playbooks" / "provision_cluster.yml"
TEARDOWN = REPO / "playbooks" / "teardown_cluster.yml"
REGION = "eu-west-1"  # moto knows its zones a, b and c
FAKE_KEY = "AKIAWAPTESTINGFAKE00"
FAKE_SECRET = "wap-testing-fake-secret"
# Any AMI id will do for moto; a real-looking one keeps the plan honest.
IMAGE = "ami-0123456789abcdef0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server(record: Path | None = None) -> Iterator[str]:
    """moto's server on a free port of 127.0.0.1; stopped (by its pid) on exit. With `record`
    (a file), its recorder can log every request there (/moto-api/recorder/...)."""
    port = free_port()
    # moto reads MOTO_ENABLE_RECORDING with bool(): any value, "False" too, turns recording on
    # (into ./moto_recording). Only a recording run sets it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTO_RECORDER")}
    env.pop("MOTO_ENABLE_RECORDING", None)
    if record:
        env.update(MOTO_ENABLE_RECORDING="True", MOTO_RECORDER_FILEPATH=str(record))
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start on port {port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def offline_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Ansible's environment with fake credentials and no way to real AWS: metadata lookups off
    and a dead proxy for anything that forgets its explicit endpoint."""
    env = ansible_env()
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_KEY,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        ANSIBLE_STDOUT_CALLBACK="default",
    )
    env.update(extra or {})
    return env


def secured_deployment(key: Path, tarball: Path, secrets: Path, admin: tuple[str, str]) -> dict:
    """provision_cluster.yml's variables for a secured deployment on the stand-ins: key-file
    membership, TLS required, the administrator who logs in to every set (and router)."""
    login = {"tls": True, "login_user": admin[0], "login_password": admin[1]}
    return {
        "wap_ssh_private_key_file": str(key),  # the lab hosts trust it
        "wap_provision_volume_setup": False,  # lab hosts have no EBS device (test_volume_setup)
        "mongodb_install_tarball": str(tarball),
        "mongodb_security_secrets_dir": str(secrets),
        "mongodb_security_cluster_name": "acme-orders",
        "mongodb_security_cluster_auth": "keyfile",
        "mongodb_security_tls": True,
        "mongodb_security_admin_user": admin[0],
        "mongodb_security_admin_password": admin[1],
        "mongodb_config_auth": True,
        "mongodb_config_key_file": "/etc/mongodb/keyfile",
        "mongodb_config_tls_mode": "requireTLS",
        **{f"mongodb_{prefix}_{name}": value for prefix in ("replicaset", "sharding", "users")
           for name, value in login.items()},
    }  # fmt: skip


def ec2_client(endpoint: str, **options: Any):
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_SECRET,
        **options,
    )


def write_plan(tmp: Path, name: str, spec: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Plan a spec with the real CLI (`wap plan`), as an operator would; returns the file and the
    plan it holds."""
    spec_file = tmp / f"{name}-spec.yml"
    spec_file.write_text(yaml.safe_dump(spec))
    plan_file = tmp / f"{name}-plan.yml"
    done = subprocess.run(
        [str(VENV_BIN / "wap"), "plan", str(spec_file), "-o", str(plan_file)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return plan_file, yaml.safe_load(plan_file.read_text())["wap_plan"]


def recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host counters of ansible-playbook's PLAY RECAP."""
    hosts = {}
    for match in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.M):
        hosts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return hosts


def playbook_args(playbook: Path, plan: Path, endpoint: str, *extra: str) -> list[str]:
    return [
        str(VENV_BIN / "ansible-playbook"),
        str(playbook),
        "-e", f"@{plan}",
        "-e", f"wap_aws_endpoint_url={endpoint}",
        *extra,
    ]  # fmt: skip


def run_playbook(
    playbook: Path, plan: Path, endpoint: str, *extra: str, timeout: int = 600
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            playbook_args(playbook, plan, endpoint, *extra),
            capture_output=True, text=True, env=offline_env(), cwd=REPO, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:  # say where it stood, not the first lines only
        out = _text(exc.stdout).splitlines()[-80:]
        err = _text(exc.stderr).splitlines()[-20:]
        raise AssertionError(
            f"{playbook.name} still ran after {timeout} s; its last lines:\n"
            + "\n".join(out)
            + "\nstderr:\n"
            + "\n".join(err)
        ) from None


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def tagged(ec2, tags: dict[str, str]) -> dict[str, list[dict]]:
    """What exists and carries all the tags, by kind, as boto3 describes it."""
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    live = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
    instances = [
        i
        for r in ec2.describe_instances(Filters=[*filters, live])["Reservations"]
        for i in r["Instances"]
    ]
    return {
        "vpc": ec2.describe_vpcs(Filters=filters)["Vpcs"],
        "subnet": ec2.describe_subnets(Filters=filters)["Subnets"],
        "security-group": ec2.describe_security_groups(Filters=filters)["SecurityGroups"],
        "route-table": ec2.describe_route_tables(Filters=filters)["RouteTables"],
        "internet-gateway": ec2.describe_internet_gateways(Filters=filters)["InternetGateways"],
        "key-pair": ec2.describe_key_pairs(Filters=filters)["KeyPairs"],
        "instance": instances,
        "volume": ec2.describe_volumes(Filters=filters)["Volumes"],
        "network-interface": ec2.describe_network_interfaces(Filters=filters)["NetworkInterfaces"],
    }


def tag_dict(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@dataclass
class StandIn:
    """Gives every running instance of a cluster a lab host at the instance's private address
    (with its subnet's prefix: the lab puts that subnet's gateway on its bridge, so this machine
    reaches it), routes the whole VPC range on-link inside the host (the VPC's own router), and
    removes the host when the instance is gone. Polls moto from a thread while playbooks run."""

    lab: Lab
    ec2: Any
    tags: dict[str, str]
    hosts: dict[str, str] = field(default_factory=dict)  # instance id -> lab host name
    errors: list[str] = field(default_factory=list)
    # moto's answers that failed (slow under load) and were asked again at the next poll
    retried: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cloud-stand-in", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        for instance_id in list(self.hosts):
            self._remove(instance_id)

    def wait_gone(self, timeout: float = 30) -> None:
        """Until every stand-in host went with its instance; then no error may have happened."""
        wait_until(
            lambda: not self.hosts,
            timeout=timeout,
            every=0.2,
            what="the stand-in hosts to go with their instances",
            seen=lambda: (self.hosts, self.errors),
        )
        assert self.errors == [], (
            f"the stand-in failed: {self.errors}; polls retried: {self.retried[-5:]}"
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                self.retried.append(repr(exc))  # the next poll asks again; nothing was changed
            except Exception as exc:  # report at the end; keep standing in meanwhile
                self.errors.append(repr(exc))
            self._stop.wait(0.2)

    def sync(self) -> None:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.tags.items()]
        running = {}
        for reservation in self.ec2.describe_instances(Filters=filters)["Reservations"]:
            for instance in reservation["Instances"]:
                if instance["State"]["Name"] == "running":
                    running[instance["InstanceId"]] = instance
        for instance_id, instance in running.items():
            if instance_id not in self.hosts:
                # Everything asked of moto first: a poll that fails changes nothing here.
                subnet = self.ec2.describe_subnets(SubnetIds=[instance["SubnetId"]])["Subnets"][0]
                prefix = ipaddress.ip_network(subnet["CidrBlock"]).prefixlen
                vpc = self.ec2.describe_vpcs(VpcIds=[instance["VpcId"]])["Vpcs"][0]
                name = instance_id  # i-<hex>: a valid lab host name
                self.lab.add(name, f"{instance['PrivateIpAddress']}/{prefix}", progress=_quiet)
                self.hosts[instance_id] = name
                # A VPC routes between its subnets itself: the host reaches the others of the
                # VPC directly on the lab's bridge (no forwarding through this machine needed).
                subprocess.run(
                    ["ip", "-n", self.lab.netns(name), "route", "add", vpc["CidrBlock"],
                     "dev", "eth0"],
                    check=True, capture_output=True,
                )  # fmt: skip
        for instance_id in set(self.hosts) - set(running):
            self._remove(instance_id)

    def _remove(self, instance_id: str) -> None:
        name = self.hosts.pop(instance_id)
        with contextlib.suppress(LabError):
            self.lab.remove(name)


def _quiet(_message: str) -> None:
    pass


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL an ansible-playbook we started and every process it forked. Killing its process
    group is not enough: Ansible's workers call setsid(), and an orphaned worker goes on with
    its task (a whole loop of instance launches) after ansible-playbook is gone."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    proc.wait(30)
    psutil.wait_procs(tree, timeout=30)
