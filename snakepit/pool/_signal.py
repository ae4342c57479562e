"""One-shot signals and the loop's clock, at the cost of the event loop itself.

Every call waits for its outcome on a signal that the reply's callback sets, and
every queued call reads the clock: on the hot path these are the price of a call.
``anyio.Event()`` and ``anyio.current_time()`` find the running backend on each
use (a lookup that costs more than the event itself); here it is found once, when
the signal or clock is made, by asking asyncio for its running loop (a C
function):

- on asyncio a :class:`FutureSignal` awaits one bare future, created only if the
  waiter has to wait, and the clock is the loop's own ``time``;
- elsewhere (trio) ``trio.Event``, which is already what ``anyio.Event`` wraps,
  and ``trio.current_time``.

Cancellation is the backend's own: anyio cancels an asyncio task by cancelling
the future it awaits, exactly as for ``asyncio.Event``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Protocol

__all__ = ("FutureSignal", "Signal", "loop_clock", "new_signal", "signal_type")


class Signal(Protocol):
    """What a call's outcome is awaited on: set once, waited on by one task."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self) -> Awaitable[None]:
        """An awaitable that returns once set (``trio.Event.wait`` is one)."""
        ...


class _Done:
    """Awaiting it returns at once, without a checkpoint."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # a generator that finishes at once, yielding nothing


_DONE = _Done()


class FutureSignal:
    """An asyncio :class:`Signal`: a flag, and a future only while a task waits.

    Set it from the loop's thread only (as replies are dispatched).
    """

    __slots__ = ("_future", "_set")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        future = self._future
        if future is not None and not future.done():  # done: cancelled meanwhile
            future.set_result(None)

    def is_set(self) -> bool:
        return self._set

    def wait(self) -> Awaitable[None]:
        """What to await until set: nothing if it already is (no checkpoint),
        else the future :meth:`set` completes. Awaited directly, it costs no
        coroutine frame of its own on the hot path."""
        if self._set:
            return _DONE
        future = self._future = asyncio.get_running_loop().create_future()
        return future


def signal_type() -> Callable[[], Signal]:
    """What makes a :class:`Signal` on the running loop's backend: found once, a
    hot path that makes a signal per call keeps it (half the cost of
    :func:`new_signal` per signal)."""
    if asyncio._get_running_loop() is not None:
        return FutureSignal
    import trio

    return trio.Event


def new_signal() -> Signal:
    """A fresh :class:`Signal` for the running loop's backend."""
    return signal_type()()


def loop_clock() -> Callable[[], float]:
    """The running backend's clock (what ``anyio.current_time`` reads), found
    once: call it in the task that will use it, on the loop it will run on."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop.time
    import trio

    return trio.current_time
