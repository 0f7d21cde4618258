"""Per-cluster lock in Redis, so that two changes to one cluster never overlap.

The lock expires unless its holder refreshes it (the job's heartbeat does), so a worker that dies
releases it within one TTL; only the holder (by job id) can refresh or release it.
"""

from __future__ import annotations

from redis import Redis

_REFRESH = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class ClusterLock:
    def __init__(self, redis: Redis, cluster_id: str | None, job_id: str, ttl: float) -> None:
        self.redis = redis
        self.key = f"wap:lock:cluster:{cluster_id}" if cluster_id else None
        self.job_id = job_id
        self.ttl_ms = int(ttl * 1000)

    def acquire(self) -> bool:
        if self.key is None:
            return True
        return bool(self.redis.set(self.key, self.job_id, nx=True, px=self.ttl_ms))

    def holder(self) -> str | None:
        if self.key is None:
            return None
        value = self.redis.get(self.key)
        return value.decode() if value else None

    def refresh(self) -> bool:
        if self.key is None:
            return True
        return bool(self.redis.eval(_REFRESH, 1, self.key, self.job_id, self.ttl_ms))

    def release(self) -> None:
        if self.key is not None:
            self.redis.eval(_RELEASE, 1, self.key, self.job_id)
