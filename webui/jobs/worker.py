"""`wap worker`: an RQ worker on the jobs queue, with a reaper process at its side.

The worker process starts no thread of its own: RQ forks a work horse per job, and a fork taken
while another thread holds a lock (pymongo's, logging's) can hang the horse. So the reaper (which
needs a store client, and so pymongo's monitor threads) runs in a child process that the worker
starts before it works and starts again at RQ's maintenance ticks if it died, the way
`rq worker --with-scheduler` keeps its scheduler in a process of its own. Every worker has one;
they may all reap at once (every change is conditional), so a job whose worker was killed is
marked lost by the reaper of any other worker, with no web server running.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess

from redis import Redis
from rq import Queue, Worker

from webui.config import Settings
from webui.jobs.reaper import spawn_reaper_process
from webui.store import Store


class ReapingWorker(Worker):
    """RQ's forking worker that keeps a reaper process running beside it."""

    reaper: subprocess.Popen[bytes] | None = None

    def keep_reaper(self) -> None:
        if self.reaper is None or self.reaper.poll() is not None:
            self.reaper = spawn_reaper_process()

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        self.keep_reaper()

    def teardown(self) -> None:
        super().teardown()
        if self.reaper is not None and not self.is_horse:
            with contextlib.suppress(ProcessLookupError):
                self.reaper.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.reaper.wait(5)


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    # The job function and what it runs (ansible-runner, the services) imported once, here: RQ
    # imports it by name in each work horse otherwise, a second or more of every job's wall time
    # (imports start no thread).
    importlib.import_module("webui.jobs.tasks")
    store = Store(settings.mongodb_uri or "")
    store.migrate()
    store.close()
    redis = Redis.from_url(settings.redis_url or "")
    queue = Queue(settings.queue_name, connection=redis)
    worker = ReapingWorker(
        [queue], connection=redis, name=f"wap-{socket.gethostname()}-{os.getpid()}"
    )
    worker.keep_reaper()  # before RQ starts its pubsub thread
    return worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
