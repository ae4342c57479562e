"""The catalogue: every telemetry event snakepit emits, in one place.

To add an event, append an :class:`EventSpec` to ``_SPECS`` below, in the section
of the subsystem that emits it, then regenerate the table in ``docs/telemetry.md``
(``tests/telemetry/test_catalogue.py`` fails and prints the new table until you
do). Tests that emit the event inside :func:`~snakepit.telemetry.capture_events`
then check its measurement and metadata keys against the spec.

Every metadata key listed is always present; pass ``None`` when it does not apply
(for example ``error`` on a normal exit), so handlers never need ``.get``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from ._bus import EventName

# --- Event specifications ---


class EventKind(enum.Enum):
    """Whether an :class:`EventSpec` names one event or the prefix of a span.

    .. versionadded:: 0.1
    """

    EVENT = "event"
    """A single event, emitted with :func:`~snakepit.telemetry.execute`."""

    SPAN = "span"
    """A span prefix: :func:`~snakepit.telemetry.span` emits ``prefix + ("start",)``,
    then ``prefix + ("stop",)`` or ``prefix + ("exception",)``."""


SPAN_START: Final = "start"
SPAN_STOP: Final = "stop"
SPAN_EXCEPTION: Final = "exception"

#: Measurement keys of each span sub-event; a span's spec lists none of its own.
SPAN_MEASUREMENTS: Final[Mapping[str, tuple[str, ...]]] = types.MappingProxyType(
    {
        SPAN_START: ("monotonic_time",),
        SPAN_STOP: ("duration", "monotonic_time"),
        SPAN_EXCEPTION: ("duration", "monotonic_time"),
    }
)

#: Metadata keys a span adds to its exception event.
SPAN_EXCEPTION_METADATA: Final = ("kind", "error")

_WORD = re.compile(r"[a-z][a-z0-9_]*")


def _check_name(
    inst: object, attribute: attrs.Attribute[EventName], value: object
) -> None:
    if not isinstance(value, tuple) or not value:
        raise TypeError(
            f"EventSpec.name must be a non-empty tuple of words, "
            f'such as ("snakepit", "worker", "recycled"); got {value!r}'
        )
    bad = [
        part for part in value if not isinstance(part, str) or not _WORD.fullmatch(part)
    ]
    if bad:
        raise ValueError(
            f"EventSpec.name {value!r}: every part must be a lowercase word "
            f"([a-z][a-z0-9_]*); fix {bad!r}"
        )


def _check_keys(
    inst: object, attribute: attrs.Attribute[tuple[str, ...]], value: object
) -> None:
    if isinstance(value, str):
        raise TypeError(
            f"EventSpec.{attribute.name} must be a tuple of keys, not the string "
            f"{value!r}; did you forget the trailing comma in ({value!r},)?"
        )
    if not isinstance(value, tuple) or not all(isinstance(k, str) and k for k in value):
        raise TypeError(
            f"EventSpec.{attribute.name} must be a tuple of non-empty strings; "
            f"got {value!r}"
        )
    if len(set(value)) != len(value):
        raise ValueError(f"EventSpec.{attribute.name} lists a key twice: {value!r}")


@typing.final
@attrs.frozen(kw_only=True)
class EventSpec:
    """The declaration of one event (or one span) in the catalogue.

    Args:
        name: the event name, or the span prefix when *kind* is
            :attr:`EventKind.SPAN`. A tuple of lowercase words.
        measurements: the numeric keys of the measurements mapping. Spans list
            none: their keys are implied (``monotonic_time`` on start;
            ``duration`` and ``monotonic_time`` on stop and exception).
        metadata: the keys of the metadata mapping, always all present. For a
            span, the keys given when the span starts; they are on every sub-event.
        description: one sentence saying when the event is emitted.
        kind: a plain event or a span prefix.
        stop_metadata: spans only: keys the span's body adds with
            :meth:`Span.set_metadata <snakepit.telemetry.Span.set_metadata>`.
            They are required on the stop event and allowed on the exception
            event (which also carries ``kind`` and ``error``).

    Raises:
        TypeError: a field has the wrong type (a bare string for a key tuple).
        ValueError: a name part is not a lowercase word, a key is repeated, or a
            field does not fit the *kind*.

    .. versionadded:: 0.1
    """

    name: EventName = attrs.field(validator=_check_name)
    measurements: tuple[str, ...] = attrs.field(default=(), validator=_check_keys)
    metadata: tuple[str, ...] = attrs.field(default=(), validator=_check_keys)
    description: str = attrs.field(validator=attrs.validators.instance_of(str))
    kind: EventKind = attrs.field(
        default=EventKind.EVENT, validator=attrs.validators.instance_of(EventKind)
    )
    stop_metadata: tuple[str, ...] = attrs.field(default=(), validator=_check_keys)

    def __attrs_post_init__(self) -> None:
        where = f"EventSpec {self.name!r}"
        if not self.description.strip():
            raise ValueError(f"{where}: give a description of when it is emitted")
        if self.kind is EventKind.EVENT:
            if self.stop_metadata:
                raise ValueError(f"{where}: stop_metadata is for spans only")
            return
        if self.measurements:
            raise ValueError(
                f"{where}: a span's measurements are implied; remove "
                f"measurements={self.measurements!r}"
            )
        reserved = set(SPAN_EXCEPTION_METADATA) & {*self.metadata, *self.stop_metadata}
        if reserved:
            raise ValueError(
                f"{where}: {sorted(reserved)} are added to a span's exception event; "
                "rename those metadata keys"
            )
        overlap = set(self.metadata) & set(self.stop_metadata)
        if overlap:
            raise ValueError(
                f"{where}: {sorted(overlap)} are in metadata and stop_metadata"
            )

    def event_names(self) -> tuple[EventName, ...]:
        """Return the concrete event names this spec declares.

        Returns:
            ``(name,)`` for an event; the start, stop and exception names for a span.

        .. versionadded:: 0.1
        """
        if self.kind is EventKind.EVENT:
            return (self.name,)
        return tuple((*self.name, suffix) for suffix in SPAN_MEASUREMENTS)


# --- The catalogue ---

HANDLER_FAILURE: Final[EventName] = ("snakepit", "telemetry", "handler_failure")

_SPECS: tuple[EventSpec, ...] = (
    # Telemetry itself.
    EventSpec(
        name=HANDLER_FAILURE,
        measurements=("count",),
        metadata=("handler_id", "event", "error"),
        description="A handler raised; it was detached. `error` is the exception.",
    ),
    # Supervision (snakepit.supervisor).
    EventSpec(
        name=("snakepit", "supervisor", "child_started"),
        measurements=("count",),
        metadata=("supervisor", "child_id", "child_type"),
        description="A child started (`child_type`: worker or supervisor).",
    ),
    EventSpec(
        name=("snakepit", "supervisor", "child_exited"),
        measurements=("count",),
        metadata=("supervisor", "child_id", "reason", "error"),
        description=(
            "A child exited; `reason` is normal, shutdown, abnormal or killed, "
            "`error` the exception or None."
        ),
    ),
    EventSpec(
        name=("snakepit", "supervisor", "child_restarted"),
        measurements=("count",),
        metadata=("supervisor", "child_id", "strategy"),
        description="A child was restarted under the supervisor's `strategy`.",
    ),
    EventSpec(
        name=("snakepit", "supervisor", "max_intensity"),
        measurements=("restarts",),
        metadata=("supervisor", "intensity", "period"),
        description=(
            "More than `intensity` restarts within `period` seconds: the "
            "supervisor gives up."
        ),
    ),
    # Workers (snakepit.pool, snakepit.lifecycle).
    EventSpec(
        name=("snakepit", "worker", "recycled"),
        measurements=("count",),
        metadata=("worker_id", "pool", "reason", "uptime_seconds", "request_count"),
        description=(
            "A worker was replaced on purpose (ttl, max requests, memory, manual)."
        ),
    ),
    EventSpec(
        name=("snakepit", "worker", "health_check_failed"),
        measurements=("count",),
        metadata=("worker_id", "pool", "reason"),
        description="A worker failed its health check and is being replaced.",
    ),
    EventSpec(
        name=("snakepit", "worker", "recycle_failed"),
        measurements=("count",),
        metadata=("worker_id", "pool", "reason", "error"),
        description=(
            "A recycle's replacement did not start; the worker keeps serving and "
            "the recycle is retried later."
        ),
    ),
    EventSpec(
        name=("snakepit", "worker", "started"),
        measurements=("count", "startup_seconds"),
        metadata=("worker_id", "pool", "pid"),
        description="A worker process finished its handshake and takes calls.",
    ),
    EventSpec(
        name=("snakepit", "worker", "exited"),
        measurements=("count", "uptime_seconds"),
        metadata=(
            "worker_id",
            "pool",
            "pid",
            "reason",
            "exit_code",
            "signal",
            "in_flight",
        ),
        description=(
            "A worker process exited. `reason`: shutdown, exited (crash), timeout, "
            "abandoned, protocol_error, channel_closed, killed...; `exit_code` or "
            "`signal`; `in_flight` calls failed with it."
        ),
    ),
    EventSpec(
        name=("snakepit", "worker", "restarted"),
        measurements=("count",),
        metadata=("worker_id", "previous_worker_id", "pool", "pid"),
        description="A new worker replaced `previous_worker_id` in its slot.",
    ),
    # Pools and requests (snakepit.pool).
    EventSpec(
        name=("snakepit", "request"),
        kind=EventKind.SPAN,
        measurements=(),
        metadata=("pool", "command"),
        stop_metadata=("worker_id", "success"),
        description=(
            "One call, from submission to outcome (queueing included); "
            "`worker_id` is None if it never reached a worker."
        ),
    ),
    EventSpec(
        name=("snakepit", "pool", "saturated"),
        measurements=("count", "queued"),
        metadata=("pool", "max_queue_size"),
        description="A call was refused at once: the queue was full.",
    ),
    EventSpec(
        name=("snakepit", "pool", "capacity_reached"),
        measurements=("count", "capacity"),
        metadata=("pool", "worker_id"),
        description=(
            "A worker took its last free slot (`capacity` calls in flight; "
            "`threads_per_worker` in the thread profile)."
        ),
    ),
    EventSpec(
        name=("snakepit", "pool", "queue_timeout"),
        measurements=("count", "waited_seconds"),
        metadata=("pool", "command"),
        description="A call waited `queue_timeout` for a worker and was dropped.",
    ),
    # Orphan cleanup (snakepit._registry).
    EventSpec(
        name=("snakepit", "cleanup", "orphans_killed"),
        measurements=("count", "runs"),
        metadata=("instances", "data_dir", "run_ids", "pids", "dry_run"),
        description=(
            "A pool's start (or a cleanup) found `runs` dead runs (`run_ids`) of "
            "its instance and killed `count` leftover processes (`pids`)."
        ),
    ),
)


def _index(specs: Iterable[EventSpec]) -> Mapping[EventName, EventSpec]:
    index: dict[EventName, EventSpec] = {}
    for spec in specs:
        if spec.name in index:
            raise ValueError(f"the catalogue declares {spec.name!r} twice")
        index[spec.name] = spec
    return types.MappingProxyType(index)


EVENTS: Final[Mapping[EventName, EventSpec]] = _index(_SPECS)


# --- Checking emitted events against a catalogue ---


@attrs.frozen
class _Shape:
    """The keys one concrete event must carry."""

    measurements: frozenset[str]
    metadata: frozenset[str]  # required
    optional: frozenset[str] = frozenset()


def _shapes(catalogue: Mapping[EventName, EventSpec]) -> dict[EventName, _Shape]:
    shapes: dict[EventName, _Shape] = {}

    def add(name: EventName, shape: _Shape) -> None:
        if name in shapes:
            raise ValueError(
                f"the catalogue declares {name!r} twice (check span prefixes)"
            )
        shapes[name] = shape

    for spec in catalogue.values():
        if spec.kind is EventKind.EVENT:
            add(
                spec.name,
                _Shape(frozenset(spec.measurements), frozenset(spec.metadata)),
            )
            continue
        base = frozenset(spec.metadata)
        stop = frozenset(spec.stop_metadata)
        measured = {k: frozenset(v) for k, v in SPAN_MEASUREMENTS.items()}
        add((*spec.name, SPAN_START), _Shape(measured[SPAN_START], base))
        add((*spec.name, SPAN_STOP), _Shape(measured[SPAN_STOP], base | stop))
        add(
            (*spec.name, SPAN_EXCEPTION),
            _Shape(
                measured[SPAN_EXCEPTION],
                base | frozenset(SPAN_EXCEPTION_METADATA),
                optional=stop,
            ),
        )
    return shapes


_EVENT_SHAPES: Final = _shapes(EVENTS)  # also proves at import that EVENTS is sound


def check_events(
    events: Iterable[tuple[EventName, Mapping[str, object], Mapping[str, object]]],
    catalogue: Mapping[EventName, EventSpec] = EVENTS,
) -> list[str]:
    """Return one line per emitted event that does not match *catalogue*.

    Args:
        events: ``(name, measurements, metadata)`` triples, in emission order.
        catalogue: the specs to check against (the real catalogue by default).

    Returns:
        Problems found, in order; empty when every event matches its spec.
    """
    shapes = _EVENT_SHAPES if catalogue is EVENTS else _shapes(catalogue)
    problems: list[str] = []
    for name, measurements, metadata in events:
        shape = shapes.get(name)
        if shape is None:
            problems.append(
                f"{name!r}: not in the catalogue (snakepit.telemetry.EVENTS)"
            )
            continue
        keys = set(measurements)
        if keys != shape.measurements:
            problems.append(
                f"{name!r}: measurements {sorted(keys)}, "
                f"catalogue says {sorted(shape.measurements)}"
            )
        keys = set(metadata)
        missing = shape.metadata - keys
        extra = keys - shape.metadata - shape.optional
        if missing or extra:
            problems.append(
                f"{name!r}: metadata missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )
    return problems


# --- The documentation table ---


def format_name(name: EventName) -> str:
    """Return *name* written as a Python tuple with double quotes, as in the docs."""
    return "(" + ", ".join(f'"{part}"' for part in name) + ")"


def _keys(keys: Iterable[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys) or "none"


def render_table(catalogue: Mapping[EventName, EventSpec] = EVENTS) -> str:
    """Return the Markdown table of *catalogue* that ``docs/telemetry.md`` embeds."""
    lines = [
        "| Event | Measurements | Metadata | When |",
        "| --- | --- | --- | --- |",
    ]
    for spec in catalogue.values():
        if spec.kind is EventKind.EVENT:
            name = f"`{format_name(spec.name)}`"
            measurements = _keys(spec.measurements)
            metadata = _keys(spec.metadata)
        else:
            name = f"`{format_name(spec.name)}` span: " + ", ".join(
                f"`{suffix}`" for suffix in SPAN_MEASUREMENTS
            )
            measurements = "; ".join(
                f"{suffix}: {_keys(keys)}" for suffix, keys in SPAN_MEASUREMENTS.items()
            )
            metadata = _keys(spec.metadata)
            if spec.stop_metadata:
                metadata += f"; stop adds {_keys(spec.stop_metadata)}"
            metadata += f"; exception adds {_keys(SPAN_EXCEPTION_METADATA)}"
        description = spec.description.replace("|", "\\|")
        lines.append(f"| {name} | {measurements} | {metadata} | {description} |")
    return "\n".join(lines) + "\n"
