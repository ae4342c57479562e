"""RELIABILITY.md group F: parent death, signals, process hygiene (rows 58-63, 65),
every request accounted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from snakepit.exceptions import (
    PoolClosed,
    ProtocolError,
    RequestTimeout,
    WorkerCrashed,
)
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events
from tests._processes import worker_children
from tests.chaos._ledger import (
    CHAOS,
    PROMPT,
    RESTART,
    Ledger,
    chaos_config,
    open_fds,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXITED = ("snakepit", "worker", "exited")
RESTARTED = ("snakepit", "worker", "restarted")
RECYCLED = ("snakepit", "worker", "recycled")


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def wait_gone(pids: Iterable[int], within: float) -> list[int]:
    """Wait (bounded) for processes to exit; return those still alive."""
    left = [pid for pid in pids if alive(pid)]
    with anyio.move_on_after(within):
        while left:
            await anyio.sleep(0.02)  # waiting on process exit
            left = [pid for pid in left if alive(pid)]
    return left


# --- Row 58: the parent is SIGKILLed ---

PARENT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, anyio, psutil
    from snakepit.pool import open_pool

    async def main():
        method = sys.argv[2]
        async with open_pool(adapter={chaos!r}, size=3, start_method=method) as pool:
            pids = [row["pid"] for row in pool.worker_stats()]
            if method == "template":  # the template goes with its parent too
                pids.append(psutil.Process(pids[0]).ppid())
            if sys.argv[1] == "grandchild":
                pids.append(await pool.execute("spawn_grandchild"))
            if sys.argv[1] == "grandchild-no-reaper":  # the reaper dies first
                pids.append(await pool.execute("spawn_grandchild"))
                for child in psutil.Process().children():
                    if "snakepit._reaper" in child.cmdline():
                        child.kill()
                        child.wait()
            print(" ".join(map(str, pids)), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)
    """
).format(chaos=CHAOS)


def parent_sigkilled(
    ledger: Ledger, variant: str, start_method: str = "spawn"
) -> list[int]:
    ledger.fault()
    proc = subprocess.run(
        [sys.executable, "-c", PARENT_SCRIPT, variant, start_method],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=child_env(),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    ledger.track(*pids)
    return pids


@pytest.mark.parametrize("start_method", ["spawn", "template"])
async def test_row58_parent_sigkilled_leaves_no_worker(
    ledger: Ledger, start_method: str
) -> None:
    with anyio.fail_after(30):
        pids = await anyio.to_thread.run_sync(
            parent_sigkilled, ledger, "workers", start_method
        )
        assert len(pids) == (3 if start_method == "spawn" else 4)
        assert await wait_gone(pids, within=1.0) == []


@pytest.mark.parametrize("start_method", ["spawn", "template"])
async def test_row58_parent_sigkilled_leaves_no_grandchild(
    ledger: Ledger, start_method: str
) -> None:
    with anyio.fail_after(30):
        pids = await anyio.to_thread.run_sync(
            parent_sigkilled, ledger, "grandchild", start_method
        )
        assert len(pids) == (4 if start_method == "spawn" else 5)
        assert await wait_gone(pids, within=1.0) == []


async def test_row58_leftovers_of_a_sigkilled_parent_end_at_the_next_start(
    ledger: Ledger,
) -> None:
    # The child process inherits this test's SNAKEPIT_INSTANCE and data dir, so
    # the pool started here is the same application starting again. Its reaper
    # was killed before it: the next start is the backstop.
    with anyio.fail_after(30):
        pids = await anyio.to_thread.run_sync(
            parent_sigkilled, ledger, "grandchild-no-reaper"
        )
        *workers, grandchild = pids
        assert await wait_gone(workers, within=1.0) == []
        async with open_pool(chaos_config("process")) as pool:
            assert await wait_gone([grandchild], within=PROMPT) == []
            await ledger.echoes(pool)


# --- Row 59: grandchildren go with their worker ---


@pytest.mark.parametrize("how", ["crash", "timeout", "recycle", "shutdown"])
async def test_row59_grandchildren_go_with_their_worker(
    ledger: Ledger, how: str
) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config("process", shutdown_timeout=1)) as pool:
            record = await ledger.call(
                pool, "spawn_grandchild", check=lambda v: isinstance(v, int)
            )
            grandchild = record.value
            ledger.track(grandchild)
            assert alive(grandchild)
            ledger.fault()
            if how == "crash":
                await ledger.call(pool, "sigkill_self", expect=WorkerCrashed)
            elif how == "timeout":
                await ledger.call(
                    pool,
                    "sleep",
                    {"seconds": 10},
                    timeout=0.2,
                    expect=RequestTimeout,
                    deadline=0.2,
                )
            elif how == "recycle":
                (worker_id,) = pool.list_workers()
                await ledger.run(
                    "recycle_worker",
                    lambda: pool.recycle_worker(worker_id),
                    check=lambda new: new != worker_id,
                    deadline=RESTART,
                )
            if how != "shutdown":
                await events.wait_for(EXITED)
                assert await wait_gone([grandchild], within=PROMPT) == []
                await ledger.echoes(pool)
        assert await wait_gone([grandchild], within=PROMPT) == []


# --- Rows 60, 61: signals to a `snakepit run` process ---


async def drain(stream: Any, into: bytearray, seen: anyio.Event, marker: bytes) -> None:
    async for chunk in stream:
        into += chunk
        if marker in into:
            seen.set()
    seen.set()


@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, signal.SIGTERM],
    ids=["row60-sigint_to_the_group", "row61-sigterm"],
)
async def test_signal_to_snakepit_run_shuts_down_once(
    ledger: Ledger, tmp_path: Path, signum: int
) -> None:
    config = tmp_path / "snakepit.toml"
    config.write_text(
        f'adapter_module = "{CHAOS}"\npool_size = 2\nshutdown_timeout = 2\n'
    )
    argv = [
        sys.executable,
        "-m",
        "snakepit",
        "run",
        str(config),
        "--stats-interval",
        "0",
        "--load",
        "echo",
        "--load-args",
        '{"request_id": 1}',
        "--load-concurrency",
        "2",
    ]
    out, err = bytearray(), bytearray()
    with anyio.fail_after(40):
        async with await anyio.open_process(
            argv,
            cwd=tmp_path,
            env=child_env(),
            start_new_session=True,  # its own group, as a shell job would be
        ) as proc:
            serving, eof = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, proc.stdout, out, serving, b"serving")
                tg.start_soon(drain, proc.stderr, err, eof, b"\x00never")
                await serving.wait()
                assert b"serving" in out, (out, err)
                workers = [c.pid for c in worker_children(proc.pid)]
                ledger.track(*workers)
                ledger.fault()
                begin = anyio.current_time()
                if signum == signal.SIGINT:
                    os.killpg(proc.pid, signum)  # Ctrl-C: the whole foreground group
                else:
                    proc.send_signal(signum)
                code = await proc.wait()
            elapsed = anyio.current_time() - begin
    text, errors = out.decode(), err.decode()
    name = signal.Signals(signum).name
    ledger.account(
        f"snakepit run, {name}",
        value=(code, text, errors),
        elapsed=elapsed,
        check=lambda v: (
            v[0] == 0
            and v[1].count("shutting down in order") == 1
            and "stopped: every worker has exited" in v[1]
            and "Traceback" not in v[2]
            and "KeyboardInterrupt" not in v[2]
        ),
        deadline=RESTART,
    )
    assert len(workers) == 2
    assert await wait_gone(workers, within=PROMPT) == []
    assert code == 0, (text, errors)


DRAIN_SCRIPT = textwrap.dedent(
    """
    import json, signal, sys, anyio
    from snakepit.config import PoolConfig
    from snakepit.exceptions import SnakepitError
    from snakepit.pool import open_pool

    def report(**fields):
        print(json.dumps(fields), flush=True)

    async def main():
        profile = sys.argv[1]
        extra = {{"threads_per_worker": 2}} if profile == "thread" else {{}}
        config = PoolConfig(
            adapter_module={chaos!r}, pool_size=1, worker_profile=profile, **extra
        )
        async with open_pool(config) as pool:

            async def call(kind, rid, command, args):
                begin = anyio.current_time()
                try:
                    value = await pool.execute(command, args)
                except SnakepitError as exc:
                    outcome = {{"error": type(exc).__name__}}
                else:
                    outcome = {{"value": value}}
                elapsed = anyio.current_time() - begin
                report(kind=kind, rid=rid, elapsed=elapsed, **outcome)

            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async with anyio.create_task_group() as tg:
                    for i in range(pool.get_stats()["capacity"]):
                        tg.start_soon(call, "in_flight", i, "sleep", {{"seconds": 0.8}})
                    await anyio.wait_all_tasks_blocked()
                    for rid in range(100, 103):
                        tg.start_soon(call, "queued", rid, "echo", {{"request_id": rid}})
                    await anyio.wait_all_tasks_blocked()
                    pids = [row["pid"] for row in pool.worker_stats()]
                    report(kind="ready", pids=pids, queued=pool.get_stats()["queued"])
                    async for _ in signals:
                        break
                    await pool.aclose()  # what an application maps SIGTERM to
        report(kind="stopped")

    anyio.run(main)
    """
).format(chaos=CHAOS)


@pytest.mark.parametrize("profile", ["process"])  # the thread profile: same drain
async def test_row61_sigterm_drains_in_flight_and_fails_queued(
    ledger: Ledger, profile: str
) -> None:
    out, err = bytearray(), bytearray()
    with anyio.fail_after(40):
        async with await anyio.open_process(
            [sys.executable, "-c", DRAIN_SCRIPT, profile],
            cwd=ROOT,
            env=child_env(),
            start_new_session=True,
        ) as proc:
            ready, eof = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, proc.stdout, out, ready, b'"ready"')
                tg.start_soon(drain, proc.stderr, err, eof, b"\x00never")
                await ready.wait()
                ledger.fault()
                proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    (ready_line,) = [line for line in lines if line["kind"] == "ready"]
    workers = ready_line["pids"]
    ledger.track(*workers)
    assert ready_line["queued"] == 3
    calls = [line for line in lines if line["kind"] in ("in_flight", "queued")]
    for line in calls:
        if line["kind"] == "in_flight":
            ledger.account(
                "sleep (in flight at SIGTERM)",
                value=line.get("value"),
                error_type=line.get("error"),
                elapsed=line["elapsed"],
                check=lambda v: v["slept"] == 0.8 and v["pid"] in workers,
                deadline=0.8 + PROMPT,
            )
        else:
            ledger.account(
                "echo (queued at SIGTERM)",
                value=line.get("value"),
                error_type=line.get("error"),
                elapsed=line["elapsed"],
                expect=PoolClosed,
                deadline=0.8 + PROMPT,
            )
    capacity = 1 if profile == "process" else 2
    assert len(calls) == capacity + 3, (out, err)
    assert lines[-1]["kind"] == "stopped"
    assert code == 0, err.decode()
    assert await wait_gone(workers, within=PROMPT) == []


# --- Rows 62, 63: churn, then count zombies and fds ---

CHURN = [
    ("exit", {"code": 1}, WorkerCrashed, None),
    ("segfault", {}, WorkerCrashed, None),
    ("sigkill_self", {}, WorkerCrashed, None),
    ("write_protocol_garbage", {}, ProtocolError, None),
    ("huge_header", {}, ProtocolError, None),
    ("write_partial_frame_then_exit", {}, (WorkerCrashed, ProtocolError), None),
    ("sleep", {"seconds": 10}, RequestTimeout, 0.05),
]


RECYCLES = 8


def zombie_children() -> list[int]:
    return [
        c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE
    ]


@pytest.mark.slow
async def test_rows62_63_churn_leaves_no_zombie_and_no_fd(ledger: Ledger) -> None:
    # Many slots with few crashes each: a slot whose worker dies young backs off
    # (0.05 s, doubling), so the churn is spread to keep the test short.
    size, rounds = 6, 4
    config = chaos_config(
        "process", size=size, max_frame_bytes=1 << 20, startup_batch_size=size
    )
    with anyio.fail_after(60), capture_events() as events:
        async with open_pool(config) as pool:
            await ledger.echoes(pool, size)
            fds_before = len(open_fds())

            async def churn(offset: int) -> None:
                for i in range(rounds):
                    command, args, expect, timeout = CHURN[(i + offset) % len(CHURN)]
                    ledger.fault()
                    await ledger.call(
                        pool,
                        command,
                        args,
                        expect=expect,
                        timeout=timeout,
                        deadline=RESTART,  # it may queue behind a restart
                    )
                    await ledger.call(pool, "echo", deadline=RESTART)

            async with anyio.create_task_group() as tg:
                for offset in range(size):
                    tg.start_soon(churn, offset)
            await events.wait_for(RESTARTED, count=size * rounds)
            await ledger.echoes(pool, size)
            await anyio.wait_all_tasks_blocked()
            # every worker was replaced, and nothing of the dead ones is left
            assert pool.get_stats()["workers"] == size
            assert zombie_children() == []
            assert len(open_fds()) == fds_before
    # then recycles, start-before-stop, one request each
    config = chaos_config("process", worker_max_requests=1)
    with anyio.fail_after(60), capture_events() as events:
        async with open_pool(config) as pool:
            fds_before = len(open_fds())
            for count in range(1, RECYCLES + 1):
                await ledger.echoes(pool, 1)
                await events.wait_for(RECYCLED, count=count)
                ledger.fault()
            await events.wait_for(EXITED, count=RECYCLES)  # the last retiree too
            await anyio.wait_all_tasks_blocked()  # its pipes are being closed
            assert zombie_children() == []
            assert len(open_fds()) == fds_before


# --- Row 65: a multi-threaded parent spawns workers ---


async def test_row65_spawning_from_a_multithreaded_parent(ledger: Ledger) -> None:
    stop = threading.Event()
    lock = threading.Lock()

    def busy() -> None:
        while not stop.is_set():
            with lock:  # threads holding locks while the parent spawns
                bytearray(64 * 1024)

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        with anyio.fail_after(30):
            ledger.fault()
            async with open_pool(chaos_config("process", size=2)) as pool:
                await ledger.echoes(pool, 4)
                await ledger.call(pool, "exit", {"code": 1}, expect=WorkerCrashed)
                await ledger.echoes(pool, 4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
