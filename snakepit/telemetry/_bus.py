"""The telemetry bus: attach handlers to event names, execute events.

Modelled on Erlang's ``:telemetry``. The registry maps each event name to a tuple
of handlers. Writers (attach, detach) build a new mapping under a lock and publish
it with one assignment; :func:`execute` reads whatever mapping is current without
locking, so emitting an event nobody listens to costs one dictionary lookup.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import threading
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeAlias, TypeVar, overload

import attrs

from snakepit.exceptions import HandlerAlreadyAttached

from ._catalogue import HANDLER_FAILURE, SPAN_EXCEPTION, SPAN_START, SPAN_STOP

logger: Final = logging.getLogger("snakepit.telemetry")

# --- Types ---

EventName: TypeAlias = tuple[str, ...]
"""An event name: a tuple of lowercase words, such as
``("snakepit", "worker", "recycled")``.

.. versionadded:: 0.1
"""

Measurements: TypeAlias = Mapping[str, float]
"""Numeric measurements of an event, such as ``{"duration": 0.012}``; ints welcome.

.. versionadded:: 0.1
"""

Metadata: TypeAlias = Mapping[str, object]
"""Context of an event, such as ``{"pool": "default", "worker_id": "w-1"}``.

.. versionadded:: 0.1
"""

_C = TypeVar("_C")

Handler: TypeAlias = Callable[[EventName, Measurements, Metadata, _C], None]
"""A handler: ``handler(event, measurements, metadata, config) -> None``.

Generic in the type of *config*: ``Handler[None]`` for a handler attached without
one.

.. versionadded:: 0.1
"""

_EMPTY: Final[Metadata] = types.MappingProxyType({})

Observer: TypeAlias = Callable[[EventName, Measurements, Metadata], None]
"""Internal: sees every event before the handlers (used by capture_events)."""


def check_event_name(
    value: object, what: str = "event", *, empty_ok: bool = False
) -> None:
    if not isinstance(value, tuple):
        raise TypeError(
            f"{what} must be a tuple of strings, such as "
            f'("snakepit", "worker", "recycled"); got {type(value).__name__} {value!r}'
        )
    if not value and not empty_ok:
        raise ValueError(
            f"{what} must not be empty; name the event, such as ('app', 'ready')"
        )
    if not all(isinstance(part, str) for part in value):
        raise TypeError(f"{what} {value!r}: every part must be a str")
    if not all(value):
        raise ValueError(f"{what} {value!r}: every part must be a non-empty str")


@typing.final
@attrs.frozen
class HandlerInfo:
    """A handler attached to one event, as returned by :func:`list_handlers`.

    A handler attached with :func:`attach_many` appears once per event, each
    with the same *id*.

    Attributes:
        id: the handler id given to :func:`attach`.
        event: the event name it is attached to.
        function: the handler.
        config: the *config* given to :func:`attach`, passed to each call.

    .. versionadded:: 0.1
    """

    id: str
    event: EventName
    function: Callable[..., None]
    config: object


# --- The registry ---


@attrs.define(eq=False)
class _Registry:
    """Holds the handlers. Published mappings and tuples are never mutated."""

    table: dict[EventName, tuple[HandlerInfo, ...]] = attrs.field(factory=dict)
    #: The prefixes of the span events in *table*, kept with it: a hot path asks
    #: whether a span is listened to once per call (see :func:`span_listened`).
    spans: frozenset[EventName] = frozenset()
    by_id: dict[str, tuple[HandlerInfo, ...]] = attrs.field(factory=dict)
    observers: tuple[Observer, ...] = ()
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def attach(self, infos: tuple[HandlerInfo, ...]) -> None:
        handler_id = infos[0].id
        with self.lock:
            if handler_id in self.by_id:
                raise HandlerAlreadyAttached(
                    f"a handler with id {handler_id!r} is already attached; "
                    "detach it first or choose another id"
                )
            table = dict(self.table)
            for info in infos:
                table[info.event] = (*table.get(info.event, ()), info)
            self.by_id[handler_id] = infos
            self._publish(table)

    def detach(self, handler_id: str, member: HandlerInfo | None = None) -> bool:
        """Detach *handler_id*; given *member*, only if it is still attached."""
        with self.lock:
            infos = self.by_id.get(handler_id)
            if infos is None or (
                member is not None and all(i is not member for i in infos)
            ):
                return False
            del self.by_id[handler_id]
            table = dict(self.table)
            for info in infos:
                remaining = tuple(h for h in table[info.event] if h is not info)
                if remaining:
                    table[info.event] = remaining
                else:
                    del table[info.event]
            self._publish(table)
            return True

    def _publish(self, table: dict[EventName, tuple[HandlerInfo, ...]]) -> None:
        self.spans = frozenset(e[:-1] for e in table if e[-1] in _SPAN_ENDS)
        self.table = table

    def add_observer(self, observer: Observer) -> None:
        with self.lock:
            self.observers = (*self.observers, observer)

    def remove_observer(self, observer: Observer) -> None:
        with self.lock:
            self.observers = tuple(o for o in self.observers if o is not observer)

    def dispatch(
        self,
        event: EventName,
        handlers: tuple[HandlerInfo, ...],
        measurements: Measurements,
        metadata: Metadata,
    ) -> None:
        for observer in self.observers:
            try:
                observer(event, measurements, metadata)
            except Exception:
                logger.exception("telemetry observer %r failed on %r", observer, event)
        for info in handlers:
            try:
                info.function(event, measurements, metadata, info.config)
            except Exception as exc:
                self.handler_failed(info, event, exc)

    def handler_failed(
        self, info: HandlerInfo, event: EventName, exc: Exception
    ) -> None:
        # Only the call that detaches reports, so a handler failing in several
        # threads at once is logged and reported once.
        if not self.detach(info.id, info):
            return
        logger.error(
            "telemetry handler %r failed on event %r and was detached",
            info.id,
            event,
            exc_info=exc,
        )
        # Recursion guard: a failing handler_failure handler is only logged.
        if event != HANDLER_FAILURE:
            execute(
                HANDLER_FAILURE,
                {"count": 1},
                {"handler_id": info.id, "event": event, "error": exc},
            )


_registry: Final = _Registry()


# --- Public API ---


@overload
def attach(
    handler_id: str, event: EventName, handler: Handler[None], config: None = None
) -> None: ...
@overload
def attach(
    handler_id: str, event: EventName, handler: Handler[_C], config: _C
) -> None: ...
def attach(
    handler_id: str,
    event: EventName,
    handler: Callable[..., None],
    config: object = None,
) -> None:
    """Attach *handler* to *event* under the unique id *handler_id*.

    The handler is called as ``handler(event, measurements, metadata, config)``,
    synchronously, in whichever thread executes the event. If it raises, it is
    detached, logged and reported as ``("snakepit", "telemetry", "handler_failure")``.

    Args:
        handler_id: a unique id, used to :func:`detach` it.
        event: the exact event name to handle.
        handler: the function to call.
        config: passed unchanged as the handler's fourth argument.

    Raises:
        HandlerAlreadyAttached: *handler_id* is already attached.
        TypeError: an argument has the wrong type.
        ValueError: *event* is empty.

    .. versionadded:: 0.1
    """
    check_event_name(event)
    _attach(handler_id, [event], handler, config)


@overload
def attach_many(
    handler_id: str,
    events: Iterable[EventName],
    handler: Handler[None],
    config: None = None,
) -> None: ...
@overload
def attach_many(
    handler_id: str, events: Iterable[EventName], handler: Handler[_C], config: _C
) -> None: ...
def attach_many(
    handler_id: str,
    events: Iterable[EventName],
    handler: Callable[..., None],
    config: object = None,
) -> None:
    """Attach *handler* to each of *events* under the one id *handler_id*.

    :func:`detach` removes it from all of them; a failure in any of them detaches
    it from all. An event listed twice is attached once.

    Args:
        handler_id: a unique id, used to :func:`detach` it.
        events: the event names to handle, at least one.
        handler: the function to call, as for :func:`attach`.
        config: passed unchanged as the handler's fourth argument.

    Raises:
        HandlerAlreadyAttached: *handler_id* is already attached.
        TypeError: an argument has the wrong type.
        ValueError: *events*, or one of them, is empty.

    .. versionadded:: 0.1
    """
    if (
        isinstance(events, (str, tuple))
        and events
        and all(isinstance(e, str) for e in events)
    ):
        raise TypeError(
            f"events must be a collection of event names, got one name {events!r}; "
            f"use attach() or wrap it: [{events!r}]"
        )
    names = list(events)
    if not names:
        raise ValueError("events must name at least one event")
    for name in names:
        check_event_name(name)
    _attach(handler_id, names, handler, config)


def _attach(
    handler_id: str, events: list[EventName], handler: object, config: object
) -> None:
    if not isinstance(handler_id, str):
        raise TypeError(f"handler_id must be a str; got {type(handler_id).__name__}")
    if not callable(handler):
        raise TypeError(
            "handler must be callable as handler(event, measurements, metadata, "
            f"config); got {handler!r}"
        )
    _registry.attach(
        tuple(
            HandlerInfo(handler_id, name, handler, config)
            for name in dict.fromkeys(events)
        )
    )


def detach(handler_id: str) -> bool:
    """Detach the handler *handler_id* from every event it handles.

    Args:
        handler_id: the id given to :func:`attach` or :func:`attach_many`.

    Returns:
        ``True`` if it was attached, ``False`` if there was nothing to detach.

    .. versionadded:: 0.1
    """
    return _registry.detach(handler_id)


def list_handlers(prefix: EventName = ()) -> list[HandlerInfo]:
    """Return the handlers attached to events that start with *prefix*.

    Args:
        prefix: an event name or a prefix of one; ``()`` (the default) lists all.

    Returns:
        One :class:`HandlerInfo` per (handler, event), in attach order.

    .. versionadded:: 0.1
    """
    check_event_name(prefix, "prefix", empty_ok=True)
    n = len(prefix)
    with _registry.lock:
        attached = list(_registry.by_id.values())
    return [info for infos in attached for info in infos if info.event[:n] == prefix]


_SPAN_ENDS = frozenset((SPAN_START, SPAN_STOP, SPAN_EXCEPTION))


def span_listened(event_prefix: EventName) -> bool:
    """Internal: whether any event of a span named *event_prefix* would reach
    anyone (a handler or an observer) now.

    A hot path that opens a span per call asks first and uses
    :data:`~snakepit.telemetry._span.QUIET_SPAN` when nobody listens, skipping
    the span's clock readings and metadata. (A handler attached while such a
    block runs sees no end event for it, as it would have seen no start event.)
    """
    return bool(_registry.observers) or event_prefix in _registry.spans


def is_listened(event: EventName) -> bool:
    """Internal: whether :func:`execute` of *event* would reach anyone (a handler
    or an observer), so a hot path can skip building its measurements."""
    return event in _registry.table or bool(_registry.observers)


def execute(
    event: EventName, measurements: Measurements, metadata: Metadata | None = None
) -> None:
    """Emit *event*: call every handler attached to it, in this thread.

    Handlers run in an unspecified order. A handler that raises an
    :class:`Exception` is detached, logged on the ``snakepit.telemetry`` logger
    and reported as ``("snakepit", "telemetry", "handler_failure")``; the error
    never reaches the caller. Nothing is validated here, for speed: declare
    snakepit's own events in :data:`~snakepit.telemetry.EVENTS` and test them
    with :func:`~snakepit.telemetry.capture_events`.

    Args:
        event: the event name.
        measurements: numeric values, such as ``{"duration": 0.25}``.
        metadata: context, such as ``{"pool": "default"}``.

    .. versionadded:: 0.1
    """
    handlers = _registry.table.get(event)
    if handlers is None and not _registry.observers:
        return
    _registry.dispatch(
        event, handlers or (), measurements, _EMPTY if metadata is None else metadata
    )
