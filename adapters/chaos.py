"""The chaos adapter: one command per fault, for the reliability suite.

Each command provokes one of the faults of RELIABILITY.md (section 1) from inside a
real worker process. Most of them are destructive: call them through a worker, never
in the test process.

Commands:

- ``echo(request_id, payload=None, size=0)``: return the request id, the payload and
  the pid (misrouting checks); *size* adds that many bytes as ``data``.
- ``exit(code=1)``: ``os._exit(code)``, no reply.
- ``sys_exit(code=1)``: raise ``SystemExit(code)`` (the worker reports it).
- ``segfault()``: die of SIGSEGV (faulthandler prints the traceback on stderr).
- ``sigkill_self()``: die of SIGKILL.
- ``raise_error(type_name="RuntimeError", message="boom")``: raise a builtin
  exception by name.
- ``raise_base_exception(message="BOOM")``: raise a bare ``BaseException``.
- ``sleep(seconds)``: block in ``time.sleep``.
- ``busy(seconds)``: a pure-Python loop that holds the GIL.
- ``hang()``: sleep 3600 s.
- ``ignore_sigterm()``: ignore SIGTERM from now on; ``ignore_sigterm_and_sleep
  (seconds)`` then also sleeps.
- ``print_flood(n_bytes=1_000_000, newlines=True, stream="stdout")``: write that
  much through ``sys.stdout`` (or ``sys.stderr``), in lines or as one long line.
- ``write_fd1_raw(data=None)``: ``os.write(1, ...)`` bytes that look like a frame.
- ``write_stderr_no_newline(n_bytes=200_000)``: a long stderr line, unterminated.
- ``unencodable_result()``: return a ``threading.Lock``.
- ``raise_unencodable_exception()``: raise an exception whose args hold a lock.
- ``tuple_keyed_result()``: return ``{(1, 2): "tuple key"}``, which msgpack
  encodes but cannot decode (an array as a map key).
- ``huge_result(n_bytes)``: return that many bytes.
- ``alloc(mb)`` / ``free()``: keep / release memory; both return the RSS in bytes.
- ``spawn_grandchild(seconds=3600)``: start a sleeping child process; return its
  pid.
- ``read_stdin()``: return ``sys.stdin.read()`` (``""`` with stdin on /dev/null).
- ``write_protocol_garbage(seconds=3600)``: a valid header with a non-msgpack body
  on the reply fd, then sleep.
- ``write_partial_frame_then_exit()``: half a frame on the reply fd, then
  ``os._exit(0)``.
- ``huge_header(seconds=3600)``: a header announcing 0xFFFFFFF0 bytes, then sleep.
- ``close_protocol_fd(seconds=3600)``: close the reply channel, stay alive.
- ``stream_then_crash(n=3, code=1)``: stream *n* items, then ``os._exit(code)``.
- ``slow_stream(n=10, delay=0.1)``: stream *n* items, *delay* s apart.
- ``tuple_keyed_stream(n=3)``: stream *n* items, the second one keyed by a tuple.

The commands that write on the reply fd find it in the worker's own command line
(:func:`protocol_fds`). They bypass the worker's write lock: use them on an idle
worker (no other call and no ping in flight), or the bytes may interleave.

Adapter arguments (all optional) make boot and shutdown fail on demand:
``setup_sleep`` (seconds ``setup()`` sleeps: a worker that hangs at boot),
``setup_error`` (a message ``setup()`` raises as ``RuntimeError``),
``teardown_sleep`` and ``teardown_error`` (the same for ``teardown()``).

.. versionadded:: 0.1
"""

from __future__ import annotations

import builtins
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import msgpack

from snakepit.adapter import ThreadSafeAdapter, command

__all__ = ("ChaosAdapter", "UnencodableError", "protocol_fds", "rss_bytes")

_HANG_SECONDS = 3600.0
_HEADER = struct.Struct(">I")
_LINE_BYTES = 100  # print_flood's line length, newline included
_BLOCK_BYTES = 64 * 1024  # print_flood writes about this much per write()

try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE_SIZE = 4096


class UnencodableError(RuntimeError):
    """Raised by ``raise_unencodable_exception``: its args hold a lock, which
    msgpack cannot encode (and the class exists only in the worker)."""


def protocol_fds(argv: Sequence[str] | None = None) -> tuple[int, int]:
    """Return the worker's ``(request_fd, reply_fd)`` from its command line.

    Args:
        argv: the command line, program name first; defaults to :data:`sys.argv`.
            Both ``--fds REQ,REPLY`` and ``--fds=REQ,REPLY`` are understood; the
            value of another flag is never mistaken for ``--fds``.

    Raises:
        RuntimeError: there is no usable ``--fds`` (not running in a worker).
    """
    args = list(sys.argv if argv is None else argv)[1:]
    value: str | None = None
    i = 0
    while i < len(args):
        flag, eq, inline = args[i].partition("=")
        if eq:
            i += 1
        else:
            inline = args[i + 1] if i + 1 < len(args) else ""
            i += 2  # skip the flag's value too
        if flag == "--fds":
            value = inline
            break
    if value is None:
        raise RuntimeError("no --fds on the command line: not running in a worker")
    request, _, reply = value.partition(",")
    try:
        return int(request), int(reply)
    except ValueError:
        raise RuntimeError(f"cannot parse --fds {value!r}") from None


def rss_bytes() -> int:
    """Return this process's resident set size from /proc/self/statm, or 0."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def _write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to *fd*."""
    with memoryview(data) as view:
        written = 0
        while written < len(data):
            written += os.write(fd, view[written:])


def _write_reply_fd(data: bytes) -> None:
    """Write raw bytes on the worker's reply channel, bypassing the protocol."""
    _write_all(protocol_fds()[1], data)


def _flush_std_streams() -> None:
    """Flush stdout and stderr (before ``os._exit``, so the logs are complete)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _exception_type(type_name: str) -> type[BaseException]:
    """Return the builtin exception class called *type_name*."""
    target = getattr(builtins, type_name, None)
    if isinstance(target, type) and issubclass(target, BaseException):
        return target
    raise ValueError(f"{type_name!r} is not a builtin exception type")


def _ignore_sigterm() -> None:
    """Set SIGTERM's disposition to SIG_IGN, from any thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    # Commands run in call threads, where signal.signal() raises ValueError; the
    # disposition is process-wide, so set it through libc instead. (Python
    # installed no handler for SIGTERM, so its own bookkeeping stays consistent.)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    sig_err = ctypes.c_void_p(-1).value
    if libc.signal(int(signal.SIGTERM), int(signal.SIG_IGN)) == sig_err:
        errno = ctypes.get_errno()
        raise OSError(errno, f"signal(SIGTERM, SIG_IGN) failed: {os.strerror(errno)}")


class ChaosAdapter(ThreadSafeAdapter):
    """Fault injection: every command provokes one failure (see the module).

    Thread-safe, so the thread profile can run it too (for faults that must take
    down several calls at once); its little state is guarded by a lock.

    .. versionadded:: 0.1
    """

    def setup(self) -> None:
        """Honour ``setup_sleep`` and ``setup_error``, then start empty."""
        self._lock = threading.Lock()
        self._hoard: list[bytes] = []
        self._grandchildren: list[object] = []  # Popen objects, kept from GC
        delay = self.args.get("setup_sleep")
        if delay is not None:
            time.sleep(_seconds("setup_sleep", delay))
        error = self.args.get("setup_error")
        if error is not None:
            raise RuntimeError(str(error))

    def teardown(self) -> None:
        """Honour ``teardown_sleep`` and ``teardown_error``."""
        delay = self.args.get("teardown_sleep")
        if delay is not None:
            time.sleep(_seconds("teardown_sleep", delay))
        error = self.args.get("teardown_error")
        if error is not None:
            raise RuntimeError(str(error))

    # --- Routing ---

    @command
    def echo(
        self, request_id: object, payload: object = None, size: int = 0
    ) -> dict[str, object]:
        """Return {"request_id", "payload", "pid"} (and size bytes as "data")."""
        reply: dict[str, object] = {
            "request_id": request_id,
            "payload": payload,
            "pid": os.getpid(),
        }
        if _count("size", size):
            reply["data"] = _pattern(size)
        return reply

    # --- Death ---

    @command
    def exit(self, code: int = 1) -> None:
        """End the process at once with os._exit(code): no reply, no cleanup."""
        _flush_std_streams()
        os._exit(code)

    @command
    def sys_exit(self, code: int = 1) -> None:
        """Raise SystemExit(code) inside the command."""
        raise SystemExit(code)

    @command
    def segfault(self) -> None:
        """Die of SIGSEGV (faulthandler writes the traceback to stderr)."""
        _flush_std_streams()
        import faulthandler

        sigsegv = getattr(faulthandler, "_sigsegv", None)
        if sigsegv is not None:
            sigsegv()
        import ctypes

        ctypes.string_at(0)  # reads address 0
        os.kill(os.getpid(), signal.SIGSEGV)  # if even that survived

    @command
    def sigkill_self(self) -> None:
        """Die of SIGKILL, sent to itself."""
        _flush_std_streams()
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(_HANG_SECONDS)  # the signal is on its way

    # --- Exceptions ---

    @command
    def raise_error(
        self, type_name: str = "RuntimeError", message: str = "boom"
    ) -> None:
        """Raise the builtin exception type_name(message) (ValueError if unknown)."""
        raise _exception_type(type_name)(message)

    @command
    def raise_base_exception(self, message: str = "BOOM") -> None:
        """Raise a bare BaseException(message)."""
        raise BaseException(message)

    @command
    def unencodable_result(self) -> object:
        """Return a threading.Lock, which msgpack cannot encode."""
        return threading.Lock()

    @command
    def tuple_keyed_result(self) -> dict[tuple[int, int], str]:
        """Return a dict keyed by a tuple: encodable, not decodable."""
        return {(1, 2): "tuple key"}

    @command
    def raise_unencodable_exception(self, message: str = "unencodable") -> None:
        """Raise an exception whose args hold a threading.Lock."""
        raise UnencodableError(message, threading.Lock())

    # --- Time ---

    @command
    def sleep(self, seconds: float) -> dict[str, object]:
        """Sleep seconds in time.sleep (GIL released); return {"slept", "pid"}."""
        time.sleep(_seconds("seconds", seconds))
        return {"slept": seconds, "pid": os.getpid()}

    @command
    def busy(self, seconds: float) -> dict[str, object]:
        """Spin a pure-Python loop for seconds (holds the GIL, ignores no signal)."""
        deadline = time.monotonic() + _seconds("seconds", seconds)
        iterations = 0
        while time.monotonic() < deadline:
            iterations += 1
        return {"iterations": iterations, "pid": os.getpid()}

    @command
    def hang(self) -> None:
        """Sleep 3600 s: a call that never ends by itself."""
        time.sleep(_HANG_SECONDS)

    @command
    def ignore_sigterm(self) -> bool:
        """Ignore SIGTERM from now on (only SIGKILL stops this worker); True."""
        _ignore_sigterm()
        return True

    @command
    def ignore_sigterm_and_sleep(
        self, seconds: float = _HANG_SECONDS
    ) -> dict[str, object]:
        """Ignore SIGTERM, then sleep seconds; return {"slept", "pid"}."""
        _ignore_sigterm()
        return self.sleep(seconds)

    # --- Output ---

    @command
    def print_flood(
        self, n_bytes: int = 1_000_000, newlines: bool = True, stream: str = "stdout"
    ) -> int:
        """Write n_bytes to sys.stdout (or stderr), in 100-byte lines or as one
        unterminated line; return n_bytes."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream must be 'stdout' or 'stderr', got {stream!r}")
        out = getattr(sys, stream)
        if out is None:
            raise RuntimeError(f"sys.{stream} is None")
        remaining = _count("n_bytes", n_bytes)
        if not newlines:
            out.write("x" * remaining)
        else:
            line = "x" * (_LINE_BYTES - 1) + "\n"
            block = line * (_BLOCK_BYTES // _LINE_BYTES)
            while remaining >= len(block):
                out.write(block)
                remaining -= len(block)
            out.write(line * (remaining // _LINE_BYTES))
            if remaining % _LINE_BYTES:
                out.write("x" * (remaining % _LINE_BYTES - 1) + "\n")
        out.flush()
        return n_bytes

    @command
    def write_fd1_raw(self, data: bytes | None = None) -> str:
        """os.write data (default: a fake frame header and "garbage") to fd 1."""
        if data is None:
            data = b"\x00\x00\x00\x10garbage"
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        _flush_std_streams()
        _write_all(1, data)
        return "ok"

    @command
    def write_stderr_no_newline(self, n_bytes: int = 200_000) -> int:
        """Write n_bytes to stderr with no newline; return n_bytes."""
        return self.print_flood(n_bytes, newlines=False, stream="stderr")

    # --- Size and memory ---

    @command
    def huge_result(self, n_bytes: int) -> bytes:
        """Return n_bytes bytes (a repeating 0..255 pattern)."""
        return _pattern(_count("n_bytes", n_bytes))

    @command
    def alloc(self, mb: int) -> int:
        """Allocate mb MiB (touched, so resident) and keep it; return the RSS."""
        size = _count("mb", mb) * 1024 * 1024
        block = b"\xa5" * size  # every page written, so every page resident
        with self._lock:
            self._hoard.append(block)
        del block
        return rss_bytes()

    @command
    def free(self) -> int:
        """Release everything alloc kept; return the RSS."""
        with self._lock:
            self._hoard.clear()
        return rss_bytes()

    # --- Processes and stdin ---

    @command
    def spawn_grandchild(self, seconds: float = _HANG_SECONDS) -> int:
        """Start a child process sleeping seconds, in this process group; its pid."""
        import subprocess

        code = f"import time; time.sleep({_seconds('seconds', seconds)!r})"
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
        with self._lock:
            self._grandchildren.append(child)
        return child.pid

    @command
    def read_stdin(self) -> str | None:
        """Return sys.stdin.read(): "" at once when stdin is /dev/null."""
        if sys.stdin is None:
            return None
        return sys.stdin.read()

    # --- The reply channel ---

    @command
    def write_protocol_garbage(self, seconds: float = _HANG_SECONDS) -> None:
        """Write a valid header with a non-msgpack body on the reply fd; sleep."""
        _write_reply_fd(b"\x00\x00\x00\x04\xc1\xc1\xc1\xc1")
        time.sleep(_seconds("seconds", seconds))

    @command
    def write_malformed_reply(self, seconds: float = _HANG_SECONDS) -> None:
        """Write one well-formed msgpack frame that is not a message (a Reply
        whose id is a string) on the reply fd; sleep."""
        body = msgpack.packb([3, "not an id", None])
        _write_reply_fd(_HEADER.pack(len(body)) + body)
        time.sleep(_seconds("seconds", seconds))

    @command
    def write_partial_frame_then_exit(self) -> None:
        """Write a header announcing 100 bytes, then 10 bytes, then os._exit(0)."""
        _write_reply_fd(_HEADER.pack(100) + b"\xc0" * 10)
        _flush_std_streams()
        os._exit(0)

    @command
    def huge_header(self, seconds: float = _HANG_SECONDS) -> None:
        """Write a header announcing 0xFFFFFFF0 bytes on the reply fd; sleep."""
        _write_reply_fd(_HEADER.pack(0xFFFFFFF0))
        time.sleep(_seconds("seconds", seconds))

    @command
    def close_protocol_fd(self, seconds: float = _HANG_SECONDS) -> None:
        """Close the reply channel but stay alive (sleep seconds)."""
        reply_fd = protocol_fds()[1]
        # dup2 over the fd, rather than close it: the pipe's write end is closed
        # all the same (the parent reads end of file), but the fd number stays
        # valid, so a later write (a Pong from the reader thread) neither fails,
        # which would end the worker, nor lands in a file opened since.
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.dup2(devnull, reply_fd, inheritable=False)
        finally:
            os.close(devnull)
        time.sleep(_seconds("seconds", seconds))

    # --- Streams ---

    @command
    def stream_then_crash(self, n: int = 3, code: int = 1) -> Iterator[dict[str, int]]:
        """Stream n items {"index": i}, then os._exit(code) mid-stream."""
        for index in range(_count("n", n)):
            yield {"index": index}
        _flush_std_streams()
        os._exit(code)

    @command
    def tuple_keyed_stream(self, n: int = 3) -> Iterator[dict[object, int]]:
        """Stream n items {"index": i}; the second is keyed by (1, 2) instead."""
        for index in range(_count("n", n)):
            yield {(1, 2): index} if index == 1 else {"index": index}

    @command
    def slow_stream(self, n: int = 10, delay: float = 0.1) -> Iterator[dict[str, int]]:
        """Stream n items {"index": i}, sleeping delay s between two."""
        pause = _seconds("delay", delay)
        for index in range(_count("n", n)):
            if index:
                time.sleep(pause)
            yield {"index": index}


def _count(name: str, value: object) -> int:
    """Return *value* if it is a non-negative int (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _seconds(name: str, value: object) -> float:
    """Return *value* if it is a non-negative number (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


def _pattern(n_bytes: int) -> bytes:
    """Return *n_bytes* bytes of a repeating 0..255 pattern (misalignment shows)."""
    whole, rest = divmod(n_bytes, 256)
    cycle = bytes(range(256))
    return cycle * whole + cycle[:rest]
