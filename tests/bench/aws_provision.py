"""Benchmark: provisioning and teardown of a replica set against moto's server, and the AWS API
calls a no-change re-run makes.

    .venv/bin/python -m tests.bench.aws_provision [--members 3 5] [--deploy]   (from the repo root)

Prints the figures; asserts nothing. Each size is planned with `wap plan` (three zones), then
provision_cluster.yml runs with wap_provision_connect=false (cloud resources only: the instances
are not reached over SSH, nothing is deployed), then again, then teardown_cluster.yml.

With --deploy (as root): lab hosts stand in for the instances (tests/aws/cloud.py's StandIn) and
provision_cluster.yml goes on to deploy a secured replica set of the mongod double on them; the
first figure is then provision + deploy until the set is healthy at the instances' addresses.

API calls are counted by moto's request recorder (MOTO_ENABLE_RECORDING=True, then
/moto-api/recorder/start-recording ... download-recording): every HTTP request that reached the
stand-in cloud during the re-run, one per AWS API call, with the Action named in its body. The
environment has no route to real AWS (dead proxy), so nothing can be missed by going elsewhere.
"""

import argparse
import base64
import contextlib
import json
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pymongo
from botocore.config import Config

from tests.aws.cloud import (
    IMAGE,
    PROVISION,
    REGION,
    TEARDOWN,
    StandIn,
    ec2_client,
    moto_server,
    recap,
    run_playbook,
    secured_deployment,
    write_plan,
)
from tests.deploy.deployment import ADMIN, build_double_tarball, wait_healthy
from tests.labhosts import free_subnet, start_lab

STANDIN_AGENT = "wap-bench-standin"  # the stand-in's requests, told apart from the playbook's


def moto_api(endpoint: str, path: str, method: str = "POST") -> bytes:
    request = urllib.request.Request(f"{endpoint}/moto-api/recorder/{path}", method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, no proxy
    with opener.open(request, timeout=30) as answer:
        return answer.read()


def actions(recording: bytes) -> Counter:
    counted = Counter()
    for line in recording.decode().splitlines():
        entry = json.loads(line)
        if "/moto-api/" in entry.get("url", "") or STANDIN_AGENT in str(entry.get("headers")):
            continue  # not the playbook's: moto's own API, the stand-in's polling
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode()
        action = urllib.parse.parse_qs(body).get("Action", ["?"])[0]
        counted[action] += 1
    return counted


def timed(*args) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = run_playbook(*args)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{args[0].name} failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    return elapsed, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--deploy", action="store_true", help="deploy on lab stand-ins (root)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with moto_server(record=tmp_path / "moto_recording") as endpoint:
            bench(tmp_path, endpoint, args.members, args.deploy)
    return 0


def deploy_options(key: Path, tmp_path: Path) -> tuple[str, ...]:
    """What the end-to-end test deploys: a secured replica set of the double's tarball."""
    tarball = build_double_tarball(tmp_path)
    deploy = secured_deployment(key, tarball, tmp_path / "secrets", ADMIN)
    return ("-e", json.dumps(deploy))


def healthy_at(ec2, tags: dict[str, str], tmp_path: Path, members: int) -> None:
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    addresses = [
        f"{i['PrivateIpAddress']}:27017"
        for r in ec2.describe_instances(Filters=filters)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    with pymongo.MongoClient(
        addresses, tls=True, tlsCAFile=str(tmp_path / "secrets" / "ca.pem"), username=ADMIN[0],
        password=ADMIN[1], serverSelectionTimeoutMS=30_000,
    ) as client:  # fmt: skip
        wait_healthy(client, members)


def bench(tmp_path: Path, endpoint: str, sizes: list[int], deploy: bool) -> None:
    with contextlib.ExitStack() as stack:
        if deploy:
            lab = start_lab("bawsp", 1, tmp_path).lab
            stack.callback(lab.down, progress=lambda _m: None)
            key = lab.key_file
            options = deploy_options(key, tmp_path)
        else:
            key = tmp_path / "id_ed25519"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
            options = ("-e", f"wap_ssh_private_key_file={key}", "-e", "wap_provision_connect=false")
        for members in sizes:
            standin = None
            if deploy:
                tags = {"wap:project": "bench", "wap:cluster": f"rs{members}"}
                polling = ec2_client(endpoint, config=Config(user_agent_extra=STANDIN_AGENT))
                standin = StandIn(lab, polling, tags)
                standin.start()
                stack.callback(standin.stop)
            one_size(tmp_path, endpoint, members, options, standin)


def one_size(
    tmp_path: Path, endpoint: str, members: int, options: tuple[str, ...], standin
) -> None:
    spec = {
        "project": "bench",
        "cluster": f"rs{members}",
        "region": REGION,
        "zones": 3,
        "members": members,
        "image": IMAGE,
        "ssh_user": "root",  # the lab hosts' login (without --deploy nobody logs in)
        "vpc_cidr": free_subnet(base="10.64.0.0/10", prefix=16, skip=0),
        "platform_cidr": "10.250.0.0/24",
    }
    plan_file, plan = write_plan(tmp_path, f"rs{members}", spec)
    started = time.monotonic()
    timed(PROVISION, plan_file, endpoint, *options)
    if standin is not None:
        healthy_at(standin.ec2, plan["tags"], tmp_path, members)
    provision = time.monotonic() - started
    moto_api(endpoint, "reset-recording")
    moto_api(endpoint, "start-recording")
    rerun, again = timed(PROVISION, plan_file, endpoint, *options)
    moto_api(endpoint, "stop-recording")
    calls = actions(moto_api(endpoint, "download-recording", method="GET"))
    teardown, _ = timed(TEARDOWN, plan_file, endpoint, "-e", "wap_teardown_confirm=yes")
    print(f"replica set of {members} over 3 zones ({len(plan['instances'])} instances, "
          f"{len(plan['volumes'])} data volumes):")  # fmt: skip
    what = "provision + deploy to a healthy set" if standin else "provision"
    print(f"  {what:<16} {provision:6.1f} s")
    changed = sum(host["changed"] for host in recap(again.stdout).values())
    print(f"  no-change re-run {rerun:6.1f} s, changed={changed}, "
          f"{sum(calls.values())} AWS API calls")  # fmt: skip
    print("    " + ", ".join(f"{name} {n}" for name, n in sorted(calls.items())))
    print(f"  teardown         {teardown:6.1f} s")
    if standin is not None:
        standin.stop()


if __name__ == "__main__":
    raise SystemExit(main())
