"""One worker process, seen from the parent: its pipes, calls in flight and exit.

:meth:`WorkerProcess.run` owns the process from spawn to reaping. It follows anyio's
start protocol: it reports started once the worker's ``Hello`` arrived, and returns
when the process has exited. Cancelling it stops the worker gracefully (``Shutdown``,
then SIGTERM after ``shutdown_timeout``, then SIGKILL), in a shielded scope, while the
reply reader keeps delivering the results of calls still in flight.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any, cast

import anyio
import attrs
import psutil
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from snakepit import telemetry
from snakepit._registry import RunRegistry
from snakepit.config import PoolConfig
from snakepit.exceptions import (
    CommandNotFound,
    InvalidArguments,
    PoolClosed,
    ProtocolError,
    ProtocolVersionMismatch,
    RemoteError,
    RequestTimeout,
    ResultEncodingError,
    SerializationError,
    SnakepitError,
    WorkerCrashed,
    WorkerStartError,
    WorkerStartTimeout,
)
from snakepit.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Cancel,
    Chunk,
    End,
    Error,
    Frame,
    Hello,
    Message,
    Ping,
    Pong,
    Shutdown,
    Tag,
    Undecodable,
    WireDecoder,
    encode,
)
from snakepit.worker import ExitCode

from ._ahead import CallTimes
from ._channel import BrokenChannel, FrameWriter, read_pipe, watch_pipe
from ._signal import Signal, new_signal
from ._spawn import Spawned, spawn_worker
from ._template import Template

__all__ = ("WorkerProcess",)

logger = logging.getLogger("snakepit.worker")

_E_STARTED = ("snakepit", "worker", "started")
_E_EXITED = ("snakepit", "worker", "exited")

#: Seconds between SIGTERM and SIGKILL when a worker will not stop.
KILL_GRACE = 2.0
#: Longest log line kept from a worker's stdout/stderr; longer ones are split.
MAX_LOG_LINE = 8192
#: Seconds a worker whose reply channel ended has to exit before it is killed.
CHANNEL_GRACE = 1.0
#: stderr lines kept to explain a failed start.
STDERR_TAIL_LINES = 40
#: Messages that carry a call's outcome: one that cannot be decoded fails the call.
_RESULT_TAGS = frozenset((Tag.REPLY, Tag.CHUNK, Tag.ERROR))

_START_EXIT_HINTS = {
    ExitCode.ADAPTER_IMPORT: "the adapter could not be loaded",
    ExitCode.ADAPTER_SETUP: "the adapter's constructor or setup() raised",
    ExitCode.USAGE: "the worker's command line was refused",
}


class NotRun(SnakepitError):
    """Internal: the call never ran (the worker was stopping, or died or took a
    Cancel before the call's turn came), so it may be sent elsewhere.

    Attributes:
        error: what the caller gets if it cannot be sent elsewhere.
    """

    def __init__(self, error: SnakepitError) -> None:
        super().__init__(str(error))
        self.error = error


class Recalled(NotRun):
    """Internal: the call was taken back before it started, for a worker that
    fell idle (see :meth:`WorkerProcess.recall`); send it again, first."""

    def __init__(self) -> None:
        super().__init__(PoolClosed("the call was recalled before it started"))


@attrs.define(eq=False)
class Pending:
    """A call: where its outcome goes and, while it waits in a pool's queue,
    what sending it takes (one object per call, from queue to outcome).

    A plain call queues already encoded (*frame*): whoever frees capacity sends
    it at once, from the reply's own callback, and the caller wakes only for the
    outcome. A place in the queue without a *frame* (a stream's, or a timed
    call's) is woken with the *worker* assigned, and its caller sends.
    """

    command: str
    event: Signal = attrs.Factory(new_signal)
    # For a pool's queue (see Pool._enqueue); first, to be passed by position.
    req_id: int = 0
    frame: Frame | None = None
    session_id: str | None = None
    #: The worker the queue assigned it (it was sent there, if it has a frame).
    worker: WorkerProcess | None = None
    #: Left the queue (timed out, given up): skipped when its turn comes.
    gone: bool = False
    queued_at: float = 0.0
    value: Any = None
    error: Error | None = None
    #: Why the call failed here: its worker died, or (still queued) it timed out.
    failure: BaseException | None = None
    #: For streams: where chunks go (a chunk, or a _Failure, then the stream closes).
    chunks: MemoryObjectSendStream[Any] | None = None
    #: Taken back for an idle worker (see WorkerProcess.recall).
    recalled: bool = False
    #: When it was sent, if nothing was ahead of it (it is timed: see _ahead).
    sent_at: float | None = None


@attrs.frozen
class StreamFailure:
    """Put in a stream's channel in place of a chunk when the stream failed."""

    error: BaseException


class _LogLines:
    """A worker's stdout or stderr, logged line by line as it arrives (lines
    longer than MAX_LOG_LINE are split). Never blocks the worker: the parent
    reads the pipe as it fills."""

    __slots__ = ("_buffer", "_done", "_level", "_name", "_tail", "_worker_id")

    def __init__(
        self,
        worker_id: str,
        name: str,
        level: int,
        *,
        tail: collections.deque[str] | None = None,
        done: anyio.Event | None = None,
    ) -> None:
        self._worker_id = worker_id
        self._name = name
        self._level = level
        #: Where its last lines are kept (stderr's, to explain a failure).
        self._tail = tail
        #: Set at the end.
        self._done = done
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        while len(self._buffer) > MAX_LOG_LINE:
            lines.append(self._buffer[:MAX_LOG_LINE])
            self._buffer = self._buffer[MAX_LOG_LINE:]
        for raw in lines:
            self._log(raw[:MAX_LOG_LINE])

    def end(self) -> None:
        if self._buffer:
            self._log(self._buffer)
            self._buffer = b""
        if self._done is not None:
            self._done.set()

    def _log(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if self._tail is not None:
            self._tail.append(line)
        logger.log(self._level, "[%s %s] %s", self._worker_id, self._name, line)


def _fail_stream(chunks: MemoryObjectSendStream[Any], failure: BaseException) -> None:
    """End a stream's chunks with *failure* (its reader may be gone already)."""
    try:
        chunks.send_nowait(StreamFailure(failure))
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    chunks.close()


def remote_error(error: Error) -> BaseException:
    """Turn an ``Error`` message into the exception the caller sees."""
    kind = error.kind
    if kind == "command_not_found":
        return CommandNotFound(error.type, error.message, error.traceback)
    if kind == "invalid_arguments":
        return InvalidArguments(error.type, error.message, error.traceback)
    if kind == "result_encoding":
        return ResultEncodingError(error.type, error.message, error.traceback)
    if kind == "decode":
        return SerializationError(
            f"the worker could not decode the call: {error.message}"
        )
    if kind in ("shutting_down", "cancelled"):
        return NotRun(PoolClosed(error.message))
    return RemoteError(error.type, error.message, error.traceback)


class WorkerProcess:
    """A worker process and the calls in flight on it.

    Args:
        config: the pool's configuration.
        worker_id: unique in the pool, e.g. ``"default-3"``.
        capacity: calls it may run at once.
        on_ready: called with the worker once its handshake is done.
        on_gone: called once when it stops taking calls (stopping or exited).
        on_release: called with the number of calls that ended, once per batch
            of replies read together (so the capacity they free is given out
            once).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        config: PoolConfig,
        worker_id: str,
        *,
        capacity: int,
        kill_on_abandon: bool,
        on_ready: Callable[[WorkerProcess], None],
        on_gone: Callable[[WorkerProcess], None],
        on_release: Callable[[WorkerProcess, int], None],
    ) -> None:
        self.config = config
        self.id = worker_id
        self.capacity = capacity
        #: Calls it may be sent at once: capacity times ``pipeline_depth``.
        self.limit = capacity * config.pipeline_depth
        #: Calls dispatched and not yet answered (the dispatcher's view).
        self.load = 0
        self.requests = 0
        self.hello: Hello | None = None
        self.pid: int | None = None
        self.started_at = 0.0
        self.accepting = False
        #: The slot that keeps this worker (set by the pool).
        self.slot: Any = None
        #: This worker's request limit (``worker_max_requests`` plus its jitter).
        self.max_requests: float = math.inf
        #: Set while a recycle of this worker is requested or running.
        self.recycling = False
        #: The cancel scope its slot runs it in; cancelling it stops it gracefully.
        self.scope: anyio.CancelScope | None = None
        #: Set once it stopped taking calls and has none in flight.
        self.drained = anyio.Event()
        self._psutil_process: Any = None
        self._rss_sampled_at = -math.inf
        self._kill_on_abandon = kill_on_abandon
        self._on_ready = on_ready
        self._on_gone = on_gone
        self._on_release = on_release
        self._spawned: Spawned | None = None
        self._pending: dict[int, Pending] = {}
        #: Calls ended by the replies being dispatched, not yet released.
        self._ended = 0
        self._writer: FrameWriter | None = None
        #: Set by the worker's ``Hello``, or by its exit if that comes first.
        self._hello_or_exit = anyio.Event()
        self._pongs: dict[int, anyio.Event] = {}
        self._ping_ids = 0
        self._rss = 0
        self._exit_reason: str | None = None
        self._protocol_failure: ProtocolError | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(
            maxlen=STDERR_TAIL_LINES
        )
        self._gone_called = False
        #: Set once the worker can answer nothing more; calls then fail at once.
        self._dead = False
        #: (exit_code, signal, reason), once the worker has exited.
        self._dead_info: tuple[int | None, int | None, str | None] = (None, None, None)
        self._io_done = anyio.Event()
        self._stderr_done = anyio.Event()
        #: The run that records this worker for orphan cleanup (set by the pool).
        self.registry: RunRegistry | None = None
        #: The template to fork this worker from (``start_method="template"``).
        self.template: Template | None = None
        #: Where calls that started at once are timed (set by a pipelining pool).
        self.call_times: CallTimes | None = None

    def __repr__(self) -> str:
        return (
            f"<WorkerProcess {self.id} pid={self.pid} load={self.load}/{self.capacity}>"
        )

    # --- Lifetime ---

    async def run(self, *, task_status: TaskStatus[WorkerProcess]) -> None:
        """Spawn the worker, wait for its handshake, report started, serve until
        it exits. Cancelling stops it gracefully (shielded, bounded).

        Raises:
            WorkerStartError: it could not be spawned, exited or failed before its
                handshake (the message carries its stderr tail).
            WorkerStartTimeout: no handshake within ``startup_timeout``.
        """
        begin = time.monotonic()
        registry = self.registry
        try:
            self._spawned = await spawn_worker(
                self.config,
                worker_id=self.id,
                run_id=registry.run_id if registry else None,
                instance=registry.instance if registry else None,
                template=self.template,
            )
        except OSError as exc:
            raise WorkerStartError(
                f"pool {self.config.name!r}: could not start worker {self.id} "
                f"({self.config.python_executable or 'python'}): {exc}"
            ) from exc
        process = self._spawned.process
        self.pid = process.pid
        failure: WorkerStartError | None = None
        async with anyio.create_task_group() as tg:
            self._writer = FrameWriter(
                self._spawned.request_fd, self._on_write_broken, tg.start_soon
            )
            io_scope = anyio.CancelScope(shield=True)
            tg.start_soon(self._io, io_scope)
            # Only until the handshake: a task per worker is a cost at start.
            watch_exit = anyio.CancelScope()
            tg.start_soon(self._watch_exit, process, watch_exit)
            try:
                if registry is not None:
                    registry.add_worker(self.id, self.config.name, process.pid)
                try:
                    await self._handshake(process, begin)
                except WorkerStartError as exc:
                    failure = exc
                else:
                    watch_exit.cancel()
                    self.started_at = time.monotonic()
                    self.accepting = True
                    self._on_ready(self)
                    telemetry.execute(
                        _E_STARTED,
                        {"count": 1, "startup_seconds": self.started_at - begin},
                        {
                            "worker_id": self.id,
                            "pool": self.config.name,
                            "pid": self.pid,
                        },
                    )
                    task_status.started(self)
                    await process.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop(process)
                    if registry is not None:
                        registry.remove_worker(self.id)
                    with anyio.move_on_after(KILL_GRACE):
                        await self._io_done.wait()
                    io_scope.cancel()
        if failure is not None:
            raise failure

    async def _watch_exit(self, process: Any, scope: anyio.CancelScope) -> None:
        """Wake :meth:`_handshake` if the process exits before its ``Hello``
        (cancelled through *scope* once the handshake is done)."""
        with scope:
            await process.wait()
            self._hello_or_exit.set()

    async def _handshake(self, process: Any, begin: float) -> None:
        with anyio.move_on_after(self.config.startup_timeout) as timeout:
            await self._hello_or_exit.wait()
        if self.hello is not None:
            if self.hello.version != PROTOCOL_VERSION:
                self._kill("protocol_error")
                raise WorkerStartError(
                    f"worker {self.id} speaks protocol {self.hello.version}, "
                    f"this parent speaks {PROTOCOL_VERSION}"
                ) from ProtocolVersionMismatch(str(self.hello.version))
            return
        if timeout.cancelled_caught:
            self._kill("startup_timeout")
            await self._wait_for_stderr(process)
            raise WorkerStartTimeout(
                f"pool {self.config.name!r}: worker {self.id} sent no handshake within "
                f"startup_timeout={self.config.startup_timeout}s",
                stderr_tail=self.stderr_tail(),
            )
        await self._wait_for_stderr(process)
        code = process.returncode
        hint = ""
        try:
            hint = f": {_START_EXIT_HINTS[ExitCode(code)]}"
        except (ValueError, KeyError):
            pass
        raise WorkerStartError(
            f"pool {self.config.name!r}: worker {self.id} "
            f"({self.config.adapter_module}) exited with code {code} before its "
            f"handshake{hint}",
            stderr_tail=self.stderr_tail(),
        )

    async def _wait_for_stderr(self, process: Any) -> None:
        await process.wait()
        with anyio.move_on_after(KILL_GRACE):
            await self._stderr_done.wait()

    def stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr."""
        return "\n".join(self._stderr_tail)

    async def _stop(self, process: Any) -> None:
        """Stop the worker (graceful, then SIGTERM, then SIGKILL), reap it, and
        fail whatever is still in flight. Runs shielded."""
        self._gone()
        if (
            process.returncode is None
            and self._exit_reason is None
            and self.hello is None
        ):
            # Still booting (in setup(), say): it cannot read Shutdown. Kill it.
            self._exit_reason = "startup_cancelled"
            self._signal_group(signal.SIGKILL)
        if process.returncode is None and self._exit_reason is None:
            self._exit_reason = "shutdown"
            try:
                self._write(encode(Shutdown()))
            except (OSError, SnakepitError):
                pass
            with anyio.move_on_after(self.config.shutdown_timeout):
                await process.wait()
            if process.returncode is None:
                logger.warning(
                    "worker %s did not stop within %ss; sending SIGTERM",
                    self.id,
                    self.config.shutdown_timeout,
                )
                self._signal_group(signal.SIGTERM)
                with anyio.move_on_after(KILL_GRACE):
                    await process.wait()
            if process.returncode is None:
                self._signal_group(signal.SIGKILL)
        await process.wait()
        # Grandchildren left in the worker's process group go with it.
        self._signal_group(signal.SIGKILL)
        code = process.returncode
        exit_code, signum = (
            (None, -code) if code is not None and code < 0 else (code, None)
        )
        reason = self._exit_reason or "exited"
        self._dead = True
        self._dead_info = (exit_code, signum, reason)
        in_flight = len(self._pending)
        for position, req_id in enumerate(list(self._pending)):
            pending = self._pending.pop(req_id)
            failure: SnakepitError
            if self._protocol_failure is not None:
                failure = ProtocolError(
                    f"worker {self.id}: {self._protocol_failure}; the call's outcome "
                    f"is unknown"
                )
            else:
                failure = WorkerCrashed(
                    worker_id=self.id, exit_code=exit_code, signal=signum, reason=reason
                )
            if position >= self.capacity and pending.chunks is None:
                # Still in the worker's queue, behind `capacity` calls: the worker
                # takes calls in order, so this one never started.
                failure = NotRun(failure)
            self._resolve_failure(pending, failure)
        if self.hello is not None:
            telemetry.execute(
                _E_EXITED,
                {"count": 1, "uptime_seconds": time.monotonic() - self.started_at},
                {
                    "worker_id": self.id,
                    "pool": self.config.name,
                    "pid": self.pid,
                    "reason": reason,
                    "exit_code": exit_code,
                    "signal": signum,
                    "in_flight": in_flight,
                },
            )

    @property
    def exiting(self) -> bool:
        """Whether the worker was killed or has exited (not merely draining)."""
        return self._dead or self._exit_reason not in (None, "shutdown")

    def stop_accepting(self) -> None:
        """Take the worker out of dispatch; calls in flight go on (a recycle)."""
        self._gone()
        if self.load <= 0:
            self.drained.set()

    def kill_now(self, reason: str) -> None:
        """Kill the worker at once (SIGKILL to its process group); its slot replaces
        it, and calls in flight fail with ``WorkerCrashed(reason=reason)``."""
        self._kill(reason)

    def sample_rss(self) -> int | None:
        """The worker's resident memory in bytes, read now (psutil), or ``None``
        if it is gone. Cheap: one read of ``/proc/<pid>/statm``."""
        if self.pid is None:
            return None
        try:
            if self._psutil_process is None:
                self._psutil_process = psutil.Process(self.pid)
            rss = int(self._psutil_process.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        self._rss = rss
        self._rss_sampled_at = time.monotonic()
        return rss

    def rss_sample_age(self) -> float:
        """Seconds since the last RSS sample."""
        return time.monotonic() - self._rss_sampled_at

    def _gone(self) -> None:
        self.accepting = False
        if not self._gone_called:
            self._gone_called = True
            self._on_gone(self)

    def _signal_group(self, signum: int) -> None:
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill(self, reason: str) -> None:
        """Kill the worker now (SIGKILL to its process group); it will be replaced.

        Safe to call from any task and from a cancelled context: it does not wait.
        """
        if self._exit_reason is None:
            self._exit_reason = reason
        self._gone()
        process = self._spawned.process if self._spawned else None
        if process is not None and process.returncode is None:
            self._signal_group(signal.SIGKILL)

    async def kill(self) -> None:
        """End the worker at once (the supervisor's hook for BRUTAL_KILL and for a
        worker that outlived its shutdown timeout)."""
        self._kill("killed")

    # --- I/O tasks ---

    async def _io(self, scope: anyio.CancelScope) -> None:
        """Read the worker's replies and its logs until the reply pipe ends,
        then close every pipe of it."""
        spawned = self._spawned
        assert spawned is not None
        assert self._writer is not None
        stdout = _LogLines(self.id, "stdout", logging.INFO)
        stderr = _LogLines(
            self.id,
            "stderr",
            logging.WARNING,
            tail=self._stderr_tail,
            done=self._stderr_done,
        )
        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    stops = [
                        watch_pipe(fd, log.feed, log.end, tg.start_soon)
                        for fd, log in (
                            (spawned.stdout_fd, stdout),
                            (spawned.stderr_fd, stderr),
                        )
                    ]
                    try:
                        await self._read_replies()
                    finally:
                        for stop in stops:
                            stop()  # what the logs hold already is logged
                        tg.cancel_scope.cancel()
        finally:
            self._stderr_done.set()
            self._io_done.set()
            with anyio.CancelScope(shield=True):
                for fd in (spawned.reply_fd, spawned.stdout_fd, spawned.stderr_fd):
                    anyio.notify_closing(fd)
                    os.close(fd)
                self._writer.close()
                await spawned.process.aclose()

    async def _read_replies(self) -> None:
        """Dispatch the worker's messages as they arrive, until end of file."""
        assert self._spawned is not None
        # A Reply comes as its wire array ([tag, id, value]): see _dispatch_wire.
        decoder = WireDecoder(self.config.max_frame_bytes, keep=Tag.REPLY)
        writer = self._writer
        assert writer is not None

        def on_data(data: bytes) -> None:
            if self._protocol_failure is not None:
                return  # poisoned: the worker is being killed; drain to EOF
            # The calls these replies free room for go out in one write.
            writer.cork()
            try:
                for wire in decoder.feed(data):
                    self._dispatch_wire(wire)
            except ProtocolError as exc:
                logger.error("worker %s sent an invalid frame: %s", self.id, exc)
                self._protocol_failure = exc
                self._kill("protocol_error")  # first: it takes no call from now
                for good in exc.decoded:  # what came before the garbage
                    self._dispatch_wire(good)
            except Exception as exc:  # a bug of ours: never leave a call hanging
                logger.exception("worker %s: dispatching a reply failed", self.id)
                self._protocol_failure = ProtocolError(f"internal error: {exc!r}")
                self._kill("protocol_error")
            finally:
                ended = self._ended
                if ended:
                    self._ended = 0
                    self._on_release(self, ended)
                writer.uncork()

        try:
            await read_pipe(self._spawned.reply_fd, on_data)
        except OSError as exc:
            await self._on_channel_broken(f"reply channel failed: {exc}")
            return
        if self._protocol_failure is None:
            await self._on_channel_broken(None)

    async def _on_channel_broken(self, detail: str | None) -> None:
        """The reply channel ended. Usually the worker is exiting: give it a moment
        to be reaped, so its exit is reported as what it is. A worker still alive
        after that cannot answer anyone again: kill it (reason channel_closed)."""
        process = self._spawned.process if self._spawned else None
        if process is None:
            return
        with anyio.move_on_after(CHANNEL_GRACE):
            await process.wait()
        if process.returncode is None and self._exit_reason is None:
            logger.error(
                "worker %s closed its reply channel%s; killing it",
                self.id,
                f" ({detail})" if detail else "",
            )
            self._kill("channel_closed")

    def _dispatch_wire(self, item: object) -> None:
        """Dispatch one item of the reply reader's :class:`WireDecoder`: a Reply
        comes as its wire array (``[tag, id, value]``): building a Reply object
        would cost as much again, on every call. The rest are messages."""
        if type(item) is list:
            pending = self._finish(item[1])
            if pending is not None:
                pending.value = item[2]
                pending.event.set()
        else:
            self._dispatch(cast("Message | Undecodable", item))

    def _dispatch(self, message: Message | Undecodable) -> None:
        """Dispatch a message other than a Reply (see :meth:`_dispatch_wire`)."""
        if isinstance(message, Chunk):
            pending = self._pending.get(message.id)
            if pending is not None and pending.chunks is not None:
                try:
                    pending.chunks.send_nowait(message.value)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass
        elif isinstance(message, End):
            pending = self._finish(message.id)
            if pending is not None:
                if pending.chunks is not None:
                    pending.chunks.close()
                pending.event.set()
        elif isinstance(message, Error):
            pending = self._finish(message.id)
            if pending is not None:
                if pending.recalled and message.kind == "cancelled":
                    pending.failure = Recalled()  # skipped, as asked: send again
                    pending.event.set()
                    return
                pending.error = message
                if pending.chunks is not None:
                    failure = remote_error(message)
                    if isinstance(failure, NotRun):
                        failure = failure.error  # a stream is not resent
                    _fail_stream(pending.chunks, failure)
                pending.event.set()
        elif isinstance(message, Pong):
            self._rss = message.rss_bytes
            event = self._pongs.pop(message.id, None)
            if event is not None:
                event.set()
        elif isinstance(message, Hello):
            if self.hello is None:
                self.hello = message
                self._hello_or_exit.set()
        elif isinstance(message, Bye):
            pass
        elif isinstance(message, Undecodable) and message.tag in _RESULT_TAGS:
            self._undecodable_result(message)
        else:
            self._protocol_failure = ProtocolError(
                f"unexpected {type(message).__name__} from the worker"
            )
            self._kill("protocol_error")

    def _undecodable_result(self, message: Undecodable) -> None:
        """A result, chunk or error of one call is one msgpack object that is not
        a Python value (a dict keyed by a tuple): that call fails, the channel and
        the worker are fine. A stream is cancelled on the worker's side too."""
        failure = SerializationError(
            f"the worker's {Tag(message.tag).name.lower()} for this call is not "
            f"msgpack-decodable: {message.reason} (dict keys must be str, int, "
            "bytes, float or bool)"
        )
        pending = self._pending.get(message.id)
        if pending is None:
            return
        if message.tag == Tag.CHUNK and pending.chunks is not None:
            self.cancel_soon(message.id)
            _fail_stream(pending.chunks, failure)  # End or Error finishes the call
            return
        pending = self._finish(message.id)
        if pending is not None:
            self._resolve_failure(pending, failure)

    def _finish(self, req_id: int) -> Pending | None:
        """Take call *req_id* off the worker as its outcome arrives. Called only
        while a read is dispatched: the read releases the capacity of the calls
        it ended, once (see ``on_data`` in :meth:`_read_replies`)."""
        pending = self._pending.pop(req_id, None)
        if pending is None:
            return None  # a late reply to a call that was given up on: dropped
        if pending.sent_at is not None and self.call_times is not None:
            self.call_times.observe(pending.command, time.monotonic() - pending.sent_at)
        self.requests += 1
        self._ended += 1  # released after the batch it came in (see on_data)
        return pending

    def _resolve_failure(self, pending: Pending, failure: BaseException) -> None:
        pending.failure = failure
        if pending.chunks is not None:
            _fail_stream(pending.chunks, failure)
        pending.event.set()

    # --- Calls ---

    def _write(self, frame: Frame) -> None:
        """Send one whole frame, or queue it behind the earlier ones (never waits).

        Raises:
            WorkerCrashed: the request pipe is closed or broken.
        """
        assert self._writer is not None
        try:
            self._writer.write(frame)
        except BrokenChannel as exc:
            if self._dead:
                raise self._crashed() from exc
            raise WorkerCrashed(
                f"worker {self.id}: could not send the call ({exc})",
                worker_id=self.id,
                reason="channel_closed",
            ) from exc

    def _on_write_broken(self, exc: OSError) -> None:
        """EPIPE: the worker is gone or going; make sure it is replaced."""
        self._kill("channel_closed")

    async def call(
        self, req_id: int, command: str, frame: Frame, timeout: float
    ) -> Any:
        """Send a call already encoded as *frame* and wait for its outcome.

        Raises:
            RemoteError: (or a subclass) the command raised in the worker.
            WorkerCrashed: the worker died with the call in flight.
            ProtocolError: the worker's channel carried garbage.
            RequestTimeout: no outcome within *timeout* seconds; the call was
                abandoned (see :meth:`abandon`).
            NotRun: the call never reached the worker, or never started there.
        """
        pending = Pending(command)
        self.submit(req_id, pending, frame)
        return await self.wait(req_id, pending, timeout)

    def submit(self, req_id: int, pending: Pending, frame: Frame) -> None:
        """Register *pending* as call *req_id* and send its *frame*; never waits.

        Raises:
            NotRun: the worker is dead or its pipe broke (the call never reached
                it: send it elsewhere); nothing stays registered.
        """
        if self._dead:
            raise NotRun(self._crashed())
        if self.call_times is not None and len(self._pending) < self.capacity:
            pending.sent_at = time.monotonic()  # nothing ahead of it: time it
        self._pending[req_id] = pending
        try:
            self._write(frame)
        except WorkerCrashed as exc:
            self._pending.pop(req_id, None)
            raise NotRun(exc) from exc
        except BaseException:
            self._pending.pop(req_id, None)
            raise

    async def wait(self, req_id: int, pending: Pending, timeout: float) -> Any:
        """Wait up to *timeout* seconds for the outcome of submitted call *req_id*.

        Raises:
            RequestTimeout: no outcome in time; the call was abandoned.
            (or whatever the call's outcome is; see :meth:`call`)
        """
        try:
            if timeout == math.inf:
                await pending.event.wait()  # no cancel scope on the hot path
            else:
                with anyio.move_on_after(timeout):
                    await pending.event.wait()
        except BaseException:
            if not pending.event.is_set():
                self.abandon(req_id, "abandoned")
            raise
        if not pending.event.is_set():
            self.abandon(req_id, "timeout")
            raise RequestTimeout(
                f"pool {self.config.name!r}: {pending.command!r} on worker {self.id} "
                f"ran past its timeout of {timeout}s"
            )
        return self.outcome(pending)

    def outcome(self, pending: Pending) -> Any:
        """The result of a finished call, or raise its failure."""
        if pending.failure is not None:
            raise pending.failure
        if pending.error is not None:
            raise remote_error(pending.error)
        return pending.value

    def open_stream(
        self, req_id: int, command: str, chunks: MemoryObjectSendStream[Any]
    ) -> Pending:
        """Register a streaming call; chunks and a final failure go to *chunks*."""
        pending = Pending(command, chunks=chunks)
        self._pending[req_id] = pending
        if self._dead:
            self._pending.pop(req_id, None)
            raise self._crashed()
        return pending

    def _crashed(self) -> WorkerCrashed:
        exit_code, signum, reason = self._dead_info
        return WorkerCrashed(
            worker_id=self.id,
            exit_code=exit_code,
            signal=signum,
            reason=reason or self._exit_reason or "exited",
        )

    def send_call(self, frame: Frame) -> None:
        """Send an already registered call's frame (never waits)."""
        self._write(frame)

    def abandon(self, req_id: int, reason: str) -> None:
        """The caller gave up on *req_id* (``"timeout"`` or ``"abandoned"``).

        Where the profile says so (process) the worker is killed and replaced: it
        cannot be interrupted and would stay busy. Otherwise a stream is cancelled
        and a plain call left to finish, its reply discarded when it comes.
        Never blocks, so it is safe from a cancelled task.
        """
        pending = self._pending.get(req_id)
        if pending is None:
            return
        if pending.chunks is not None and reason != "timeout":
            # A stream has an interruption point between chunks: cancel it there.
            self.cancel_soon(req_id)
        elif not self._may_have_started(req_id):
            # Pipelined behind another call: the worker answers it "cancelled"
            # instead of running it (or, if it started meanwhile, runs it to the
            # end); either answer is dropped and frees its place.
            self.cancel_soon(req_id)
        elif self._kill_on_abandon:
            self._pending.pop(req_id, None)
            self._kill(reason)
        elif pending.chunks is not None:
            self.cancel_soon(req_id)

    def _may_have_started(self, req_id: int) -> bool:
        """Whether call *req_id* may be running: the worker takes calls in the
        order they were sent, so only the first ``capacity`` unanswered ones can
        be (``self._pending`` keeps that order)."""
        for position, pending_id in enumerate(self._pending):
            if position >= self.capacity:
                return False
            if pending_id == req_id:
                return True
        return False

    def room_ahead(self) -> float:
        """How much call time may be sent ahead to this busy worker: a call may
        be if this is positive (the calls on it are expected to take less than
        ``SHORT_CALL`` in all, and none has been running long: see
        :mod:`snakepit.pool._ahead`)."""
        times = self.call_times
        if times is None or self.load != len(self._pending):
            # A unit taken for a call not sent yet (its caller sends it when it
            # wakes up) is a call of unknown length too.
            return -math.inf
        return times.room_behind(self._pending.values(), time.monotonic())

    def recall(self) -> bool:
        """Take back the newest call sent ahead (pipelined, not started): ask the
        worker to skip it, for a worker that fell idle. Return whether one was.

        If the worker skips it, its caller gets :class:`Recalled` and sends it
        again, ahead of the pool's queue; if the call started meanwhile, it runs
        here and answers as usual. Streams are never recalled.
        """
        # The first ``capacity`` calls may have started (see _may_have_started).
        for req_id in reversed(list(self._pending)[self.capacity :]):
            pending = self._pending[req_id]
            if pending.chunks is None and not pending.recalled:
                pending.recalled = True
                self.cancel_soon(req_id)
                return True
        return False

    def cancel_soon(self, req_id: int) -> None:
        """Ask the worker to stop stream *req_id*, or to skip call *req_id* if it
        has not started (queued, never blocks)."""
        if self._writer is None:
            return
        try:
            self._writer.write(encode(Cancel(req_id)))
        except BrokenChannel:
            pass  # the worker is gone: so is the stream

    async def ping(self, timeout: float) -> bool:
        """Send ``Ping`` and wait up to *timeout* for ``Pong``; return whether it
        came. The worker's control thread answers even while a command runs."""
        self._ping_ids += 1
        ping_id = self._ping_ids
        event = self._pongs[ping_id] = anyio.Event()
        try:
            self._write(encode(Ping(ping_id)))
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            self._pongs.pop(ping_id, None)
        return event.is_set()

    @property
    def rss_bytes(self) -> int:
        """The worker's RSS as of its last ``Pong``."""
        return self._rss

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered."""
        return len(self._pending)
