"""RELIABILITY.md group D: workers that cannot start, restart intensity (rows 41-44),
every request accounted."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from snakepit.config import PoolConfig
from snakepit.exceptions import PoolUnavailable
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events
from tests.chaos._ledger import PROMPT, RESTART, Ledger, chaos_config

pytestmark = pytest.mark.anyio

FLAKY = "tests.workers.flaky_setup:FlakySetupAdapter"
STARTED = ("snakepit", "worker", "started")
EXITED = ("snakepit", "worker", "exited")
CHILD_RESTARTED = ("snakepit", "supervisor", "child_restarted")
MAX_INTENSITY = ("snakepit", "supervisor", "max_intensity")


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        pytest.param(
            {"adapter_args": {"setup_error": "no boot today"}},
            "no boot today",
            id="row41-setup_raises",
        ),
        pytest.param(
            {"adapter_args": {"setup_sleep": 30}, "startup_timeout": 0.4},
            "startup_timeout",
            id="row42-hangs_at_boot",
        ),
        pytest.param(
            {"python_executable": "/nonexistent/bin/python3"},
            "/nonexistent/bin/python3",
            id="row44-spawn_fails",
        ),
    ],
)
async def test_pool_whose_workers_cannot_start_fails_fast(
    ledger: Ledger, options: dict[str, Any], hint: str
) -> None:
    # Two workers: when the first failure is restarted, the restarted slot's worker
    # is still booting as the second failure gives up; it must be killed, not
    # waited for (shutdown_timeout).
    config = chaos_config("process", size=2, restart_intensity=1, **options)

    async def open_it() -> None:
        async with open_pool(config):
            pass

    # two failed starts (intensity 1), each bounded by its startup timeout
    hangs = "startup_timeout" in options
    deadline = 2 * config.startup_timeout if hangs else RESTART
    with anyio.fail_after(30), capture_events() as events:
        ledger.fault()
        await ledger.run(
            "open_pool",
            open_it,
            expect=PoolUnavailable,
            check_error=lambda e: hint in str(e),
            deadline=deadline,
        )
    assert len(events.named(MAX_INTENSITY)) == 1


async def test_row42_cancelled_start_does_not_wait_for_hanging_boots(
    ledger: Ledger,
) -> None:
    config = chaos_config(
        "process",
        adapter_args={"setup_sleep": 30},
        startup_timeout=10,
        shutdown_timeout=1.5,
    )

    async def open_then_give_up() -> None:
        with anyio.move_on_after(0.3):
            async with open_pool(config):
                pass

    with anyio.fail_after(30):
        ledger.fault()
        # cancelled at 0.3 s: killing and reaping a booting worker is instant
        await ledger.run("open_pool, cancelled", open_then_give_up, deadline=0.5)
    ledger.check()


def flaky(marker: Path, **options: Any) -> PoolConfig:
    return PoolConfig(
        adapter_module=FLAKY, adapter_args={"marker": str(marker)}, **options
    )


async def test_row43_start_failures_spread_out_are_survived(
    ledger: Ledger, tmp_path: Path
) -> None:
    # Each failed start takes a spawn (tens of ms at least), far more than the
    # period: no window ever holds more than one restart.
    marker = tmp_path / "refuse"
    config = flaky(marker, pool_size=1, restart_intensity=1, restart_period=0.001)
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            for _ in range(3):
                await ledger.call(pool, "add", {"b": 0}, id_arg="a")
            (pid,) = (row["pid"] for row in pool.worker_stats())
            marker.write_text("refuse")
            ledger.fault()
            os.kill(pid, signal.SIGKILL)
            await events.wait_for(CHILD_RESTARTED, count=3)
            marker.unlink()
            await events.wait_for(STARTED, count=2)
            for _ in range(3):
                await ledger.call(pool, "add", {"b": 0}, id_arg="a", deadline=RESTART)
    assert events.named(MAX_INTENSITY) == []


async def test_row43_start_failures_within_the_period_break_the_pool(
    ledger: Ledger, tmp_path: Path
) -> None:
    marker = tmp_path / "refuse"
    config = flaky(marker, pool_size=1, restart_intensity=1, restart_period=30)
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            await ledger.call(pool, "add", {"b": 0}, id_arg="a")
            (pid,) = (row["pid"] for row in pool.worker_stats())
            marker.write_text("refuse")
            ledger.fault()
            os.kill(pid, signal.SIGKILL)
            await events.wait_for(EXITED)
            async with anyio.create_task_group() as tg:
                # queued while the slot fails to restart: failed, not left waiting
                ledger.spawn(
                    tg,
                    pool,
                    "add",
                    {"b": 0},
                    id_arg="a",
                    expect=PoolUnavailable,
                    deadline=RESTART,
                )
                await events.wait_for(MAX_INTENSITY)
            # and after: at once, not a spin
            for _ in range(3):
                await ledger.call(
                    pool,
                    "add",
                    {"b": 0},
                    id_arg="a",
                    expect=PoolUnavailable,
                    check_error=lambda e: "refusing to start" in str(e),
                    deadline=PROMPT,
                )
    assert len(events.named(MAX_INTENSITY)) == 1
