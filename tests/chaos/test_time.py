"""RELIABILITY.md group C: timeouts, hangs, cancellation, queueing (rows 28-39),
every request accounted."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest

from snakepit import telemetry
from snakepit.exceptions import (
    PoolClosed,
    PoolSaturated,
    QueueTimeout,
    RequestTimeout,
    WorkerCrashed,
)
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events
from tests.chaos._ledger import PROMPT, RESTART, Ledger, chaos_config

pytestmark = pytest.mark.anyio

EXITED = ("snakepit", "worker", "exited")
RESTARTED = ("snakepit", "worker", "restarted")
HEALTH = ("snakepit", "worker", "health_check_failed")
#: snakepit.pool._worker.KILL_GRACE: SIGTERM to SIGKILL.
KILL_GRACE = 2.0


def pids(pool: Any) -> set[int]:
    return {row["pid"] for row in pool.worker_stats()}


def served(pool: Any) -> int:
    return sum(row["requests"] for row in pool.worker_stats())


def is_request_timeout(error: BaseException) -> bool:
    return type(error) is RequestTimeout


async def fill(ledger: Ledger, tg: Any, pool: Any, seconds: float) -> None:
    """Occupy every worker slot with a sleep of *seconds* (each must be ok)."""
    for _ in range(pool.get_stats()["capacity"]):
        ledger.spawn(tg, pool, "sleep", {"seconds": seconds}, deadline=seconds + 1)
    await anyio.wait_all_tasks_blocked()
    assert pool.get_stats()["available"] == 0


async def test_row28_request_timeout(ledger: Ledger, profile: str) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config(profile, threads=2)) as pool:
            await ledger.echoes(pool)
            before = pids(pool)
            ledger.fault()
            await ledger.call(
                pool,
                "sleep",
                {"seconds": 0.6},
                timeout=0.3,
                expect=RequestTimeout,
                check_error=is_request_timeout,
                deadline=0.3,
            )
            if profile == "process":
                # the uninterruptible worker was killed; the next call runs on a
                # new pid
                await events.wait_for(RESTARTED)
                records = await ledger.echoes(pool)
                assert before.isdisjoint(r.value["pid"] for r in records)
            else:
                # a thread cannot be killed: the worker stays, the reply is dropped
                records = await ledger.echoes(pool)
                assert {r.value["pid"] for r in records} == before
    reasons = [e.metadata["reason"] for e in events.named(EXITED)]
    expected = ["timeout"] if profile == "process" else []
    assert [r for r in reasons if r != "shutdown"] == expected


async def test_row29_late_reply_never_reaches_the_next_caller(
    ledger: Ledger, profile: str
) -> None:
    with anyio.fail_after(30), capture_events():
        async with open_pool(chaos_config(profile, threads=2)) as pool:
            ledger.fault()
            await ledger.call(
                pool,
                "sleep",
                {"seconds": 0.3},
                timeout=0.15,
                expect=RequestTimeout,
                check_error=is_request_timeout,
                deadline=0.15,
            )
            # B is in flight on the same worker (thread profile) when A's late
            # reply arrives, at 0.3 s; so are the echoes.
            async with anyio.create_task_group() as tg:
                ledger.spawn(
                    tg,
                    pool,
                    "sleep",
                    {"seconds": 0.3},
                    check=lambda v: v["slept"] == 0.3,
                    deadline=RESTART,
                )
                for _ in range(3):
                    await ledger.call(pool, "echo", deadline=RESTART)
                    await ledger.call(
                        pool,
                        "sleep",
                        {"seconds": 0.05},
                        check=lambda v: v["slept"] == 0.05,
                        deadline=RESTART,
                    )
            assert pool.get_stats()["load"] == 0


async def test_row30_worker_ignoring_sigterm_times_out_at_the_deadline(
    ledger: Ledger, profile: str
) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(
            chaos_config(profile, threads=2, shutdown_timeout=0.5)
        ) as pool:
            await ledger.call(pool, "ignore_sigterm", check=lambda v: v is True)
            ledger.fault()
            # the caller's error comes at the deadline, not after an escalation
            await ledger.call(
                pool,
                "sleep",
                {"seconds": 30 if profile == "process" else 0.5},
                timeout=0.3,
                expect=RequestTimeout,
                check_error=is_request_timeout,
                deadline=0.3,
            )
            if profile == "process":
                await events.wait_for(RESTARTED)
            await ledger.echoes(pool)
    if profile == "process":
        (killed,) = [
            e for e in events.named(EXITED) if e.metadata["reason"] != "shutdown"
        ]
        assert killed.metadata["signal"] == signal.SIGKILL


async def test_row30_worker_ignoring_sigterm_is_killed_at_shutdown(
    ledger: Ledger,
) -> None:
    shutdown_timeout = 0.3
    with anyio.fail_after(30):
        async with open_pool(
            chaos_config("process", shutdown_timeout=shutdown_timeout)
        ) as pool:
            (pid,) = pids(pool)
            await ledger.call(pool, "ignore_sigterm", check=lambda v: v is True)
            async with anyio.create_task_group() as tg:
                ledger.fault()
                ledger.spawn(
                    tg,
                    pool,
                    "sleep",
                    {"seconds": 30},
                    expect=WorkerCrashed,
                    check_error=lambda e: e.signal == signal.SIGKILL,
                    # graceful wait, then SIGTERM (ignored), then SIGKILL
                    deadline=shutdown_timeout + KILL_GRACE,
                )
                await anyio.wait_all_tasks_blocked()
                await pool.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_row31_stopped_worker_fails_its_health_check(
    ledger: Ledger, profile: str
) -> None:
    config = chaos_config(
        profile, threads=2, health_check_interval=0.2, health_check_timeout=0.2
    )
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            (pid,) = pids(pool)
            async with anyio.create_task_group() as tg:
                for _ in range(pool.get_stats()["capacity"]):
                    ledger.spawn(
                        tg,
                        pool,
                        "sleep",
                        {"seconds": 30},
                        expect=WorkerCrashed,
                        check_error=lambda e: e.reason == "health_check_failed",
                        deadline=1.0,  # within two check intervals and a timeout
                    )
                await anyio.wait_all_tasks_blocked()
                ledger.fault()
                os.kill(pid, signal.SIGSTOP)  # wedged: answers nothing
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)
            assert pid not in pids(pool)
    assert len(events.named(HEALTH)) == 1


async def test_row31_gil_holding_loop_is_not_a_wedge(ledger: Ledger) -> None:
    # A pure-Python loop still lets the worker's reader thread answer pings.
    config = chaos_config(
        "process", health_check_interval=0.05, health_check_timeout=0.5
    )
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            before = pids(pool)
            await ledger.call(
                pool, "busy", {"seconds": 0.3}, check=lambda v: v["iterations"] > 0
            )
            await ledger.echoes(pool)
            assert pids(pool) == before
    assert events.named(HEALTH) == []


async def test_row32_cancelled_running_request(ledger: Ledger, profile: str) -> None:
    seconds = 5.0 if profile == "process" else 0.4
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config(profile, threads=2)) as pool:
            before = pids(pool)
            ledger.fault()
            await ledger.call(
                pool, "sleep", {"seconds": seconds}, cancel_after=0.2, deadline=0.2
            )
            if profile == "process":
                # killed and replaced: the slot is free again at once
                await events.wait_for(RESTARTED)
                records = await ledger.echoes(pool)
                assert before.isdisjoint(r.value["pid"] for r in records)
                (exit_,) = [
                    e
                    for e in events.named(EXITED)
                    if e.metadata["reason"] != "shutdown"
                ]
                assert exit_.metadata["reason"] == "abandoned"
            else:
                # finish and discard: the thread's slot comes back when it ends
                await ledger.echoes(pool)
                await ledger.call(
                    pool,
                    "sleep",
                    {"seconds": seconds + 0.2},
                    check=lambda v: v["pid"] in before,
                    deadline=seconds + 1,
                )
            assert pool.get_stats()["load"] == 0


async def test_row33_cancelled_queued_request_is_never_dispatched(
    ledger: Ledger, profile: str
) -> None:
    with anyio.fail_after(30), capture_events():
        async with open_pool(chaos_config(profile, threads=2)) as pool:
            start = served(pool)
            async with anyio.create_task_group() as tg:
                await fill(ledger, tg, pool, 0.5)
                for _ in range(2):
                    ledger.fault()
                    queued = ledger.spawn(tg, pool, "echo", deadline=PROMPT)
                    await anyio.wait_all_tasks_blocked()
                    assert pool.get_stats()["queued"] == 1
                    queued.cancel()  # while every worker is still busy
                    await anyio.wait_all_tasks_blocked()
                    assert pool.get_stats()["queued"] == 0
                    assert queued.outcome == "expected_error"
            # only the sleeps were answered: neither cancelled echo ran
            assert served(pool) - start == pool.get_stats()["capacity"]
            await ledger.echoes(pool)


async def test_row34_queue_timeout(ledger: Ledger, profile: str) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(
            chaos_config(profile, threads=2, queue_timeout=0.2)
        ) as pool:
            start = served(pool)
            async with anyio.create_task_group() as tg:
                await fill(ledger, tg, pool, 0.6)
                ledger.fault()
                await ledger.call(
                    pool,
                    "echo",
                    expect=QueueTimeout,
                    check_error=lambda e: type(e) is QueueTimeout,
                    deadline=0.2,
                )
            assert served(pool) - start == pool.get_stats()["capacity"]
            await ledger.echoes(pool)
    (timeout,) = events.named(("snakepit", "pool", "queue_timeout"))
    assert timeout.measurements["waited_seconds"] >= 0.2


async def test_row35_backpressure_bounded_queue(ledger: Ledger) -> None:
    config = chaos_config("process", max_queue_size=3, queue_timeout=10)
    with anyio.fail_after(30):
        async with open_pool(config) as pool:
            async with anyio.create_task_group() as tg:
                await fill(ledger, tg, pool, 0.3)
                ledger.fault()
                records = [
                    ledger.spawn(
                        tg,
                        pool,
                        "echo",
                        expect=PoolSaturated,
                        ok_allowed=True,
                        deadline=RESTART,
                    )
                    for _ in range(12)
                ]
            outcomes = [r.outcome for r in records]
            assert outcomes.count("ok") == 3
            assert outcomes.count("expected_error") == 9
            assert pool.get_stats()["saturated"] == 9
            await ledger.echoes(pool)


async def test_row36_submissions_racing_shutdown(ledger: Ledger, profile: str) -> None:
    with anyio.fail_after(30):
        async with open_pool(chaos_config(profile, size=2, threads=2)) as pool:
            await ledger.echoes(pool)
            ledger.fault()
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    ledger.spawn(
                        tg,
                        pool,
                        "echo",
                        expect=PoolClosed,
                        ok_allowed=True,
                        deadline=RESTART,
                    )
                    if i == 25:
                        tg.start_soon(pool.aclose)
            await ledger.call(pool, "echo", expect=PoolClosed)
    outcomes = [r.outcome for r in ledger.records]
    assert "expected_error" in outcomes


async def test_row37_big_request_and_big_reply_at_once(ledger: Ledger) -> None:
    size = 8 * 1024 * 1024
    payload = b"\x5a" * size
    config = chaos_config("thread", threads=4)
    with anyio.fail_after(30):
        async with open_pool(config) as pool, anyio.create_task_group() as tg:
            for _ in range(3):
                ledger.spawn(
                    tg,
                    pool,
                    "echo",
                    {"payload": payload, "size": size},
                    check=lambda v: v["payload"] == payload and len(v["data"]) == size,
                    deadline=RESTART,
                )
            for _ in range(10):
                ledger.spawn(tg, pool, "echo", deadline=RESTART)


async def test_row38_no_head_of_line_blocking(ledger: Ledger) -> None:
    config = chaos_config("thread", threads=2)
    with anyio.fail_after(30):
        async with open_pool(config) as pool, anyio.create_task_group() as tg:
            long = ledger.spawn(tg, pool, "sleep", {"seconds": 0.6}, deadline=0.6)
            await anyio.wait_all_tasks_blocked()
            for _ in range(20):
                await ledger.call(pool, "echo", deadline=0.3)
            assert long.outcome is None  # still running: nothing waited for it


async def test_row39_failing_telemetry_handler(ledger: Ledger) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a broken handler")

    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config("process")) as pool:
            ledger.fault()
            telemetry.attach("chaos-broken", ("snakepit", "request", "stop"), broken)
            try:
                await ledger.echoes(pool, 5)
            finally:
                telemetry.detach("chaos-broken")
    (failure,) = events.named(("snakepit", "telemetry", "handler_failure"))
    assert failure.metadata["handler_id"] == "chaos-broken"
