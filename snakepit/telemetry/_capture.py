"""Capture events in tests, and check them against the catalogue.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence

import anyio
import anyio.lowlevel
import attrs

from ._bus import EventName, Measurements, Metadata, _registry, check_event_name
from ._catalogue import check_events


@typing.final
@attrs.frozen
class CapturedEvent:
    """One event seen by :func:`capture_events`.

    Attributes:
        event: the event name.
        measurements: a copy of the measurements.
        metadata: a copy of the metadata.

    .. versionadded:: 0.1
    """

    event: EventName
    measurements: Mapping[str, float]
    metadata: Mapping[str, object]


_CallSoon: typing.TypeAlias = Callable[[Callable[[], object]], object]


def _loop_call_soon() -> _CallSoon:
    """Return a thread-safe, non-blocking "call soon" for the running event loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # anyio's only other backend is trio, and it is running, so it is imported.
        token = sys.modules["trio"].lowlevel.current_trio_token()
        call_soon: _CallSoon = token.run_sync_soon
        return call_soon
    return loop.call_soon_threadsafe


@attrs.define(eq=False)
class _Waiter:
    """One ``wait_for`` call, sleeping until an event of its name is captured."""

    event: EventName
    done: anyio.Event
    loop_thread: int
    call_soon: _CallSoon

    def wake(self) -> None:
        if threading.get_ident() == self.loop_thread:
            self.done.set()
            return
        try:
            self.call_soon(self.done.set)
        except RuntimeError:
            # The loop has finished (trio.RunFinishedError is a RuntimeError):
            # nobody is waiting any more.
            pass


@typing.final
@attrs.define(eq=False, repr=False)
class CapturedEvents(Sequence[CapturedEvent]):
    """The events captured by :func:`capture_events`, in emission order.

    A read-only sequence that grows while the ``with`` block runs. Events may be
    emitted from any thread.

    .. versionadded:: 0.1
    """

    _prefix: EventName
    _events: list[CapturedEvent] = attrs.field(init=False, factory=list)
    _waiters: list[_Waiter] = attrs.field(init=False, factory=list)
    _closed: bool = attrs.field(init=False, default=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    # --- Sequence ---

    @typing.overload
    def __getitem__(self, index: int) -> CapturedEvent: ...
    @typing.overload
    def __getitem__(self, index: slice) -> list[CapturedEvent]: ...
    def __getitem__(self, index: int | slice) -> CapturedEvent | list[CapturedEvent]:
        with self._lock:
            return self._events[index]

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[CapturedEvent]:
        with self._lock:
            return iter(self._events.copy())

    def __repr__(self) -> str:
        return f"CapturedEvents({self[:]!r})"

    # --- Helpers ---

    def names(self) -> list[EventName]:
        """Return the names of the captured events, in emission order.

        .. versionadded:: 0.1
        """
        return [e.event for e in self]

    def named(self, event: EventName) -> list[CapturedEvent]:
        """Return the captured events named exactly *event*, in emission order.

        .. versionadded:: 0.1
        """
        return [e for e in self if e.event == event]

    async def wait_for(
        self,
        event: EventName,
        count: int = 1,
        predicate: Callable[[CapturedEvent], bool] | None = None,
    ) -> list[CapturedEvent]:
        """Wait until *count* events named *event* (and matching *predicate*) are in.

        Events captured before the call count too. Events may come from the event
        loop's thread or any other; the wait never polls. Bound it with
        :func:`anyio.fail_after`.

        Args:
            event: the exact event name to wait for.
            count: how many matching events to wait for, at least 1.
            predicate: an extra filter, called in the waiting task.

        Returns:
            The first *count* matching events, in emission order.

        Raises:
            RuntimeError: the ``capture_events`` block ended before enough events.
            ValueError: *count* is less than 1.

        .. versionadded:: 0.1
        """
        check_event_name(event)
        if count < 1:
            raise ValueError(f"count must be at least 1; got {count}")
        call_soon = _loop_call_soon()
        matches: list[CapturedEvent] = []
        scanned = 0
        while True:
            waiter = _Waiter(event, anyio.Event(), threading.get_ident(), call_soon)
            try:
                # Register before releasing the lock, so no event slips between
                # the scan and the wait.
                with self._lock:
                    new = self._events[scanned:]
                    closed = self._closed
                    if not closed:
                        self._waiters.append(waiter)
                scanned += len(new)
                matches += (
                    e
                    for e in new
                    if e.event == event and (predicate is None or predicate(e))
                )
                if len(matches) >= count:
                    await anyio.lowlevel.checkpoint()
                    return matches[:count]
                if closed:
                    raise RuntimeError(
                        f"capture_events ended with {len(matches)} of the {count} "
                        f"{event!r} events waited for"
                    )
                await waiter.done.wait()
            finally:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    # --- Internals ---

    def _record(
        self, event: EventName, measurements: Measurements, metadata: Metadata
    ) -> None:
        if event[: len(self._prefix)] != self._prefix:
            return
        captured = CapturedEvent(event, dict(measurements), dict(metadata))
        with self._lock:
            self._events.append(captured)
            woken = [w for w in self._waiters if w.event == event]
            if woken:
                self._waiters = [w for w in self._waiters if w.event != event]
        for waiter in woken:
            waiter.wake()

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            woken, self._waiters = self._waiters, []
        for waiter in woken:
            waiter.wake()


@contextlib.contextmanager
def capture_events(
    prefix: EventName = (), *, check_catalogue: bool = True
) -> Iterator[CapturedEvents]:
    """Capture every event whose name starts with *prefix* during the block.

    For tests, like structlog's ``capture_logs``. Handlers attached as usual still
    run. Events emitted from any thread are captured, in emission order::

        with telemetry.capture_events(("snakepit", "worker")) as events:
            ...
        assert events.names() == [("snakepit", "worker", "recycled")]

    Args:
        prefix: capture only events whose name starts with it; ``()`` for all.
        check_catalogue: when the block ends normally, check each captured event
            against :data:`~snakepit.telemetry.EVENTS`: its name must be listed
            and its measurement and metadata keys must match. Pass ``False`` for
            events of your own.

    Yields:
        The :class:`CapturedEvents`, filled while the block runs.

    Raises:
        AssertionError: at the end of the block, listing each event that does not
            match the catalogue.

    .. versionadded:: 0.1
    """
    check_event_name(prefix, "prefix", empty_ok=True)
    events = CapturedEvents(prefix)
    observer = events._record
    _registry.add_observer(observer)
    try:
        yield events
    finally:
        _registry.remove_observer(observer)
        events._close()
    if check_catalogue:
        problems = check_events((e.event, e.measurements, e.metadata) for e in events)
        if problems:
            raise AssertionError(
                "telemetry events that do not match the catalogue "
                "(snakepit/telemetry/_catalogue.py):\n  "
                + "\n  ".join(dict.fromkeys(problems))
            )
