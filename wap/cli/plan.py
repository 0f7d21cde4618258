"""`wap plan SPEC.yml`: validate a cluster spec, print its plan (wap.plan) as YAML for playbooks.

wap plan cluster.yml > plan.yml
ansible-playbook playbooks/provision_cluster.yml -e @plan.yml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from wap.cli.errors import UserError
from wap.plan import SpecError, plan_from_dict


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan", help="show the resources a cluster spec needs (a dry run), as YAML for playbooks"
    )
    parser.add_argument("spec", help="the cluster spec (YAML), or - for standard input")
    parser.add_argument("-o", "--output", help="write the plan to this file instead of stdout")
    parser.set_defaults(handler=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.spec == "-" else _read(args.spec)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{args.spec} is not valid YAML: {exc}") from None
    try:
        plan = plan_from_dict(data)
    except SpecError as exc:
        raise UserError(f"{args.spec}: {exc}") from None
    counts = ", ".join(f"{n} {kind}" for kind, n in plan.counts().items() if n)
    header = f"# WAP plan for {plan.project}/{plan.cluster} in {plan.region}: {counts}\n"
    body = yaml.safe_dump({"wap_plan": plan.to_dict()}, sort_keys=False, width=100)
    if args.output:
        Path(args.output).write_text(header + body)
    else:
        sys.stdout.write(header + body)
    return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
