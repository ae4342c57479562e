"""Faults in workers, through the public pool API (RELIABILITY.md groups A-C, F)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import psutil
import pytest

from snakepit.exceptions import (
    ProtocolError,
    RemoteError,
    ResultEncodingError,
    WorkerCrashed,
)
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events

pytestmark = pytest.mark.anyio

CHAOS = "snakepit.adapters.chaos:ChaosAdapter"
RESTARTED = ("snakepit", "worker", "restarted")
EXITED = ("snakepit", "worker", "exited")
ROOT = Path(__file__).resolve().parents[2]


async def pids(pool) -> set[int]:
    return {pool.worker(w).pid for w in pool.list_workers()}


@pytest.mark.parametrize(
    ("command", "args", "exit_code", "signum"),
    [
        ("exit", {"code": 1}, 1, None),
        ("exit", {"code": 0}, 0, None),  # exit 0 without an answer is a crash too
        ("segfault", {}, None, signal.SIGSEGV),
        ("sigkill_self", {}, None, signal.SIGKILL),
    ],
)
async def test_worker_death_mid_call(
    command: str, args: dict, exit_code: int | None, signum: int | None
) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=2) as pool:
            with pytest.raises(WorkerCrashed) as info:
                await pool.execute(command, args)
            assert info.value.exit_code == exit_code
            assert info.value.signal == signum
            await events.wait_for(RESTARTED)
            assert pool.get_stats()["workers"] == 2
            assert pool.get_stats()["restarts"] == 1
            reply = await pool.execute("echo", {"request_id": 7})
            assert reply["request_id"] == 7
            exited = events.named(EXITED)
            assert exited[0].metadata["in_flight"] == 1
            assert exited[0].metadata["reason"] == "exited"
            assert info.value.reason == "exited"


async def test_external_sigkill_mid_call() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1) as pool:
            (pid,) = await pids(pool)
            outcome: list[BaseException] = []

            async def call() -> None:
                try:
                    await pool.execute("sleep", {"seconds": 30})
                except WorkerCrashed as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                os.kill(pid, signal.SIGKILL)
            assert outcome[0].signal == signal.SIGKILL
            assert "out of memory?" in str(outcome[0])
            await events.wait_for(RESTARTED)
            assert await pids(pool) != {pid}


async def test_unencodable_result_fails_that_call_only() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=CHAOS, size=1) as pool:
            before = await pids(pool)
            with pytest.raises(ResultEncodingError):
                await pool.execute("unencodable_result")
            with pytest.raises(RemoteError):
                await pool.execute("raise_unencodable_exception")
            with pytest.raises(RemoteError) as info:
                await pool.execute("raise_base_exception", {"message": "BOOM"})
            assert info.value.remote_type == "BaseException"
            assert (await pool.execute("echo", {"request_id": 1}))["request_id"] == 1
            assert await pids(pool) == before


async def test_print_floods_do_not_disturb_the_protocol() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=CHAOS, size=1) as pool:
            before = await pids(pool)
            await pool.execute("print_flood", {"n_bytes": 1_000_000})
            assert await pool.execute("write_fd1_raw") == "ok"
            await pool.execute("write_stderr_no_newline", {"n_bytes": 200_000})
            assert await pool.execute("read_stdin") in ("", None)
            assert (await pool.execute("echo", {"request_id": 3}))["request_id"] == 3
            assert await pids(pool) == before


@pytest.mark.parametrize(
    "command", ["huge_header", "write_protocol_garbage", "write_malformed_reply"]
)
async def test_bad_frames_poison_only_that_worker(command: str) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=2, max_frame_bytes=1 << 20) as pool:
            with pytest.raises(ProtocolError):
                await pool.execute(command)
            await events.wait_for(RESTARTED)
            reasons = [e.metadata["reason"] for e in events.named(EXITED)]
            assert reasons == ["protocol_error"]
            for i in range(4):
                assert (await pool.execute("echo", {"request_id": i}))[
                    "request_id"
                ] == i


async def test_partial_frame_then_exit_is_a_crash() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=CHAOS, size=1) as pool:
            with pytest.raises((WorkerCrashed, ProtocolError)):
                await pool.execute("write_partial_frame_then_exit")


async def test_closed_channel_with_live_process_is_killed() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1) as pool:
            with pytest.raises(WorkerCrashed) as info:
                await pool.execute("close_protocol_fd")
            assert info.value.reason == "channel_closed"
            await events.wait_for(RESTARTED)


async def test_killing_a_worker_kills_its_grandchildren() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1) as pool:
            grandchild = await pool.execute("spawn_grandchild")
            assert psutil.pid_exists(grandchild)
            with pytest.raises(WorkerCrashed):
                await pool.execute("sigkill_self")
            await events.wait_for(RESTARTED)
            proc = psutil.Process(grandchild) if psutil.pid_exists(grandchild) else None
            if proc is not None:
                proc.wait(timeout=5)


async def test_worker_ignoring_sigterm_is_killed_on_shutdown() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=CHAOS, size=1, shutdown_timeout=0.2) as pool:
            (pid,) = await pids(pool)
            assert await pool.execute("ignore_sigterm") is True
            outcome: list[BaseException] = []

            async def hang() -> None:
                try:
                    await pool.execute("hang")
                except WorkerCrashed as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(hang)
                await anyio.wait_all_tasks_blocked()
                await pool.aclose()
        # SIGTERM was ignored, so SIGKILL ended it; the caller was told
        assert outcome[0].signal == signal.SIGKILL
        assert not psutil.pid_exists(pid)


async def test_crash_loop_is_survived_with_backoff() -> None:
    # Crashes after the handshake never exhaust the pool's restart intensity.
    with anyio.fail_after(60), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1, restart_intensity=1) as pool:
            for _ in range(5):
                with pytest.raises(WorkerCrashed):
                    await pool.execute("exit", {"code": 3})
                await events.wait_for(RESTARTED, count=len(events.named(EXITED)))
            assert pool.get_stats()["restarts"] == 5
            assert (await pool.execute("echo", {"request_id": 9}))["request_id"] == 9


def test_parent_sigkilled_leaves_no_worker() -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, anyio
        from snakepit.pool import open_pool

        async def main():
            async with open_pool(adapter={CHAOS!r}, size=3) as pool:
                pids = [pool.worker(w).pid for w in pool.list_workers()]
                print(" ".join(map(str, pids)), flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        anyio.run(main)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 3
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        p.kill()
    assert alive == [], f"survivors: {alive}"
