"""`wap`: the one command line of the platform.

Each module of this package adds its subcommands through a `register(subparsers)` function and is
listed in COMMANDS; a subcommand's handler takes the parsed arguments and returns the exit code, or
raises UserError. `lab` and `plan` drive the domain packages wap.lab and wap.plan; `platform`
(up, web, worker) imports webui only inside its handlers. Nothing in webui imports this package.
"""

import argparse
import sys

from wap.cli import lab, plan, platform
from wap.cli.errors import UserError

COMMANDS = (lab, plan, platform)

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wap", description="WAP MongoDB operations platform")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a `wap` subcommand (`python -m wap.cli` does the same: how `wap up` starts children)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"wap {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
