"""Counters become per-second rates in one place: wap_agent.rates."""

from __future__ import annotations

import pytest

from wap_agent.rates import Rates, rate_name
from wap_agent.sample import COUNTER, GAUGE, Sample


def counter(value: float, ts: float, **labels: str) -> Sample:
    return Sample("mongodb_op_counters_total", value, COUNTER, labels, ts)


def test_first_sample_gives_no_rate_the_second_does():
    rates = Rates()
    assert rates.update([counter(100, 10.0, type="insert")]) == []
    [rate] = rates.update([counter(130, 20.0, type="insert")])
    assert rate.name == "mongodb_op_counters_per_second"
    assert rate.kind == GAUGE
    assert rate.labels == {"type": "insert"}
    assert rate.timestamp == 20.0
    assert rate.value == pytest.approx(3.0)


def test_series_are_told_apart_by_labels():
    rates = Rates()
    rates.update([counter(0, 0.0, type="insert"), counter(0, 0.0, type="query")])
    out = rates.update([counter(10, 5.0, type="insert"), counter(50, 5.0, type="query")])
    assert {r.labels["type"]: r.value for r in out} == {"insert": 2.0, "query": 10.0}


def test_a_reset_counts_from_zero():
    rates = Rates()
    rates.update([counter(1000, 0.0)])
    [rate] = rates.update([counter(40, 10.0)])  # the server restarted and counted 40 since
    assert rate.value == pytest.approx(4.0)


def test_gauges_give_no_rate_and_no_time_gives_no_rate():
    rates = Rates()
    gauge = Sample("mongodb_connections", 5, GAUGE, {}, 0.0)
    assert rates.update([gauge, counter(1, 1.0)]) == []
    assert rates.update([Sample("mongodb_connections", 6, GAUGE, {}, 2.0), counter(2, 1.0)]) == []


def test_series_not_seen_for_long_are_forgotten():
    rates = Rates(forget_after=60)
    rates.update([counter(1, 0.0, collection="dropped")])
    rates.update([counter(1, 100.0, collection="kept")])
    assert len(rates) == 1
    assert rates.update([counter(5, 110.0, collection="dropped")]) == []


def test_rate_names():
    assert rate_name("host_cpu_seconds_total") == "host_cpu_seconds_per_second"
    assert rate_name("host_network_receive_bytes_total") == "host_network_receive_bytes_per_second"
