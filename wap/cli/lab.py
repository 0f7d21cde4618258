"""`wap lab ...`: create, inspect and remove the local lab hosts (wap.lab)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from wap.cli.errors import UserError
from wap.lab import rootfs
from wap.lab.lab import Lab, LabError

DEFAULT_SUBNET = "10.213.0.0/24"


def register(subparsers: argparse._SubParsersAction) -> None:
    lab = subparsers.add_parser("lab", help="lab hosts on this machine (root only)")
    lab.add_argument(
        "--lab",
        default=os.environ.get("WAP_LAB_NAME", "default"),
        help="which lab (default: $WAP_LAB_NAME or 'default'); several can run side by side",
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="start N hosts lab1..labN")
    up.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    up.add_argument(
        "--subnet",
        default=os.environ.get("WAP_LAB_SUBNET", DEFAULT_SUBNET),
        help=f"IPv4 range for the hosts (default: $WAP_LAB_SUBNET or {DEFAULT_SUBNET})",
    )
    up.set_defaults(handler=cmd_up)

    add = sub.add_parser("add", help="add one host with a given address")
    add.add_argument("host")
    add.add_argument("--address", required=True, help="IPv4 address with prefix, e.g. 10.0.1.5/24")
    add.set_defaults(handler=cmd_add)

    remove = sub.add_parser("remove", help="stop and remove one host")
    remove.add_argument("host")
    remove.set_defaults(handler=cmd_remove)

    down = sub.add_parser("down", help="remove every host, namespace, mount and file of the lab")
    down.set_defaults(handler=cmd_down)

    status = sub.add_parser("status", help="hosts and their state")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)

    inventory = sub.add_parser("inventory", help="print an Ansible inventory (YAML) of the lab")
    inventory.set_defaults(handler=cmd_inventory)

    ssh = sub.add_parser("ssh", help="open a shell on a host, or run a command there")
    ssh.add_argument("host")
    ssh.add_argument("remote", nargs=argparse.REMAINDER, help="command to run")
    ssh.set_defaults(handler=cmd_ssh)

    prepare = sub.add_parser("prepare", help="build the hosts' root filesystem if missing")
    prepare.set_defaults(handler=cmd_prepare)


def _lab(args: argparse.Namespace) -> Lab:
    try:
        return Lab(args.lab)
    except LabError as exc:
        raise UserError(str(exc)) from None


def _guard(fn):
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (LabError, RuntimeError) as exc:
            raise UserError(str(exc)) from None

    return wrapper


@_guard
def cmd_up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    lab.up(args.hosts, args.subnet)
    for row in lab.status():
        print(f"  {row['name']:<8} {row['address']:<15} {row['state']}")
    print(f"inventory: wap lab --lab {lab.name} inventory > hosts.yml")
    return 0


@_guard
def cmd_add(args: argparse.Namespace) -> int:
    _lab(args).add(args.host, args.address)
    return 0


@_guard
def cmd_remove(args: argparse.Namespace) -> int:
    _lab(args).remove(args.host)
    return 0


@_guard
def cmd_down(args: argparse.Namespace) -> int:
    _lab(args).down()
    return 0


@_guard
def cmd_status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    rows = lab.status()
    if args.json:
        print(json.dumps({"lab": lab.name, "hosts": rows}, indent=2))
        return 0
    if not rows:
        print(f"lab {lab.name} is down")
        return 0
    print(f"{'HOST':<8} {'ADDRESS':<15} {'SYSTEMD':<10} {'SSH':<5} {'PROCS':>5} {'PSS MiB':>8}")
    for r in rows:
        print(
            f"{r['name']:<8} {r['address']:<15} {r['state']:<10} {r['ssh']:<5} "
            f"{r['processes']:>5} {r['memory_mib']:>8}"
        )
    return 0


@_guard
def cmd_inventory(args: argparse.Namespace) -> int:
    sys.stdout.write(_lab(args).inventory())
    return 0


@_guard
def cmd_ssh(args: argparse.Namespace) -> int:
    lab = _lab(args)
    state = lab.state()
    if state is None or args.host not in state.hosts:
        raise UserError(f"lab {lab.name} has no host {args.host!r}")
    cmd = [
        "ssh",
        "-i",
        str(lab.key_file),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"root@{state.hosts[args.host].ip}",
        *args.remote,
    ]
    return subprocess.call(cmd)


@_guard
def cmd_prepare(args: argparse.Namespace) -> int:
    cache = Path(os.environ.get("WAP_LAB_CACHE", "/var/cache/wap-lab"))
    if rootfs.is_ready(cache):
        return 0
    rootfs.prepare(cache)
    return 0
