"""Command line of the host agent."""

import argparse

from wap_agent import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wap-agent", description="WAP host agent")
    parser.add_argument("--version", action="version", version=f"wap-agent {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0
