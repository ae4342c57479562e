"""Test adapters: one command per behaviour a worker test needs to provoke.

Workers load these by spec (``tests.workers.basic:BasicAdapter``) with the repository
root on ``PYTHONPATH``. Anything that blocks waits on a file or a barrier with a
timeout, so a test never depends on timing and a worker never blocks forever.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from snakepit.adapter import (
    Adapter,
    ThreadSafeAdapter,
    call_metadata,
    command,
    current_session_id,
)

_WAIT_TIMEOUT = 30.0


def _wait_for_file(path: str, timeout: float = _WAIT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.002)


class BasicAdapter(Adapter):
    """The everyday test adapter; ``teardown_marker`` (adapter arg) is a file that
    ``teardown()`` writes."""

    def setup(self) -> None:
        self.setup_ran = True

    def teardown(self) -> None:
        marker = self.args.get("teardown_marker")
        if isinstance(marker, str):
            Path(marker).write_text("teardown ran")

    @command
    def ping(self) -> str:
        """Answer pong."""
        return "pong"

    @command
    def add(self, a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @command
    def echo(self, value: object) -> object:
        return value

    @command
    def server_thread(self) -> str:
        """The name of the server thread running this call."""
        return threading.current_thread().name

    @command
    def busy_for(self, seconds: float) -> str:
        """Take *seconds* (a call of a known length), then name the thread."""
        time.sleep(seconds)
        return threading.current_thread().name

    @command(name="setup_ran")
    def did_setup_run(self) -> bool:
        return self.setup_ran

    @command
    def fail(self, message: str) -> None:
        raise ValueError(message)  # the line a remote traceback must show

    @command
    def type_error_inside(self) -> int:
        return len(5)  # type: ignore[arg-type]  # a TypeError raised by user code

    @command
    def sys_exit(self, code: int) -> None:
        sys.exit(code)

    @command
    def base_exception(self) -> None:
        raise BaseException("not an Exception")

    @command
    def unencodable(self) -> object:
        return {"lock": threading.Lock()}

    @command
    def blob(self, size: int) -> bytes:
        return b"x" * size

    @command
    def print_bytes(self, size: int) -> str:
        print("p" * size)
        return "printed"

    @command
    def write_fd1_raw(self) -> str:
        os.write(1, b"\x00\x00\x00\x10garbage")
        return "written"

    @command
    def wait_for_file(self, path: str) -> str:
        _wait_for_file(path)
        return f"saw {path}"

    @command
    def session(self) -> str | None:
        return current_session_id()

    @command
    def metadata(self) -> dict[str, str]:
        return dict(call_metadata())

    @command
    def session_stream(self) -> Iterator[str | None]:
        yield current_session_id()
        yield current_session_id()

    @command
    def inheritable(self, fds: list[int]) -> list[bool]:
        return [os.get_inheritable(fd) for fd in fds]

    @command
    def modules(self) -> list[str]:
        return sorted(sys.modules)

    @command
    def count(self, n: int) -> Iterator[int]:
        """Stream 0 .. n-1."""
        yield from range(n)

    @command
    def count_then_fail(self, n: int) -> Iterator[int]:
        yield from range(n)
        raise RuntimeError(f"failed after {n}")

    @command
    def stream_unencodable(self) -> Iterator[object]:
        yield 1
        yield object()

    @command
    def ticks(self, closed_marker: str) -> Iterator[int]:
        """Stream forever, until cancelled; write *closed_marker* when closed."""
        i = 0
        try:
            while True:
                yield i
                i += 1
                time.sleep(0.001)
        finally:
            Path(closed_marker).write_text("closed")


class ThreadedAdapter(BasicAdapter, ThreadSafeAdapter):
    """:class:`BasicAdapter` declared thread-safe, plus commands that prove calls
    overlap."""

    def setup(self) -> None:
        super().setup()
        self._barrier = threading.Barrier(int(self.args.get("parties", 4)))  # type: ignore[call-overload]

    @command
    def meet(self) -> int:
        """Wait until all parties are inside this command at once; return the
        thread id. It fails (BrokenBarrierError) unless the calls overlap."""
        self._barrier.wait(timeout=_WAIT_TIMEOUT)
        return threading.get_ident()


class FailingSetupAdapter(BasicAdapter):
    def setup(self) -> None:
        raise RuntimeError("setup exploded on purpose")


class FailingTeardownAdapter(BasicAdapter):
    def teardown(self) -> None:
        raise RuntimeError("teardown exploded on purpose")


class NotAnAdapter:
    pass
