"""The lifecycle manager of one pool: periodic TTL/memory checks, health checks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from snakepit import telemetry

from ._policy import RecycleReason, recycle_reason

if TYPE_CHECKING:
    from snakepit.pool import Pool, WorkerProcess

__all__ = ("run_lifecycle",)

logger = logging.getLogger("snakepit.lifecycle")

_E_HEALTH = ("snakepit", "worker", "health_check_failed")


async def run_lifecycle(pool: Pool) -> None:
    """Run the pool's periodic checks until cancelled."""
    config = pool.config
    async with anyio.create_task_group() as tg:
        if math.isfinite(config.worker_ttl) or config.memory_threshold_mb is not None:
            tg.start_soon(_every, config.lifecycle_check_interval, _check_limits, pool)
        tg.start_soon(_every, config.health_check_interval, _check_health, pool)


async def _every(
    seconds: float, check: Callable[[Pool], Awaitable[None]], pool: Pool
) -> None:
    while True:
        await anyio.sleep(seconds)
        await check(pool)


async def _check_limits(pool: Pool) -> None:
    config = pool.config
    threshold = (
        None
        if config.memory_threshold_mb is None
        else config.memory_threshold_mb * 1024 * 1024
    )
    now = time.monotonic()
    for worker in pool.serving_workers():
        if worker.recycling:
            continue
        rss = worker.sample_rss() if threshold is not None else None
        reason = recycle_reason(
            age=now - worker.started_at,
            requests=worker.requests,
            rss_bytes=rss,
            ttl=config.worker_ttl,
            max_requests=worker.max_requests,
            memory_threshold_bytes=threshold,
        )
        if reason is not None:
            pool.request_recycle(worker, reason)


async def _check_health(pool: Pool) -> None:
    async with anyio.create_task_group() as tg:
        for worker in pool.live_workers():
            tg.start_soon(_ping, pool, worker)


async def _ping(pool: Pool, worker: WorkerProcess) -> None:
    timeout = pool.config.health_check_timeout
    try:
        healthy = await worker.ping(timeout)
        reason = f"no answer to a ping within {timeout}s"
    except Exception as exc:  # the channel is broken: as unhealthy as can be
        healthy = False
        reason = f"ping failed: {exc}"
    if healthy or worker.exiting:
        return
    logger.error(
        "worker %s failed its health check (%s); replacing it", worker.id, reason
    )
    telemetry.execute(
        _E_HEALTH,
        {"count": 1},
        {"worker_id": worker.id, "pool": pool.config.name, "reason": reason},
    )
    pool.note_recycle(worker, RecycleReason.HEALTH_CHECK_FAILED)
    worker.kill_now(RecycleReason.HEALTH_CHECK_FAILED.value)
