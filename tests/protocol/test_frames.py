"""Framing: encode, the incremental decoder, limits and poisoning."""

from __future__ import annotations

import struct
import threading

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snakepit.exceptions import (
    ConfigError,
    FrameTooLarge,
    ProtocolError,
    SerializationError,
)
from snakepit.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER_SIZE,
    Call,
    Chunk,
    End,
    FrameDecoder,
    Message,
    Ping,
    Reply,
    Tag,
    Undecodable,
    WireDecoder,
    decode_body,
    decode_header,
    encode,
    encode_call,
    encode_frame,
    encode_reply,
    from_wire,
)

from .test_messages import messages


def frame_of(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


# --- encode ---


def test_a_frame_is_a_big_endian_length_then_the_body() -> None:
    frame = encode(Ping(1))
    assert isinstance(frame, bytes)
    (size,) = struct.unpack(">I", frame[:HEADER_SIZE])
    assert size == len(frame) - HEADER_SIZE
    assert msgpack.unpackb(frame[HEADER_SIZE:]) == [Tag.PING, 1]


def test_an_unencodable_field_is_a_serialization_error_chained_to_msgpack() -> None:
    with pytest.raises(SerializationError, match="lock") as info:
        encode(Reply(1, threading.Lock()))
    assert isinstance(info.value.__cause__, TypeError)
    assert isinstance(info.value, TypeError)  # SerializationError is a TypeError


@pytest.mark.parametrize(
    "value",
    [2**64, "\ud800", {1, 2}],
    ids=["int too large", "lone surrogate", "a set"],
)
def test_values_msgpack_refuses_are_serialization_errors(value: object) -> None:
    with pytest.raises(SerializationError):
        encode(Reply(1, value))


def test_a_self_referencing_value_is_a_serialization_error() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(SerializationError):
        encode(Reply(1, loop))


def test_only_protocol_messages_encode() -> None:
    with pytest.raises(SerializationError, match="not a protocol message"):
        encode((3, 1, 2))  # type: ignore[arg-type]


def test_a_body_over_the_limit_is_refused_before_sending() -> None:
    assert len(encode(Reply(1, b"x" * 100), max_frame_bytes=200)) > 100
    with pytest.raises(SerializationError, match="max_frame_bytes"):
        encode(Reply(1, b"x" * 300), max_frame_bytes=200)


@given(
    st.integers(0, 2**63),
    st.text(max_size=20),
    st.dictionaries(
        st.text(max_size=5), st.integers(-(2**63), 2**63) | st.binary(max_size=9)
    ),
    st.none() | st.text(max_size=8),
    st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
)
def test_encode_call_is_encode_frame_of_the_call(
    req_id: int,
    command: str,
    args: dict[str, object],
    session_id: str | None,
    meta: dict[str, str] | None,
) -> None:
    call = Call(req_id, command, args, session_id, None, meta)
    assert encode_call(req_id, command, args, session_id, meta) == encode_frame(call)


def test_encode_call_splits_a_large_body_and_refuses_what_encode_refuses() -> None:
    big = {"data": b"x" * 400_000}
    assert encode_call(1, "echo", big, None, None) == encode_frame(
        Call(1, "echo", big, None, None, None)
    )
    with pytest.raises(SerializationError, match=r"cannot encode Call: .*lock"):
        encode_call(1, "echo", {"lock": threading.Lock()}, None, None)
    with pytest.raises(SerializationError, match=r"Call encodes to .* max_frame_bytes"):
        encode_call(1, "echo", {"data": b"x" * 300}, None, None, max_frame_bytes=200)


@given(st.integers(0, 2**63), st.none() | st.text() | st.binary() | st.floats())
def test_encode_reply_is_encode_frame_of_the_reply(req_id: int, value: object) -> None:
    assert encode_reply(req_id, value) == encode_frame(Reply(req_id, value))


def test_encode_reply_splits_a_large_body_and_refuses_what_encode_refuses() -> None:
    big = b"x" * 400_000
    assert encode_reply(1, big) == encode_frame(Reply(1, big))
    with pytest.raises(SerializationError, match=r"cannot encode Reply: .*lock"):
        encode_reply(1, threading.Lock())
    with pytest.raises(
        SerializationError, match=r"Reply encodes to .* max_frame_bytes"
    ):
        encode_reply(1, b"x" * 300, max_frame_bytes=200)


def test_encoding_is_thread_safe() -> None:
    results: list[bool] = []

    def work(n: int) -> None:
        results.append(
            all(
                decode_body(encode(Reply(i, [n] * i))[4:]) == Reply(i, [n] * i)
                for i in range(300)
            )
        )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [True] * 4


# --- FrameDecoder: the happy path ---


@given(st.lists(messages, max_size=8), st.lists(st.integers(0, 4000), max_size=12))
def test_messages_survive_any_split_of_the_stream(
    msgs: list[Message], cuts: list[int]
) -> None:
    stream = b"".join(encode(msg) for msg in msgs)
    decoder = FrameDecoder()
    decoded: list[Message] = []
    for piece in split_at(stream, cuts):
        decoded += decoder.feed(piece)
    assert decoded == msgs
    assert decoder.needed == HEADER_SIZE  # nothing left over


def test_byte_by_byte_feeding_works() -> None:
    msgs: list[Message] = [Call(1, "add", {"a": 1}), End(2), Reply(3, "x" * 300)]
    decoder = FrameDecoder()
    decoded: list[Message] = []
    for byte in b"".join(encode(msg) for msg in msgs):
        decoded += decoder.feed(bytes([byte]))
    assert decoded == msgs


def test_feed_accepts_any_bytes_like_object() -> None:
    frame = encode(Ping(5))
    assert FrameDecoder().feed(bytearray(frame)) == [Ping(5)]
    assert FrameDecoder().feed(memoryview(frame)) == [Ping(5)]
    decoder = FrameDecoder()
    assert decoder.feed(memoryview(frame)[:3]) == []
    assert decoder.feed(bytearray(frame[3:])) == [Ping(5)]
    assert decoder.feed(b"") == []


def test_many_frames_in_one_feed() -> None:
    frame = encode(Reply(1, {"a": 1}))
    assert FrameDecoder().feed(frame * 20_000) == [Reply(1, {"a": 1})] * 20_000


def test_needed_counts_the_bytes_missing_from_the_current_frame() -> None:
    frame = encode(Reply(1, b"x" * 1000))
    decoder = FrameDecoder()
    assert decoder.needed == 4
    decoder.feed(frame[:2])
    assert decoder.needed == 2
    decoder.feed(frame[2:10])
    assert decoder.needed == len(frame) - 10
    assert decoder.feed(frame[10:] + frame[:1]) == [Reply(1, b"x" * 1000)]
    assert decoder.needed == 3


# --- FrameDecoder: limits and errors ---


@pytest.mark.parametrize("limit", [0, -1, 2**32, 1.5, True])
def test_the_limit_must_fit_a_header(limit: object) -> None:
    with pytest.raises(ConfigError):
        FrameDecoder(limit)  # type: ignore[arg-type]


def test_default_limit() -> None:
    assert FrameDecoder().max_frame_bytes == DEFAULT_MAX_FRAME_BYTES == 64 * 2**20


def test_a_too_large_header_is_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=1000)
    with pytest.raises(FrameTooLarge, match="1001"):
        decoder.feed(struct.pack(">I", 1001))  # the header alone
    assert decoder.is_poisoned


def test_a_four_gib_header_is_refused_without_allocating() -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(b"\xff\xff\xff\xff")


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    frame = encode(Reply(1, b"x" * 100))
    limit = len(frame) - HEADER_SIZE
    assert FrameDecoder(max_frame_bytes=limit).feed(frame) == [Reply(1, b"x" * 100)]
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_frame_bytes=limit - 1).feed(frame)


def test_decode_header() -> None:
    assert decode_header(struct.pack(">I", 10)) == 10
    with pytest.raises(FrameTooLarge):
        decode_header(struct.pack(">I", 11), max_frame_bytes=10)
    with pytest.raises(ProtocolError):
        decode_header(b"\x00\x00\x01")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty body"),
        pytest.param(b"\xc1", id="reserved byte"),
        pytest.param(b"\x92\x08", id="truncated array"),
        pytest.param(msgpack.packb([8, 1]) + b"\x00", id="trailing data"),
        pytest.param(b"\x91" * 3000, id="nesting bomb"),
        pytest.param(b"\xdf\xff\xff\xff\xff", id="map claiming 2**32 entries"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="array claiming 2**32 items"),
        pytest.param(b"\xdb\xff\xff\xff\xff", id="str claiming 4 GiB"),
        pytest.param(b"\x93\x03\x01\xa2\xff\xfe", id="invalid utf-8"),
        pytest.param(b"\x92\x81\x91\x01\x02\x01", id="array as map key, no tag"),
        pytest.param(b"\x92\x08\x81\x91\x01\x02", id="array as map key, no id"),
        pytest.param(msgpack.packb([99, 1]), id="unknown tag"),
    ],
)
def test_bad_bodies_are_protocol_errors_and_poison_the_decoder(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_body(body)
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError) as bad:
        decoder.feed(encode(Ping(1)) + frame_of(body) + encode(Ping(2)))
    assert bad.value.decoded == (Ping(1),)  # the good frame before it is kept
    assert decoder.is_poisoned
    with pytest.raises(ProtocolError, match="poisoned") as info:
        decoder.feed(encode(Ping(3)))  # a good frame does not help
    assert isinstance(info.value.__cause__, ProtocolError)
    assert info.value.decoded == ()


@pytest.mark.parametrize(
    "msg",
    [
        Reply(7, {(1, 2): "tuple key"}),
        Chunk(7, [{(1,): 1}]),
        Call(7, "echo", {"payload": {(1, 2): 3}}),
    ],
    ids=["reply", "chunk", "call"],
)
def test_a_message_that_is_not_python_values_fails_alone(msg: Message) -> None:
    # RELIABILITY row 18: one well-formed msgpack object whose map is keyed by
    # an array; the framing is in sync, so only that message is lost
    frame = encode(msg)
    with pytest.raises(ProtocolError, match="unhashable"):
        decode_body(frame[HEADER_SIZE:])
    decoder = FrameDecoder()
    out = decoder.feed(encode(Ping(1)) + frame + encode(Ping(2)))
    tag = {Reply: Tag.REPLY, Chunk: Tag.CHUNK, Call: Tag.CALL}[type(msg)]
    assert out[0] == Ping(1) and out[2] == Ping(2)
    assert out[1] == Undecodable(tag, 7, "TypeError: unhashable type: 'list'")
    assert not decoder.is_poisoned
    assert decoder.feed(frame[:3]) == []  # and across feeds
    assert decoder.feed(frame[3:]) == [out[1]]


@given(st.binary(max_size=64))
def test_garbage_never_raises_anything_but_protocol_error(body: bytes) -> None:
    try:
        decode_body(body)
    except ProtocolError:
        pass


@given(
    messages,
    st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1),
)
def test_corrupted_messages_raise_only_protocol_error(
    msg: Message, edits: list[tuple[int, int]]
) -> None:
    body = bytearray(encode(msg)[HEADER_SIZE:])
    for position, byte in edits:
        body[position % len(body)] = byte
    try:
        decode_body(bytes(body))
    except ProtocolError:
        pass


@given(st.binary(min_size=1, max_size=256))
def test_a_garbage_stream_never_crashes_the_decoder(stream: bytes) -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    try:
        decoder.feed(stream)
        decoder.feed(stream)
    except ProtocolError:
        assert decoder.is_poisoned


# --- WireDecoder: the same frames, as their wire arrays ---


@given(st.lists(messages, max_size=8), st.lists(st.integers(0, 4000), max_size=12))
def test_the_wire_decoder_yields_the_arrays_of_the_messages(
    msgs: list[Message], cuts: list[int]
) -> None:
    stream = b"".join(encode(msg) for msg in msgs)
    decoder = WireDecoder()
    wires: list[object] = []
    for piece in split_at(stream, cuts):
        wires += decoder.feed(piece)
    assert all(type(wire) is list for wire in wires)
    assert [from_wire(wire) for wire in wires] == msgs


def test_the_wire_decoder_checks_the_framing_not_the_message() -> None:
    decoder = WireDecoder()
    not_a_message = msgpack.packb([3, "not an id", None])
    assert decoder.feed(frame_of(not_a_message)) == [[3, "not an id", None]]
    frame = encode(Reply(7, {(1, 2): "tuple key"}))  # fails alone, as it did
    assert decoder.feed(frame) == [
        Undecodable(Tag.REPLY, 7, "TypeError: unhashable type: 'list'")
    ]
    with pytest.raises(ProtocolError) as bad:
        decoder.feed(encode(Ping(1)) + frame_of(b"\xc1") + encode(Ping(2)))
    assert bad.value.decoded == ([Tag.PING, 1],)
    assert decoder.is_poisoned
    with pytest.raises(FrameTooLarge):
        WireDecoder(max_frame_bytes=10).feed(encode(Reply(1, b"x" * 20)))


def test_a_wire_decoder_keeps_only_well_formed_messages_of_its_tag_as_arrays() -> None:
    decoder = WireDecoder(keep=Tag.REPLY)
    stream = encode(Reply(7, "x")) + encode(Ping(1)) + encode(End(8))
    assert decoder.feed(stream) == [[Tag.REPLY, 7, "x"], Ping(1), End(8)]
    frame = encode(Reply(7, {(1, 2): "tuple key"}))  # fails alone, as it did
    assert decoder.feed(frame) == [
        Undecodable(Tag.REPLY, 7, "TypeError: unhashable type: 'list'")
    ]
    not_a_message = frame_of(msgpack.packb([Tag.REPLY, "not an id", None]))
    with pytest.raises(ProtocolError, match=r"Reply\.id") as bad:
        decoder.feed(encode(Ping(2)) + not_a_message)
    assert bad.value.decoded == (Ping(2),)
    assert decoder.is_poisoned
