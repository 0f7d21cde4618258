"""Commands the platform may ask of this agent: the seam later issues plug into (backup, restore,
explain), as collectors are for samples.

A command has a ``name``, checks its arguments (``check``: the arguments it will run with, or
``BadArguments`` saying what is wrong) and runs (``run``: a JSON object, the result; progress
through its ``Context``). Commands are Python objects run in the agent's process: never a shell,
never a program named by the platform. The agent runs a command only when it is known here, on
the allow-list of the agent's configuration (``[commands] allow``) and its arguments pass its
check; otherwise it is refused, and the reason goes back to the platform.

To add one (a later issue's ``backup``): a module in this package with a class implementing
``Command``, added to ``builtin()`` (or to a ``CommandRegistry`` of one's own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from wap_agent.collectors import Registry
from wap_agent.config import AgentConfig


class BadArguments(ValueError):
    """The arguments cannot be run with; the message says which and what is expected."""


class Refused(Exception):
    """The agent will not run this command; ``reason`` goes back to the platform."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Context:
    """What a running command may use: the agent's configuration, and a way to say how far it
    is (``progress``: a message, and a fraction from 0 to 1 when it knows one)."""

    config: AgentConfig | None
    command_id: str = ""
    report: Callable[[str, float | None], None] = field(default=lambda message, fraction: None)

    def progress(self, message: str, fraction: float | None = None) -> None:
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        self.report(message, fraction)


class Command(Protocol):
    name: str

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the command will use them, or BadArguments."""
        ...

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        """Do it; the result (a JSON object). An exception is reported as the command failing."""
        ...


def no_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The check of a command that takes none."""
    if args:
        raise BadArguments(f"takes no arguments; got {', '.join(sorted(args))}")
    return {}


class CommandRegistry:
    """The commands this agent knows, by name."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        self.add(*commands)

    def add(self, *commands: Command) -> None:
        for command in commands:
            if self._commands.setdefault(command.name, command) is not command:
                raise ValueError(f"two commands named {command.name!r}")

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    def prepare(self, name: Any, args: Any, allow: Iterable[str]) -> tuple[Command, dict[str, Any]]:
        """The command and its checked arguments, or Refused with the reason: a name this agent
        does not know, one not on its allow-list, or arguments the command refuses."""
        allowed = list(allow)
        if not isinstance(name, str) or name not in self._commands:
            raise Refused(
                f"this agent has no command {str(name)[:64]!r} (it has: {', '.join(self.names)})"
            )
        if name not in allowed:
            raise Refused(
                f"{name!r} is not on this agent's allow-list ([commands] allow = "
                f"{', '.join(allowed) or 'nothing'})"
            )
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise Refused(f"bad arguments for {name}: a JSON object is expected")
        command = self._commands[name]
        try:
            return command, command.check(args)
        except BadArguments as exc:
            raise Refused(f"bad arguments for {name}: {exc}") from None


def builtin(make_registry: Callable[[], Registry], started: float) -> CommandRegistry:
    """The commands every agent has: ``ping`` (``started``: time.monotonic() at the agent's
    start) and ``collect`` (a round of the collectors ``make_registry`` makes)."""
    from wap_agent.commands.backup import Backup, Restore
    from wap_agent.commands.collect import Collect
    from wap_agent.commands.follow import FollowOplog
    from wap_agent.commands.ping import Ping

    return CommandRegistry(
        [Ping(started), Collect(make_registry), Backup(), Restore(), FollowOplog()]
    )
