"""Pools on a free-threaded CPython (3.13t): the workers' GIL really is off.

These tests need a free-threaded interpreter with msgpack: ``$SNAKEPIT_FT_PYTHON``,
else ``~/.cache/snakepit/venv-3.13t/bin/python`` (what CI builds when it can).
Without one they skip, naming the path they looked at. Workers started with it
import snakepit from this checkout (the pool puts it on their ``PYTHONPATH``).
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

from snakepit.config import PoolConfig
from snakepit.exceptions import RemoteError
from snakepit.pool import Pool, open_pool
from tests.interpreter import FREE_THREADED_VENV

FT_ENV = "SNAKEPIT_FT_PYTHON"
FT_PYTHON = os.environ.get(FT_ENV) or str(FREE_THREADED_VENV)
HAS_FT_PYTHON = os.path.isfile(FT_PYTHON) and os.access(FT_PYTHON, os.X_OK)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not HAS_FT_PYTHON,
        reason=f"no free-threaded interpreter: {FT_PYTHON} is not an executable "
        f"file (set ${FT_ENV}, or build {FREE_THREADED_VENV})",
    ),
]

THREADED = "snakepit.adapters.threaded_showcase:ThreadedShowcaseAdapter"
SHOWCASE = "snakepit.adapters.showcase:ShowcaseAdapter"
THREADS = "tests.workers.threads:ThreadsAdapter"
#: compute_intensive's work: long enough (a few hundred ms) that the second of
#: two calls sent together reaches the worker while the first still runs.
CPU_N = 1_000_000


def ft_pool(
    adapter: str, *, size: int = 1, threads: int = 2, **extra: Any
) -> PoolConfig:
    return PoolConfig(
        adapter_module=adapter,
        pool_size=size,
        worker_profile="thread",
        threads_per_worker=threads,
        python_executable=FT_PYTHON,
        **extra,
    )


def expected_sum_of_squares(n: int) -> int:
    """compute_intensive's result: the sum of i*i for i < n, modulo 1e9+7."""
    return (n - 1) * n * (2 * n - 1) // 6 % 1_000_000_007


def hellos(pool: Pool) -> list[Any]:
    return [pool.worker(wid).hello for wid in pool.list_workers()]


async def test_a_thread_pool_starts_with_the_gil_off() -> None:
    with anyio.fail_after(60):
        async with open_pool(ft_pool(THREADED, size=2)) as pool:
            said = hellos(pool)
            assert len(said) == 2
            for hello in said:
                assert hello is not None
                assert hello.gil_enabled is False
                assert hello.capacity == 2
            pids = {hello.pid for hello in said}
            assert pids == {row["pid"] for row in pool.worker_stats()}

            info = await pool.execute("adapter_info")
            # read by the adapter itself, after its module was imported
            assert info["gil_enabled"] is False
            assert info["pid"] in pids
            assert info["python_version"] == said[0].python_version
            assert info["thread_safe"] is True


async def test_two_compute_intensive_calls_run_on_two_threads_of_one_worker() -> None:
    with anyio.fail_after(60):
        async with open_pool(ft_pool(THREADED)) as pool:
            (hello,) = hellos(pool)
            assert hello.gil_enabled is False
            results: list[dict[str, int]] = []

            async def compute() -> None:
                results.append(await pool.execute("compute_intensive", {"n": CPU_N}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(compute)
                tg.start_soon(compute)
                await anyio.wait_all_tasks_blocked()
                # both calls are on the one worker at once: its 2 threads are busy
                assert [row["load"] for row in pool.worker_stats()] == [2]

            assert [r["result"] for r in results] == [
                expected_sum_of_squares(CPU_N)
            ] * 2
            assert len({r["thread_id"] for r in results}) == 2
            info = await pool.execute("adapter_info")
            assert info["pid"] == hello.pid
            assert info["gil_enabled"] is False  # still off after the work


async def test_two_calls_overlap_on_one_worker_without_the_gil() -> None:
    # A 2-party barrier only opens if both calls run at the same time.
    with anyio.fail_after(60):
        async with open_pool(ft_pool(THREADS)) as pool:
            (hello,) = hellos(pool)
            assert hello.gil_enabled is False
            results: list[dict[str, int]] = []

            async def meet() -> None:
                results.append(await pool.execute("meet", {"parties": 2}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(meet)
                tg.start_soon(meet)
            assert {r["pid"] for r in results} == {hello.pid}
            assert len({r["thread"] for r in results}) == 2


async def test_importing_numpy_leaves_the_gil_off() -> None:
    with anyio.fail_after(60):
        async with open_pool(ft_pool(THREADED)) as pool:
            try:
                result = await pool.execute("matrix_multiply", {"size": 16})
            except RemoteError as exc:
                if exc.remote_type not in {"ImportError", "ModuleNotFoundError"}:
                    raise
                pytest.skip(f"numpy is not importable by {FT_PYTHON}: {exc.message}")
            assert result["size"] == 16
            info = await pool.execute("adapter_info")
            assert info["gil_enabled"] is False


async def test_the_process_profile_runs_on_the_free_threaded_interpreter() -> None:
    with anyio.fail_after(60):
        config = PoolConfig(
            adapter_module=SHOWCASE, pool_size=2, python_executable=FT_PYTHON
        )
        async with open_pool(config) as pool:
            for hello in hellos(pool):
                assert hello is not None
                assert hello.gil_enabled is False
                assert hello.capacity == 1
            assert await pool.execute("add", {"a": 2, "b": 3}) == 5
            info = await pool.execute("adapter_info")
            assert info["gil_enabled"] is False
            assert info["python_version"] == hellos(pool)[0].python_version
