"""Ends jobs whose worker died: a running job without a heartbeat for `lost_after` seconds is
lost, a queued job that RQ no longer holds (or holds as failed) is failed. Safe to run in many
processes at once (every change is a conditional update).

It runs as a thread of `wap web` and as a child process of every `wap worker` (`python -m
webui.jobs.reaper`, as `rq worker --with-scheduler` runs its scheduler in a process of its own):
the worker's own process must stay free of threads because RQ forks it for every job.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from webui.config import Settings
from webui.jobs import store as records
from webui.jobs.publish import Publisher
from webui.services import backups, coverage, rollups
from webui.store import Store, now

log = logging.getLogger(__name__)


def reap(
    store: Store, redis: Redis | None, publisher: Publisher | None, lost_after: float
) -> list[str]:
    ended: list[str] = []
    cutoff = now() - lost_after
    for job in records.silent_running(store, cutoff):
        silent = int(now() - (job.get("heartbeat_at") or now()))
        reason = (
            f"lost: worker {job.get('worker') or '?'} stopped sending heartbeats {silent} s ago "
            "(killed or its machine stopped); the lines it sent are kept"
        )
        updated = records.end(
            store, job["_id"], "lost", reason, among=("running",), heartbeat_before=cutoff
        )
        if updated:
            ended.append(job["_id"])
            if publisher:
                publisher.status(job["_id"], updated)
    if redis is None:
        return ended
    for job in records.queued_before(store, cutoff):
        try:
            rq_status = Job.fetch(job["_id"], connection=redis).get_status(refresh=True)
        except NoSuchJobError:
            rq_status = None
        if rq_status is not None and str(getattr(rq_status, "value", rq_status)) not in (
            "failed",
            "stopped",
            "canceled",
        ):
            continue
        reason = (
            "failed: the queue no longer holds this job "
            "(Redis lost it, or its worker died before starting it)"
        )
        updated = records.end(store, job["_id"], "failed", reason, among=("queued",))
        if updated:
            ended.append(job["_id"])
            if publisher:
                publisher.status(job["_id"], updated)
    return ended


def period(settings: Settings) -> float:
    """How often a reaper looks: a job is marked lost at most `lost_after` + this after its last
    heartbeat, as long as one web server or worker runs."""
    return max(0.5, settings.lost_after / 3)


def beside(name: str, task: Callable[[], object], every: float) -> threading.Event:
    """Run `task` now and then every `every` seconds in a daemon thread of its own, one run at a
    time, until the returned event is set: a task that waits on a store far away (S3 unreachable:
    each request waits its timeout, and retries) never holds the reaper's loop up."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                task()
            except Exception as exc:
                log.warning("%s: %s", name, exc)
            stop.wait(every)

    threading.Thread(target=run, name=name, daemon=True).start()
    return stop


def _reap_every(settings: Settings, wait: Callable[[float], bool], roll_up: bool = False) -> None:
    """Reap now, then every `period` until `wait(period)` says stop; with `roll_up` (a worker's
    reaper process, never the web server's thread), also roll up and expire metrics each time
    (webui.services.rollups: a round with nothing due is a few reads), and run the backups' and
    the backup coverage's ticks beside the loop, each in a thread of its own (they read and
    write the snapshot stores: a slow or unreachable one must not delay the marking of lost
    jobs)."""
    store = Store(settings.mongodb_uri or "")
    redis = Redis.from_url(settings.redis_url or "")
    publisher = Publisher(settings.redis_url or "")
    every = period(settings)
    besides = (
        [
            # backup schedules, running backups settled, retention, restores verified
            beside("backups", lambda: backups.tick(store, settings), every),
            beside("backup coverage", lambda: coverage.tick(store, settings), every),
        ]
        if roll_up
        else []
    )
    try:
        _loop(settings, wait, roll_up, store, redis, publisher, every)
    finally:
        for stop in besides:
            stop.set()


def _loop(
    settings: Settings, wait: Callable[[float], bool], roll_up: bool, store: Store, redis: Redis,
    publisher: Publisher, every: float,
) -> None:  # fmt: skip
    while True:
        try:
            for job_id in reap(store, redis, publisher, settings.lost_after):
                log.warning("job %s ended by the reaper", job_id)
        except Exception as exc:
            log.warning("reaper: %s", exc)
        if roll_up:
            try:
                rollups.run(store, rollups.Retention.of(settings), now())
            except Exception as exc:
                log.warning("metrics rollups: %s", exc)
        if wait(every):
            return


def start_reaper(settings: Settings) -> threading.Event:
    """Reap in a daemon thread (in `wap web`); set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(
        target=_reap_every, args=(settings, stop.wait), name="wap-reaper", daemon=True
    ).start()
    return stop


def spawn_reaper_process() -> subprocess.Popen[bytes]:
    """Start `python -m webui.jobs.reaper` as a child of this process (a worker), in its process
    group and with its output; it ends when this process ends, even by SIGKILL. No preexec_fn: RQ's
    worker has a thread by the time it restarts a reaper, and only fork+exec is safe then."""
    return subprocess.Popen(
        [sys.executable, "-m", "webui.jobs.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )


def _main(argv: list[str]) -> int:
    """The reaper process of a worker: reap until the worker (pid in argv) is gone."""
    from webui.config import SettingsError, load_settings

    parent = int(argv[0]) if argv and argv[0].isdigit() else os.getppid()
    with contextlib.suppress(OSError, AttributeError):  # SIGTERM when the worker dies (Linux)
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    for signum in (signal.SIGTERM, signal.SIGINT):  # every change is one atomic update: just go
        signal.signal(signum, lambda *_: os._exit(0))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    try:
        settings = load_settings()
    except SettingsError as exc:
        log.warning("%s", exc)
        return 2

    def wait(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if os.getppid() != parent:
                return True
            time.sleep(min(0.5, seconds))
        return os.getppid() != parent

    _reap_every(settings, wait, roll_up=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
