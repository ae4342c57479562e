"""Which calls may be sent ahead to a busy worker (``pipeline_depth``).

A call sent ahead waits in the worker's own queue behind the calls already there.
That pays for short calls, whose round trip to the parent costs as much as the
call itself, and must never make a call wait long. So a pool sends a call ahead to
a worker only if the calls already on that worker are expected to take, together,
less than :data:`SHORT_CALL` (each command's calls are timed from send to answer
when nothing was ahead of them, and averaged; a command not timed yet may be
long), and none of them has been running for :data:`SHORT_CALL` already. Small
calls then go ahead by the dozen (up to ``pipeline_depth`` per unit of
capacity), calls of a few milliseconds one or two at a time, longer ones never.
A worker that falls idle also takes back calls sent ahead to others (see
:meth:`~snakepit.pool.WorkerProcess.recall`), so a call sent ahead waits only
while every worker is busy, and then behind short calls.

The times are the parent's view, round trip and its own event loop's delays
included, so a loaded parent sees commands as longer and sends fewer ahead: the
safe direction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

__all__ = ("SHORT_CALL", "CallTimes", "TimedCall")

#: A call may be sent ahead behind calls expected to take less than this in all.
#: Well above a small call's round trip through a loaded parent (a millisecond
#: or two, its event loop's delays included), so that load does not turn
#: pipelining off when it pays most; small against what a caller waits anyway
#: once every worker is busy, the only time a call is sent ahead.
SHORT_CALL = 0.01
#: Weight of the newest time in a command's running average.
_WEIGHT = 0.2


class TimedCall(Protocol):
    """A call on a worker, as :meth:`CallTimes.room_behind` sees it."""

    @property
    def command(self) -> str: ...

    @property
    def sent_at(self) -> float | None:
        """When it was sent, if nothing was ahead of it (else None)."""


class CallTimes:
    """Running average of each command's call time, in seconds."""

    __slots__ = ("_mean",)

    def __init__(self) -> None:
        self._mean: dict[str, float] = {}

    def observe(self, command: str, seconds: float) -> None:
        """Count one call of *command* that took *seconds*, send to answer."""
        mean = self._mean.get(command)
        self._mean[command] = (
            seconds if mean is None else mean + _WEIGHT * (seconds - mean)
        )

    def mean(self, command: str) -> float:
        """The average time of *command*'s calls (``inf`` if never timed)."""
        return self._mean.get(command, math.inf)

    def room_behind(self, calls: Iterable[TimedCall], now: float) -> float:
        """How much more call time may be queued behind *calls*: what is left of
        :data:`SHORT_CALL` once their expected times are counted, or ``-inf`` if
        one of them has run :data:`SHORT_CALL` already. A call may wait behind
        them if it is positive (asked per batch of calls sent ahead: one loop,
        no call per item)."""
        mean = self._mean
        room = SHORT_CALL
        for call in calls:
            room -= mean.get(call.command, math.inf)
            if room <= 0:
                return room
            sent_at = call.sent_at
            if sent_at is not None and now - sent_at >= SHORT_CALL:
                return -math.inf
        return room
