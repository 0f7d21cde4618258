"""Ends jobs whose worker died: a running job without a heartbeat for `lost_after` seconds is
lost, a queued job that RQ no longer holds (or holds as failed) is failed. Safe to run in many
processes at once (every change is a conditional update)."""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from webui.config import Settings
from webui.jobs.publish import Publisher
from webui.store import Store, now

log = logging.getLogger(__name__)


def reap(
    store: Store, redis: Redis | None, publisher: Publisher | None, lost_after: float
) -> list[str]:
    ended: list[str] = []
    cutoff = now() - lost_after
    for job in store.jobs.find({"status": "running", "heartbeat_at": {"$lt": cutoff}}):
        silent = int(now() - (job.get("heartbeat_at") or now()))
        reason = (
            f"lost: worker {job.get('worker') or '?'} stopped sending heartbeats {silent} s ago "
            "(killed or its machine stopped); the lines it sent are kept"
        )
        updated = store.jobs.find_one_and_update(
            {"_id": job["_id"], "status": "running", "heartbeat_at": {"$lt": cutoff}},
            {"$set": {"status": "lost", "reason": reason, "finished_at": now()}},
            return_document=True,
        )
        if updated:
            ended.append(job["_id"])
            if publisher:
                publisher.status(job["_id"], updated)
    if redis is None:
        return ended
    for job in store.jobs.find({"status": "queued", "created_at": {"$lt": cutoff}}):
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
        updated = store.jobs.find_one_and_update(
            {"_id": job["_id"], "status": "queued"},
            {"$set": {"status": "failed", "reason": reason, "finished_at": now()}},
            return_document=True,
        )
        if updated:
            ended.append(job["_id"])
            if publisher:
                publisher.status(job["_id"], updated)
    return ended


def start_reaper(settings: Settings) -> threading.Event:
    """Reap every third of `lost_after` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        store = Store(settings.mongodb_uri or "")
        redis = Redis.from_url(settings.redis_url or "")
        publisher = Publisher(settings.redis_url or "")
        period = max(0.5, settings.lost_after / 3)
        while not stop.wait(period):
            try:
                for job_id in reap(store, redis, publisher, settings.lost_after):
                    log.warning("job %s ended by the reaper", job_id)
            except Exception as exc:
                log.warning("reaper: %s", exc)
                time.sleep(period)

    threading.Thread(target=loop, name="wap-reaper", daemon=True).start()
    return stop
