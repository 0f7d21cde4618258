"""`wap-agent run`: collect every interval into the on-disk queue, ship the queue to the platform.

Two threads. The main one collects a round every ``interval`` (the Registry), adds the counters'
rates (rates.py) and appends the round to the queue as one batch. The sender sends the oldest
batches, in order, several per request, and deletes them only when the platform acknowledged
them; when the platform cannot be reached or answers with an error it waits, doubling the wait
from ``backoff_min`` to ``backoff_max`` (or the platform's Retry-After), while collection goes on
into the queue. SIGTERM or SIGINT ends both cleanly: the queue is on disk and is sent on the next
start. Nothing a platform or mongod does ends the agent.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Any

from wap_agent.collectors import Registry
from wap_agent.collectors.host import HostCollector
from wap_agent.collectors.mongodb import MongoCollector
from wap_agent.collectors.mongodb_sizes import SizeSurvey
from wap_agent.commands import builtin, follow
from wap_agent.commands.collect import round_document
from wap_agent.commands.runner import CommandRunner
from wap_agent.config import AgentConfig
from wap_agent.queue import BatchQueue
from wap_agent.rates import Rates
from wap_agent.transport import Backoff, Platform, Unreachable

log = logging.getLogger("wap_agent")


def build_registry(
    host_metrics: bool = True,
    mongodb_uris: tuple[str, ...] | list[str] = (),
    timeout_ms: int = 5000,
    dbstats_per_round: int = 10,
    collections_per_round: int = 20,
    top_collections: int = 20,
    survey_every: float = 60.0,
) -> Registry:
    """The host's collector and one per MongoDB URI, each with its size survey's budget."""
    registry = Registry()
    if host_metrics:
        registry.add(HostCollector())
    for uri in mongodb_uris:
        survey = SizeSurvey(
            dbstats_per_round=dbstats_per_round,
            collections_per_round=collections_per_round,
            top_collections=top_collections,
            every=survey_every,
        )
        registry.add(MongoCollector(uri, timeout_ms=timeout_ms, sizes=survey))
    return registry


def registry_from(config: AgentConfig) -> Registry:
    return build_registry(
        config.host_metrics, config.mongodb_uris, config.timeout_ms,
        config.dbstats_per_round, config.collections_per_round, config.top_collections,
        config.survey_every,
    )  # fmt: skip


class Sender:
    """Delivers the queue's batches in order; runs in its own thread until ``stop`` is set."""

    def __init__(
        self, queue: BatchQueue, platform: Platform, config: AgentConfig, stop: threading.Event
    ) -> None:
        self.queue = queue
        self.platform = platform
        self.config = config
        self.stop = stop
        self.hostname = socket.gethostname()
        # lowered by each 413 until a request fits, and kept: the platform's bound stays put
        self.batches_per_request = config.batches_per_request
        # after a 400 on several batches: that many are sent one by one, to find the bad one
        self._singles = 0
        self.delivered = 0
        self.backoff = Backoff(config.backoff_min, config.backoff_max, stop, "sending samples")

    def run(self) -> None:
        while not self.stop.is_set():
            self.queue.changed.clear()
            limit = 1 if self._singles else self.batches_per_request
            batches = self.queue.peek(limit, self.config.request_bytes)
            if not batches:
                self.queue.changed.wait(1.0)
                continue
            try:
                self.send(batches)
            except Exception as exc:  # never let the sender die: log, wait, try again
                log.exception("sending failed: %s", exc)
                self.backoff.failed(f"sending failed: {exc}")
        self.platform.close()

    def send(self, batches: list[tuple[int, bytes]]) -> None:
        """One request. When it fails, the back-off's wait before returning; after a 413 or a
        400, none (fewer batches per request, or one given up: the next request at once)."""
        seqs = [seq for seq, _ in batches]
        try:
            answer = self.platform.send(self.hostname, [data for _, data in batches])
        except Unreachable as exc:
            self._failed(f"platform unreachable: {exc}")
            return
        if answer.status == 200:
            self.queue.ack(seqs)
            self.delivered += len(seqs)
            self.backoff.succeeded()
            self._singles = max(0, self._singles - len(seqs))
        elif answer.status == 413:
            if len(batches) > 1:  # fewer per request until one fits
                self.batches_per_request = max(1, len(batches) // 2)
            else:
                reason = f"the platform refuses it as too large: {answer.reason}"
                self.queue.discard(seqs[0], reason)
        elif answer.status == 400:  # malformed: sending it again cannot help
            if len(seqs) == 1:
                self.queue.discard(seqs[0], f"the platform refused it: {answer.reason}")
                self._singles = max(0, self._singles - 1)
            else:
                self._singles = len(seqs)
        else:
            self._failed(f"the platform answered {answer.status}: {answer.reason}",
                         answer.retry_after if answer.status == 429 else None)  # fmt: skip

    def _failed(self, reason: str, at_least: float | None = None) -> None:
        """The batches stay queued; the next try after the back-off's wait."""
        self.backoff.failed(f"{reason} ({len(self.queue)} batches queued)", at_least)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.queue = BatchQueue(config.queue_dir, config.queue_max_bytes, config.queue_max_age)
        self.platform = Platform(
            config.url, config.token_file, config.ca_file, config.request_timeout
        )
        self.registry = registry_from(config)
        self.rates = Rates()
        self.sender = Sender(self.queue, self.platform, config, self.stop)
        commands = builtin(lambda: registry_from(config), time.monotonic())
        self.commands = CommandRunner(config, commands, self.stop)

    def collect_once(self) -> int:
        result = self.registry.collect()
        return self.queue.append(round_document(result, self.rates.update(result.samples)))

    def run(self) -> int:
        log.info(
            "wap-agent: every %g s to %s (stream %s, next batch %d, %d queued); collectors: %s",
            self.config.interval, self.config.url, self.queue.stream, self.queue.last_seq + 1,
            len(self.queue), ", ".join(self.registry.names) or "none",
        )  # fmt: skip
        log.info(
            "commands: %s allowed, of %s", ", ".join(self.config.commands_allow) or "none",
            ", ".join(self.commands.registry.names),
        )  # fmt: skip
        sender = threading.Thread(target=self.sender.run, name="sender", daemon=True)
        sender.start()
        self.commands.start()
        follow.resume(self.commands.registry, self.config, self.stop)  # followers it ran before
        next_round = time.monotonic()
        try:
            while not self.stop.is_set():
                try:
                    self.collect_once()
                except Exception as exc:  # a full disk, a bug: logged, and the next round tries
                    log.exception("round failed: %s", exc)
                next_round += self.config.interval
                late = time.monotonic() - next_round
                if late > 0:  # a round longer than the interval: skip ahead, never pile up
                    next_round += (late // self.config.interval + 1) * self.config.interval
                self.stop.wait(max(0.0, next_round - time.monotonic()))
        finally:
            self.stop.set()
            follow.shutdown(self.commands.registry, self.config)
            sender.join(self.config.request_timeout + 5)
            self.registry.close()
        log.info("wap-agent stopped; %d batches queued for the next start", len(self.queue))
        return 0

    def handle_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            self.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
