"""Which calls may be sent ahead to a busy worker (``pipeline_depth``).

A call sent ahead waits in the worker's own queue behind the calls already there.
That pays for short calls, whose round trip to the parent costs as much as the
call itself, and must never make a call wait long. So a pool sends a call ahead to
a worker only if every call on that worker is of a command known to be short (one
whose calls, timed from send to answer when nothing was ahead of them, have been
taking less than :data:`SHORT_CALL` on average; a command not timed yet is not
short), and none of them has been running for :data:`SHORT_CALL` already. A
worker that falls idle also takes back calls sent ahead to others (see
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

#: A command whose calls take less than this on average may have calls sent
#: ahead behind it. Well above a small call's round trip through a loaded
#: parent (a millisecond or two, its event loop's delays included), so that load
#: does not turn pipelining off when it pays most; small against what a caller
#: waits anyway once every worker is busy, the only time a call is sent ahead.
SHORT_CALL = 0.01
#: Weight of the newest time in a command's running average.
_WEIGHT = 0.2


class TimedCall(Protocol):
    """A call on a worker, as :meth:`CallTimes.may_wait_behind` sees it."""

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

    def is_short(self, command: str) -> bool:
        """Whether *command* is known to be short: a call may wait behind one of
        its calls that has just been sent."""
        return self._mean.get(command, math.inf) < SHORT_CALL

    def may_wait_behind(self, calls: Iterable[TimedCall], now: float) -> bool:
        """Whether a call may be sent to wait behind *calls*: each is of a short
        command and none has run :data:`SHORT_CALL` already (asked per call sent
        ahead: one loop, no call per item)."""
        mean = self._mean
        for call in calls:
            if mean.get(call.command, math.inf) >= SHORT_CALL:
                return False
            sent_at = call.sent_at
            if sent_at is not None and now - sent_at >= SHORT_CALL:
                return False
        return True
