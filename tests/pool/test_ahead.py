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


def test_is_short_is_may_wait_behind_one_call_just_sent() -> None:
    times = CallTimes()
    times.observe("add", SHORT_CALL / 10)
    times.observe("train", SHORT_CALL * 10)
    for command in ("add", "train", "never timed"):
        just_sent = [_Call(command, 5.0)]
        assert times.is_short(command) == times.may_wait_behind(just_sent, 5.0)
    assert times.is_short("add") and not times.is_short("train")


def test_the_running_average_follows_a_command_that_became_long() -> None:
    times = CallTimes()
    times.observe("add", SHORT_CALL / 10)
    assert times.may_wait_behind([_Call("add", None)], 0.0)
    for _ in range(20):
        times.observe("add", SHORT_CALL * 5)
    assert not times.may_wait_behind([_Call("add", None)], 0.0)
