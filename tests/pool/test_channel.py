"""The parent's pipe ends: ordered frame writes with a backlog, callback reads."""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio
import pytest

from snakepit.pool._channel import BrokenChannel, FrameWriter, read_pipe, watch_pipe
from snakepit.protocol import Reply, encode, encode_frame, frame_size

pytestmark = pytest.mark.anyio


def _no_task(flush: object) -> None:
    pytest.fail("the writer started a task, with nothing left to write")


def test_a_large_body_is_kept_apart_from_its_header() -> None:
    small, large = Reply(1, b"x" * 10), Reply(2, b"y" * (1 << 20))
    assert encode_frame(small) == encode(small)
    header, body = encode_frame(large)
    assert header + body == encode(large)
    assert frame_size((header, body)) == len(encode(large))


async def test_frames_arrive_whole_and_in_order_when_the_pipe_is_full() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    frames = [encode_frame(Reply(i, bytes([i]) * (300_000 + i))) for i in range(6)]
    frames.insert(3, encode_frame(Reply(99, "small")))
    expected = b"".join(f if isinstance(f, bytes) else f[0] + f[1] for f in frames)
    received = bytearray()
    complete = threading.Event()  # every byte has left the writer

    def drain() -> None:
        while chunk := os.read(read_fd, 65536):
            received.extend(chunk)
            if len(received) == len(expected):
                complete.set()

    broken: list[OSError] = []
    reader = threading.Thread(target=drain)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            writer = FrameWriter(write_fd, broken.append, tg.start_soon)
            for frame in frames:  # far more than a pipe holds: most queue up
                writer.write(frame)
            assert writer.backlog_bytes > 0
            reader.start()
            assert await anyio.to_thread.run_sync(complete.wait, 30)
            assert writer.backlog_bytes == 0
            writer.close()
        await anyio.to_thread.run_sync(reader.join)
    os.close(read_fd)
    assert bytes(received) == expected
    assert broken == []


async def test_the_writer_runs_a_task_only_while_the_pipe_is_full() -> None:
    """No task per worker: one is started when a frame does not fit, and ends
    once the backlog is written; the next full pipe starts another."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    broken: list[OSError] = []
    started: list[object] = []
    big = encode(Reply(1, b"z" * (4 << 20)))  # more than any pipe holds
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:

            def spawn(flush: Any) -> None:
                started.append(flush)
                tg.start_soon(flush)

            writer = FrameWriter(write_fd, broken.append, spawn)
            writer.write(encode(Reply(0, "small")))
            assert started == []  # the pipe took it
            for round_ in (1, 2):
                writer.write(big)
                writer.write(encode(Reply(2, "behind it")))
                assert len(started) == round_  # one task for the whole backlog
                received = bytearray()
                while writer.backlog_bytes or len(received) < len(big):
                    await anyio.wait_readable(read_fd)
                    received += os.read(read_fd, 1 << 20)
                    await anyio.lowlevel.checkpoint()  # let the task write more
                while True:
                    try:
                        received += os.read(read_fd, 1 << 20)
                    except BlockingIOError:
                        break
                head = 0 if round_ > 1 else len(encode(Reply(0, "small")))
                assert len(received) == head + len(big) + len(
                    encode(Reply(2, "behind it"))
                )
            writer.close()
    os.close(read_fd)
    assert broken == []


async def test_a_full_pipe_is_still_flushed_when_its_task_group_is_cancelled() -> None:
    """The last frames a stopping pool sends (Shutdown) must not be dropped
    because the task that started the flush is being cancelled."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    broken: list[OSError] = []
    frame = encode(Reply(1, b"q" * (3 << 20)))
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_fd, 1 << 20):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    with anyio.fail_after(30):
        try:
            async with anyio.create_task_group() as tg:
                writer = FrameWriter(write_fd, broken.append, tg.start_soon)
                writer.write(frame)
                assert writer.backlog_bytes > 0
                tg.cancel_scope.cancel()  # the flush must go on regardless
                reader.start()
            # the task group waited for the flush to end
            assert writer.backlog_bytes == 0
        finally:
            writer.close()  # end of file: the reader stops
            await anyio.to_thread.run_sync(reader.join)
    os.close(read_fd)
    assert bytes(received) == frame
    assert broken == []


async def test_a_write_to_a_pipe_nobody_reads_breaks_the_channel_once() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    os.close(read_fd)
    broken: list[OSError] = []
    writer = FrameWriter(write_fd, broken.append, _no_task)
    with pytest.raises(BrokenChannel):
        writer.write(encode(Reply(1, 1)))
    with pytest.raises(BrokenChannel):
        writer.write(encode(Reply(2, 2)))
    assert len(broken) == 1
    writer.close()


async def test_frames_written_while_corked_leave_together_at_uncork() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    broken: list[OSError] = []
    writer = FrameWriter(write_fd, broken.append, _no_task)
    frames = [encode(Reply(i, "x" * i)) for i in range(5)]
    writer.cork()
    for frame in frames:
        writer.write(frame)
    with pytest.raises(BlockingIOError):
        os.read(read_fd, 65536)  # held back: nothing was written yet
    writer.uncork()
    assert os.read(read_fd, 65536) == b"".join(frames)  # in order, all at once
    assert writer.backlog_bytes == 0
    writer.write(frames[0])  # uncorked: written at once again
    assert os.read(read_fd, 65536) == frames[0]
    writer.close()
    os.close(read_fd)
    assert broken == []


async def test_uncorking_into_a_closed_pipe_reports_it_and_does_not_raise() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    os.close(read_fd)
    broken: list[OSError] = []
    writer = FrameWriter(write_fd, broken.append, _no_task)
    writer.cork()
    writer.write(encode(Reply(1, 1)))  # held: the break is not seen yet
    writer.uncork()
    assert [type(exc) for exc in broken] == [BrokenPipeError]
    with pytest.raises(BrokenChannel):
        writer.write(encode(Reply(2, 2)))
    writer.close()


async def test_read_pipe_hands_over_every_byte_until_end_of_file() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    payload = os.urandom(1 << 20)
    seen = bytearray()

    def write_all() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, write_all)
            await read_pipe(read_fd, seen.extend)
    os.close(read_fd)
    assert bytes(seen) == payload


@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ],
)
async def test_read_pipe_leaves_the_fd_to_its_caller(anyio_backend: object) -> None:
    # uvloop's pipe transport closes the fd it reads, whatever the file object
    # says: the parent would then close a reused fd number (another worker's)
    if "uvloop" in str(anyio_backend):
        pytest.importorskip("uvloop")
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.write(write_fd, b"x")
    os.close(write_fd)
    seen = bytearray()
    with anyio.fail_after(10):
        await read_pipe(read_fd, seen.extend)
    assert seen == b"x"
    os.fstat(read_fd)  # still ours: EBADF here is the bug
    os.close(read_fd)


_ALL_LOOPS = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ],
)


@_ALL_LOOPS
async def test_watch_pipe_hands_over_every_byte_then_ends_once(
    anyio_backend: object,
) -> None:
    """A worker's log pipe: every chunk, then one end at end of file, with no
    task of its own on asyncio (the loop calls back)."""
    if "uvloop" in str(anyio_backend):
        pytest.importorskip("uvloop")
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    payload = os.urandom(300_000)
    seen = bytearray()
    ended = anyio.Event()
    ends: list[int] = []
    tasks: list[object] = []

    def on_end() -> None:
        ends.append(len(seen))
        ended.set()

    def write_all() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:

            def spawn(pump: Any) -> None:
                tasks.append(pump)
                tg.start_soon(pump)

            stop = watch_pipe(read_fd, seen.extend, on_end, spawn)
            tg.start_soon(anyio.to_thread.run_sync, write_all)
            await ended.wait()
            stop()  # after the end: nothing more happens
    os.close(read_fd)
    assert bytes(seen) == payload
    assert ends == [len(payload)]
    assert len(tasks) == (1 if anyio_backend == "trio" else 0)


@_ALL_LOOPS
async def test_stopping_a_watch_reads_what_the_pipe_holds_then_ends(
    anyio_backend: object,
) -> None:
    """Stopped as the reply pipe ends, a worker's last log lines (written as it
    exited, still in the pipe) are read, not lost."""
    if "uvloop" in str(anyio_backend):
        pytest.importorskip("uvloop")
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    seen = bytearray()
    ends: list[bytes] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            stop = watch_pipe(
                read_fd, seen.extend, lambda: ends.append(bytes(seen)), tg.start_soon
            )
            os.write(write_fd, b"last words\n")  # no loop turn to read them
            stop()
            stop()
            os.write(write_fd, b"too late\n")
            tg.cancel_scope.cancel()
    os.close(write_fd)
    os.close(read_fd)
    assert ends == [b"last words\n"]
    assert seen == b"last words\n"
