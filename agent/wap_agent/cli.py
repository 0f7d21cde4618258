"""Command line of the host agent."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from wap_agent import __version__
from wap_agent.backup import cli as backup_cli
from wap_agent.collectors import Registry
from wap_agent.config import ConfigError
from wap_agent.config import load as load_config
from wap_agent.exposition import to_json, to_prometheus
from wap_agent.rates import Rates
from wap_agent.run import Agent, build_registry


def registry_for(args: argparse.Namespace) -> Registry:
    return build_registry(
        not args.no_host, args.mongodb_uri, args.timeout_ms, args.dbstats_per_round,
        args.collections_per_round, args.top_collections,
    )  # fmt: skip


def collect(args: argparse.Namespace) -> int:
    if not args.once:
        print("wap-agent collect: only --once is available for now", file=sys.stderr)
        return 2
    registry = registry_for(args)
    rates = Rates()
    try:
        result = registry.collect()
        per_second = []
        if args.rates:
            rates.update(result.samples)
            time.sleep(args.rates)
            result = registry.collect()
            per_second = rates.update(result.samples)
    finally:
        registry.close()
    if args.format == "prometheus":
        sys.stdout.write(to_prometheus(result.samples + per_second, result.errors))
    else:
        sys.stdout.write(to_json(result, per_second) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"wap-agent run: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        agent = Agent(config)
    except OSError as exc:
        print(f"wap-agent run: the queue dir {config.queue_dir} cannot be used: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    agent.handle_signals()
    return agent.run()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="wap-agent", description="WAP host agent")
    top.add_argument("--version", action="version", version=f"wap-agent {__version__}")
    commands = top.add_subparsers(dest="command")
    one = commands.add_parser(
        "collect",
        help="collect samples and print them",
        description="Collect host and MongoDB samples and print them (an agent checked by hand).",
    )
    one.add_argument("--once", action="store_true", help="one round, printed, then exit")
    one.add_argument(
        "--mongodb-uri",
        action="append",
        default=[],
        metavar="URI",
        help="a mongod or mongos to read (repeat for several); its host:port labels its series",
    )
    one.add_argument(
        "--format",
        choices=("json", "prometheus"),
        default="json",
        help="json: the round with its errors (default); prometheus: the text exposition format",
    )
    one.add_argument(
        "--rates",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="collect twice, SECONDS apart, and add each counter's per-second rate (default: "
        "one round, counters raw)",
    )
    one.add_argument("--no-host", action="store_true", help="leave the host's metrics out")
    one.add_argument(
        "--timeout-ms", type=int, default=5000, help="give up on a server after this (5000)"
    )
    one.add_argument(
        "--dbstats-per-round", type=int, default=10, metavar="N", help="dbStats per round (10)"
    )
    one.add_argument(
        "--collections-per-round",
        type=int,
        default=20,
        metavar="N",
        help="listCollections and $collStats per round (20)",
    )
    one.add_argument(
        "--top-collections",
        type=int,
        default=20,
        metavar="N",
        help="report the N largest collections (20)",
    )
    every = commands.add_parser(
        "run",
        help="collect every interval and ship the samples to the platform",
        description="Collect every interval into an on-disk queue and send it to the platform "
        "(see the README for the configuration file).",
    )
    every.add_argument("--config", required=True, metavar="FILE", help="the INI file")
    backup_cli.add_parsers(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    if args.command == "collect":
        return collect(args)
    if args.command == "run":
        return run(args)
    if args.command in ("backup", "restore"):
        return args.handler(args)
    top.print_help()
    return 0
