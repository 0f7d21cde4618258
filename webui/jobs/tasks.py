"""RQ job functions. They take plain ids and build everything else from the environment."""

from __future__ import annotations

import logging
import os
import socket
import threading

from redis import Redis

from webui.config import Settings, load_settings
from webui.jobs import store as records
from webui.jobs.locks import ClusterLock
from webui.jobs.publish import Publisher
from webui.jobs.runner import JobRun, finish
from webui.store import Store, now

log = logging.getLogger(__name__)
CANCEL_POLL = 1.0


class Heartbeat(threading.Thread):
    """While the job runs: prove the worker alive, keep the cluster lock, see cancel requests."""

    def __init__(self, store: Store, settings: Settings, run: JobRun, lock: ClusterLock) -> None:
        super().__init__(name=f"heartbeat-{run.job_id}", daemon=True)
        self.store, self.settings, self.run_, self.lock = store, settings, run, lock
        self.stopped = threading.Event()

    def run(self) -> None:
        last_beat = 0.0
        while not self.stopped.wait(min(CANCEL_POLL, self.settings.heartbeat_interval)):
            job = records.control(self.store, self.run_.job_id)
            if not job or job.get("cancel_requested") or job.get("status") != "running":
                self.run_.cancel_requested.set()
            if now() - last_beat >= self.settings.heartbeat_interval:
                records.beat(self.store, self.run_.job_id, self.run_.last_counter)
                self.lock.refresh()
                last_beat = now()


def _wait_for_lock(
    store: Store, publisher: Publisher, job_id: str, lock: ClusterLock, timeout: float
) -> bool:
    deadline = now() + timeout
    told = None
    while not lock.acquire():
        job = records.control(store, job_id)
        if not job or job["status"] != "queued" or job.get("cancel_requested"):
            return False
        holder = lock.holder()
        if holder != told:
            records.note_reason(store, job_id, f"waiting for job {holder} on this cluster")
            told = holder
        if now() > deadline:
            finish(
                store,
                publisher,
                job_id,
                "failed",
                f"the cluster stayed locked by job {holder} for {int(timeout)} s",
            )
            return False
        threading.Event().wait(1.0)
    return True


def run_job(job_id: str) -> str:
    settings = load_settings()
    store = Store(settings.mongodb_uri or "")
    redis = Redis.from_url(settings.redis_url or "")
    publisher = Publisher(settings.redis_url or "")
    try:
        job = records.job(store, job_id)
        if not job or job["status"] != "queued":
            # canceled before it started, or delivered twice
            return f"not run: the job is {job['status'] if job else 'gone'}"
        lock = ClusterLock(redis, job.get("cluster_id"), job_id, ttl=settings.lost_after)
        if not _wait_for_lock(store, publisher, job_id, lock, settings.job_timeout):
            return "not run: canceled while waiting for the cluster lock"
        worker = f"{socket.gethostname()}:{os.getpid()}"
        job = records.start_running(store, job_id, worker)
        if not job:
            lock.release()
            return "not run: the job left the queued state"
        publisher.status(job_id, job)
        run = JobRun(store, publisher, settings, job)
        heartbeat = Heartbeat(store, settings, run, lock)
        heartbeat.start()
        try:
            status, reason, rc, stats = run.execute()
            finish(
                store,
                publisher,
                job_id,
                status,
                reason,
                rc=rc,
                stats=stats,
                last_counter=run.last_counter,
            )
            return status
        except BaseException as exc:
            log.error("job %s failed in the worker: %s", job_id, type(exc).__name__)
            finish(
                store,
                publisher,
                job_id,
                "failed",
                f"the worker failed: {type(exc).__name__}: {exc}",
            )
            raise
        finally:
            heartbeat.stopped.set()
            heartbeat.join(timeout=5)
            lock.release()
    finally:
        store.close()
        redis.close()
