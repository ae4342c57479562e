"""Length-prefixed msgpack frames, sans-I/O: :func:`encode` and :class:`FrameDecoder`.

A frame is a 4-byte big-endian unsigned length followed by exactly that many bytes
holding one msgpack object: the message array ``[tag, *fields]``.

msgpack options, the same on both sides:

- encode with ``use_bin_type=True``: ``bytes`` travel as bin and ``str`` as str, so
  each comes back as itself;
- decode with ``raw=False`` (str is UTF-8 text) and ``strict_map_key=False``, so a
  map keyed by ints (``{1: "a"}``) round-trips. A map keyed by an array (a Python
  dict keyed by tuples) still cannot be decoded: ``use_list=True`` makes arrays
  lists, which are unhashable. Such a frame is still one well-formed msgpack
  object, so the stream stays in sync: :class:`FrameDecoder` yields an
  :class:`Undecodable` in its place, naming the message's tag and id, and carries
  on (the receiver fails that one request, never the channel);
- decoding is bounded: the frame length is checked against ``max_frame_bytes``
  before the body is buffered, and msgpack's own limits (string, bin, array, map
  lengths and nesting depth) are derived from the body's size.

Any other decode error is never resumed from: :class:`FrameDecoder` is poisoned by
the first one and every later :meth:`~FrameDecoder.feed` raises.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

import msgpack

from snakepit.exceptions import (
    ConfigError,
    FrameTooLarge,
    ProtocolError,
    SerializationError,
)

from ._messages import _SHAPES, HAS_ID, TAG_OF, Message, Tag, from_wire

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
"""The default limit on a frame's body, in bytes (64 MiB).

.. versionadded:: 0.1
"""

HEADER_SIZE = 4
"""The size of a frame header: a big-endian unsigned 32-bit body length.

.. versionadded:: 0.1
"""

_LARGEST_FRAME = 2**32 - 1
_HEADER = struct.Struct(">I")
_pack_header = _HEADER.pack
_unpack_header_from = _HEADER.unpack_from
_unpackb = msgpack.unpackb
_CALL = int(Tag.CALL)
_REPLY = int(Tag.REPLY)
# msgpack.Packer keeps an internal buffer, so each thread gets its own: one
# Packer per thread is faster than packb() and safe without the GIL.
_packers = threading.local()


def encode(msg: Message, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """Encode *msg* as one complete frame (header and body in one ``bytes``).

    One object means one ``write`` for a small frame.

    Args:
        msg: a message of the :mod:`snakepit.protocol` family.
        max_frame_bytes: the largest body the receiver accepts.

    Returns:
        The frame.

    Raises:
        SerializationError: *msg* is not a message, msgpack cannot encode one of
            its fields, or the body would exceed *max_frame_bytes*. Nothing was
            sent, so the channel is still good. (The receiver's limit is checked
            here, on the sending side, because a frame it would refuse poisons
            the channel.)

    .. versionadded:: 0.1
    """
    frame = _message_frame(msg, max_frame_bytes)
    return frame if isinstance(frame, bytes) else frame[0] + frame[1]


def _message_frame(msg: Message, max_frame_bytes: int) -> Frame:
    tag = TAG_OF.get(type(msg))
    if tag is None:
        raise SerializationError(f"not a protocol message: {type(msg).__name__}")
    return _frame((tag, *msg), type(msg).__name__, max_frame_bytes)


def _frame(fields: tuple[object, ...], name: str, max_frame_bytes: int) -> Frame:
    """The frame of a message's wire *fields* (its tag first), as
    :func:`encode_frame` returns it; *name* is the message's, for errors."""
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    try:
        body: bytes = packer.pack(fields)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"cannot encode {name}: {exc}") from exc
    size = len(body)
    if size > max_frame_bytes:
        raise SerializationError(
            f"{name} encodes to {size} bytes, more than "
            f"max_frame_bytes ({max_frame_bytes})"
        )
    if size >= LARGE_BODY:
        return _pack_header(size), body
    return _pack_header(size) + body


Frame = bytes | tuple[bytes, bytes]
"""A frame as :func:`encode_frame` returns it: one ``bytes``, or, for a large
body, ``(header, body)`` to be written with one ``os.writev``, so that the body is
never copied after a ``header + body``.

.. versionadded:: 0.1
"""

#: Bodies at least this large are kept apart from their header.
LARGE_BODY = 256 * 1024


def encode_frame(msg: Message, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    """:func:`encode`, but a large body comes back as ``(header, body)``.

    Raises:
        SerializationError: as :func:`encode`.

    .. versionadded:: 0.1
    """
    return _message_frame(msg, max_frame_bytes)


def encode_call(
    req_id: int,
    command: str,
    args: dict[str, object],
    session_id: str | None,
    meta: dict[str, str] | None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> Frame:
    """``encode_frame(Call(req_id, command, args, session_id, None, meta))``
    without building the :class:`Call`: the parent encodes one per request, and
    the tuple and the lookups :func:`encode_frame` makes for any message cost as
    much as packing a small call.

    Raises:
        SerializationError: as :func:`encode`.

    .. versionadded:: 0.1
    """
    return _frame(
        (_CALL, req_id, command, args, session_id, None, meta), "Call", max_frame_bytes
    )


def encode_reply(
    req_id: int, value: object, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> Frame:
    """``encode_frame(Reply(req_id, value))`` without building the
    :class:`Reply`: a worker encodes one per call.

    Raises:
        SerializationError: as :func:`encode`.

    .. versionadded:: 0.1
    """
    return _frame((_REPLY, req_id, value), "Reply", max_frame_bytes)


def frame_size(frame: Frame) -> int:
    """The bytes *frame* puts on the wire."""
    if type(frame) is tuple:
        return len(frame[0]) + len(frame[1])
    return len(frame)


def decode_header(header: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> int:
    """Return the body length announced by a 4-byte frame *header*.

    For callers that read the header and then the body themselves; check the
    result before reading (or allocating) the body.

    Raises:
        ProtocolError: *header* is not :data:`HEADER_SIZE` bytes long.
        FrameTooLarge: the length exceeds *max_frame_bytes*.

    .. versionadded:: 0.1
    """
    if len(header) != HEADER_SIZE:
        raise ProtocolError(f"a frame header is 4 bytes, got {len(header)}")
    (size,) = _HEADER.unpack(header)
    if size > max_frame_bytes:
        raise _too_large(size, max_frame_bytes)
    return int(size)


class Undecodable(NamedTuple):
    """What :class:`FrameDecoder` yields for a frame that is one well-formed
    msgpack object but not a Python value (a map keyed by an array).

    Not a wire message: the receiver answers or fails request *id* alone, and
    the channel stays good, since the frame's length prefix was right.

    .. versionadded:: 0.1
    """

    tag: int
    """The message's tag, e.g. :attr:`Tag.CALL`."""
    id: int
    """The request id the message carried."""
    reason: str
    """msgpack's complaint, e.g. ``"TypeError: unhashable type: 'list'"``."""


def decode_body(body: bytes | bytearray | memoryview) -> Message:
    """Decode one frame *body* (without its header) into a message.

    Raises:
        ProtocolError: the body is not exactly one msgpack object, or not a
            well-formed message (chained to msgpack's error, if any).
        ProtocolVersionMismatch: the body is a ``Hello`` of another version.

    .. versionadded:: 0.1
    """
    try:
        obj = _unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, TypeError) as exc:
        raise _undecodable(body, exc) from exc
    return from_wire(obj)


def _undecodable(body: bytes | bytearray | memoryview, exc: Exception) -> ProtocolError:
    return ProtocolError(
        f"undecodable frame body of {len(body)} bytes: {type(exc).__name__}: {exc}"
    )


def _wire_decoding(keep: int | None, size: int) -> Callable[[memoryview], object]:
    """How :class:`WireDecoder` decodes one body, salvaging what can be: to its
    msgpack object as it came if *keep* is None, else a well-formed message
    tagged *keep* (an array of *size* items) to its wire array and any other to
    its message (checked by :func:`from_wire`). A closure, not a partial: the
    decoder calls it once per frame, and a call through ``functools.partial``
    costs a fresh interpreter frame from C."""

    def decode(body: memoryview) -> object:
        try:
            wire = _unpackb(body, raw=False, strict_map_key=False)
        except (ValueError, TypeError) as exc:
            salvaged = _salvage(body, exc)
            if salvaged is None:
                raise _undecodable(body, exc) from exc
            return salvaged
        finally:
            body.release()  # the decoder's buffer may be resized next
        if keep is None or (
            type(wire) is list
            and len(wire) == size
            and wire[0] == keep
            and type(wire[1]) is int
        ):
            return wire
        return from_wire(wire)

    return decode


_decode_wire = _wire_decoding(None, -1)


def _decode_frame(body: memoryview) -> Message | Undecodable:
    """Decode one body for :class:`FrameDecoder`: :func:`_decode_wire`, then
    :func:`from_wire`."""
    wire = _decode_wire(body)
    return wire if type(wire) is Undecodable else from_wire(wire)


def _salvage(
    body: bytes | bytearray | memoryview, cause: BaseException | None
) -> Undecodable | None:
    """Return an :class:`Undecodable` if *body* is one complete msgpack message
    array with a tag and an int id that only failed to become Python values
    (arrays as map keys decode as tuples with ``use_list=False``); else None."""
    if type(cause) is not TypeError:
        return None  # garbage bytes, extra data, a limit: not one object
    try:
        obj = _unpackb(body, raw=False, strict_map_key=False, use_list=False)
    except (ValueError, TypeError):
        return None
    if (
        type(obj) is tuple
        and len(obj) >= 2
        and type(obj[0]) is int
        and obj[0] in HAS_ID
        and type(obj[1]) is int
    ):
        return Undecodable(obj[0], obj[1], f"{type(cause).__name__}: {cause}")
    return None


def _too_large(size: int, limit: int) -> FrameTooLarge:
    return FrameTooLarge(
        f"frame announces {size} bytes, more than max_frame_bytes ({limit})"
    )


_Item = TypeVar("_Item")


class _Decoder(Generic[_Item]):
    """Split a byte stream into frames and decode each body with *decode*
    (what :class:`FrameDecoder` and :class:`WireDecoder` share)."""

    __slots__ = ("_buf", "_decode", "_error", "_max")

    def __init__(
        self, max_frame_bytes: int, decode: Callable[[memoryview], _Item]
    ) -> None:
        if (
            type(max_frame_bytes) is not int
            or not 1 <= max_frame_bytes <= _LARGEST_FRAME
        ):
            raise ConfigError(
                f"max_frame_bytes must be an int in [1, 2**32 - 1], "
                f"got {max_frame_bytes!r}"
            )
        self._max = max_frame_bytes
        self._decode = decode
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame body this decoder accepts."""
        return self._max

    @property
    def is_poisoned(self) -> bool:
        """Whether an earlier error made this decoder unusable."""
        return self._error is not None

    @property
    def needed(self) -> int:
        """How many more bytes complete the frame being buffered (at least 1).

        A reader can use it to size its next read for a large frame.
        """
        buffered = len(self._buf)
        if buffered < HEADER_SIZE:
            return HEADER_SIZE - buffered
        (size,) = _unpack_header_from(self._buf)
        return max(1, HEADER_SIZE + int(size) - buffered)

    def feed(self, data: bytes | bytearray | memoryview) -> list[_Item]:
        """Add *data* to the stream and return the messages it completed, in order.

        A frame that holds one msgpack message whose fields are not Python values
        comes back as an :class:`Undecodable` in its place; the decoder is not
        poisoned by it.

        Raises:
            FrameTooLarge: a header announced more than ``max_frame_bytes``.
            ProtocolError: a body was not a valid message, or the decoder was
                already poisoned. Its ``decoded`` holds the messages this call
                completed before the bad frame.
        """
        if self._error is not None:
            raise ProtocolError(
                "the channel is poisoned by an earlier protocol error"
            ) from self._error
        buf = self._buf
        source: bytes | bytearray | memoryview
        if buf:
            buf += data
            source = buf
        else:
            source = data
        end = len(source)
        if end < HEADER_SIZE:
            if source is not buf:
                buf += data
            return []
        messages: list[_Item] = []
        pos = 0
        limit = self._max
        decode = self._decode
        try:
            with memoryview(source) as view:
                while end - pos >= HEADER_SIZE:
                    (size,) = _unpack_header_from(view, pos)
                    if size > limit:
                        raise _too_large(size, limit)
                    stop = pos + HEADER_SIZE + size
                    if stop > end:
                        break
                    messages.append(decode(view[pos + HEADER_SIZE : stop]))
                    pos = stop
                if source is not buf and pos < end:
                    buf += view[pos:]
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            exc.decoded = tuple(messages)
            raise
        if source is buf and pos:
            del buf[:pos]
        return messages


class FrameDecoder(_Decoder[Message | Undecodable]):
    """Turn a byte stream into messages, incrementally and without I/O.

    Feed it whatever a read returned; it returns the messages completed so far and
    keeps the rest. Work is linear in the bytes fed: complete frames are decoded
    straight from the caller's buffer, and the consumed prefix of the internal
    buffer is dropped once per feed.

    The first error poisons the decoder (the stream can no longer be trusted to be
    in sync): that feed raises, and so does every later one. Messages completed
    earlier in the failing feed are discarded with it.

    Args:
        max_frame_bytes: the largest body accepted, checked against each header
            before the body is buffered.

    Raises:
        ConfigError: *max_frame_bytes* is not between 1 and ``2**32 - 1``.

    .. versionadded:: 0.1
    """

    __slots__ = ()

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes, _decode_frame)


class WireDecoder(_Decoder[object]):
    """A :class:`FrameDecoder` for a reader that handles its most common message
    from the wire array, since building a message object costs as much as
    unpacking it.

    Args:
        max_frame_bytes: as for :class:`FrameDecoder`.
        keep: the tag of that message: a well-formed one comes back as its wire
            array (a ``list``, tag first; the id checked, the other fields left
            to the reader), any other frame as its message or
            :class:`Undecodable`, checked as :class:`FrameDecoder` checks it.
            Without *keep*, each frame's msgpack object comes back as it came:
            the framing is checked, not the message.

    .. versionadded:: 0.1
    """

    __slots__ = ()

    def __init__(
        self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, *, keep: Tag | None = None
    ) -> None:
        size = -1 if keep is None else _SHAPES[keep][1]
        tag = None if keep is None else int(keep)
        super().__init__(max_frame_bytes, _wire_decoding(tag, size))
