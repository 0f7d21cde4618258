"""`wap`: the one command line of the platform.

Each area adds its subcommands through a `register(subparsers)` function listed in COMMAND_MODULES;
a subcommand's handler takes the parsed arguments and returns the exit code.
"""

import argparse
import importlib
import sys

COMMAND_MODULES = ["wap.lab.cli", "wap.plan.cli", "webui.cli"]


class UserError(Exception):
    """An error the user can fix: printed as one line, without a traceback."""


def build_parser(modules: list[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wap", description="WAP MongoDB operations platform")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None, modules: list[str] = COMMAND_MODULES) -> int:
    """Run a `wap` subcommand; `modules` narrows the commands (how `wap up` starts children)."""
    args = build_parser(modules).parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"wap {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
