"""Spans: a start event, then a stop or an exception event with a duration.

.. versionadded:: 0.1
"""

from __future__ import annotations

import time
import types
import typing
from collections.abc import Mapping

import attrs

from ._bus import EventName, check_event_name, execute, is_listened
from ._catalogue import SPAN_EXCEPTION, SPAN_START, SPAN_STOP

#: prefix -> its (start, stop, exception) event names, for prefixes already checked:
#: a span is opened per request, so its names are built and validated once.
_NAMES: dict[EventName, tuple[EventName, EventName, EventName]] = {}


def _names(prefix: EventName) -> tuple[EventName, EventName, EventName]:
    try:
        names = _NAMES.get(prefix)
    except TypeError:  # unhashable: not a valid name either
        names = None
    if names is None:
        check_event_name(prefix, "event_prefix")
        names = _NAMES[prefix] = (
            (*prefix, SPAN_START),
            (*prefix, SPAN_STOP),
            (*prefix, SPAN_EXCEPTION),
        )
    return names


@typing.final
@attrs.define(eq=False)
class Span:
    """A span in progress, as given by :func:`span`; a sync context manager.

    Use it with ``with`` in sync and async code alike: it never awaits.

    Attributes:
        event_prefix: the span's event prefix.
        metadata: the metadata of the stop (or exception) event. It starts as a
            copy of the metadata given to :func:`span`; the body may change it.
        start_time: the :func:`time.monotonic` reading at start, or ``None``
            before the span is entered.

    .. versionadded:: 0.1
    """

    event_prefix: EventName = attrs.field()
    metadata: dict[str, object] = attrs.field(factory=dict)
    start_time: float | None = None
    _events: tuple[EventName, EventName, EventName] = attrs.field(
        init=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        self._events = _names(self.event_prefix)

    def set_metadata(self, **values: object) -> None:
        """Add or replace metadata for the stop or exception event.

        For values known only at the end, such as ``span.set_metadata(success=True)``.

        .. versionadded:: 0.1
        """
        self.metadata.update(values)

    def __enter__(self) -> Span:
        if self.start_time is not None:
            raise RuntimeError(f"span {self.event_prefix!r} was already entered")
        self.start_time = start = time.monotonic()
        event = self._events[0]
        if is_listened(event):  # else skip building what nobody reads
            execute(
                event,
                {"monotonic_time": start},
                types.MappingProxyType(dict(self.metadata)),
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        end = time.monotonic()
        assert self.start_time is not None
        # Any BaseException ends the span, cancellation included, so every
        # start is followed by exactly one stop or exception event.
        event = self._events[1 if exc_type is None else 2]
        if not is_listened(event):
            return
        measurements = {"duration": end - self.start_time, "monotonic_time": end}
        if exc_type is None:
            execute(event, measurements, dict(self.metadata))
        else:
            execute(
                event,
                measurements,
                {**self.metadata, "kind": exc_type.__name__, "error": exc},
            )


def span(event_prefix: EventName, metadata: Mapping[str, object] | None = None) -> Span:
    """Return a context manager that wraps its block in span events.

    On entry it executes ``event_prefix + ("start",)`` with measurements
    ``{"monotonic_time": t0}`` and *metadata*. On a normal exit it executes
    ``event_prefix + ("stop",)`` with ``{"duration": seconds, "monotonic_time": t1}``.
    If the block raises (or is cancelled), it executes
    ``event_prefix + ("exception",)`` with the same measurements and the metadata
    plus ``kind`` (the exception's class name) and ``error`` (the exception), then
    lets the exception propagate. Times come from :func:`time.monotonic`.

    The :class:`Span` it yields lets the block add metadata for the end event::

        with telemetry.span(("snakepit", "request"), {"pool": "default"}) as s:
            s.set_metadata(success=True)

    Args:
        event_prefix: the span's name; the sub-event suffixes are appended to it.
        metadata: metadata of the start event, and the base of the end event's.

    Returns:
        A :class:`Span`, to use once in a ``with`` statement.

    Raises:
        TypeError: *event_prefix* is not a tuple of strings.
        ValueError: *event_prefix* is empty.

    .. versionadded:: 0.1
    """
    return Span(event_prefix, {} if metadata is None else dict(metadata))


@typing.final
class QuietSpan:
    """A span nobody listens to: the :class:`Span` interface, doing nothing."""

    __slots__ = ()

    def set_metadata(self, **values: object) -> None:
        pass

    def __enter__(self) -> QuietSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


#: Internal: stands for a :class:`Span` whose events nobody listens to.
QUIET_SPAN = QuietSpan()
