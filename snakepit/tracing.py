"""OpenTelemetry tracing for snakepit: a span per request, continued in the worker.

Install the extra (``pip install 'snakepit[otel]'``). In the application:

.. code-block:: python

    import snakepit.tracing

    snakepit.tracing.instrument()  # the global TracerProvider, or pass one

Every call (``execute``, ``execute_in_session``, ``execute_stream``) then runs in a
``snakepit.execute <command>`` span (kind ``CLIENT``), a child of whatever span is
current where the call is made, with the pool, command, worker id and outcome as
attributes. Its context (W3C ``traceparent``, plus baggage: whatever the global
propagator writes) travels with the call to the worker, where an adapter continues
the trace:

.. code-block:: python

    from snakepit.tracing import child_span

    class MyAdapter(Adapter):
        @command
        def predict(self, x: float) -> float:
            with child_span("predict", size=1):
                return 2 * x

The worker is another process: it exports its spans through a ``TracerProvider``
of its own, which the adapter sets up in ``setup()`` (see ``docs/tracing.md``).

How: the request span is driven by the telemetry events
``("snakepit", "request", "start" | "stop" | "exception")``, whose handlers run
synchronously in the caller's task. The span is kept in a context variable of that
task (not made the current span, so the caller's code never runs under it, even
while it iterates a stream), and a call-metadata provider (``snakepit._callmeta``),
called when the call is encoded, injects that span's context into the call.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, final

try:
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
    from opentelemetry.util.types import AttributeValue
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "snakepit.tracing needs opentelemetry-api: pip install 'snakepit[otel]'"
    ) from exc

from snakepit._version import __version__

if TYPE_CHECKING:
    from snakepit.telemetry import EventName, Measurements, Metadata

__all__ = (
    "instrument",
    "uninstrument",
    "is_instrumented",
    "child_span",
    "call_context",
    "TRACER_NAME",
)

TRACER_NAME: Final = "snakepit"
"""The instrumentation scope of snakepit's spans, in the parent and the worker."""

_HANDLER_ID: Final = "snakepit.tracing"
_START: Final = ("snakepit", "request", "start")
_STOP: Final = ("snakepit", "request", "stop")
_EXCEPTION: Final = ("snakepit", "request", "exception")


@final
class _Request:
    """A request span in progress, as kept in its caller's context."""

    __slots__ = ("command", "ended", "pool", "span")

    def __init__(self, span: Span, pool: object, command: object) -> None:
        self.span = span
        self.pool = pool
        self.command = command
        self.ended = False


#: The request spans open in this task, innermost last. A tuple, never mutated in
#: place, so a task started meanwhile keeps the stack it inherited.
_requests: contextvars.ContextVar[tuple[_Request, ...]] = contextvars.ContextVar(
    "snakepit_tracing_requests", default=()
)


@final
class _Instrumentation:
    """What :func:`instrument` set up, for :func:`uninstrument` to undo."""

    __slots__ = ("remove_provider",)

    def __init__(self, remove_provider: Callable[[], None]) -> None:
        self.remove_provider = remove_provider


_state: _Instrumentation | None = None
_state_lock = threading.Lock()


# --- Parent side ---


def instrument(tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every snakepit request in this process, and send each call's trace
    context to its worker.

    Calling it again replaces the tracer provider; :func:`uninstrument` undoes it.

    Args:
        tracer_provider: where the spans go (default: the global one, as set with
            ``opentelemetry.trace.set_tracer_provider``, looked up at each span).

    .. versionadded:: 0.1
    """
    global _state
    from snakepit import _callmeta, telemetry

    tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider)
    with _state_lock:
        _uninstrument_locked()
        telemetry.attach_many(
            _HANDLER_ID, [_START, _STOP, _EXCEPTION], _on_request, config=tracer
        )
        try:
            remove = _callmeta.add_provider(_trace_headers)
        except BaseException:
            telemetry.detach(_HANDLER_ID)
            raise
        _state = _Instrumentation(remove)


def uninstrument() -> None:
    """Stop tracing requests; a no-op when not instrumented. Requests in flight
    then end without their span being ended (so it is not exported).

    .. versionadded:: 0.1
    """
    with _state_lock:
        _uninstrument_locked()


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect.

    .. versionadded:: 0.1
    """
    return _state is not None


def _uninstrument_locked() -> None:
    global _state
    if _state is None:
        return
    from snakepit import telemetry

    state, _state = _state, None
    telemetry.detach(_HANDLER_ID)
    state.remove_provider()


def _on_request(
    event: EventName, measurements: Measurements, metadata: Metadata, tracer: Tracer
) -> None:
    """The telemetry handler of the request span's three events (in the caller's
    task): start a span, or end the one this task started for that call."""
    pool = metadata.get("pool")
    command = metadata.get("command")
    if event == _START:
        attributes: dict[str, AttributeValue] = {
            "rpc.system": "snakepit",
            "rpc.method": str(command),
            "snakepit.pool": str(pool),
            "snakepit.command": str(command),
        }
        span = tracer.start_span(
            f"snakepit.execute {command}", kind=SpanKind.CLIENT, attributes=attributes
        )
        _requests.set((*_requests.get(), _Request(span, pool, command)))
        return
    stack = _requests.get()
    for request in reversed(stack):
        if not request.ended and request.pool == pool and request.command == command:
            break
    else:  # started before instrument(), or in a task this one cannot see
        return
    request.ended = True
    _requests.set(tuple(r for r in stack if not r.ended))
    span = request.span
    worker_id = metadata.get("worker_id")
    if worker_id is not None:
        span.set_attribute("snakepit.worker_id", str(worker_id))
    if event == _STOP:
        success = bool(metadata.get("success", True))
        span.set_attribute("snakepit.success", success)
        if not success:
            span.set_status(Status(StatusCode.ERROR, "the call did not succeed"))
    else:
        kind = str(metadata.get("kind"))
        error = metadata.get("error")
        span.set_attribute("snakepit.success", False)
        span.set_attribute("error.type", kind)
        remote_type = getattr(error, "remote_type", None)
        if isinstance(remote_type, str):
            span.set_attribute("snakepit.remote_type", remote_type)
        if isinstance(error, BaseException):
            span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{kind}: {error}"))
    span.end()


def _trace_headers() -> Mapping[str, str] | None:
    """The call-metadata provider: the trace context of the call being encoded.

    That is the innermost request span this task has open, else (a call encoded
    before its span started) the current context.
    """
    context: Context | None = None
    for request in reversed(_requests.get()):
        if not request.ended:
            context = trace.set_span_in_context(request.span)
            break
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier or None


# --- Worker side ---


def call_context() -> Context:
    """The OpenTelemetry context the call running in this thread was made in.

    For use in a worker, inside a command: start spans under it with a tracer of
    your own (``tracer.start_as_current_span(name, context=call_context())``).
    Outside a call, or for a call made without tracing, it is the current context.

    .. versionadded:: 0.1
    """
    from snakepit.adapter import call_metadata

    return propagate.extract(dict(call_metadata()))


@contextmanager
def child_span(
    name: str,
    /,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    **attributes: AttributeValue,
) -> Iterator[Span]:
    """Run the block in a span, in a worker, under the request span of the call.

    Use it inside a command. The span's parent is the span already current in this
    thread if there is one (``child_span`` blocks nest), else the caller's request
    span (from the call's metadata), else none (a new trace). It goes to the global
    ``TracerProvider`` of the worker process, which the adapter sets up in
    ``setup()`` (without one it records nothing), or to *tracer_provider*. An
    exception raised in the block is recorded on the span, which is marked as
    failed, and propagates.

    Args:
        name: the span's name.
        tracer_provider: where the span goes, if not to the global provider.
        attributes: the span's attributes (``**{"model.name": "x"}`` for dotted
            names).

    .. versionadded:: 0.1
    """
    tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider)
    current = trace.get_current_span().get_span_context()
    parent = None if current.is_valid else call_context()
    with tracer.start_as_current_span(
        name, context=parent, attributes=attributes or None
    ) as span:
        yield span
