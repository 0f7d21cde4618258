"""`wap worker`: an RQ worker on the jobs queue.

The worker process starts no thread of its own: RQ forks a work horse per job, and a fork taken
while another thread holds a lock (pymongo's, logging's) can hang the horse. The reaper therefore
runs in `wap web`.
"""

from __future__ import annotations

import os
import socket

from redis import Redis
from rq import Queue, Worker

from webui.config import Settings
from webui.store import Store


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    store = Store(settings.mongodb_uri or "")
    store.migrate()
    store.close()
    redis = Redis.from_url(settings.redis_url or "")
    queue = Queue(settings.queue_name, connection=redis)
    worker = Worker([queue], connection=redis, name=f"wap-{socket.gethostname()}-{os.getpid()}")
    return worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
