"""``collect``: one round of samples now (the agent's collectors, as its configuration makes
them), given back as the command's result rather than queued as a batch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from wap_agent.collectors import Registry, Round
from wap_agent.commands import Context, no_arguments
from wap_agent.sample import Sample


def round_document(result: Round, per_second: list[Sample] | None = None) -> dict[str, Any]:
    """A round as the platform takes it: time, duration, samples (with their rates; values that
    are not finite left out, JSON has no NaN) and the collectors' errors."""
    samples = [s.as_dict() for s in result.samples + (per_second or [])]
    return {
        "time": result.started,
        "duration_seconds": result.duration,
        "samples": [s for s in samples if math.isfinite(s["value"])],
        "errors": {name: list(messages) for name, messages in result.errors.items()},
    }


class Collect:
    name = "collect"

    def __init__(self, make_registry: Callable[[], Registry]) -> None:
        # Collectors of its own, made for each run: the collecting loop's keep state (rates, the
        # size survey's rotation) that a second thread must not share.
        self.make_registry = make_registry

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        return no_arguments(args)

    def run(self, args: dict[str, Any], context: Context) -> dict[str, Any]:
        registry = self.make_registry()
        context.progress(f"collecting: {', '.join(registry.names) or 'no collector'}")
        try:
            return round_document(registry.collect())
        finally:
            registry.close()
