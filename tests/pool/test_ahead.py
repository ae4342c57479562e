"""CallTimes: which calls a pool may send ahead behind (see snakepit.pool._ahead)."""

from __future__ import annotations

import math

import attrs
import pytest

from snakepit.pool._ahead import SHORT_CALL, CallTimes


@attrs.frozen
class _Call:
    command: str
    sent_at: float | None


def may_wait_behind(times: CallTimes, calls: list[_Call], now: float) -> bool:
    """What the pool asks: a call may be sent to wait behind *calls*."""
    return times.room_behind(calls, now) > 0


def test_a_call_waits_behind_calls_expected_to_take_little_in_all() -> None:
    times = CallTimes()
    now = 100.0
    assert may_wait_behind(times, [], now)  # nothing ahead
    assert not may_wait_behind(times, [_Call("add", None)], now)  # never timed
    times.observe("add", SHORT_CALL / 10)
    times.observe("train", SHORT_CALL * 10)
    assert may_wait_behind(times, [_Call("add", None), _Call("add", now - 0.001)], now)
    assert not may_wait_behind(times, [_Call("add", None), _Call("train", None)], now)
    # a short command's call that has run SHORT_CALL already may be a long one
    assert not may_wait_behind(times, [_Call("add", now - SHORT_CALL)], now)
    # short calls, but too many of them: together they are not
    assert may_wait_behind(times, [_Call("add", None)] * 9, now)
    assert not may_wait_behind(times, [_Call("add", None)] * 11, now)


def test_room_behind_is_what_is_left_of_short_call() -> None:
    times = CallTimes()
    times.observe("add", SHORT_CALL / 4)
    assert times.room_behind([], 0.0) == SHORT_CALL
    assert times.room_behind([_Call("add", None)] * 2, 0.0) == pytest.approx(
        SHORT_CALL / 2
    )
    assert times.room_behind([_Call("add", None)] * 4, 0.0) <= 0
    assert times.room_behind([_Call("add", -SHORT_CALL)], 0.0) == -math.inf
    assert times.mean("add") == SHORT_CALL / 4
    assert times.mean("never timed") == math.inf


def test_the_running_average_follows_a_command_that_became_long() -> None:
    times = CallTimes()
    times.observe("add", SHORT_CALL / 10)
    assert may_wait_behind(times, [_Call("add", None)], 0.0)
    for _ in range(20):
        times.observe("add", SHORT_CALL * 5)
    assert not may_wait_behind(times, [_Call("add", None)], 0.0)
