"""The one place where counters become per-second rates.

A counter's rate is the increase since the previous sample of the same series divided by the
seconds between the two samples' timestamps. The first sample of a series gives no rate (there is
nothing to compare it with). A counter that went down was reset (the process restarted, or the
kernel's counter wrapped): as Prometheus's ``rate()`` does, the increase is then the new value
itself, counted from zero. Gauges pass through untouched and give no rate.
"""

from __future__ import annotations

from collections.abc import Iterable

from wap_agent.sample import COUNTER, GAUGE, LabelItems, Sample

RATE_SUFFIX = "_per_second"


def rate_name(counter_name: str) -> str:
    """``mongodb_op_counters_total`` -> ``mongodb_op_counters_per_second``."""
    base = counter_name[: -len("_total")] if counter_name.endswith("_total") else counter_name
    return base + RATE_SUFFIX


class Rates:
    """Remembers the previous value of every counter series and turns the next one into a rate.

    Series not seen for ``forget_after`` seconds are forgotten (a collection that was dropped, a
    network interface that went away), so memory stays bounded by the series that still exist.
    """

    def __init__(self, forget_after: float = 3600.0) -> None:
        self.forget_after = forget_after
        self._previous: dict[tuple[str, LabelItems], tuple[float, float]] = {}

    def update(self, samples: Iterable[Sample]) -> list[Sample]:
        """Feed one round of samples; return a gauge ``<name>_per_second`` per counter series
        that was also seen before, with the later sample's timestamp."""
        rates: list[Sample] = []
        newest = 0.0
        for sample in samples:
            if sample.kind != COUNTER:
                continue
            newest = max(newest, sample.timestamp)
            key = sample.key
            previous = self._previous.get(key)
            self._previous[key] = (sample.timestamp, sample.value)
            if previous is None:
                continue
            before_ts, before_value = previous
            elapsed = sample.timestamp - before_ts
            if elapsed <= 0:
                continue
            increase = sample.value - before_value
            if increase < 0:  # reset: counted again from zero
                increase = sample.value
            rates.append(
                Sample(
                    rate_name(sample.name),
                    increase / elapsed,
                    GAUGE,
                    dict(sample.labels),
                    sample.timestamp,
                )
            )
        if newest:
            self._forget_older_than(newest - self.forget_after)
        return rates

    def _forget_older_than(self, cutoff: float) -> None:
        stale = [key for key, (ts, _) in self._previous.items() if ts < cutoff]
        for key in stale:
            del self._previous[key]

    def __len__(self) -> int:
        return len(self._previous)
