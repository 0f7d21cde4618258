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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wap", description="WAP MongoDB operations platform")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"wap {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
