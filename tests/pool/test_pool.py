"""The pool through its public API: results, errors, queueing, cancellation,
streams, sessions and stats (process profile)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from snakepit.exceptions import (
    CommandNotFound,
    InvalidArguments,
    PoolClosed,
    PoolSaturated,
    PoolUnavailable,
    QueueTimeout,
    RemoteError,
    RequestTimeout,
    SerializationError,
)
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events

pytestmark = pytest.mark.anyio

SHOWCASE = "snakepit.adapters.showcase:ShowcaseAdapter"
RESTARTED = ("snakepit", "worker", "restarted")


async def test_results_and_stats() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=2) as pool:
            assert await pool.execute("add", {"a": 5, "b": 3}) == 8
            pong = await pool.execute("ping")
            assert pong["status"] == "pong"
            assert await pool.execute("echo", {"message": "hi"}) == {"message": "hi"}
            workers = pool.list_workers()
            assert len(workers) == 2
            assert all(isinstance(w, str) for w in workers)
            stats = pool.get_stats()
            for key in (
                "workers",
                "available",
                "busy",
                "queued",
                "requests",
                "errors",
                "queue_timeouts",
                "saturated",
                "restarts",
            ):
                assert isinstance(stats[key], int), key
            assert stats["workers"] == 2
            assert stats["requests"] == 3
            assert stats["errors"] == 0
            assert stats["available"] == 2


async def test_remote_errors_are_data() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            with pytest.raises(RemoteError) as info:
                await pool.execute(
                    "error_demo", {"error_type": "ZeroDivisionError", "message": "nope"}
                )
            assert info.value.remote_type == "ZeroDivisionError"
            assert info.value.message == "nope"
            assert "error_demo" in info.value.remote_traceback
            with pytest.raises(CommandNotFound, match="'no_such'") as missing:
                await pool.execute("no_such")
            assert "add" in str(missing.value)  # lists the commands
            with pytest.raises(InvalidArguments, match="'b'"):
                await pool.execute("add", {"a": 1})
            with pytest.raises(InvalidArguments, match="'c'"):
                await pool.execute("add", {"a": 1, "b": 2, "c": 3})
            # the worker survived all of it
            assert await pool.execute("add", {"a": 1, "b": 1}) == 2
            assert pool.get_stats()["errors"] == 4
            assert pool.get_stats()["restarts"] == 0


async def test_unencodable_arguments_fail_before_dispatch() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            with capture_events() as events, pytest.raises(SerializationError):
                await pool.execute("echo", {"lock": threading.Lock()})
            started = events.named(("snakepit", "request", "exception"))
            assert [e.metadata["worker_id"] for e in started] == [None]
            assert await pool.execute("add", {"a": 2, "b": 2}) == 4


async def test_queue_timeout_and_saturation() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(
            adapter=SHOWCASE, size=1, queue_timeout=0.2, max_queue_size=1
        ) as pool:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.execute, "sleep", {"seconds": 1.0})
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(QueueTimeout, match=r"queue_timeout=0\.2"):
                    await pool.execute("add", {"a": 1, "b": 1})
                # one waits in the queue; the next is refused at once
                tg.start_soon(pool.execute, "add", {"a": 1, "b": 1})
                await anyio.wait_all_tasks_blocked()
                assert pool.get_stats()["queued"] == 1
                with pytest.raises(PoolSaturated, match="max_queue_size=1"):
                    await pool.execute("add", {"a": 1, "b": 1})
                tg.cancel_scope.cancel()
            stats = pool.get_stats()
            assert stats["queue_timeouts"] == 1
            assert stats["saturated"] == 1
            assert len(events.named(("snakepit", "pool", "queue_timeout"))) == 1
            assert len(events.named(("snakepit", "pool", "saturated"))) == 1


async def test_cancelled_queued_caller_is_never_dispatched() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            await pool.execute("set_counter", {"value": 0})
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.execute, "sleep", {"seconds": 0.5})
                await anyio.wait_all_tasks_blocked()
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await pool.execute("increment_counter")
                with anyio.move_on_after(0.05):
                    await pool.execute("increment_counter")
                assert pool.get_stats()["queued"] == 0
            # neither queued call ran
            assert await pool.execute("get_counter") == 0


async def test_cancelling_a_running_call_frees_its_slot() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            before = (await pool.execute("ping"))["pid"]
            with anyio.move_on_after(0.2):
                await pool.execute("sleep", {"seconds": 30})
            # the uninterruptible worker was replaced; the next call runs at once
            await events.wait_for(RESTARTED)
            after = (await pool.execute("ping"))["pid"]
            assert after != before
            assert pool.get_stats()["load"] == 0


async def test_timeout_kills_and_replaces_the_worker() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            before = (await pool.execute("ping"))["pid"]
            with pytest.raises(RequestTimeout, match=r"timeout of 0\.2s"):
                await pool.execute("sleep", {"seconds": 1.0}, timeout=0.2)
            await events.wait_for(RESTARTED)
            # the late reply of the killed worker can never reach this caller
            assert await pool.execute("add", {"a": 40, "b": 2}) == 42
            assert (await pool.execute("ping"))["pid"] != before
            exited = events.named(("snakepit", "worker", "exited"))
            assert [e.metadata["reason"] for e in exited] == ["timeout"]


async def test_streaming_and_early_close() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            chunks = [
                c async for c in pool.execute_stream("stream_fibonacci", {"n": 8})
            ]
            assert [c["value"] for c in chunks] == [0, 1, 1, 2, 3, 5, 8, 13]
            pid = (await pool.execute("ping"))["pid"]
            async with pool.execute_stream(
                "stream_progress", {"steps": 10_000, "delay": 0.01}
            ) as stream:
                seen = []
                async for chunk in stream:
                    seen.append(chunk["step"])
                    if len(seen) == 3:
                        break
            # the generator was cancelled in the worker: the slot is free again,
            # without killing the worker
            assert await pool.execute("add", {"a": 1, "b": 2}) == 3
            assert (await pool.execute("ping"))["pid"] == pid
            assert pool.get_stats()["load"] == 0


async def test_stream_errors_surface_as_remote_errors() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            with pytest.raises(InvalidArguments):
                async for _ in pool.execute_stream("stream_fibonacci", {"m": 1}):
                    pass


async def test_session_affinity() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=2) as pool:
            await pool.execute_in_session("s-1", "set_counter", {"value": 10})
            pids = set()
            for expected in (11, 12, 13):
                assert (
                    await pool.execute_in_session("s-1", "increment_counter")
                    == expected
                )
                pids.add((await pool.execute_in_session("s-1", "ping"))["pid"])
            assert len(pids) == 1


async def test_concurrent_calls_all_resolve_with_their_own_result() -> None:
    with anyio.fail_after(60):
        async with open_pool(adapter=SHOWCASE, size=2) as pool:
            results: dict[int, Any] = {}

            async def call(i: int) -> None:
                results[i] = await pool.execute("add", {"a": i, "b": 1000})

            async with anyio.create_task_group() as tg:
                for i in range(300):
                    tg.start_soon(call, i)
            assert results == {i: i + 1000 for i in range(300)}


async def test_closed_pool_refuses_calls() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=SHOWCASE, size=1) as pool:
            pass
        with pytest.raises(PoolClosed):
            await pool.execute("ping")


async def test_queued_calls_fail_with_pool_closed_on_shutdown() -> None:
    with anyio.fail_after(30):
        outcomes: list[object] = []

        async def call(pool: Any, args: dict[str, Any], command: str) -> None:
            try:
                outcomes.append(await pool.execute(command, args))
            except PoolClosed as exc:
                outcomes.append(type(exc))

        async with (
            open_pool(adapter=SHOWCASE, size=1) as pool,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(call, pool, {"seconds": 0.3}, "sleep")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, pool, {"a": 1, "b": 2}, "add")
            await anyio.wait_all_tasks_blocked()
            await pool.aclose()
        # the call in flight finished; the queued one got PoolClosed
        assert outcomes == [PoolClosed, {"slept": 0.3}]


async def test_bad_adapter_fails_fast_with_the_stderr_tail() -> None:
    # spawned workers exit with code 3 (the template's case: test_template.py)
    with anyio.fail_after(60), pytest.raises(PoolUnavailable) as info:
        async with open_pool(
            adapter="no_such_module_here:Adapter", size=2, start_method="spawn"
        ):
            pass
    message = str(info.value)
    assert "no_such_module_here" in message
    assert "ModuleNotFoundError" in message
    assert "exited with code 3" in message


async def test_setup_failure_fails_fast() -> None:
    with anyio.fail_after(60), pytest.raises(PoolUnavailable) as info:
        async with open_pool(adapter="tests.workers.basic:FailingSetupAdapter", size=1):
            pass
    assert "setup()" in str(info.value)
