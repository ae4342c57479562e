"""The message family: tags, round trips, and the shape checks on decoding."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snakepit.exceptions import ProtocolError, ProtocolVersionMismatch
from snakepit.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Call,
    Cancel,
    Chunk,
    End,
    Error,
    ErrorKind,
    Hello,
    Ping,
    Pong,
    Reply,
    Shutdown,
    Tag,
    decode_body,
    encode,
)

# --- Strategies ---

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
ids = st.integers(min_value=0, max_value=2**64 - 1)
counts = st.integers(min_value=0, max_value=2**63 - 1)
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
keys = st.text(max_size=8) | st.integers(-1000, 1000) | st.binary(max_size=8)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=16,
)
commands = st.dictionaries(
    st.text(max_size=10),
    st.fixed_dictionaries({"stream": st.booleans(), "doc": st.text(max_size=20)}),
    max_size=4,
)
messages = st.one_of(
    st.builds(
        Hello,
        version=st.just(PROTOCOL_VERSION),
        pid=counts,
        python_version=st.text(max_size=10),
        gil_enabled=st.booleans(),
        adapter=st.text(max_size=20),
        commands=commands,
        capacity=st.integers(1, 1024),
    ),
    st.builds(
        Call,
        id=ids,
        command=st.text(max_size=10),
        args=st.dictionaries(st.text(max_size=8), values, max_size=4),
        session_id=st.none() | st.text(max_size=10),
        deadline=st.none() | st.floats(allow_nan=False),
    ),
    st.builds(Reply, id=ids, value=values),
    st.builds(
        Error,
        id=ids,
        kind=st.sampled_from([kind.value for kind in ErrorKind]),
        type=st.text(max_size=10),
        message=st.text(max_size=30),
        traceback=st.text(max_size=30),
    ),
    st.builds(Chunk, id=ids, value=values),
    st.builds(End, id=ids),
    st.builds(Cancel, id=ids),
    st.builds(Ping, id=ids),
    st.builds(Pong, id=ids, rss_bytes=counts, in_flight=counts),
    st.just(Shutdown()),
    st.just(Bye()),
)


def body_of(*items: object) -> bytes:
    body: bytes = msgpack.packb(list(items), use_bin_type=True)
    return body


# --- Tests ---


def test_tags_are_the_documented_wire_values() -> None:
    assert {tag.name: int(tag) for tag in Tag} == {
        "HELLO": 1,
        "CALL": 2,
        "REPLY": 3,
        "ERROR": 4,
        "CHUNK": 5,
        "END": 6,
        "CANCEL": 7,
        "PING": 8,
        "PONG": 9,
        "SHUTDOWN": 10,
        "BYE": 11,
    }


def test_error_kinds_are_the_documented_strings() -> None:
    assert {kind.value for kind in ErrorKind} == {
        "exception",
        "command_not_found",
        "invalid_arguments",
        "result_encoding",
        "decode",
        "shutting_down",
        "cancelled",
    }
    assert ErrorKind("exception") is ErrorKind.EXCEPTION
    assert isinstance(ErrorKind.EXCEPTION, str)  # so it packs as a plain string


def test_a_message_is_an_array_with_its_tag_first() -> None:
    frame = encode(Reply(7, {"a": 1}))
    assert msgpack.unpackb(frame[4:]) == [Tag.REPLY, 7, {"a": 1}]
    assert msgpack.unpackb(encode(Shutdown())[4:]) == [Tag.SHUTDOWN]


def test_call_defaults_to_no_session_and_no_deadline() -> None:
    call = Call(1, "add", {"a": 1})
    assert call.session_id is None
    assert call.deadline is None
    assert decode_body(encode(call)[4:]) == call


@given(messages)
def test_every_message_round_trips(msg: object) -> None:
    decoded = decode_body(encode(msg)[4:])  # type: ignore[arg-type]
    assert type(decoded) is type(msg)
    assert decoded == msg


def test_payload_types_survive_the_trip() -> None:
    value = {"bytes": b"\x00\xff", "str": "é", 1: "int key", "list": [1, (2, 3)]}
    decoded = decode_body(encode(Reply(1, value))[4:])
    assert isinstance(decoded, Reply)
    assert decoded.value == {
        "bytes": b"\x00\xff",
        "str": "é",
        1: "int key",
        "list": [1, [2, 3]],  # arrays come back as lists
    }


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({"tag": 3}, id="a map"),
        pytest.param([], id="empty array"),
        pytest.param(5, id="a scalar"),
        pytest.param([99, 1], id="unknown tag"),
        pytest.param([0], id="tag zero"),
        pytest.param(["3", 1, 2], id="string tag"),
        pytest.param([[3], 1, 2], id="array tag"),
        pytest.param([True, 1], id="bool tag"),
        pytest.param([Tag.REPLY, 1], id="too few fields"),
        pytest.param([Tag.REPLY, 1, 2, 3], id="too many fields"),
        pytest.param([Tag.SHUTDOWN, 1], id="field on an empty message"),
        pytest.param([Tag.REPLY, "1", 2], id="string id"),
        pytest.param([Tag.END, True], id="bool id"),
        pytest.param([Tag.PING, None], id="nil id"),
        pytest.param([Tag.ERROR, 1, "bogus", "T", "m", ""], id="unknown error kind"),
        pytest.param([Tag.ERROR, 1, ["exception"], "T", "m", ""], id="kind an array"),
        pytest.param([Tag.ERROR, 1, {"k": 1}, "T", "m", ""], id="kind a map"),
        pytest.param([Tag.ERROR, 1, "exception", 5, "m", ""], id="error type not str"),
        pytest.param([Tag.PONG, 1, "big", 0], id="pong rss not int"),
        pytest.param(
            [Tag.HELLO, PROTOCOL_VERSION, 1, "3", 1, "a", {}, 1], id="gil int"
        ),
        pytest.param(
            [Tag.HELLO, PROTOCOL_VERSION, 1, "3", True, "a", {}, 0], id="cap 0"
        ),
        pytest.param(
            [Tag.HELLO, PROTOCOL_VERSION, 1, "3", True, "a", {"x": {"doc": ""}}, 1],
            id="command without stream flag",
        ),
        pytest.param(
            [Tag.HELLO, PROTOCOL_VERSION, 1, "3", True, "a", {1: {}}, 1],
            id="command name not str",
        ),
    ],
)
def test_malformed_messages_are_protocol_errors(obj: object) -> None:
    with pytest.raises(ProtocolError):
        decode_body(body_of(*obj) if isinstance(obj, list) else msgpack.packb(obj))


def test_a_hello_of_another_version_is_a_version_mismatch() -> None:
    # Checked before the shape, so a future Hello with more fields still says so.
    body = body_of(Tag.HELLO, PROTOCOL_VERSION + 1, 1, "3.13", True, "a", {}, 1, "x")
    with pytest.raises(ProtocolVersionMismatch, match="version"):
        decode_body(body)


def test_call_fields_other_than_id_are_left_to_the_worker() -> None:
    # The worker answers a malformed call with an Error of kind "decode".
    decoded = decode_body(body_of(Tag.CALL, 1, 5, [1], 2, "soon", 3))
    assert decoded == Call(1, 5, [1], 2, "soon", 3)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=200).filter(lambda t: t not in set(Tag)))
def test_any_unknown_tag_is_rejected(tag: int) -> None:
    with pytest.raises(ProtocolError, match="unknown message tag"):
        decode_body(body_of(tag, 1))
