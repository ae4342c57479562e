"""When to recycle a worker: pure decisions over a worker's numbers."""

from __future__ import annotations

import enum
import math

__all__ = ("NEAR_LIMIT", "RecycleReason", "is_near", "recycle_reason")

#: A worker is "near" a limit at this fraction of it (lifecycle stats).
NEAR_LIMIT = 0.9


class RecycleReason(str, enum.Enum):
    """Why a worker was replaced on purpose (the ``reason`` of the ``recycled``
    telemetry event).

    .. versionadded:: 0.1
    """

    TTL_EXPIRED = "ttl_expired"
    MAX_REQUESTS = "max_requests"
    MEMORY_THRESHOLD = "memory_threshold"
    MANUAL = "manual"
    HEALTH_CHECK_FAILED = "health_check_failed"

    def __str__(self) -> str:
        return self.value


def recycle_reason(
    *,
    age: float,
    requests: int,
    rss_bytes: int | None,
    ttl: float,
    max_requests: float,
    memory_threshold_bytes: float | None,
) -> RecycleReason | None:
    """Return why a worker should be recycled now, or ``None``.

    Args:
        age: seconds since the worker started serving.
        requests: calls it has answered.
        rss_bytes: its resident memory, if sampled.
        ttl: the pool's ``worker_ttl`` (``inf``: never).
        max_requests: this worker's request limit, jitter included (``inf``: never).
        memory_threshold_bytes: the pool's threshold in bytes (``None``: never).
    """
    if requests >= max_requests:
        return RecycleReason.MAX_REQUESTS
    if (
        memory_threshold_bytes is not None
        and rss_bytes is not None
        and rss_bytes >= memory_threshold_bytes
    ):
        return RecycleReason.MEMORY_THRESHOLD
    if age >= ttl:
        return RecycleReason.TTL_EXPIRED
    return None


def is_near(value: float, limit: float) -> bool:
    """Whether *value* reached :data:`NEAR_LIMIT` of a finite *limit*."""
    return math.isfinite(limit) and value >= NEAR_LIMIT * limit
