"""CallTimes: which calls a pool may send ahead behind (see snakepit.pool._ahead)."""

from __future__ import annotations

import attrs

from snakepit.pool._ahead import SHORT_CALL, CallTimes


@attrs.frozen
class _Call:
    command: str
    sent_at: float | None


def test_only_calls_of_short_commands_not_running_long_let_a_call_wait_behind() -> None:
    times = CallTimes()
    now = 100.0
    assert times.may_wait_behind([], now)  # nothing ahead
    assert not times.may_wait_behind([_Call("add", None)], now)  # never timed
    times.observe("add", SHORT_CALL / 10)
    times.observe("train", SHORT_CALL * 10)
    assert times.may_wait_behind([_Call("add", None), _Call("add", now - 0.001)], now)
    assert not times.may_wait_behind([_Call("add", None), _Call("train", None)], now)
    # a short command's call that has run SHORT_CALL already may be a long one
    assert not times.may_wait_behind([_Call("add", now - SHORT_CALL)], now)


def test_the_running_average_follows_a_command_that_became_long() -> None:
    times = CallTimes()
    times.observe("add", SHORT_CALL / 10)
    assert times.may_wait_behind([_Call("add", None)], 0.0)
    for _ in range(20):
        times.observe("add", SHORT_CALL * 5)
    assert not times.may_wait_behind([_Call("add", None)], 0.0)
