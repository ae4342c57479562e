"""Recycling and health checks, through real pools (DESIGN §7)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from snakepit import open_snakepit
from snakepit.config import PoolConfig
from snakepit.exceptions import (
    PoolClosed,
    PoolNotFound,
    WorkerCrashed,
    WorkerNotFound,
    WorkerStartError,
)
from snakepit.lifecycle import RecycleReason
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events

pytestmark = pytest.mark.anyio

CHAOS = "snakepit.adapters.chaos:ChaosAdapter"
RECYCLED = ("snakepit", "worker", "recycled")
STARTED = ("snakepit", "worker", "started")
RESTARTED = ("snakepit", "worker", "restarted")
HEALTH = ("snakepit", "worker", "health_check_failed")


@pytest.mark.parametrize(
    "profile",
    [
        {"worker_profile": "process"},
        {"worker_profile": "thread", "threads_per_worker": 2},
    ],
    ids=["process", "thread"],
)
async def test_recycling_under_load_loses_nothing(profile: dict[str, Any]) -> None:
    config = PoolConfig(
        adapter_module=CHAOS, pool_size=2, worker_max_requests=20, **profile
    )
    min_serving = [config.pool_size]
    results: list[int] = []

    with anyio.fail_after(120), capture_events() as events:
        async with open_pool(config) as pool:

            def sample(*_: Any) -> None:
                min_serving[0] = min(min_serving[0], len(pool.list_workers()))

            from snakepit import telemetry

            telemetry.attach_many(
                "test-capacity",
                [("snakepit", "request", "stop"), RECYCLED, STARTED],
                sample,
            )
            try:
                deadline = anyio.current_time() + 5.0
                sent: list[int] = []

                async def caller(c: int) -> None:
                    i = 0
                    while anyio.current_time() < deadline:
                        request_id = c * 1_000_000 + i
                        sent.append(request_id)
                        reply = await pool.execute("echo", {"request_id": request_id})
                        results.append(reply["request_id"])
                        i += 1

                async with anyio.create_task_group() as tg:
                    for c in range(8):
                        tg.start_soon(caller, c)
            finally:
                telemetry.detach("test-capacity")
        stats = pool.get_stats()  # after shutdown: every recycle is counted
    assert sorted(results) == sorted(sent)  # every request answered, to its caller
    recycled = events.named(RECYCLED)
    # a replacement takes ~0.1-0.3 s to start, while the old worker keeps serving
    assert len(recycled) >= 12
    for event in recycled:
        assert event.metadata["reason"] == "max_requests"
        assert event.metadata["pool"] == "default"
        assert event.metadata["request_count"] >= 20
        assert event.metadata["uptime_seconds"] > 0
    assert min_serving[0] >= config.pool_size  # capacity never dropped
    assert stats["errors"] == 0
    assert stats["recycles"] == len(recycled)
    assert stats["restarts"] == 0  # planned, not crashes


async def test_ttl_recycling() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(
            adapter=CHAOS, size=1, worker_ttl=0.3, lifecycle_check_interval=0.1
        ) as pool:
            first = pool.list_workers()[0]
            await events.wait_for(RECYCLED, count=2)
            assert first not in pool.list_workers()
            reasons = {e.metadata["reason"] for e in events.named(RECYCLED)}
            assert reasons == {"ttl_expired"}
            assert (await pool.execute("echo", {"request_id": 1}))["request_id"] == 1


async def test_memory_recycling_keeps_the_result() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(
            adapter=CHAOS, size=1, memory_threshold_mb=80, lifecycle_check_interval=60
        ) as pool:
            first = pool.list_workers()[0]
            rss = await pool.execute("alloc", {"mb": 120})
            assert rss > 80 * 1024 * 1024  # the request that crossed it returned
            (event,) = await events.wait_for(RECYCLED)
            assert event.metadata["reason"] == "memory_threshold"
            assert event.metadata["worker_id"] == first
            await events.wait_for(("snakepit", "worker", "exited"))
            assert pool.list_workers() != [first]


async def test_stopped_worker_fails_its_health_check() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(
            adapter=CHAOS, size=1, health_check_interval=0.2, health_check_timeout=0.2
        ) as pool:
            worker = pool.worker(pool.list_workers()[0])
            outcome: list[BaseException] = []

            async def call() -> None:
                try:
                    await pool.execute("sleep", {"seconds": 30})
                except WorkerCrashed as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                os.kill(worker.pid, signal.SIGSTOP)
            (failed,) = await events.wait_for(HEALTH)
            assert failed.metadata["worker_id"] == worker.id
            assert "ping" in failed.metadata["reason"]
            assert outcome[0].reason == "health_check_failed"
            await events.wait_for(RESTARTED)
            assert (await pool.execute("echo", {"request_id": 2}))["request_id"] == 2
            reasons = [e.metadata["reason"] for e in events.named(RECYCLED)]
            assert reasons == ["health_check_failed"]


async def test_a_replacement_that_cannot_start_leaves_the_old_worker_serving(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "refuse"
    config = PoolConfig(
        adapter_module="tests.workers.flaky_setup:FlakySetupAdapter",
        adapter_args={"marker": str(marker)},
        pool_size=1,
    )
    with anyio.fail_after(60), capture_events() as events:
        async with open_pool(config) as pool:
            (worker_id,) = pool.list_workers()
            pid = await pool.execute("pid")
            marker.write_text("now")
            answers: list[int] = []

            async def load() -> None:
                for i in range(50):
                    answer = await pool.execute("add", {"a": i, "b": 0})
                    answers.append(answer)

            async with anyio.create_task_group() as tg:
                tg.start_soon(load)
                with pytest.raises(WorkerStartError, match="refusing to start"):
                    await pool.recycle_worker(worker_id)
            assert answers == list(range(50))  # no request lost
            assert pool.list_workers() == [worker_id]
            assert await pool.execute("pid") == pid
            (failed,) = events.named(("snakepit", "worker", "recycle_failed"))
            assert failed.metadata["reason"] == "manual"
            assert pool.get_stats()["restarts"] == 0


async def test_manual_recycle_and_lifecycle_stats() -> None:
    config = {
        "pools": [
            {"name": "a", "pool_size": 2, "worker_max_requests": 10},
            {"name": "b", "pool_size": 1, "adapter_module": CHAOS},
        ]
    }
    with anyio.fail_after(60), capture_events() as events:
        async with open_snakepit(config) as sp:
            old = sp.list_workers("b")[0]
            new = await sp.recycle_worker("b", old)
            assert new != old
            assert sp.list_workers("b") == [new]
            (event,) = events.named(RECYCLED)
            assert event.metadata["reason"] == "manual"
            assert event.metadata["worker_id"] == old
            with pytest.raises(WorkerNotFound, match=old):
                await sp.recycle_worker("b", old)
            with pytest.raises(PoolNotFound):
                await sp.recycle_worker("nope", new)
            for _ in range(9):
                await sp.execute("add", {"a": 1, "b": 1}, pool="a")
            stats = sp.lifecycle_stats()
            assert stats["total_workers"] == 3
            assert stats["workers_by_pool"] == {"a": 2, "b": 1}
            assert stats["total_requests"] == 9
            assert stats["recycles_by_reason"] == {"manual": 1}
            assert stats["workers_near_ttl"] == 0
            assert isinstance(stats["workers_near_max_requests"], int)


async def test_no_replacement_starts_once_the_pool_is_closing() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1) as pool:
            worker = pool.worker(pool.list_workers()[0])
            started = len(events.named(STARTED))
            pool.close_nowait()
            pool.request_recycle(worker, RecycleReason.MANUAL)
            with pytest.raises(PoolClosed):
                await pool.recycle_worker(worker.id)
    assert len(events.named(STARTED)) == started
    assert events.named(RECYCLED) == []


async def test_jitter_spreads_request_limits() -> None:
    with anyio.fail_after(30):
        async with open_pool(
            adapter=CHAOS,
            size=4,
            worker_max_requests=100,
            worker_max_requests_jitter=1000,
        ) as pool:
            limits = [pool.worker(w).max_requests for w in pool.list_workers()]
    assert all(100 <= limit <= 1100 for limit in limits)
    assert len(set(limits)) > 1


async def test_a_draining_worker_is_health_checked_too() -> None:
    # Found by the soak: a recycled worker wedged while it drains must not hold
    # its calls until drain_timeout.
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(
            adapter=CHAOS,
            size=1,
            health_check_interval=0.2,
            health_check_timeout=0.2,
            drain_timeout=600,
        ) as pool:
            old = pool.worker(pool.list_workers()[0])
            outcome: list[BaseException] = []

            async def call() -> None:
                try:
                    await pool.execute("sleep", {"seconds": 600})
                except WorkerCrashed as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                pool.request_recycle(old, RecycleReason.MANUAL)
                await events.wait_for(RECYCLED)
                assert old.id not in pool.list_workers()  # draining
                os.kill(old.pid, signal.SIGSTOP)
            assert outcome[0].reason == "health_check_failed"
            failed = events.named(HEALTH)
            assert [e.metadata["worker_id"] for e in failed] == [old.id]
