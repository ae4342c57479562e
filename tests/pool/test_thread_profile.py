"""The thread profile: several calls at once per worker process."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from snakepit import open_snakepit
from snakepit.config import PoolConfig
from snakepit.exceptions import PoolUnavailable, WorkerCrashed
from snakepit.pool import open_pool
from snakepit.profiles import BLAS_THREAD_VARIABLES, ThreadProfile
from snakepit.telemetry import capture_events

pytestmark = pytest.mark.anyio

THREADS = "tests.workers.threads:ThreadsAdapter"
CHAOS = "snakepit.adapters.chaos:ChaosAdapter"


def thread_pool(
    adapter: str, size: int = 1, threads: int = 4, **extra: Any
) -> PoolConfig:
    return PoolConfig(
        adapter_module=adapter,
        pool_size=size,
        worker_profile="thread",
        threads_per_worker=threads,
        **extra,
    )


async def test_four_calls_run_at_once_on_one_worker_and_a_fifth_waits() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(thread_pool(THREADS)) as pool:
            results: list[dict[str, int]] = []

            async def meet() -> None:
                results.append(await pool.execute("meet", {"parties": 4}))

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(meet)
            # a 4-party barrier only opens if all four ran at the same time
            assert len({r["pid"] for r in results}) == 1
            assert len({r["thread"] for r in results}) == 4
            full = events.named(("snakepit", "pool", "capacity_reached"))
            assert full and full[0].measurements["capacity"] == 4

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(pool.execute, "meet", {"parties": 5, "timeout": 1.0})
                await anyio.wait_all_tasks_blocked()
                stats = pool.get_stats()
                assert (stats["capacity"], stats["load"], stats["busy"]) == (4, 4, 1)
                # the fifth waits for a free thread: the barrier never opens...
                with anyio.move_on_after(0.3):
                    await pool.execute("where")
                assert pool.get_stats()["queue_timeouts"] == 0
                tg.cancel_scope.cancel()


async def test_least_loaded_worker_gets_the_call() -> None:
    with anyio.fail_after(30):
        async with (
            open_pool(thread_pool(THREADS, size=2, threads=2)) as pool,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(pool.execute_in_session, "a", "meet", {"parties": 2})
            await anyio.wait_all_tasks_blocked()
            assert sorted(row["load"] for row in pool.worker_stats()) == [0, 1]
            tg.start_soon(pool.execute_in_session, "b", "meet", {"parties": 2})
            await anyio.wait_all_tasks_blocked()
            # the second call went to the idle worker, not the busy one
            assert sorted(row["load"] for row in pool.worker_stats()) == [1, 1]
            # complete each barrier on its own worker (session affinity)
            await pool.execute_in_session("a", "meet", {"parties": 2})
            await pool.execute_in_session("b", "meet", {"parties": 2})


async def test_a_long_call_does_not_block_short_ones() -> None:
    with anyio.fail_after(30):
        long_done = anyio.Event()
        async with (
            open_pool(thread_pool(CHAOS, threads=2)) as pool,
            anyio.create_task_group() as tg,
        ):

            async def long() -> None:
                await pool.execute("sleep", {"seconds": 2})
                long_done.set()

            tg.start_soon(long)
            await anyio.wait_all_tasks_blocked()
            for i in range(20):
                reply = await pool.execute("echo", {"request_id": i})
                assert reply["request_id"] == i
            assert not long_done.is_set()


async def test_a_crash_fails_every_call_in_flight_with_its_own_error() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(thread_pool(CHAOS, threads=4)) as pool:
            errors: list[BaseException] = []

            async def call(command: str, args: dict[str, Any]) -> None:
                try:
                    await pool.execute(command, args)
                except WorkerCrashed as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(call, "sleep", {"seconds": 30})
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(call, "exit", {"code": 9})
            assert len(errors) == 4
            assert len({id(e) for e in errors}) == 4  # one instance each
            assert {e.exit_code for e in errors} == {9}
            await events.wait_for(("snakepit", "worker", "restarted"))


async def test_streams_and_sessions_work_in_the_thread_profile() -> None:
    with anyio.fail_after(30):
        async with open_pool(thread_pool(CHAOS, size=2, threads=2)) as pool:
            chunks = [
                c
                async for c in pool.execute_stream("slow_stream", {"n": 3, "delay": 0})
            ]
            assert len(chunks) == 3
            first = (await pool.execute_in_session("s", "echo", {"request_id": 1}))[
                "pid"
            ]
            for i in range(5):
                reply = await pool.execute_in_session("s", "echo", {"request_id": i})
                assert reply["pid"] == first


async def test_a_non_thread_safe_adapter_is_refused() -> None:
    config = thread_pool("snakepit.adapters.showcase:ShowcaseAdapter", threads=2)
    with anyio.fail_after(60), pytest.raises(PoolUnavailable) as info:
        async with open_pool(config):
            pass
    message = str(info.value)
    assert "ThreadSafeAdapter" in message
    assert "__thread_safe__" in message
    assert "process" in message


def test_thread_profile_sets_blas_threads() -> None:
    env = ThreadProfile().worker_env(6)
    assert env == dict.fromkeys(BLAS_THREAD_VARIABLES, "6")


async def test_process_and_thread_pools_side_by_side() -> None:
    config = {
        "pools": [
            {"name": "api", "worker_profile": "process", "pool_size": 2},
            {
                "name": "ml",
                "worker_profile": "thread",
                "pool_size": 1,
                "threads_per_worker": 4,
                "adapter_module": CHAOS,
            },
        ]
    }
    with anyio.fail_after(60):
        async with open_snakepit(config) as sp:
            assert sp.config.get_pool_config("ml").worker_profile == "thread"
            assert sp.config.is_thread_profile("ml")
            assert not sp.config.is_thread_profile("api")
            assert await sp.execute("add", {"a": 2, "b": 3}, pool="api") == 5
            reply = await sp.execute("echo", {"request_id": 7}, pool="ml")
            assert reply["request_id"] == 7
            rows = sp.worker_stats()
            assert {(r["pool"], r["capacity"]) for r in rows} == {("api", 1), ("ml", 4)}
