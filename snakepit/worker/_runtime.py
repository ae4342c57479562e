"""Serve calls: the server threads, and the orderly shutdown.

Threads, and who does what:

- the **main thread** sends ``Hello``, starts the server threads, then watches
  lent leads (below) until ``Shutdown`` and the end of the calls accepted before
  it; it then runs ``teardown()``, sends ``Bye`` and returns the exit status;
- ``--threads`` + 1 **server threads** take turns (leader/follower): one at a time,
  the *leader*, reads the request fd. It answers ``Ping`` itself (so a health
  check works while commands run), checks each ``Call`` (fields, command,
  arguments) and queues it, answers a ``Cancel`` of a queued call, and flags
  cancelled streams. A thread that takes a call hands the reading over and runs
  it, then writes its result and takes the next queued call, or waits to lead.
  At most ``--threads`` calls run at once, so one thread is always left to read.
  The thread that read a call runs it: no hand-off between reading and running
  (a hand-off between two threads costs more than a small call).
- **Lending the lead.** When the call the leader takes fills the last free thread
  (always, with one thread), no other call could start before one ends, so the
  leader keeps the lead while it runs the call (it *lends* it to the call) and
  goes back to reading when the call is answered: a stream of small calls is
  read, run and answered by one thread, with no wake-up of another per call. A
  thread that finishes another call takes a lent lead over at once; and the main
  thread, the *watchdog*, takes it back from a call that has held it for a whole
  tick (``LEND_TICK``) and hands it to a waiting thread, so a ``Ping`` or a
  ``Cancel`` waits at most two ticks behind a long call. Streams never borrow the
  lead: a ``Cancel`` must reach them between two chunks.
- **Only within a stream of short calls.** The watchdog wakes up to start ticking
  at the first lend, and at every tick: two wake-ups, against the one wake-up of
  handing the lead on. So the lead is lent only while the watchdog ticks anyway
  (a stream of lends is under way), or when the last call ran shorter than a
  tick and ended less than a tick ago (a stream may be starting); a lone call, or
  a call after a long one, hands the lead on instead.

Every frame is encoded outside, and written whole under, one lock.

End of file on the request fd (parent gone, or it closed the pipe) and a broken
reply pipe end the process at once with ``os._exit(0)``: nobody is left to read
results, so calls in flight are abandoned and ``teardown()`` is not run. After
``Shutdown``, end of file is expected and the drain continues.

Each call ends with exactly one terminal frame: ``Reply`` or ``Error`` for a plain
command; ``End`` or ``Error`` (after any number of ``Chunk``) for a stream. Calls
start in the order they arrived.
"""

from __future__ import annotations

import math
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, cast

from snakepit.adapter import (
    Adapter,
    _call_context,  # set around each call, read by current_session_id()
)
from snakepit.exceptions import (
    CommandNotFound,
    InvalidArguments,
    ProtocolError,
    SerializationError,
)
from snakepit.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Cancel,
    Chunk,
    End,
    Error,
    ErrorKind,
    Frame,
    Hello,
    Ping,
    Pong,
    Reply,
    Shutdown,
    Tag,
    Undecodable,
    WireDecoder,
    encode,
    encode_frame,
    encode_reply,
)

from ._dispatch import MAP_COMMAND, Command, CommandTable
from ._options import ExitCode, WorkerOptions
from ._report import (
    clip,
    describe,
    exit_now,
    format_traceback,
    printable,
    report,
    safe_str,
)
from ._safety import ThreadSafetyChecker

_READ_SIZE = 64 * 1024  # below glibc's mmap threshold: no mmap per small read
#: The most one read of the rest of a large frame asks for: the pipe's buffer
#: as the pool sizes it (1 MiB), so no read can return more.
_MAX_READ_SIZE = 1024 * 1024
#: Seconds between two looks of the watchdog at a lent lead: a call that has held
#: the lead through a whole tick loses it (so a Ping waits at most two ticks).
#: A tick is one wake-up of the main thread per 5 ms while calls come in, none
#: while the worker idles.
LEND_TICK = 0.005
#: While calls are queued, a leader looks for news (a Cancel of one of them, a
#: Ping) between two of them at most this often: one poll() per call costs more
#: than a small call.
NEWS_EVERY = 0.001
_MAX_MESSAGE_CHARS = 64 * 1024
_MAX_TRACEBACK_CHARS = 256 * 1024
_EXCEPTION = ErrorKind.EXCEPTION.value
_RESULT_ENCODING = ErrorKind.RESULT_ENCODING.value


def rss_bytes() -> int:
    """Return the resident set size from /proc (cheap), or 0 where there is none.

    ``resource.getrusage`` is not a fallback: it reports the *peak*, which never
    goes down, and would make a recycler retire a worker forever after one spike.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE_SIZE = 4096


class _Stream:
    """The cancellation flag of one streaming call."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


# call id, command, arguments, stream state (None: not a stream), session id
# ..., session id, metadata
_Job = tuple[
    int, Command, dict[str, object], _Stream | None, str | None, dict[str, str] | None
]


# --- Serving ---


class Runtime:
    """One worker's serving loop around one set-up adapter."""

    def __init__(
        self,
        adapter: Adapter,
        options: WorkerOptions,
        checker: ThreadSafetyChecker | None = None,
    ) -> None:
        self._adapter = adapter
        self._options = options
        self._table = CommandTable(adapter, options, checker)
        self._map = Command(MAP_COMMAND, self._run_map, False)
        self._max = options.max_frame_bytes
        self._write_lock = threading.Lock()
        self._said_bye = False
        self._last_read = 0.0  # when the leader last read the request fd
        #: Where the rest of a large frame is read (made at the first one).
        self._big_buffer: bytearray | None = None
        #: Held by the thread reading the request fd (the leader), or lent to the
        #: call it runs. Released by whoever hands the lead on: the leader, or
        #: the watchdog taking a lent lead back (a Lock may be released by any
        #: thread).
        self._lead = threading.Lock()
        # A Call comes as its wire array: see _read.
        self._decoder = WireDecoder(self._max, keep=Tag.CALL)
        #: Is a request waiting to be read? (asked by a leader between two calls)
        self._news = select.poll()
        self._news.register(options.request_fd, select.POLLIN)
        #: Guards the fields below (taken bare on the hot path: a Condition's
        #: ``with`` costs two Python calls more).
        self._lock = threading.Lock()
        #: Notified at a lend the watchdog sleeps through and, after Shutdown,
        #: when the last accepted call is done.
        self._state = threading.Condition(self._lock)
        #: Calls accepted and not started, in arrival order.
        self._jobs: deque[_Job] = deque()
        self._running = 0
        self._in_flight = 0  # accepted and not answered (queued or running)
        self._streams: dict[int, _Stream] = {}
        self._lent = False  # the lead is lent to a running call
        self._lends = 0  # leads lent so far (the watchdog's clock of progress)
        self._watch_idle = False  # the watchdog sleeps until the next lend
        #: When the last call ended, and whether it ran shorter than a tick
        #: (whether lending the lead pays: see _lending_pays).
        self._last_end = -math.inf
        self._last_short = False
        self._closing = False  # the leader's own flag: no new calls
        self._shutdown = threading.Event()  # set under _state

    def run(self) -> int:
        """Send ``Hello``, serve until ``Shutdown``, then drain and say ``Bye``."""
        cls = type(self._adapter)
        is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
        hello = Hello(
            PROTOCOL_VERSION,
            os.getpid(),
            sys.version.split()[0],
            True if is_gil_enabled is None else bool(is_gil_enabled()),
            f"{cls.__module__}:{cls.__qualname__}",
            {
                name: {"stream": info.stream, "doc": info.doc}
                for name, info in cls.commands().items()
            },
            self._options.threads,
        )
        try:
            frame = encode(hello, self._max)
        except SerializationError as exc:
            report("cannot send Hello", exc)
            return ExitCode.ADAPTER_SETUP
        self._write_or_exit(frame)
        for i in range(self._options.threads + 1):
            threading.Thread(
                target=self._serve, name=f"snakepit-server-{i}", daemon=True
            ).start()
        self._watch()
        code = ExitCode.OK
        try:
            self._adapter.teardown()
        except BaseException as exc:
            report("teardown() raised", exc)
            code = ExitCode.TEARDOWN_FAILED
        self._write(encode(Bye()), last=True)
        return code

    # --- Writing ---

    def _write(self, frame: Frame, *, last: bool = False) -> bool:
        """Write one whole frame; return False if the reply pipe is broken."""
        fd = self._options.reply_fd
        with self._write_lock:
            if self._said_bye:
                return True
            self._said_bye = last
            try:
                if isinstance(frame, tuple):  # (header, large body): no copy
                    _write_parts(fd, frame)
                else:
                    written = os.write(fd, frame)
                    if written < len(frame):
                        with memoryview(frame) as view:
                            while written < len(frame):
                                written += os.write(fd, view[written:])
            except OSError:
                return False
        return True

    def _write_or_exit(self, frame: Frame) -> None:
        if not self._write(frame) and not self._shutdown.is_set():
            exit_now(ExitCode.OK)  # the parent is gone, or closed our reply pipe

    # --- The server threads ---

    def _serve(self) -> None:
        try:
            while True:
                if self._run_next() is not None:
                    continue  # ran a queued call: look for the next one
                if not self._take_lent_lead():
                    self._lead.acquire()
                if not self._lead_reading():
                    return  # end of file after Shutdown
        except BaseException as exc:
            report("internal error in a server thread", exc)
            exit_now(ExitCode.INTERNAL_ERROR)

    def _lead_reading(self) -> bool:
        """Lead: read the request fd and queue what arrives until a call is taken
        and the lead handed on (return True), or the expected end of file
        (return False). Lent to a call, the lead comes back when it is answered,
        unless a thread or the watchdog took it over meanwhile."""
        while True:
            kept = self._run_next(leading=True)
            if kept is None:  # nothing to run: read
                if not self._read():
                    self._lead.release()
                    return False
            elif not kept:
                return True  # handed on, before the call or while it ran
            # Between two queued calls, read what arrived meanwhile (now and
            # then): a Cancel of one of them, or a Ping, must not wait for all
            # of them.
            elif (
                self._jobs
                and time.monotonic() - self._last_read >= NEWS_EVERY
                and self._news.poll(0)
                and not self._read()
            ):
                self._lead.release()
                return False

    def _run_next(self, *, leading: bool = False) -> bool | None:
        """Take the next queued call if fewer than ``threads`` calls run, run it
        and answer it; return None if none was taken.

        A *leading* thread lends the lead to the call if it fills the last free
        thread (and is not a stream), else hands the lead on before running it.
        Returns whether the caller leads again: a lent lead still its own once
        the call is answered (not taken over meanwhile).
        """
        threads = self._options.threads
        with self._lock:
            if not self._jobs or self._running >= threads:
                return None
            self._running += 1
            job = self._jobs.popleft()
            lent = (
                leading
                and self._running == threads
                and job[3] is None
                and self._lending_pays()
            )
            if lent:
                self._lent = True
                self._lends += 1
                if self._watch_idle:
                    self._watch_idle = False
                    self._state.notify_all()
        if leading and not lent:
            self._lead.release()
        began = time.monotonic()
        frame = self._run_job(job)
        del job  # its arguments are garbage now
        self._write_or_exit(frame)
        del frame
        # after its answer (see run())
        return self._finished(ran=True, lent=lent, began=began)

    def _lending_pays(self) -> bool:
        """Whether to lend the lead to the call about to run (under _lock): the
        watchdog ticks already, or the last call was short and just ended."""
        return not self._watch_idle or (
            self._last_short and time.monotonic() - self._last_end < LEND_TICK
        )

    def _take_lent_lead(self) -> bool:
        """Take over a lead lent to a running call: a free thread reads instead."""
        with self._lock:
            if self._lent:
                self._lent = False
                return True
            return False

    def _watch(self) -> None:
        """The main thread: take a lent lead back from a call that keeps it a
        whole tick, until ``Shutdown`` and the end of every accepted call."""
        state = self._state
        seen = -1
        with self._lock:
            while not (self._shutdown.is_set() and self._in_flight == 0):
                if self._lends == seen:
                    if self._lent:  # the same call, lent a tick ago: take it back
                        self._lent = False
                        self._lead.release()
                    else:  # no lend for a tick: sleep until the next one
                        self._watch_idle = True
                        state.wait()
                        self._watch_idle = False
                        continue
                seen = self._lends
                state.wait(LEND_TICK)

    def _read(self) -> bool:
        """Read the request fd once and act on what arrived. Return False at the
        expected end of file (after ``Shutdown``)."""
        decoder = self._decoder
        needed = decoder.needed
        data: bytes | memoryview
        try:
            if needed <= _READ_SIZE:
                data = os.read(self._options.request_fd, _READ_SIZE)
            else:
                # The rest of a large frame: into one buffer kept for it, not
                # a new bytes per read (a 1 MiB allocation is an mmap, and its
                # pages fault in again each time: a 16 MiB echo ran 20 % slower).
                big = self._big_buffer
                if big is None:
                    big = self._big_buffer = bytearray(_MAX_READ_SIZE)
                view = memoryview(big)[: min(needed, _MAX_READ_SIZE)]
                data = view[: os.readv(self._options.request_fd, [view])]
            self._last_read = time.monotonic()
        except OSError as exc:
            exit_now(ExitCode.PROTOCOL_ERROR, f"cannot read the request channel: {exc}")
        if not data:
            if self._shutdown.is_set():
                return False  # expected after Shutdown; the main thread finishes
            exit_now(ExitCode.OK)
        try:
            messages = decoder.feed(data)
        except ProtocolError as exc:
            exit_now(
                ExitCode.PROTOCOL_ERROR,
                f"protocol error on the request channel: {exc}",
            )
        for msg in messages:
            # A Call comes as its wire array ([tag, id, command, args,
            # session_id, deadline, meta]): a Call object would cost as much
            # again, on every call. (_accept checks the fields.)
            if type(msg) is list:
                self._accept(msg)
            elif type(msg) is Ping:
                self._pong(msg)
            elif type(msg) is Cancel:
                self._cancel(msg)
            elif type(msg) is Shutdown:
                self._begin_shutdown()
            elif type(msg) is Undecodable and msg.tag == Tag.CALL:
                # one bad call (a dict keyed by a tuple): the framing is in
                # sync, so only this call fails
                self._send_error(
                    msg.id,
                    ErrorKind.DECODE.value,
                    "TypeError",
                    f"the call's arguments are not msgpack-decodable: "
                    f"{msg.reason} (dict keys must be str, int, bytes, "
                    "float or bool)",
                )
            else:
                exit_now(
                    ExitCode.PROTOCOL_ERROR,
                    "protocol error on the request channel: a parent does not "
                    f"send {type(msg).__name__}",
                )
        return True

    def _accept(self, wire: list[Any]) -> None:
        """Queue the call *wire* (a Call's wire array), or answer it with an
        error if it is malformed or cannot run."""
        _, call_id, name, args, session_id, deadline, meta = wire
        problem = _malformed(name, args, session_id, deadline, meta)
        if problem is not None:
            self._send_error(call_id, ErrorKind.DECODE.value, "TypeError", problem)
            return
        if self._closing:
            self._send_error(
                call_id,
                ErrorKind.SHUTTING_DOWN.value,
                "WorkerShuttingDown",
                f"the worker is shutting down; command {name!r} was not run",
            )
            return
        try:
            if name == MAP_COMMAND:
                command, args = self._map, _map_args(self._table, args)
            else:
                command = self._table.get(name)
                command.check(args)
        except CommandNotFound as exc:
            self._send_error(
                call_id, ErrorKind.COMMAND_NOT_FOUND.value, exc.remote_type, exc.message
            )
            return
        except InvalidArguments as exc:
            self._send_error(
                call_id, ErrorKind.INVALID_ARGUMENTS.value, exc.remote_type, exc.message
            )
            return
        stream = _Stream() if command.stream else None
        with self._lock:
            self._in_flight += 1
            if stream is not None:
                self._streams[call_id] = stream
            self._jobs.append((call_id, command, args, stream, session_id, meta))

    def _pong(self, ping: Ping) -> None:
        with self._lock:
            in_flight = self._in_flight
        self._write_or_exit(encode(Pong(ping.id, rss_bytes(), in_flight)))

    def _cancel(self, cancel: Cancel) -> None:
        with self._lock:
            stream = self._streams.get(cancel.id)
            job = None
            if stream is None:  # a plain call not started yet never will be
                job = next((j for j in self._jobs if j[0] == cancel.id), None)
                if job is not None:
                    self._jobs.remove(job)
        if stream is not None:
            stream.cancelled = True  # seen by its thread between two chunks
        elif job is not None:
            self._write_or_exit(
                encode(
                    Error(
                        job[0],
                        ErrorKind.CANCELLED.value,
                        "Cancelled",
                        f"command {job[1].name!r} was cancelled before it started",
                        "",
                    )
                )
            )
            self._finished()

    def _begin_shutdown(self) -> None:
        self._closing = True
        with self._lock:
            self._shutdown.set()
            self._state.notify_all()

    def _finished(
        self, *, ran: bool = False, lent: bool = False, began: float = 0.0
    ) -> bool:
        """Count an accepted call answered (and, if *ran*, no longer running,
        having started at *began*). If the lead was *lent* to it, take it back
        and return True, or return False if it was taken over meanwhile."""
        ended = time.monotonic() if ran else 0.0
        with self._lock:
            self._in_flight -= 1
            if ran:
                self._running -= 1
                self._last_end = ended
                self._last_short = ended - began < LEND_TICK
            if self._in_flight == 0 and self._shutdown.is_set():
                self._state.notify_all()  # the watchdog's drain is over
            if lent and self._lent:
                self._lent = False
                return True
            return False

    def _send_error(
        self, call_id: int, kind: str, type_name: str, message: str
    ) -> None:
        self._write_or_exit(
            self._error_frame(Error(call_id, kind, type_name, message, ""))
        )

    # --- Running calls ---

    def _run_job(self, job: _Job) -> Frame:
        """Run a call taken from the queue; return its last frame."""
        call_id, command, args, stream, session_id, meta = job
        context = _call_context
        context.session_id, context.meta = session_id, meta
        try:
            if stream is None:
                return self._run_call(call_id, command, args)
            return self._run_stream(call_id, command, args, stream)
        finally:
            context.session_id = context.meta = None

    def _run_call(
        self, call_id: int, command: Command, args: dict[str, object]
    ) -> Frame:
        frame: Frame
        try:
            value = command.func(**args)
        except BaseException as exc:
            frame = self._exception_frame(call_id, exc)
        else:
            try:
                frame = encode_reply(call_id, value, self._max)
            except SerializationError as exc:
                repaired = None
                if command is self._map:  # a map chunk: only the bad calls fail
                    repaired = self._map_reply(call_id, args, value)
                frame = repaired or self._encoding_frame(
                    call_id, f"the result of command {command.name!r}", value, exc
                )
        return frame

    def _map_reply(
        self, call_id: int, args: dict[str, object], outcome: object
    ) -> Frame | None:
        """The reply of a map chunk some of whose results cannot be sent: each of
        those calls fails alone (``result_encoding``), the others keep their
        values. None if the chunk still cannot be sent (too large as a whole)."""
        assert isinstance(outcome, dict)
        values: list[object] = outcome["values"]
        errors: list[Error] = outcome["errors"]
        what = f"the result of command {cast('Command', args['command']).name!r}"
        for index, value in enumerate(values):
            try:
                encode(Reply(call_id, value), self._max)
            except SerializationError as exc:
                values[index] = None
                errors.append(_encoding_error(index, f"{what} (in a map)", value, exc))
        try:
            return encode_frame(Reply(call_id, outcome), self._max)
        except SerializationError:
            return None

    def _run_map(self, command: Command, calls: list[dict[str, object]]) -> object:
        """Run *command* once per argument map of *calls*, in order (a chunk of
        ``Pool.map``). Each item fails alone: the values in order (None where an
        item failed), and per failure the fields of its ``Error``, with the
        item's index in place of the call id.
        """
        values: list[object] = []
        errors: list[Error] = []
        for index, args in enumerate(calls):
            value = None
            try:
                if type(args) is not dict:
                    raise InvalidArguments(
                        "TypeError",
                        f"map item {index} must be a map of arguments, got "
                        f"{type(args).__name__}",
                    )
                command.check(args)
                value = command.func(**args)
            except InvalidArguments as exc:
                errors.append(
                    Error(
                        index,
                        ErrorKind.INVALID_ARGUMENTS.value,
                        exc.remote_type,
                        exc.message,
                        "",
                    )
                )
            except BaseException as exc:
                errors.append(_exception_error(index, exc))
            values.append(value)
            del value, args
        return {"values": values, "errors": errors}

    def _run_stream(
        self, call_id: int, command: Command, args: dict[str, object], stream: _Stream
    ) -> bytes:
        try:
            if stream.cancelled:
                return encode(End(call_id))  # cancelled before it started
            try:
                items = iter(cast("Iterable[object]", command.func(**args)))
            except BaseException as exc:
                return self._exception_frame(call_id, exc)
            return self._pump(call_id, command, items, stream)
        finally:
            with self._lock:
                self._streams.pop(call_id, None)

    def _pump(
        self, call_id: int, command: Command, items: Iterator[object], stream: _Stream
    ) -> bytes:
        """Send the stream's chunks; return its last frame (End or Error)."""
        count = 0
        while True:
            if stream.cancelled:
                _close(items)
                return encode(End(call_id))
            try:
                item = next(items)
            except StopIteration:
                return encode(End(call_id))
            except BaseException as exc:
                return self._exception_frame(call_id, exc)
            try:
                chunk = encode_frame(Chunk(call_id, item), self._max)
            except SerializationError as exc:
                _close(items)
                return self._encoding_frame(
                    call_id, f"chunk {count} of command {command.name!r}", item, exc
                )
            del item
            self._write_or_exit(chunk)
            count += 1

    # --- Error frames ---

    def _exception_frame(self, call_id: int, exc: BaseException) -> bytes:
        return self._error_frame(_exception_error(call_id, exc))

    def _encoding_frame(
        self, call_id: int, what: str, value: object, exc: SerializationError
    ) -> bytes:
        return self._error_frame(_encoding_error(call_id, what, value, exc))

    def _error_frame(self, error: Error) -> bytes:
        """Encode *error*, shrinking it until it fits in a frame."""
        try:
            return encode(error, self._max)
        except SerializationError:
            pass  # too large, or text msgpack refuses (lone surrogates): shrink
        call_id, kind, type_name, message, _ = error
        return encode(
            Error(
                call_id, kind, printable(type_name, 100), printable(message, 400), ""
            ),
            self._max,
        )


def _exception_error(call_id: int, exc: BaseException) -> Error:
    """The ``Error`` of a command that raised *exc* (caught one frame below)."""
    return Error(
        call_id,
        _EXCEPTION,
        type(exc).__name__,
        clip(safe_str(exc), _MAX_MESSAGE_CHARS),
        clip(format_traceback(exc, skip=1), _MAX_TRACEBACK_CHARS),
    )


def _encoding_error(
    call_id: int, what: str, value: object, exc: SerializationError
) -> Error:
    """The ``Error`` of *what* (a result or a chunk), *value*, that cannot be sent."""
    type_name = type(value).__name__
    message = f"{what} cannot be sent: {exc} (a {type_name}: {describe(value)})"
    return Error(call_id, _RESULT_ENCODING, type_name, message, "")


def _map_args(table: CommandTable, args: dict[str, object]) -> dict[str, object]:
    """Check a map chunk's arguments; return ``_run_map``'s (the command found).

    Raises:
        CommandNotFound: the adapter has no such command.
        InvalidArguments: not ``{"command": str, "calls": list}``, or a stream.
    """
    name, calls = args.get("command"), args.get("calls")
    if args.keys() != {"command", "calls"} or type(name) is not str:
        raise InvalidArguments(
            "TypeError", f"{MAP_COMMAND} takes command (a str) and calls (a list)"
        )
    if type(calls) is not list:
        raise InvalidArguments(
            "TypeError",
            f"{MAP_COMMAND}: calls must be a list of argument maps, got "
            f"{type(calls).__name__}",
        )
    command = table.get(name)
    if command.stream:
        raise InvalidArguments(
            "TypeError",
            f"command {name!r} streams its results; map runs plain commands "
            "(use execute_stream for each call)",
        )
    return {"command": command, "calls": calls}


def _write_parts(fd: int, parts: tuple[bytes, bytes]) -> None:
    """Write *parts* in order with as few ``writev`` calls as the pipe allows."""
    views = [memoryview(part) for part in parts]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


def _close(items: Iterator[object]) -> None:
    """Close a cancelled or failed stream's generator; report, never raise."""
    close = getattr(items, "close", None)
    if close is None:
        return
    try:
        close()
    except BaseException as exc:
        report("closing a stream raised", exc)


def _malformed(
    name: object, args: object, session_id: object, deadline: object, meta: object
) -> str | None:
    """Say what is wrong with a call's fields, or return None."""
    if type(name) is not str:
        return f"Call.command must be a str, got {type(name).__name__}"
    if type(args) is not dict:
        return f"Call.args must be a map, got {type(args).__name__}"
    if session_id is not None and type(session_id) is not str:
        return f"Call.session_id must be a str or nil, got {type(session_id).__name__}"
    if deadline is not None and type(deadline) not in (int, float):
        return f"Call.deadline must be a number or nil, got {type(deadline).__name__}"
    if meta is not None and (
        type(meta) is not dict
        or not all(type(k) is str and type(v) is str for k, v in meta.items())
    ):
        return "Call.meta must be a map of strings to strings, or nil"
    return None
