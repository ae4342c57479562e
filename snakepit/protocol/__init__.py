"""The wire protocol between parent and worker: frames and messages, sans-I/O.

Standard library and msgpack only; a worker imports it. See :mod:`._frames` for the
framing and msgpack options and :mod:`._messages` for the message family.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._frames import DEFAULT_MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
from ._frames import HEADER_SIZE as HEADER_SIZE
from ._frames import Frame as Frame
from ._frames import FrameDecoder as FrameDecoder
from ._frames import Undecodable as Undecodable
from ._frames import WireDecoder as WireDecoder
from ._frames import decode_body as decode_body
from ._frames import decode_header as decode_header
from ._frames import encode as encode
from ._frames import encode_call as encode_call
from ._frames import encode_frame as encode_frame
from ._frames import encode_reply as encode_reply
from ._frames import frame_size as frame_size
from ._messages import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._messages import Bye as Bye
from ._messages import Call as Call
from ._messages import Cancel as Cancel
from ._messages import Chunk as Chunk
from ._messages import End as End
from ._messages import Error as Error
from ._messages import ErrorKind as ErrorKind
from ._messages import Hello as Hello
from ._messages import Message as Message
from ._messages import Ping as Ping
from ._messages import Pong as Pong
from ._messages import Reply as Reply
from ._messages import Shutdown as Shutdown
from ._messages import Tag as Tag
from ._messages import from_wire as from_wire

__all__ = (
    "PROTOCOL_VERSION",
    "DEFAULT_MAX_FRAME_BYTES",
    "HEADER_SIZE",
    "Message",
    "Tag",
    "ErrorKind",
    "Hello",
    "Call",
    "Reply",
    "Error",
    "Chunk",
    "End",
    "Cancel",
    "Ping",
    "Pong",
    "Shutdown",
    "Bye",
    "encode",
    "encode_frame",
    "encode_call",
    "encode_reply",
    "frame_size",
    "Frame",
    "decode_header",
    "decode_body",
    "FrameDecoder",
    "WireDecoder",
    "from_wire",
    "Undecodable",
)
