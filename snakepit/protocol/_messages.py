"""The closed, versioned family of messages that travel between parent and worker.

Each message is a :class:`typing.NamedTuple`. On the wire it is one msgpack array
``[tag, *fields]`` whose first item is the message's small integer :class:`Tag`, so
the hot path carries no map keys. This module is pure data: it knows the family and
checks the *shape* of decoded arrays; :mod:`._frames` turns them into bytes.

What a decoded message guarantees (anything else is a :class:`ProtocolError`):

- the tag is known and the array has exactly that message's number of fields;
- every ``id`` field is an ``int``;
- :class:`Hello`, :class:`Error` and :class:`Pong` are fully type-checked (they are
  rare, and the parent relies on them);
- :class:`Call` is *not* checked beyond its id: the worker answers a malformed call
  with an :class:`Error` of kind ``"decode"`` for that id and stays alive.

``Hello``'s tag (1) and its first field (``version``) never change across protocol
versions, so a parent can always report a :class:`ProtocolVersionMismatch` instead
of a confusing shape error.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, TypeAlias

from snakepit.exceptions import ProtocolError, ProtocolVersionMismatch

PROTOCOL_VERSION = 2
"""The wire protocol version, checked by the parent against :attr:`Hello.version`.

.. versionadded:: 0.1
"""


class Tag(enum.IntEnum):
    """The first item of every message array: which message it is.

    .. versionadded:: 0.1
    """

    HELLO = 1
    CALL = 2
    REPLY = 3
    ERROR = 4
    CHUNK = 5
    END = 6
    CANCEL = 7
    PING = 8
    PONG = 9
    SHUTDOWN = 10
    BYE = 11


class ErrorKind(str, enum.Enum):
    """Why a call failed, carried in :attr:`Error.kind` (as the plain string value).

    .. versionadded:: 0.1
    """

    EXCEPTION = "exception"
    """The adapter's code raised; ``type`` is the exception's class name."""
    COMMAND_NOT_FOUND = "command_not_found"
    """The adapter has no such command; the message lists the available ones."""
    INVALID_ARGUMENTS = "invalid_arguments"
    """The arguments do not fit the command's signature; the message names the
    command and the parameter. Checked before the command runs."""
    RESULT_ENCODING = "result_encoding"
    """The command ran but its result (or a chunk) could not be encoded, or was
    larger than ``max_frame_bytes``; ``type`` is the result's class name."""
    DECODE = "decode"
    """The call itself was malformed (a field of the wrong type); it never ran."""
    SHUTTING_DOWN = "shutting_down"
    """The call arrived after :class:`Shutdown`; it never ran, so it is safe to
    send it elsewhere."""
    CANCELLED = "cancelled"
    """A :class:`Cancel` reached the call while it still waited for a call thread;
    it never ran. (A call already running is not interrupted: it runs to the end.)"""


# --- Messages ---


class Hello(NamedTuple):
    """Worker to parent, the first frame: who the worker is and what it serves.

    Attributes:
        version: the worker's :data:`PROTOCOL_VERSION`.
        pid: the worker's process id.
        python_version: the worker interpreter's version, e.g. ``"3.13.1"``.
        gil_enabled: whether the GIL is enabled, evaluated after the adapter loaded.
        adapter: the adapter class as ``"module:QualName"``.
        commands: command name to ``{"stream": bool, "doc": str}``.
        capacity: how many calls the worker runs at once (its thread count).

    .. versionadded:: 0.1
    """

    version: int
    pid: int
    python_version: str
    gil_enabled: bool
    adapter: str
    commands: dict[str, dict[str, object]]
    capacity: int


class Call(NamedTuple):
    """Parent to worker: run *command* with keyword arguments *args*.

    Attributes:
        id: the request id, unique among the worker's calls in flight.
        command: the command name.
        args: keyword arguments for the command.
        session_id: the session the call belongs to, if any.
        deadline: informational absolute deadline (parent's clock), or ``None``.
        meta: string metadata that travels with the call (a trace context, say),
            read in the worker with :func:`snakepit.adapter.call_metadata`, or
            ``None``.

    .. versionadded:: 0.1
    """

    id: int
    command: str
    args: dict[str, object]
    session_id: str | None = None
    deadline: float | None = None
    meta: dict[str, str] | None = None


class Reply(NamedTuple):
    """Worker to parent: the call *id* returned *value*.

    .. versionadded:: 0.1
    """

    id: int
    value: object


class Error(NamedTuple):
    """Worker to parent: the call *id* failed; a remote failure carried as data.

    Attributes:
        id: the request id.
        kind: an :class:`ErrorKind` value (a plain string on the wire).
        type: the exception's class name (see :class:`ErrorKind` for the others).
        message: a human-readable message.
        traceback: the formatted remote traceback, or ``""``.

    .. versionadded:: 0.1
    """

    id: int
    kind: str
    type: str
    message: str
    traceback: str


class Chunk(NamedTuple):
    """Worker to parent: one item yielded by the streaming call *id*.

    .. versionadded:: 0.1
    """

    id: int
    value: object


class End(NamedTuple):
    """Worker to parent: the streaming call *id* finished (or was cancelled).

    .. versionadded:: 0.1
    """

    id: int


class Cancel(NamedTuple):
    """Parent to worker: stop the streaming call *id* between two chunks.

    .. versionadded:: 0.1
    """

    id: int


class Ping(NamedTuple):
    """Parent to worker: a health check, answered with :class:`Pong`.

    .. versionadded:: 0.1
    """

    id: int


class Pong(NamedTuple):
    """Worker to parent: the answer to :class:`Ping` *id*.

    Attributes:
        id: the ping's id.
        rss_bytes: the worker's resident set size, or 0 where it is not cheap to
            measure.
        in_flight: calls accepted and not yet answered.

    .. versionadded:: 0.1
    """

    id: int
    rss_bytes: int
    in_flight: int


class Shutdown(NamedTuple):
    """Parent to worker: finish the calls in flight, tear down, say :class:`Bye`.

    .. versionadded:: 0.1
    """


class Bye(NamedTuple):
    """Worker to parent: the last frame of an orderly exit.

    .. versionadded:: 0.1
    """


Message: TypeAlias = (
    Hello | Call | Reply | Error | Chunk | End | Cancel | Ping | Pong | Shutdown | Bye
)
"""Any member of the family.

.. versionadded:: 0.1
"""

_CLASSES: dict[int, type[Message]] = {
    Tag.HELLO: Hello,
    Tag.CALL: Call,
    Tag.REPLY: Reply,
    Tag.ERROR: Error,
    Tag.CHUNK: Chunk,
    Tag.END: End,
    Tag.CANCEL: Cancel,
    Tag.PING: Ping,
    Tag.PONG: Pong,
    Tag.SHUTDOWN: Shutdown,
    Tag.BYE: Bye,
}

# Plain ints, not IntEnum members: msgpack packs them a little faster.
TAG_OF: dict[type[Message], int] = {cls: int(tag) for tag, cls in _CLASSES.items()}

# tag -> (class, array length including the tag)
_SHAPES: dict[int, tuple[type[Message], int]] = {
    int(tag): (cls, len(cls._fields) + 1) for tag, cls in _CLASSES.items()
}
_HELLO = int(Tag.HELLO)
_CHECKED = frozenset((_HELLO, int(Tag.ERROR), int(Tag.PONG)))
HAS_ID = frozenset(int(tag) for tag, cls in _CLASSES.items() if "id" in cls._fields)
_ERROR_KINDS = frozenset(kind.value for kind in ErrorKind)


# --- Decoding ---


def from_wire(obj: object) -> Message:
    """Build a message from a decoded msgpack object, checking its shape.

    *obj* is consumed: a list is reused to build the message.

    Raises:
        ProtocolError: *obj* is not a well-formed message of the family.
        ProtocolVersionMismatch: *obj* is a ``Hello`` of another protocol version.
    """
    if type(obj) is not list or not obj:
        raise ProtocolError(f"a message must be a non-empty array, got {_kind(obj)}")
    tag = obj[0]
    shape = _SHAPES.get(tag) if type(tag) is int else None
    if shape is None:
        raise ProtocolError(f"unknown message tag {tag!r}")
    cls, size = shape
    if tag == _HELLO and len(obj) > 1 and obj[1] != PROTOCOL_VERSION:
        raise ProtocolVersionMismatch(
            f"the worker speaks protocol version {obj[1]!r}, "
            f"this side speaks {PROTOCOL_VERSION}"
        )
    if len(obj) != size:
        raise ProtocolError(
            f"{cls.__name__} has {size - 1} fields, the frame carries {len(obj) - 1}"
        )
    if tag in HAS_ID and type(obj[1]) is not int:
        raise ProtocolError(f"{cls.__name__}.id must be an int, got {_kind(obj[1])}")
    del obj[0]
    msg: Message = tuple.__new__(cls, obj)
    if tag in _CHECKED:
        _check_rare(msg)
    return msg


def _check_rare(msg: Message) -> None:
    """Type-check the fields of the rare messages the parent relies on."""
    if type(msg) is Error:
        if type(msg.kind) is not str or msg.kind not in _ERROR_KINDS:
            raise ProtocolError(f"unknown error kind {msg.kind!r}")
        _expect(msg, "type", str)
        _expect(msg, "message", str)
        _expect(msg, "traceback", str)
    elif type(msg) is Pong:
        _expect(msg, "rss_bytes", int)
        _expect(msg, "in_flight", int)
    elif type(msg) is Hello:
        _expect(msg, "pid", int)
        _expect(msg, "python_version", str)
        _expect(msg, "gil_enabled", bool)
        _expect(msg, "adapter", str)
        _expect(msg, "commands", dict)
        _expect(msg, "capacity", int)
        if msg.capacity < 1:
            raise ProtocolError(f"Hello.capacity must be >= 1, got {msg.capacity}")
        for name, info in msg.commands.items():
            if (
                type(name) is not str
                or type(info) is not dict
                or type(info.get("stream")) is not bool
                or type(info.get("doc")) is not str
            ):
                raise ProtocolError(f"malformed Hello.commands entry {name!r}")


def _expect(msg: Message, field: str, kind: type) -> None:
    value = getattr(msg, field)
    if type(value) is not kind:
        raise ProtocolError(
            f"{type(msg).__name__}.{field} must be {kind.__name__}, got {_kind(value)}"
        )


def _kind(value: object) -> str:
    return type(value).__name__
