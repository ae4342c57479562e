"""Tests for capture_events: recording, catalogue checks, waiting."""

from __future__ import annotations

import threading

import anyio
import pytest

from snakepit import telemetry
from snakepit.telemetry import CapturedEvent

pytestmark = pytest.mark.anyio

RECYCLED = ("snakepit", "worker", "recycled")
RECYCLED_METADATA = {
    "worker_id": "w-1",
    "pool": "default",
    "reason": "ttl",
    "uptime_seconds": 3.5,
    "request_count": 10,
}
READY = ("app", "ready")


def emit_recycled(**metadata):
    telemetry.execute(RECYCLED, {"count": 1}, {**RECYCLED_METADATA, **metadata})


def own_events(prefix=("app",)):
    return telemetry.capture_events(prefix, check_catalogue=False)


# --- recording ---


def test_events_are_captured_in_order_as_copies():
    measurements, metadata = {"n": 1}, {"who": "a"}
    with own_events() as events:
        telemetry.execute(("app", "one"), measurements, metadata)
        measurements["n"] = 2
        metadata["who"] = "b"
        telemetry.execute(("app", "two"), measurements)
    assert list(events) == [
        CapturedEvent(("app", "one"), {"n": 1}, {"who": "a"}),
        CapturedEvent(("app", "two"), {"n": 2}, {}),
    ]


def test_only_events_under_the_prefix_are_captured():
    with own_events(("app", "a")) as events:
        telemetry.execute(("app",), {})
        telemetry.execute(("app", "a"), {})
        telemetry.execute(("app", "a", "b"), {})
        telemetry.execute(("app", "b"), {})
        telemetry.execute(("other", "a"), {})
    assert events.names() == [("app", "a"), ("app", "a", "b")]


def test_handlers_still_run_and_capture_stops_at_the_end_of_the_block():
    seen = []
    telemetry.attach("t", READY, lambda *args: seen.append(args[0]))
    with own_events() as events:
        telemetry.execute(READY, {})
    telemetry.execute(READY, {})
    assert len(events) == 1
    assert seen == [READY, READY]


def test_captured_events_is_a_read_only_sequence_with_helpers():
    with own_events() as events:
        for name in ["a", "b", "a"]:
            telemetry.execute(("app", name), {"n": 1})
    assert len(events) == 3
    assert events[0].event == ("app", "a")
    assert events[-1].event == ("app", "a")
    assert [e.event for e in events[1:]] == [("app", "b"), ("app", "a")]
    assert [e.event for e in events.named(("app", "a"))] == [("app", "a")] * 2
    assert events.named(("app",)) == []
    assert events.index(events[1]) == 1
    assert "CapturedEvents([CapturedEvent(event=('app', 'a')" in repr(events)
    assert not hasattr(events, "append")


def test_nested_captures_both_record():
    with own_events() as outer:
        with own_events(("app", "inner")) as inner:
            telemetry.execute(("app", "inner"), {})
        telemetry.execute(("app", "outer"), {})
    assert outer.names() == [("app", "inner"), ("app", "outer")]
    assert inner.names() == [("app", "inner")]


def test_events_from_many_threads_are_all_captured():
    n_threads, per_thread = 8, 200
    barrier = threading.Barrier(n_threads, timeout=10)

    def emit(t):
        barrier.wait()
        for i in range(per_thread):
            telemetry.execute(("app", "tick"), {"i": i}, {"t": t})

    with own_events() as events:
        threads = [threading.Thread(target=emit, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
    assert len(events) == n_threads * per_thread
    for t in range(n_threads):
        ours = [e.measurements["i"] for e in events if e.metadata["t"] == t]
        assert ours == list(range(per_thread))  # each thread's order is kept


# --- catalogue checks ---


def test_catalogued_events_pass_the_check():
    with telemetry.capture_events() as events:
        emit_recycled()
        telemetry.execute(
            ("snakepit", "worker", "health_check_failed"),
            {"count": 1},
            {"worker_id": "w", "pool": "p", "reason": "timeout"},
        )
    assert len(events) == 2


def test_an_unknown_event_fails_at_the_end_of_the_block():
    with pytest.raises(AssertionError) as info, telemetry.capture_events() as events:
        telemetry.execute(("snakepit", "made", "up"), {"count": 1})
        assert len(events) == 1  # nothing raised yet
    message = str(info.value)
    assert "('snakepit', 'made', 'up'): not in the catalogue" in message


def test_keys_that_differ_from_the_catalogue_fail_and_are_all_listed():
    with pytest.raises(AssertionError) as info, telemetry.capture_events():
        telemetry.execute(RECYCLED, {"count": 1, "extra": 2}, RECYCLED_METADATA)
        emit_recycled(surprise=True)
        metadata = dict(RECYCLED_METADATA)
        del metadata["pool"]
        telemetry.execute(RECYCLED, {"count": 1}, metadata)
        emit_recycled(surprise=True)  # same problem: listed once
    lines = str(info.value).splitlines()[1:]
    assert lines == [
        f"  {RECYCLED!r}: measurements ['count', 'extra'], catalogue says ['count']",
        f"  {RECYCLED!r}: metadata missing [], unexpected ['surprise']",
        f"  {RECYCLED!r}: metadata missing ['pool'], unexpected []",
    ]


def test_the_check_can_be_turned_off():
    with telemetry.capture_events(check_catalogue=False) as events:
        telemetry.execute(("snakepit", "made", "up"), {"count": 1})
    assert len(events) == 1


def test_an_error_in_the_block_is_not_masked_by_the_check():
    with pytest.raises(KeyError), telemetry.capture_events():
        telemetry.execute(("snakepit", "made", "up"), {})
        raise KeyError


def test_the_handler_failure_event_passes_the_check():
    def boom(event, measurements, metadata, config):
        raise ValueError

    telemetry.attach("boom", RECYCLED, boom)
    with telemetry.capture_events() as events:
        emit_recycled()
    assert events.names() == [RECYCLED, ("snakepit", "telemetry", "handler_failure")]


def test_a_bad_prefix_is_rejected():
    with pytest.raises(TypeError, match="prefix"), telemetry.capture_events(["app"]):
        pass


# --- wait_for ---


async def test_wait_for_returns_events_already_captured(anyio_backend):
    with anyio.fail_after(5), own_events() as events:
        telemetry.execute(READY, {"n": 1})
        telemetry.execute(READY, {"n": 2})
        assert await events.wait_for(READY) == [events[0]]
        assert await events.wait_for(READY, count=2) == list(events)


async def test_wait_for_an_event_emitted_later_on_the_loop_thread(anyio_backend):
    result = []

    async def waiter(events):
        result.extend(await events.wait_for(READY, count=2))

    with anyio.fail_after(5), own_events() as events:
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, events)
            await anyio.wait_all_tasks_blocked()
            telemetry.execute(READY, {"n": 1})
            telemetry.execute(("app", "other"), {})
            await anyio.wait_all_tasks_blocked()
            assert result == []
            telemetry.execute(READY, {"n": 2})
    assert [e.measurements["n"] for e in result] == [1, 2]


async def test_wait_for_with_a_predicate(anyio_backend):
    result = []

    async def waiter(events):
        result.extend(
            await events.wait_for(READY, count=2, predicate=lambda e: e.metadata["ok"])
        )

    with anyio.fail_after(5), own_events() as events:
        async with anyio.create_task_group() as tg:
            telemetry.execute(READY, {"n": 0}, {"ok": True})
            tg.start_soon(waiter, events)
            await anyio.wait_all_tasks_blocked()
            for n in range(1, 4):
                telemetry.execute(READY, {"n": n}, {"ok": n % 2 == 0})
    assert [e.measurements["n"] for e in result] == [0, 2]


async def test_wait_for_an_event_emitted_by_an_anyio_worker_thread(anyio_backend):
    result = []

    async def waiter(events):
        result.extend(await events.wait_for(READY))

    with anyio.fail_after(5), own_events() as events:
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, events)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(telemetry.execute, READY, {"n": 1})
    assert [e.measurements["n"] for e in result] == [1]


async def test_wait_for_an_event_emitted_by_a_foreign_thread(anyio_backend):
    with anyio.fail_after(5), own_events() as events:
        emitted_from = []

        def emit():
            emitted_from.append(threading.get_ident())
            telemetry.execute(READY, {"n": 1})

        thread = threading.Thread(target=emit)
        async with anyio.create_task_group() as tg:

            async def start_thread_once_waiting():
                await anyio.wait_all_tasks_blocked()
                thread.start()

            tg.start_soon(start_thread_once_waiting)
            [ready] = await events.wait_for(READY)
        await anyio.to_thread.run_sync(thread.join)
    assert ready.measurements == {"n": 1}
    assert emitted_from != [threading.get_ident()]


async def test_a_cancelled_wait_leaves_no_waiter_behind(anyio_backend):
    with anyio.fail_after(5), own_events() as events:
        async with anyio.create_task_group() as tg:
            tg.start_soon(events.wait_for, READY)
            await anyio.wait_all_tasks_blocked()
            assert len(events._waiters) == 1
            tg.cancel_scope.cancel()
        assert events._waiters == []


async def test_wait_for_fails_when_the_capture_has_ended(anyio_backend):
    with anyio.fail_after(5):
        with own_events() as events:
            telemetry.execute(READY, {})
        with pytest.raises(RuntimeError, match="ended with 1 of the 2"):
            await events.wait_for(READY, count=2)


async def test_a_waiter_is_woken_when_the_capture_ends(anyio_backend):
    async def wait_in_vain(events):
        with pytest.raises(RuntimeError, match="ended with 0 of the 1"):
            await events.wait_for(READY)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            with own_events() as events:
                tg.start_soon(wait_in_vain, events)
                await anyio.wait_all_tasks_blocked()


async def test_wait_for_rejects_bad_arguments(anyio_backend):
    with anyio.fail_after(5), own_events() as events:
        with pytest.raises(ValueError, match="count must be at least 1"):
            await events.wait_for(READY, count=0)
        with pytest.raises(TypeError, match="tuple of strings"):
            await events.wait_for("app.ready")
