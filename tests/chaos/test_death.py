"""RELIABILITY.md group A: a worker dies (rows 1-11, 64), every request accounted."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest

from snakepit import open_snakepit
from snakepit.exceptions import ProtocolError, RemoteError, WorkerCrashed
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events
from tests.chaos._ledger import CHAOS, PROMPT, RESTART, Ledger, chaos_config

pytestmark = pytest.mark.anyio

EXITED = ("snakepit", "worker", "exited")
RESTARTED = ("snakepit", "worker", "restarted")


def pids(pool: Any) -> set[int]:
    return {row["pid"] for row in pool.worker_stats()}


def crashes(events: Any) -> list[Any]:
    """The worker exits that were not an orderly shutdown."""
    return [e for e in events.named(EXITED) if e.metadata["reason"] != "shutdown"]


@pytest.mark.parametrize(
    ("profile", "command", "args", "exit_code", "signum"),
    [
        pytest.param("process", "exit", {"code": 1}, 1, None, id="row1-process"),
        pytest.param("thread", "exit", {"code": 1}, 1, None, id="row1-thread"),
        pytest.param(
            "process", "segfault", {}, None, signal.SIGSEGV, id="row2-process"
        ),
        pytest.param("thread", "segfault", {}, None, signal.SIGSEGV, id="row2-thread"),
        pytest.param(
            "process", "sigkill_self", {}, None, signal.SIGKILL, id="row3-process"
        ),
        pytest.param("process", "exit", {"code": 0}, 0, None, id="row4-process"),
    ],
)
async def test_worker_dies_mid_request(
    ledger: Ledger,
    profile: str,
    command: str,
    args: dict[str, Any],
    exit_code: int | None,
    signum: int | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # request_timeout is far away: the crash must be reported at once, not then.
    config = chaos_config(profile, size=2, request_timeout=60)
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            await ledger.echoes(pool)
            ledger.fault()
            await ledger.call(
                pool,
                command,
                args,
                expect=WorkerCrashed,
                check_error=lambda e: (
                    (e.exit_code, e.signal, e.reason) == (exit_code, signum, "exited")
                ),
            )
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)
            assert pool.get_stats()["workers"] == 2
            assert pool.get_stats()["restarts"] == 1
    (crash,) = crashes(events)
    assert crash.metadata["in_flight"] == 1
    assert (crash.metadata["exit_code"], crash.metadata["signal"]) == (
        exit_code,
        signum,
    )
    if signum == signal.SIGSEGV:
        # faulthandler's traceback reached the worker's stderr log
        assert "Segmentation fault" in caplog.text


async def test_row3_external_sigkill_mid_request(ledger: Ledger, profile: str) -> None:
    config = chaos_config(profile, size=1, threads=3)
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            await ledger.echoes(pool)
            (pid,) = pids(pool)
            capacity = pool.get_stats()["capacity"]
            async with anyio.create_task_group() as tg:
                for _ in range(capacity):
                    ledger.spawn(
                        tg,
                        pool,
                        "sleep",
                        {"seconds": 30},
                        expect=WorkerCrashed,
                        check_error=lambda e: (
                            e.signal == signal.SIGKILL and "out of memory?" in str(e)
                        ),
                    )
                await anyio.wait_all_tasks_blocked()
                assert pool.get_stats()["load"] == capacity
                ledger.fault()
                os.kill(pid, signal.SIGKILL)
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)
            assert pid not in pids(pool)
    (crash,) = crashes(events)
    assert crash.metadata["in_flight"] == capacity


async def test_row5_system_exit_is_a_remote_error(ledger: Ledger, profile: str) -> None:
    with anyio.fail_after(30):
        async with open_pool(chaos_config(profile)) as pool:
            before = pids(pool)
            ledger.fault()
            await ledger.call(
                pool,
                "sys_exit",
                {"code": 1},
                expect=RemoteError,
                check_error=lambda e: e.remote_type == "SystemExit",
            )
            await ledger.echoes(pool)
            assert pids(pool) == before  # the worker was kept


@pytest.mark.parametrize(
    ("profile", "size"),
    [("process", 1), ("process", 2), ("process", 5), ("thread", 2)],
    ids=["row6-process-1", "row6-process-2", "row6-process-5", "row6-thread-2"],
)
async def test_row6_several_workers_killed_at_once(
    ledger: Ledger, profile: str, size: int
) -> None:
    config = chaos_config(profile, size=size, threads=2, startup_batch_size=size)
    with anyio.fail_after(40), capture_events() as events:
        async with open_pool(config) as pool:
            victims = pids(pool)
            capacity = pool.get_stats()["capacity"]
            async with anyio.create_task_group() as tg:
                for _ in range(capacity):
                    ledger.spawn(
                        tg,
                        pool,
                        "sleep",
                        {"seconds": 30},
                        expect=WorkerCrashed,
                        check_error=lambda e: e.signal == signal.SIGKILL,
                    )
                await anyio.wait_all_tasks_blocked()
                assert pool.get_stats()["load"] == capacity
                ledger.fault(size)
                for pid in victims:  # as close together as the test can
                    os.kill(pid, signal.SIGKILL)
            await events.wait_for(RESTARTED, count=size)
            async with anyio.create_task_group() as tg:
                for _ in range(2 * capacity):
                    ledger.spawn(tg, pool, "echo", deadline=RESTART)
            # back to N workers, each dead one replaced exactly once
            assert pool.get_stats()["workers"] == size
            assert pool.get_stats()["restarts"] == size
            assert not victims & pids(pool)
    dead = crashes(events)
    assert len(dead) == size
    assert len({e.metadata["worker_id"] for e in dead}) == size
    assert sum(e.metadata["in_flight"] for e in dead) == capacity


async def test_row7_stream_results_sent_before_a_crash_are_delivered(
    ledger: Ledger,
) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config("process")) as pool:
            ledger.fault()
            await ledger.stream(
                pool,
                "stream_then_crash",
                {"n": 3, "code": 4},
                expect=WorkerCrashed,
                check=lambda chunks: chunks == [{"index": i} for i in range(3)],
                check_error=lambda e: e.exit_code == 4,
            )
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)


async def test_row8_idle_worker_killed_affects_no_caller(ledger: Ledger) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config("process", size=2)) as pool:
            await ledger.echoes(pool)
            victim = min(pids(pool))
            ledger.fault()
            os.kill(victim, signal.SIGKILL)
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool, 4)
            assert victim not in pids(pool)
    (crash,) = crashes(events)
    assert crash.metadata["in_flight"] == 0
    assert crash.metadata["signal"] == signal.SIGKILL


@pytest.mark.parametrize(
    ("profile", "stopped"),
    [("process", True), ("process", False), ("thread", True)],
    ids=["process-stopped", "process-reading", "thread-stopped"],
)
async def test_row9_worker_dies_while_the_parent_writes_a_large_request(
    ledger: Ledger, profile: str, stopped: bool
) -> None:
    # The request is far larger than a pipe buffer (64 KiB): a stopped worker
    # leaves the parent blocked mid-write; a running one is killed while reading.
    payload = b"\xab" * (24 * 1024 * 1024)
    config = chaos_config(profile, max_frame_bytes=64 * 1024 * 1024)
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            await ledger.echoes(pool)
            (pid,) = pids(pool)
            if stopped:
                os.kill(pid, signal.SIGSTOP)
            async with anyio.create_task_group() as tg:
                ledger.spawn(
                    tg,
                    pool,
                    "echo",
                    {"payload": payload},
                    expect=WorkerCrashed,
                )
                # until the call is sent: its first part is in the pipe, the rest
                # (far more than a pipe holds) still in the parent. A call that
                # never reached the worker would go to its replacement instead;
                # one the worker had read whole could be answered before the kill.
                while pool.get_stats()["load"] == 0:
                    await anyio.lowlevel.checkpoint()
                ledger.fault()
                os.kill(pid, signal.SIGKILL)
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)


async def test_row10_partial_frame_then_exit(ledger: Ledger, profile: str) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config(profile)) as pool:
            await ledger.echoes(pool)
            ledger.fault()
            await ledger.call(
                pool,
                "write_partial_frame_then_exit",
                expect=(WorkerCrashed, ProtocolError),
            )
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)


async def test_row11_thread_crash_fails_every_call_on_that_worker_only(
    ledger: Ledger,
) -> None:
    config = chaos_config("thread", size=2, threads=4)
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            async with anyio.create_task_group() as tg:
                doomed = [
                    ledger.spawn(
                        tg,
                        pool,
                        "sleep",
                        {"seconds": 30},
                        session_id="doomed",
                        expect=WorkerCrashed,
                        check_error=lambda e: e.exit_code == 9,
                    )
                    for _ in range(3)
                ]
                await anyio.wait_all_tasks_blocked()
                loads = sorted(row["load"] for row in pool.worker_stats())
                assert loads == [0, 3]
                (doomed_pid,) = (r["pid"] for r in pool.worker_stats() if r["load"])
                bystanders = [
                    ledger.spawn(
                        tg,
                        pool,
                        "sleep",
                        {"seconds": 0.5},
                        session_id="safe",
                        check=lambda v: v["pid"] != doomed_pid,
                    )
                    for _ in range(2)
                ]
                await anyio.wait_all_tasks_blocked()
                assert sorted(row["load"] for row in pool.worker_stats()) == [2, 3]
                ledger.fault()
                doomed.append(
                    ledger.spawn(
                        tg,
                        pool,
                        "exit",
                        {"code": 9},
                        session_id="doomed",
                        expect=WorkerCrashed,
                        check_error=lambda e: e.exit_code == 9,
                    )
                )
                for _ in range(5):
                    await ledger.call(pool, "echo", session_id="safe")
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)
    # each call got its own exception instance
    errors = [r.error for r in doomed]
    assert len({id(e) for e in errors}) == 4
    assert all(r.outcome == "ok" for r in bystanders)
    (crash,) = crashes(events)
    assert crash.metadata["in_flight"] == 4


async def test_row64_channel_closed_process_alive(ledger: Ledger) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config("process")) as pool:
            await ledger.echoes(pool)
            (pid,) = pids(pool)
            ledger.fault()
            await ledger.call(
                pool,
                "close_protocol_fd",
                expect=WorkerCrashed,
                check_error=lambda e: e.reason == "channel_closed",
                deadline=1.0 + PROMPT,  # the worker gets CHANNEL_GRACE to exit
            )
            await events.wait_for(RESTARTED)
            await ledger.echoes(pool)
            assert pid not in pids(pool)


async def test_a_crash_storm_in_one_pool_leaves_the_other_pools_alone(
    ledger: Ledger,
) -> None:
    config = {
        "pools": [
            {"name": "api", "adapter_module": CHAOS, "pool_size": 2},
            {
                "name": "ml",
                "adapter_module": CHAOS,
                "pool_size": 1,
                "worker_profile": "thread",
                "threads_per_worker": 3,
            },
        ]
    }
    with anyio.fail_after(30), capture_events() as events:
        async with open_snakepit(config) as sp:
            api, ml = sp.pool("api"), sp.pool("ml")
            (ml_pid,) = pids(ml)
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    ledger.spawn(
                        tg,
                        ml,
                        "sleep",
                        {"seconds": 0.5},
                        check=lambda v: v["pid"] == ml_pid,
                    )
                for _ in range(2):
                    ledger.fault()
                    ledger.spawn(tg, api, "exit", {"code": 2}, expect=WorkerCrashed)
                for _ in range(10):
                    await ledger.call(ml, "echo")
            await events.wait_for(RESTARTED, count=2)
            await ledger.echoes(api)
            assert pids(ml) == {ml_pid}
