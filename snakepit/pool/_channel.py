"""The parent's ends of a worker's two pipes: ordered frame writes, callback reads.

This is the hot path of every call, so it avoids what costs more than the pipe:

- :class:`FrameWriter` writes a frame with one ``os.write`` from the caller's own
  task, with no lock and no await. Only what the pipe does not take at once goes to
  a backlog of memoryviews (no copy of a large payload), flushed in order as the
  pipe drains by a task the writer starts only then (most workers never fill
  their pipe, and a task per worker is a cost at every pool's start). Frames
  never interleave, because a frame is only written directly when the backlog
  is empty. While *corked* (the
  parent dispatching a batch of replies, each of which may send the worker its
  next call), frames collect in the backlog and go out in one ``os.writev``, which
  also wakes the worker once for all of them.
- :func:`read_pipe` hands every chunk read from the reply pipe to a callback. On
  asyncio it uses the loop's pipe transport, whose reader stays registered and
  calls back from the selector loop, so no task wakes up to read; elsewhere (trio)
  it loops on ``wait_readable``.
- :func:`watch_pipe` does the same for a worker's stdout and stderr, without a
  task of its own on asyncio (the loop calls back), so a worker costs the parent
  no task for its logs.

Both pipes are made large (:data:`PIPE_SIZE`) where Linux allows, so a big payload
crosses in few system calls.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from snakepit.protocol import Frame

__all__ = (
    "PIPE_SIZE",
    "BrokenChannel",
    "FrameWriter",
    "enlarge_pipe",
    "read_pipe",
    "watch_pipe",
)

PIPE_SIZE = 1024 * 1024
"""The pipe buffer asked for (Linux ``F_SETPIPE_SZ``; 1 MiB is the default
``/proc/sys/fs/pipe-max-size``). Where refused, the pipe keeps its size."""

_READ_SIZE = 256 * 1024
#: A log pipe is read this much at a time.
_LOG_READ_SIZE = 64 * 1024
#: Most bytes :func:`watch_pipe`'s stop still reads from a pipe that has them.
_LOG_DRAIN_LIMIT = 1024 * 1024
#: Most buffers handed to one ``os.writev`` (Linux's IOV_MAX is 1024).
_MAX_IOV = 512


def enlarge_pipe(fd: int) -> None:
    """Ask for a :data:`PIPE_SIZE` buffer on the pipe *fd*; ignore a refusal."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or over the limit: a smaller pipe still works


class BrokenChannel(Exception):
    """The pipe can no longer be written (the worker closed it, or it is closed).

    Carries the ``OSError`` as its cause, if there was one.
    """


class FrameWriter:
    """Write whole frames to a non-blocking pipe, in order, without waiting.

    Args:
        fd: the pipe's write end, non-blocking. The writer owns it from now on:
            :meth:`close` closes it.
        on_broken: called once, with the error, when a write fails (the reader of
            the pipe is gone). Must not raise.
        spawn: starts a task (``TaskGroup.start_soon``): the writer starts one to
            flush its backlog whenever the pipe did not take a frame whole, which
            ends once the backlog is written, or the pipe is closed or broken.
    """

    __slots__ = (
        "_backlog",
        "_broken",
        "_closed",
        "_corked",
        "_fd",
        "_flushing",
        "_on_broken",
        "_spawn",
    )

    def __init__(
        self,
        fd: int,
        on_broken: Callable[[OSError], None],
        spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], object],
    ) -> None:
        self._fd = fd
        self._on_broken = on_broken
        self._spawn = spawn
        self._backlog: collections.deque[bytes | memoryview] = collections.deque()
        self._flushing = False  # a task flushes the backlog
        self._broken: OSError | None = None
        self._closed = False
        self._corked = False

    @property
    def backlog_bytes(self) -> int:
        """Bytes accepted by :meth:`write` and not yet in the pipe."""
        return sum(len(view) for view in self._backlog)

    def write(self, frame: Frame) -> None:
        """Send *frame* now if the pipe takes it, else queue the rest, written
        as the pipe drains. Never blocks and never awaits.

        Raises:
            BrokenChannel: the pipe is closed or broken; nothing was queued.
        """
        if self._closed or self._broken is not None:
            raise BrokenChannel("the request pipe is closed") from self._broken
        if self._backlog or self._corked:
            if isinstance(frame, bytes):
                self._backlog.append(frame)
            else:
                self._backlog.extend(frame)
            return
        parts: tuple[bytes, ...] = frame if isinstance(frame, tuple) else (frame,)
        try:
            if len(parts) == 1:
                written = os.write(self._fd, parts[0])
            else:
                written = os.writev(self._fd, parts)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._break(exc)
            raise BrokenChannel(f"the request pipe is broken ({exc})") from exc
        for part in parts:
            if written >= len(part):
                written -= len(part)
                continue
            self._backlog.append(memoryview(part)[written:])
            written = 0
        if self._backlog:
            self._flush_later()

    def cork(self) -> None:
        """Hold the frames written from now on until :meth:`uncork`."""
        self._corked = True

    def uncork(self) -> None:
        """Write the frames held since :meth:`cork` (one ``os.writev`` if the
        pipe takes them); the rest is written as the pipe drains. Never raises:
        a broken pipe is reported to ``on_broken``."""
        self._corked = False
        if (
            self._backlog
            and not self._closed
            and self._broken is None
            and self._flush()
            and self._backlog
        ):
            self._flush_later()  # the pipe is full

    def _flush_later(self) -> None:
        """Have a task write the backlog as the pipe drains, unless one does."""
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush_as_it_drains)

    async def _flush_as_it_drains(self) -> None:
        """Shielded: a frame accepted is written unless the pipe is closed or
        breaks first, even while the task group it was started in is being
        cancelled (a ``Shutdown`` sent as a pool stops)."""
        try:
            with anyio.CancelScope(shield=True):
                while self._backlog and not self._closed and self._broken is None:
                    try:
                        await anyio.wait_writable(self._fd)
                    except (anyio.ClosedResourceError, OSError):
                        return  # closed under us: close() dropped the backlog
                    if not self._flush():
                        return
        finally:
            self._flushing = False  # no await since the backlog was seen empty

    def _flush(self) -> bool:
        """Write as much of the backlog as the pipe takes; False once broken."""
        backlog = self._backlog
        try:
            written = os.writev(
                self._fd, [backlog[i] for i in range(min(len(backlog), _MAX_IOV))]
            )
        except BlockingIOError:
            return True
        except OSError as exc:
            self._break(exc)
            return False
        while written:
            head = backlog[0]
            if written >= len(head):
                written -= len(head)
                backlog.popleft()
            else:
                backlog[0] = memoryview(head)[written:]  # never copied
                written = 0
        return True

    def _break(self, exc: OSError) -> None:
        if self._broken is None:
            self._broken = exc
            self._backlog.clear()
            self._on_broken(exc)

    def close(self) -> None:
        """Drop the backlog and close the pipe (the worker reads end of file)."""
        if self._closed:
            return
        self._closed = True
        self._backlog.clear()
        anyio.notify_closing(self._fd)
        os.close(self._fd)


async def read_pipe(fd: int, on_data: Callable[[bytes], None]) -> None:
    """Call *on_data* with each chunk read from the pipe *fd* until end of file.

    *on_data* runs from the event loop (on asyncio, straight from the selector
    loop's callback), so it must not block or raise. *fd* is not closed.

    Raises:
        OSError: the read failed.
    """
    if _on_asyncio():
        await _read_pipe_asyncio(fd, on_data)
        return
    while True:
        await anyio.wait_readable(fd)
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            continue
        if not data:
            return
        on_data(data)


def _on_asyncio() -> bool:
    """Whether this task runs on an asyncio loop (anyio no longer needs sniffio,
    so neither do we)."""
    return asyncio._get_running_loop() is not None


class _PipeReader(asyncio.Protocol):
    """What :func:`read_pipe` reads with on asyncio: a transport's callbacks."""

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        ended: asyncio.Future[Exception | None],
        lost: asyncio.Event,
    ) -> None:
        self._on_data = on_data
        self._ended = ended
        self._lost = lost

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def eof_received(self) -> None:
        return None  # the transport closes and reports connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost.set()
        if not self._ended.done():
            self._ended.set_result(exc)


async def _read_pipe_asyncio(fd: int, on_data: Callable[[bytes], None]) -> None:
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Exception | None] = loop.create_future()
    lost = asyncio.Event()  # the transport let go of (and closed) its fd
    # The transport gets a duplicate it may close as it likes (uvloop closes the
    # fd itself, whatever the file object says); *fd* stays the caller's.
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: _PipeReader(on_data, ended, lost), pipe
        )
    except BaseException:
        pipe.close()
        raise
    try:
        exc = await ended
    finally:
        transport.close()
        with anyio.CancelScope(shield=True):
            await lost.wait()  # one loop turn: no fd outlives this call
    if exc is not None:
        raise exc if isinstance(exc, OSError) else OSError(str(exc))


def watch_pipe(
    fd: int,
    on_data: Callable[[bytes], None],
    on_end: Callable[[], None],
    spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], object],
) -> Callable[[], None]:
    """Call *on_data* with each chunk read from the non-blocking pipe *fd*, and
    *on_end* once: at end of file, at a read error, or at the returned stop.

    On asyncio the loop calls back (``add_reader``), so no task is spent on it;
    elsewhere (trio) a task started with *spawn* (a task group's ``start_soon``)
    reads. The callbacks run in the event loop and must not block or raise.

    The returned stop first reads what the pipe holds already (up to 1 MiB: a
    worker's last lines, written as it exited), then stops watching; call it
    before *fd* is closed. *fd* stays the caller's.
    """
    watch = _PipeWatch(fd, on_data, on_end)
    loop = asyncio._get_running_loop()
    if loop is not None:
        loop.add_reader(fd, watch.on_readable)
        watch.unregister = lambda: loop.remove_reader(fd)
    else:
        spawn(watch.pump)
    return watch.stop


class _PipeWatch:
    __slots__ = ("_ended", "_fd", "_on_data", "_on_end", "unregister")

    def __init__(
        self, fd: int, on_data: Callable[[bytes], None], on_end: Callable[[], None]
    ) -> None:
        self._fd = fd
        self._on_data = on_data
        self._on_end = on_end
        self._ended = False
        self.unregister: Callable[[], object] | None = None

    def _read(self) -> bool | None:
        """Read once: True if data came (and was handed on), None if the pipe
        is empty for now, False at end of file or error."""
        try:
            data = os.read(self._fd, _LOG_READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return False
        if not data:
            return False
        self._on_data(data)
        return True

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self.unregister is not None:
                self.unregister()
            self._on_end()

    def on_readable(self) -> None:
        if self._read() is False:
            self._end()

    async def pump(self) -> None:
        try:
            while not self._ended:
                await anyio.wait_readable(self._fd)
                if self._read() is False:
                    break
        except (anyio.ClosedResourceError, OSError):
            pass
        finally:
            self._end()

    def stop(self) -> None:
        if self._ended:
            return
        for _ in range(_LOG_DRAIN_LIMIT // _LOG_READ_SIZE):
            if not self._read():
                break
        self._end()
