"""The collector seam: what a collector is, and the registry that runs them one round at a time.

A collector has a ``name``, a ``collect()`` that returns the samples of one round, and
``errors``, the messages of what went wrong in that round (empty when all went well). A
collector never raises out of ``collect()``: what it could not read is an error of the round
and, where it matters, a sample (``mongodb_up 0``). Retrying is the caller's business (the
agent's loop, with its back-off), not the collector's. Later collectors (slow operations, logs,
backups' progress) plug in by being added to a :class:`Registry`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from wap_agent.sample import Sample


@runtime_checkable
class Collector(Protocol):
    name: str
    errors: list[str]

    def collect(self) -> list[Sample]: ...


@dataclass
class Round:
    """What one round of every collector gave."""

    started: float
    duration: float
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "started": self.started,
            "duration_seconds": self.duration,
            "samples": [s.as_dict() for s in self.samples],
            "errors": {name: list(messages) for name, messages in self.errors.items()},
        }


class Registry:
    """The collectors of an agent, run in the order they were added."""

    def __init__(self, collectors: Iterable[Collector] = ()) -> None:
        self._collectors: dict[str, Collector] = {}
        for collector in collectors:
            self.add(collector)

    def add(self, collector: Collector) -> None:
        if collector.name in self._collectors:
            raise ValueError(f"a collector named {collector.name!r} is already registered")
        self._collectors[collector.name] = collector

    @property
    def names(self) -> list[str]:
        return list(self._collectors)

    def __iter__(self) -> Iterator[Collector]:
        return iter(self._collectors.values())

    def collect(self) -> Round:
        started = time.time()
        clock = time.monotonic()
        result = Round(started=started, duration=0.0)
        for name, collector in self._collectors.items():
            try:
                result.samples.extend(collector.collect())
                errors = list(collector.errors)
            except Exception as exc:  # a collector's bug must not stop the others
                errors = [f"collector failed: {type(exc).__name__}: {exc}"]
            if errors:
                result.errors[name] = errors
        result.duration = time.monotonic() - clock
        return result

    def close(self) -> None:
        for collector in self._collectors.values():
            close = getattr(collector, "close", None)
            if close is not None:
                close()
