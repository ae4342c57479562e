"""Length-prefixed msgpack frames for the raw-pipe baseline, both sides.

A frame is a 4-byte big-endian length, then that many bytes of one msgpack
object: the wire format snakepit uses, with nothing else around it (no message
tags, ids, deadlines or supervision). :class:`FrameReader` reads whatever the pipe
holds and returns every complete frame; a large frame's body is read straight
into its final buffer, so 16 MiB costs no extra copy.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import msgpack

HEADER = struct.Struct(">I")
PIPE_SIZE = 1024 * 1024
_READ_SIZE = 256 * 1024
_packb = msgpack.Packer(use_bin_type=True).pack


def enlarge_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer (Linux ``F_SETPIPE_SZ``), as snakepit does:
    the baseline must not be slower for a smaller pipe. A refusal is ignored."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass


def encode(obj: Any) -> list[bytes]:
    """*obj* as a frame: ``[header, body]``, for ``os.writev`` (no concatenation)."""
    body = _packb(obj)
    return [HEADER.pack(len(body)), body]


def write_all(fd: int, parts: list[bytes]) -> None:
    """Write *parts* to the blocking *fd*, completing partial writes."""
    views = [memoryview(p) for p in parts if p]
    while views:
        written = os.writev(fd, views[:512])
        while written:
            head = views[0]
            if written >= len(head):
                written -= len(head)
                views.pop(0)
            else:
                views[0] = head[written:]
                written = 0


class FrameReader:
    """Reads frames from one pipe; :meth:`read` returns the decoded objects of
    every frame completed by one ``read`` of the pipe (possibly none)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self._body: bytearray | None = None  # a large body being read in place
        self._got = 0

    def read(self) -> list[Any] | None:
        """One read from the pipe; the objects it completed. ``None`` at EOF."""
        if self._body is not None:  # a large frame: read straight into its body
            view = memoryview(self._body)[self._got :]
            got = os.readv(self.fd, [view])
            if got == 0:
                return None
            self._got += got
            if self._got < len(self._body):
                return []
            body, self._body = self._body, None
            return [msgpack.unpackb(body, raw=False)]
        chunk = os.read(self.fd, _READ_SIZE)
        if not chunk:
            return None
        self._buffer += chunk
        return self._parse()

    def _parse(self) -> list[Any]:
        found: list[Any] = []
        buffer = self._buffer
        pos = 0
        end = len(buffer)
        with memoryview(buffer) as view:  # released before the buffer shrinks
            while end - pos >= 4:
                (size,) = HEADER.unpack_from(view, pos)
                if end - pos - 4 >= size:
                    found.append(msgpack.unpackb(view[pos + 4 : pos + 4 + size]))
                    pos += 4 + size
                    continue
                if size > _READ_SIZE:  # read the rest of this body in place
                    body = bytearray(size)
                    have = end - pos - 4
                    body[:have] = view[pos + 4 : end]
                    self._body, self._got = body, have
                    pos = end
                break
        del buffer[:pos]
        return found

    def read_one(self) -> Any:
        """Block until one object arrives (the blocking mode's read).

        Raises:
            EOFError: the pipe closed first.
        """
        while True:
            found = self.read()
            if found is None:
                raise EOFError("the raw-pipe child closed its pipe")
            if found:
                if len(found) > 1:
                    raise RuntimeError("blocking mode got more than one reply")
                return found[0]
