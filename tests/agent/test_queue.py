"""The agent's on-disk queue and its configuration file: numbers that survive restarts, bounds that
drop the oldest and say so, acknowledgement that deletes, settings refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wap_agent.config import ConfigError, load, parse_size
from wap_agent.queue import BatchQueue
from wap_agent.run import registry_from


class Clock:
    def __init__(self, now: float = 1_765_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def round_at(at: float, samples: int = 10) -> dict:
    return {
        "time": at,
        "samples": [
            {"name": "host_load1", "labels": {"i": str(i)}, "value": i, "timestamp": at}
            for i in range(samples)
        ],
        "errors": {},
    }  # fmt: skip


def test_numbers_go_on_across_restarts_and_acks_delete(tmp_path: Path) -> None:
    clock = Clock()
    queue = BatchQueue(tmp_path / "q", clock=clock)
    assert [queue.append(round_at(clock.now)) for _ in range(3)] == [1, 2, 3]
    stream = queue.stream
    sent = queue.peek(10, 10**6)
    assert [seq for seq, _ in sent] == [1, 2, 3]
    first = json.loads(sent[0][1])
    assert first["stream"] == stream and first["seq"] == 1 and len(first["samples"]) == 10
    assert first["dropped"] == {"batches": 0, "samples": 0}
    queue.ack([1, 2, 3])
    assert len(queue) == 0 and not list((tmp_path / "q" / "batches").iterdir())

    again = BatchQueue(tmp_path / "q", clock=clock)  # the agent restarted with nothing queued
    assert again.stream == stream and again.append(round_at(clock.now)) == 4
    again.append(round_at(clock.now))
    third = BatchQueue(tmp_path / "q", clock=clock)  # restarted with two queued
    assert [seq for seq, _ in third.peek(10, 10**6)] == [4, 5] and third.append(round_at(0)) == 6


def test_state_lost_numbers_continue_from_the_files(tmp_path: Path) -> None:
    queue = BatchQueue(tmp_path / "q", clock=Clock())
    for _ in range(4):
        queue.append(round_at(1_765_000_000.0))
    (tmp_path / "q" / "state.json").unlink()
    assert BatchQueue(tmp_path / "q", clock=Clock()).append(round_at(1_765_000_000.0)) == 5


def test_peek_bounds_the_request_but_always_gives_the_oldest(tmp_path: Path) -> None:
    queue = BatchQueue(tmp_path / "q", clock=Clock())
    for _ in range(5):
        queue.append(round_at(1_765_000_000.0))
    one_size = len(queue.peek(1, 1)[0][1])
    assert [s for s, _ in queue.peek(10, one_size * 2 + 1)] == [1, 2]
    assert [s for s, _ in queue.peek(3, 10**6)] == [1, 2, 3]
    assert [s for s, _ in queue.peek(10, 1)] == [1]


def test_past_the_size_bound_the_oldest_go_and_the_next_batch_says_so(tmp_path: Path) -> None:
    probe = BatchQueue(tmp_path / "probe", clock=Clock())
    probe.append(round_at(1_765_000_000.0))
    size = probe.size
    queue = BatchQueue(tmp_path / "q", max_bytes=size * 3 + size // 2, clock=Clock())
    for _ in range(3):
        queue.append(round_at(1_765_000_000.0))
    assert queue.dropped == (0, 0)
    queue.append(round_at(1_765_000_000.0))  # a fourth does not fit: batch 1 goes
    queue.append(round_at(1_765_000_000.0))  # nor a fifth: batch 2 goes
    kept = queue.peek(10, 10**7)
    assert [seq for seq, _ in kept] == [3, 4, 5]
    assert [json.loads(data)["dropped"] for _, data in kept] == [
        {"batches": 0, "samples": 0},
        {"batches": 1, "samples": 10},
        {"batches": 2, "samples": 20},
    ]
    assert queue.size <= queue.max_bytes
    # the totals survive a restart, and keep counting
    again = BatchQueue(tmp_path / "q", max_bytes=queue.max_bytes, clock=Clock())
    assert again.dropped == (2, 20)


def test_past_the_age_bound_the_oldest_go(tmp_path: Path) -> None:
    clock = Clock()
    queue = BatchQueue(tmp_path / "q", max_age=60, clock=clock)
    queue.append(round_at(clock.now))
    clock.now += 30
    queue.append(round_at(clock.now))
    clock.now += 40  # the first is 70 s old
    assert [seq for seq, _ in queue.peek(10, 10**6)] == [2]
    assert queue.dropped == (1, 10)
    queue.append(round_at(clock.now))
    assert json.loads(queue.peek(10, 10**6)[-1][1])["dropped"] == {"batches": 1, "samples": 10}


def test_a_batch_the_platform_refuses_is_dropped_and_counted(tmp_path: Path) -> None:
    queue = BatchQueue(tmp_path / "q", clock=Clock())
    queue.append(round_at(1_765_000_000.0, samples=3))
    queue.append(round_at(1_765_000_000.0))
    queue.discard(1, "too large")
    assert [seq for seq, _ in queue.peek(10, 10**6)] == [2] and queue.dropped == (1, 3)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_configuration_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    config = load(
        write_config(
            tmp_path / "agent.ini",
            f"""
[platform]
url = https://wap.example.test:8080/
ca_file = {ca}
token_file = /etc/wap-agent/token

[agent]
interval = 2.5

[mongodb]
uris =
    mongodb://127.0.0.1:27017
    mongodb://monitor:pw@127.0.0.1:27018/?authSource=admin
survey_every = 300

[queue]
dir = {tmp_path}/queue
max_bytes = 64M
max_age = 3600
""",
        )
    )
    assert config.url == "https://wap.example.test:8080" and config.encrypted
    assert config.interval == 2.5 and config.host_metrics
    assert len(config.mongodb_uris) == 2 and config.queue_max_bytes == 64 * 1024**2
    assert config.queue_max_age == 3600 and config.backoff_max == 60
    assert config.survey_every == 300
    registry = registry_from(config)
    assert [c.sizes.every for c in registry if hasattr(c, "sizes")] == [300, 300]


PLATFORM = "[platform]\nurl = https://w\ntoken_file = t\n"
QUEUE = "[queue]\ndir = /q\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[platform]\nurl = wap.example.test\n", "[platform] url"),
        ("[platform]\nurl = https://w\n" + QUEUE, "token_file is missing"),
        (PLATFORM, "[queue] dir is missing"),
        (PLATFORM + "ca_file = /nonexistent\n" + QUEUE, "no such file"),
        (PLATFORM + QUEUE + "max_bytes = lots\n", "[queue] max_bytes = 'lots' is not a size"),
        (PLATFORM + QUEUE + "[agent]\ninterval = 0\n", "[agent] interval = '0' must be at least"),
        (PLATFORM + QUEUE + "[mongodb]\nuris = x\n", "one mongodb:// URI per line"),
        (PLATFORM + QUEUE + "[mongodb]\nsurvey_every = -1\n", "survey_every = '-1' must be at"),
        ("not ini", "not an INI file"),
    ],
)
def test_configuration_refused_with_the_reason(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(write_config(tmp_path / "agent.ini", text))
    assert reason in str(refused.value)


def test_sizes() -> None:
    assert parse_size("1048576", "x") == parse_size("1M", "x") == parse_size("1024k", "x")
    assert parse_size("1G", "x") == 1024**3 and parse_size("512KB", "x") == 512 * 1024
