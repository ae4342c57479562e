"""A telemetry bus modelled on Erlang's ``:telemetry``.

Emitters call :func:`execute` with an event name (a tuple of words), numeric
measurements and metadata; handlers attached with :func:`attach` run synchronously
in the emitter. A handler that raises is detached and reported as
``("snakepit", "telemetry", "handler_failure")``, never to the emitter. :func:`span`
times a block; :func:`capture_events` records events in tests and checks them
against :data:`EVENTS`, the catalogue of every event snakepit emits.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._bus import EventName as EventName
from ._bus import Handler as Handler
from ._bus import HandlerInfo as HandlerInfo
from ._bus import Measurements as Measurements
from ._bus import Metadata as Metadata
from ._bus import attach as attach
from ._bus import attach_many as attach_many
from ._bus import detach as detach
from ._bus import execute as execute
from ._bus import list_handlers as list_handlers
from ._capture import CapturedEvent as CapturedEvent
from ._capture import CapturedEvents as CapturedEvents
from ._capture import capture_events as capture_events
from ._catalogue import EVENTS as EVENTS
from ._catalogue import EventKind as EventKind
from ._catalogue import EventSpec as EventSpec
from ._span import Span as Span
from ._span import span as span

__all__ = (
    "EventName",
    "Measurements",
    "Metadata",
    "Handler",
    "HandlerInfo",
    "attach",
    "attach_many",
    "detach",
    "list_handlers",
    "execute",
    "span",
    "Span",
    "capture_events",
    "CapturedEvents",
    "CapturedEvent",
    "EVENTS",
    "EventSpec",
    "EventKind",
)
