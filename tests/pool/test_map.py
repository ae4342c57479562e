"""Pool.map: one command over many argument maps, in chunks, results in order."""

from __future__ import annotations

from collections import UserDict

import anyio
import pytest

from snakepit.exceptions import (
    CommandNotFound,
    ConfigError,
    InvalidArguments,
    RemoteError,
    RequestTimeout,
    ResultEncodingError,
    SerializationError,
    WorkerCrashed,
)
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events

pytestmark = pytest.mark.anyio

CHAOS = "snakepit.adapters.chaos:ChaosAdapter"
REQUEST_STOP = ("snakepit", "request", "stop")


async def test_results_come_back_in_input_order_from_every_worker() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=2) as pool:
            calls = [{"request_id": i} for i in range(50)]
            results = await pool.map("echo", calls, chunksize=4)
            assert [r["request_id"] for r in results] == list(range(50))
            # chunks went to both workers, each chunk one request
            assert {r["pid"] for r in results} == {
                w["pid"] for w in pool.worker_stats()
            }
            assert len(events.named(REQUEST_STOP)) == 13  # ceil(50 / 4)
            assert await pool.map("echo", []) == []
            # a mapping that is not a dict is taken as one
            (only,) = await pool.map("echo", [UserDict({"request_id": "u"})])
            assert only["request_id"] == "u"


async def test_the_default_chunks_spread_the_calls_over_the_capacity() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=2) as pool:
            results = await pool.map("echo", [{"request_id": i} for i in range(100)])
            assert [r["request_id"] for r in results] == list(range(100))
    # four chunks per unit of capacity (2 workers x 1): 8 chunks of 13 or fewer
    assert len(events.named(REQUEST_STOP)) == 8


async def test_each_call_fails_alone_and_the_first_failure_is_raised() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=CHAOS, size=1) as pool:
            echoed = await pool.map(
                "echo",
                [{"request_id": 0}, {"nonsense": 1}, {"request_id": 2}],
                return_exceptions=True,
            )
            assert echoed[0]["request_id"] == 0
            assert isinstance(echoed[1], InvalidArguments)  # it never ran
            assert "echo" in str(echoed[1])
            assert echoed[2]["request_id"] == 2  # the same chunk went on
            raised = await pool.map(
                "raise_error",
                [{"message": "a"}, {"type_name": "KeyError", "message": "k"}],
                return_exceptions=True,
            )
            assert [type(r) for r in raised] == [RemoteError, RemoteError]
            assert raised[1].remote_type == "KeyError"
            assert "Traceback" in raised[1].remote_traceback
            with pytest.raises(RemoteError) as info:
                await pool.map(
                    "raise_error",
                    [
                        {"type_name": "ValueError", "message": "first"},
                        {"type_name": "KeyError", "message": "second"},
                    ],
                    chunksize=1,
                )
            assert info.value.remote_type == "ValueError"  # input order, not timing
            # the worker is fine
            assert (await pool.execute("echo", {"request_id": 9}))["request_id"] == 9


async def test_a_chunk_that_fails_as_a_whole_fails_its_calls_only() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=CHAOS, size=2) as pool:
            crashed = await pool.map("exit", [{"code": 3}], return_exceptions=True)
            assert isinstance(crashed[0], WorkerCrashed)
            assert crashed[0].exit_code == 3
            # one chunk runs past its timeout: its worker is killed, its call
            # fails; the chunks around it are answered
            results = await pool.map(
                "sleep",
                [{"seconds": 0}, {"seconds": 30}, {"seconds": 0}],
                chunksize=1,
                timeout=0.5,
                return_exceptions=True,
            )
            assert isinstance(results[1], RequestTimeout)
            assert results[0]["slept"] == results[2]["slept"] == 0


async def test_bad_input_is_refused_with_a_typed_error_before_anything_runs() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1) as pool:
            with pytest.raises(ConfigError, match="chunksize must be a positive int"):
                await pool.map("echo", [{"request_id": 1}], chunksize=0)
            with pytest.raises(SerializationError, match="call 1 is a list"):
                await pool.map("echo", [{"request_id": 1}, [1, 2]])  # type: ignore[list-item]
            assert events.named(REQUEST_STOP) == []
            with pytest.raises(CommandNotFound, match="unknown command 'nope'"):
                await pool.map("nope", [{}])
            with pytest.raises(InvalidArguments, match="use execute_stream"):
                await pool.map("slow_stream", [{"n": 1}])


def test_the_sync_facade_maps_too() -> None:
    import snakepit

    handle = snakepit.start(
        {"pools": [{"name": "default", "adapter_module": CHAOS, "pool_size": 1}]}
    )
    try:
        results = handle.map("echo", ({"request_id": i} for i in range(5)))
        assert [r["request_id"] for r in results] == list(range(5))
    finally:
        handle.stop()


async def test_cancelling_a_map_abandons_its_chunks() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=2) as pool:
            with anyio.move_on_after(0.5) as scope:
                await pool.map("sleep", [{"seconds": 30}] * 8, chunksize=1)
            assert scope.cancelled_caught
            # the running chunks' workers were replaced; nothing was left queued
            reply = await pool.execute("echo", {"request_id": 1})
            assert reply["request_id"] == 1
            assert pool.get_stats()["queued"] == 0
    # two chunks ran (one per worker) and two waited in the queue: all four were
    # abandoned (a span ended by the cancellation); the other four were never
    # sent; then the echo
    assert len(events.named(("snakepit", "request", "exception"))) == 4
    assert len(events.named(REQUEST_STOP)) == 1


async def test_a_result_that_cannot_be_sent_fails_its_call_only() -> None:
    basic = "tests.workers.basic:BasicAdapter"
    with anyio.fail_after(30):
        async with open_pool(adapter=basic, size=1, max_frame_bytes=1 << 16) as pool:
            results = await pool.map(
                "blob",
                [{"size": 10}, {"size": 1 << 17}, {"size": 20}],  # one too large
                chunksize=3,  # one chunk: its other calls keep their results
                return_exceptions=True,
            )
            assert results[0] == b"x" * 10
            assert isinstance(results[1], ResultEncodingError)
            assert "command 'blob' (in a map) cannot be sent" in str(results[1])
            assert results[2] == b"x" * 20
            unsent = await pool.map("unencodable", [{}], return_exceptions=True)
            assert isinstance(unsent[0], ResultEncodingError)


async def test_a_long_map_never_fills_the_pools_queue() -> None:
    with anyio.fail_after(60):
        async with open_pool(adapter=CHAOS, size=2, max_queue_size=2) as pool:
            # 400 chunks of one call, with room for two in the queue
            results = await pool.map(
                "echo", [{"request_id": i} for i in range(400)], chunksize=1
            )
            assert [r["request_id"] for r in results] == list(range(400))
            assert pool.get_stats()["saturated"] == 0
