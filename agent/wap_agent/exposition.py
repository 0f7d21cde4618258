"""Samples as JSON (one round, with its errors) or in Prometheus's text exposition format."""

from __future__ import annotations

import json
import math

from wap_agent.collectors import Round
from wap_agent.sample import Sample


def to_json(result: Round, rates: list[Sample]) -> str:
    doc = result.as_dict()
    doc["rates"] = [s.as_dict() for s in rates]
    return json.dumps(doc, indent=2, sort_keys=False)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


def to_prometheus(samples: list[Sample], errors: dict[str, list[str]]) -> str:
    """Text format 0.0.4: one TYPE line per name before its samples, samples grouped by name.

    Counters are written raw (Prometheus computes rates itself). The round's errors are comment
    lines, which the format allows and parsers skip.
    """
    lines: list[str] = []
    for collector, messages in errors.items():
        for message in messages:
            text = " ".join(f"{collector}: {message}".split())
            lines.append(f"# error {text}")
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    for name, group in by_name.items():
        lines.append(f"# TYPE {name} {group[0].kind}")
        for sample in group:
            labels = ",".join(
                f'{key}="{_escape_label(str(value))}"'
                for key, value in sorted(sample.labels.items())
            )
            series = f"{name}{{{labels}}}" if labels else name
            millis = int(sample.timestamp * 1000)
            lines.append(f"{series} {_format_value(sample.value)} {millis}")
    return "\n".join(lines) + "\n"
