"""One measurement: what every collector returns and every output writes."""

from __future__ import annotations

from dataclasses import dataclass, field

COUNTER = "counter"
GAUGE = "gauge"
KINDS = (COUNTER, GAUGE)

LabelItems = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """A value of one series at one time.

    ``name`` is Prometheus-style (``host_*``/``mongodb_*``, ``_bytes``/``_seconds`` units, counters
    end in ``_total``); ``labels`` tell series of one name apart; ``kind`` is ``counter`` (only
    grows, until the process restarts) or ``gauge``; ``timestamp`` is Unix seconds.
    """

    name: str
    value: float
    kind: str = GAUGE
    labels: dict[str, str] = field(default_factory=dict)
    timestamp: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"sample kind must be one of {KINDS}, not {self.kind!r}")

    @property
    def key(self) -> tuple[str, LabelItems]:
        """The series this sample belongs to: its name and sorted labels."""
        return self.name, tuple(sorted(self.labels.items()))

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "labels": dict(self.labels),
            "value": self.value,
            "kind": self.kind,
            "timestamp": self.timestamp,
        }
