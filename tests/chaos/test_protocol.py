"""RELIABILITY.md group B: bad input, bad frames, floods (rows 13-16, 18, 20-23,
25-27, 40), every request accounted."""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
import psutil
import pytest

from snakepit.exceptions import (
    ProtocolError,
    RemoteError,
    ResultEncodingError,
    SerializationError,
)
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events
from tests.chaos._ledger import RESTART, Ledger, chaos_config

pytestmark = pytest.mark.anyio

EXITED = ("snakepit", "worker", "exited")
RESTARTED = ("snakepit", "worker", "restarted")
MAX_LOG_LINE = 8192  # snakepit.pool._worker.MAX_LOG_LINE


def pids(pool: Any) -> set[int]:
    return {row["pid"] for row in pool.worker_stats()}


def served(pool: Any) -> int:
    return sum(row["requests"] for row in pool.worker_stats())


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


UNENCODABLE: dict[str, Callable[[], object]] = {
    "lock": threading.Lock,
    "datetime": datetime.datetime.now,
    "object": object,
    "set": lambda: {1, 2},
    "row23-nesting-3000": lambda: nested(3000),
}


async def test_row13_row23_unencodable_arguments_fail_before_dispatch(
    ledger: Ledger,
) -> None:
    with anyio.fail_after(30):
        async with open_pool(chaos_config("process")) as pool:
            await ledger.echoes(pool)
            before, workers = served(pool), pids(pool)
            with capture_events(("snakepit", "request")) as spans:
                for make in UNENCODABLE.values():
                    ledger.fault()
                    await ledger.call(
                        pool, "echo", {"payload": make()}, expect=SerializationError
                    )
            # no worker slot was used, nothing was sent, nobody restarted
            assert served(pool) == before
            ends = [e for e in spans if e.event[-1] != "start"]
            assert [e.metadata["worker_id"] for e in ends] == [None] * len(UNENCODABLE)
            await ledger.echoes(pool)
            assert pids(pool) == workers
            assert pool.get_stats()["restarts"] == 0


async def test_row14_many_bad_requests_then_good_ones(ledger: Ledger) -> None:
    with anyio.fail_after(30):
        async with open_pool(chaos_config("process")) as pool:
            ledger.fault(100)
            for _ in range(100):
                await ledger.call(
                    pool,
                    "echo",
                    {"payload": threading.Lock()},
                    expect=SerializationError,
                )
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    ledger.spawn(tg, pool, "echo", deadline=RESTART)
            # and mixed, all at once
            ledger.fault(50)
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    if i % 2:
                        ledger.spawn(tg, pool, "echo", deadline=RESTART)
                    else:
                        ledger.spawn(
                            tg,
                            pool,
                            "echo",
                            {"payload": threading.Lock()},
                            expect=SerializationError,
                        )
            assert pool.get_stats()["restarts"] == 0


#: Errors raised in the worker travel back as data; the worker stays.
WORKER_ERRORS: list[tuple[str, dict[str, Any], type[BaseException], Any]] = [
    # row 15: a result msgpack cannot encode
    ("unencodable_result", {}, ResultEncodingError, lambda e: "lock" in str(e)),
    # row 16: an exception whose args cannot travel, of a class the parent lacks
    (
        "raise_unencodable_exception",
        {"message": "cannot travel"},
        RemoteError,
        lambda e: (
            e.remote_type == "UnencodableError"
            and "cannot travel" in e.message
            and "raise_unencodable_exception" in e.remote_traceback
        ),
    ),
    # row 16: a builtin exception is data too, never re-raised as itself
    (
        "raise_error",
        {"type_name": "KeyError", "message": "k"},
        RemoteError,
        lambda e: e.remote_type == "KeyError" and not isinstance(e, KeyError),
    ),
    # row 40: a BaseException does not affect the next request
    (
        "raise_base_exception",
        {"message": "BOOM"},
        RemoteError,
        lambda e: e.remote_type == "BaseException" and e.message == "BOOM",
    ),
]


async def test_rows15_16_40_errors_in_the_worker_keep_the_worker(
    ledger: Ledger, profile: str
) -> None:
    with anyio.fail_after(30):
        async with open_pool(chaos_config(profile)) as pool:
            await ledger.echoes(pool, 1)
            before = pids(pool)
            for command, args, expect, check_error in WORKER_ERRORS:
                ledger.fault()
                await ledger.call(
                    pool, command, args, expect=expect, check_error=check_error
                )
                await ledger.echoes(pool, 1)
            assert pids(pool) == before
            assert pool.get_stats()["restarts"] == 0


async def test_row18_request_the_worker_cannot_decode(
    ledger: Ledger, profile: str
) -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config(profile, threads=2)) as pool:
            before = pids(pool)
            async with anyio.create_task_group() as tg:
                if profile == "thread":  # a bystander in flight on the same worker
                    ledger.spawn(tg, pool, "sleep", {"seconds": 0.5})
                    await anyio.wait_all_tasks_blocked()
                ledger.fault()
                await ledger.call(
                    pool,
                    "echo",
                    {"payload": {(1, 2): "tuple key"}},
                    expect=SerializationError,
                )
            await ledger.echoes(pool)
            ledger.check()
            assert pids(pool) == before  # the worker stayed
            assert events.named(RESTARTED) == []


async def test_row18_results_the_parent_cannot_decode(
    ledger: Ledger, profile: str
) -> None:
    # the same in the other direction: a result or a chunk keyed by a tuple
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(chaos_config(profile)) as pool:
            before = pids(pool)
            ledger.fault(2)
            await ledger.call(
                pool,
                "tuple_keyed_result",
                expect=SerializationError,
                check_error=lambda e: "unhashable" in str(e),
            )
            await ledger.stream(
                pool,
                "tuple_keyed_stream",
                {"n": 5},
                expect=SerializationError,
                check=lambda chunks: chunks == [{"index": 0}],
            )
            await ledger.echoes(pool)
            ledger.check()
            assert pids(pool) == before
            assert events.named(RESTARTED) == []


@pytest.mark.parametrize(
    "command", ["write_protocol_garbage", "huge_header"], ids=["row20", "row21"]
)
async def test_bad_frames_poison_only_that_worker(
    ledger: Ledger, profile: str, command: str
) -> None:
    rss_before = psutil.Process().memory_info().rss
    config = chaos_config(profile, size=2, max_frame_bytes=1 << 20)
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(config) as pool:
            await ledger.echoes(pool)
            ledger.fault()
            await ledger.call(pool, command, expect=ProtocolError)
            await events.wait_for(RESTARTED)
            for _ in range(3):
                await ledger.echoes(pool, 2)
            assert pool.get_stats()["workers"] == 2
    reasons = [e.metadata["reason"] for e in events.named(EXITED)]
    assert reasons.count("protocol_error") == 1
    # the 4 GiB announced were never allocated
    assert psutil.Process().memory_info().rss - rss_before < 256 * 1024 * 1024


async def test_row22_large_requests_and_results(ledger: Ledger) -> None:
    profile = "process"  # the thread profile's big transfers: row 37
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    with anyio.fail_after(30):
        async with open_pool(chaos_config(profile, threads=2)) as pool:
            await ledger.echoes(pool)
            await ledger.call(
                pool,
                "echo",
                {"payload": payload, "size": size},
                check=lambda v: v["payload"] == payload and len(v["data"]) == size,
                deadline=RESTART,
            )
        # above the limit: refused before sending; the worker is not harmed
        async with open_pool(
            chaos_config(profile, threads=2, max_frame_bytes=1 << 20)
        ) as pool:
            before = pids(pool)
            ledger.fault(2)
            await ledger.call(
                pool, "echo", {"payload": b"x" * (2 << 20)}, expect=SerializationError
            )
            await ledger.call(
                pool, "huge_result", {"n_bytes": 2 << 20}, expect=ResultEncodingError
            )
            await ledger.echoes(pool)
            assert pids(pool) == before


async def test_rows25_27_output_floods_do_not_touch_the_protocol(
    ledger: Ledger, profile: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="snakepit.worker")
    floods: list[tuple[str, dict[str, Any], Callable[[Any], bool]]] = [
        ("print_flood", {"n_bytes": 1_000_000}, lambda v: v == 1_000_000),
        ("write_fd1_raw", {}, lambda v: v == "ok"),  # a fake frame header on fd 1
        (
            "print_flood",
            {"n_bytes": 300_000, "stream": "stderr"},
            lambda v: v == 300_000,
        ),
        ("write_stderr_no_newline", {"n_bytes": 200_000}, lambda v: v == 200_000),
        ("read_stdin", {}, lambda v: v == ""),  # row 26: stdin is /dev/null
    ]
    with anyio.fail_after(30):
        async with open_pool(chaos_config(profile, threads=3)) as pool:
            before = pids(pool)
            async with anyio.create_task_group() as tg:
                for command, args, check in floods:
                    ledger.fault()
                    ledger.spawn(tg, pool, command, args, check=check, deadline=RESTART)
                    ledger.spawn(tg, pool, "echo", deadline=RESTART)
            await ledger.echoes(pool)
            assert pids(pool) == before
            assert pool.get_stats()["restarts"] == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "snakepit.worker"]
    assert any("xxxx" in line for line in lines)  # stderr was logged...
    assert max(map(len, lines)) <= MAX_LOG_LINE + 100  # ...in capped lines
