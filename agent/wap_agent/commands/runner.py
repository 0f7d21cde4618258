"""Pulling commands from the platform, running them, reporting back; nothing lost on the way.

Two threads and one per running command. The poller long-polls the platform
(``GET /api/v1/agent/commands?wait=N``) for the commands queued for this host; each new one is
written to the outbox (``<queue dir>/commands/<id>.json``) before anything else, then either
refused (unknown here, not on the allow-list, bad arguments: the reason is its report) or run
in a thread of its own (at most ``[commands] workers`` at once), so that a long command stops
neither the collecting loop nor another command. A command that raises is reported failed with
its error; the agent goes on. The reporter sends the latest progress of each running command
and every result, and deletes a command's file only when the platform has its result: a result
made while the platform is away is sent when it is back, also after an agent restart. A command
the agent was running when it stopped cannot be resumed: on the next start it is reported
failed, and said why. The platform gives a command again until it has a report on it; the agent
knows a command by its id and takes it once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from wap_agent.commands import CommandRegistry, Context, Refused
from wap_agent.config import AgentConfig
from wap_agent.queue import write_durably
from wap_agent.transport import Answer, Backoff, Platform, Unreachable

log = logging.getLogger(__name__)

COMMAND_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_REASON = 2000
HEARTBEAT = 60.0  # seconds: a running command's latest progress is sent again this often
REMEMBERED = 10_000  # ids of commands reported, so that an answer given twice runs them once


class Outbox:
    """One file per command taken: what was asked, its state here (taken, running, done) and,
    once done, the report that has yet to reach the platform."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def save(self, record: dict[str, Any]) -> None:
        path = self.directory / f"{record['id']}.json"
        write_durably(path, json.dumps(record, allow_nan=False).encode())

    def records(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                found.append(json.loads(path.read_bytes()))
            except (OSError, ValueError) as exc:
                log.error("command file %s unreadable (%s): removed", path, exc)
                path.unlink()
        return found

    def replace_report(self, command_id: str, report: dict[str, Any]) -> None:
        path = self.directory / f"{command_id}.json"
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.save({**json.loads(path.read_bytes()), "report": report})

    def remove(self, command_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{command_id}.json").unlink()


class CommandRunner:
    def __init__(
        self, config: AgentConfig, registry: CommandRegistry, stop: threading.Event
    ) -> None:
        self.config = config
        self.registry = registry
        self.stop = stop
        self.outbox = Outbox(config.queue_dir / "commands")
        # a connection each: the long poll holds its own for up to poll_wait
        self.poller = Platform(
            config.url, config.token_file, config.ca_file,
            config.poll_wait + config.request_timeout, warn=False,
        )  # fmt: skip
        self.reporter = Platform(
            config.url, config.token_file, config.ca_file, config.request_timeout, warn=False
        )
        self._lock = threading.Lock()
        self._taken: set[str] = set()  # in the outbox
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._progress: dict[str, dict[str, Any]] = {}  # the latest not yet sent, per command
        self._latest: dict[str, dict[str, Any]] = {}  # the latest of each running command
        # sent again every heartbeat while a command runs, so that a long one that says nothing
        # new is still heard from (the platform sees when its agent last spoke of it)
        self.heartbeat = HEARTBEAT
        self._beat_at = time.monotonic()
        self._results: dict[str, dict[str, Any]] = {}  # reports not yet acknowledged, in order
        self._wake = threading.Event()
        self._slots = threading.BoundedSemaphore(config.command_workers)
        self._recover()

    def _recover(self) -> None:
        for record in self.outbox.records():
            self._taken.add(record["id"])
            if record.get("report") is None:
                record["report"] = {
                    "state": "failed",
                    "reason": f"the agent stopped while the command was {record['state']} "
                    "(it was restarted); ask for it again",
                }
                record["state"] = "done"
                self.outbox.save(record)
            self._results[record["id"]] = record["report"]
        if self._results:
            log.info("%d command results to report from before the restart", len(self._results))

    def start(self) -> None:
        for target, name in ((self.poll_loop, "commands-poller"),
                             (self.report_loop, "commands-reporter")):  # fmt: skip
            threading.Thread(target=target, name=name, daemon=True).start()

    # -- taking commands --------------------------------------------------------------------

    def poll_loop(self) -> None:
        backoff = Backoff(self.config.backoff_min, self.config.backoff_max, self.stop,
                          "polling for commands")  # fmt: skip
        while not self.stop.is_set():
            asked = time.monotonic()
            try:
                answer = self.poller.poll(self.config.poll_wait)
            except Unreachable as exc:
                backoff.failed(f"platform unreachable: {exc}")
                continue
            if answer.status != 200:
                backoff.failed(f"the platform answered {answer.status}: {answer.reason}",
                               answer.retry_after)  # fmt: skip
                continue
            backoff.succeeded()
            commands = answer.body.get("commands")
            taken = 0
            for item in commands if isinstance(commands, list) else []:
                try:
                    taken += self.take(item)
                except Exception as exc:  # a full disk, a bug: logged; the platform gives it again
                    log.exception("command %r could not be taken: %s", item, exc)
                    with self._lock:
                        self._taken.discard(str(item.get("id")))
            if not taken and time.monotonic() - asked < self.config.poll_wait / 2:
                # answered at once with nothing new (a platform with no thread to hold the poll
                # with, or commands given again before our reports reached it): no busy loop
                self.stop.wait(self.config.poll_wait)
        self.poller.close()

    def take(self, item: Any) -> bool:
        """A command the platform gave: run or refused, once. False when it was not new."""
        command_id = str(item.get("id", "")) if isinstance(item, dict) else ""
        if not COMMAND_ID.match(command_id):
            log.error("the platform gave a command without a usable id: %r", item)
            return False
        with self._lock:
            if command_id in self._taken or command_id in self._reported:
                return False  # given again before our report reached the platform
            self._taken.add(command_id)
        name, args = item.get("name"), item.get("args")
        record = {"id": command_id, "name": str(name)[:64], "args": args,
                  "asked_by": str(item.get("created_by", ""))[:200], "taken_at": time.time(),
                  "state": "taken", "report": None}  # fmt: skip
        self.outbox.save(record)  # before anything runs: across a restart it is known
        try:
            command, checked = self.registry.prepare(name, args, self.config.commands_allow)
        except Refused as refusal:
            log.warning("command %s refused: %s", command_id, refusal.reason)
            self._finish(record, {"state": "refused", "reason": refusal.reason})
            return True
        log.info("command %s: %s, asked by %s", command_id, command.name, record["asked_by"])
        threading.Thread(
            target=self._run, args=(record, command, checked), daemon=True,
            name=f"command-{command.name}-{command_id[:8]}",
        ).start()  # fmt: skip
        return True

    def _run(self, record: dict[str, Any], command: Any, args: dict[str, Any]) -> None:
        with self._slots:
            context = Context(
                self.config, record["id"],
                lambda message, fraction: self._progress_of(record["id"], message, fraction),
            )  # fmt: skip
            try:
                record["state"] = "running"
                self.outbox.save(record)
                context.progress("started")
                result = command.run(args, context)
                if not isinstance(result, dict):
                    raise TypeError(f"the command gave a {type(result).__name__}, not an object")
                json.dumps(result, allow_nan=False)  # what cannot be sent fails here, said so
                report: dict[str, Any] = {"state": "succeeded", "result": result}
            except Exception as exc:  # reported; the agent goes on
                log.warning("command %s (%s) failed: %s", record["id"], command.name, exc,
                            exc_info=True)  # fmt: skip
                report = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        self._finish(record, report)

    def _finish(self, record: dict[str, Any], report: dict[str, Any]) -> None:
        if "reason" in report:
            report["reason"] = report["reason"][:MAX_REASON]
        record.update(state="done", report=report)
        try:
            self.outbox.save(record)
        except OSError as exc:  # a full disk: reported all the same, if the agent lives on
            log.error("command %s: its result cannot be kept on disk (%s)", record["id"], exc)
        with self._lock:
            self._progress.pop(record["id"], None)
            self._latest.pop(record["id"], None)
            self._results[record["id"]] = report
        self._wake.set()

    def _progress_of(self, command_id: str, message: str, fraction: float | None) -> None:
        with self._lock:
            if command_id not in self._results:
                document = {"message": message[:MAX_REASON], "fraction": fraction}
                self._progress[command_id] = self._latest[command_id] = document
        self._wake.set()

    # -- reporting --------------------------------------------------------------------------

    def report_loop(self) -> None:
        backoff = Backoff(self.config.backoff_min, self.config.backoff_max, self.stop,
                          "reporting on commands")  # fmt: skip
        while not self.stop.is_set():
            self._wake.clear()
            item = self._next_report()
            if item is None:
                self._wake.wait(min(1.0, self.heartbeat))
                self._beat()
                continue
            kind, command_id, document = item
            try:
                answer = self.reporter.report(command_id, kind, document)
            except Unreachable as exc:
                backoff.failed(f"platform unreachable: {exc}")
                continue
            if answer.status in (401, 403, 408, 429) or answer.status >= 500:
                backoff.failed(f"the platform answered {answer.status}: {answer.reason}",
                               answer.retry_after)  # fmt: skip
                continue
            backoff.succeeded()
            self._answered(kind, command_id, document, answer)
        self.reporter.close()

    def _beat(self) -> None:
        if time.monotonic() - self._beat_at < self.heartbeat:
            return
        self._beat_at = time.monotonic()
        with self._lock:
            for command_id, document in self._latest.items():
                self._progress.setdefault(command_id, dict(document))

    def _next_report(self) -> tuple[str, str, dict[str, Any]] | None:
        with self._lock:
            for kind, pending in (("progress", self._progress), ("result", self._results)):
                for command_id, document in pending.items():
                    return kind, command_id, document
        return None

    def _answered(self, kind: str, command_id: str, document: dict, answer: Answer) -> None:
        """The platform took the report (200), has another outcome already (409), does not know
        the command (404) or will never take this report (400, 413, 422)."""
        if kind == "progress":
            with self._lock:
                if self._progress.get(command_id) is document:
                    del self._progress[command_id]
            return
        if answer.status == 200:
            log.info("command %s: %s, reported", command_id, document["state"])
        elif answer.status in (400, 413, 422) and document["state"] == "succeeded":
            # the result itself is refused (too large, say): the platform learns it failed
            replacement = {"state": "failed", "reason": "the platform refused the command's "
                           f"result ({answer.status}): {answer.reason}"[:MAX_REASON]}  # fmt: skip
            self.outbox.replace_report(command_id, replacement)
            with self._lock:
                self._results[command_id] = replacement
            return
        else:
            log.warning("command %s: the platform did not take its result (%d: %s); dropped",
                        command_id, answer.status, answer.reason)  # fmt: skip
        with self._lock:
            self._results.pop(command_id, None)
            self._taken.discard(command_id)
            self._reported[command_id] = None
            while len(self._reported) > REMEMBERED:
                self._reported.popitem(last=False)
        self.outbox.remove(command_id)

    def pending(self) -> int:
        """Results not yet acknowledged by the platform."""
        with self._lock:
            return len(self._results)
