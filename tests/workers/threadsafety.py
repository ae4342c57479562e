"""Test adapters for the thread-safety checker (``tests/worker/test_thread_safety.py``).

Anything that blocks waits for a file or a barrier with a timeout, so a test
forces overlap deterministically and a worker never blocks forever.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from snakepit.adapter import ThreadSafeAdapter, command, serialized

_WAIT_TIMEOUT = 30.0


def _wait_for_file(path: str) -> None:
    deadline = time.monotonic() + _WAIT_TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {_WAIT_TIMEOUT} s")
        time.sleep(0.002)


def import_from(directory: str, name: str) -> None:
    """Import module *name* from *directory*."""
    if directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.import_module(name)


class CheckedAdapter(ThreadSafeAdapter):
    """Commands that overlap on purpose. Adapter args: ``parties`` (the barrier
    of ``meet``), ``preload`` (``[directory, module]`` imported in setup)."""

    __unsafe_commands__ = frozenset({"unsafe_wait"})

    def setup(self) -> None:
        self._barrier = threading.Barrier(int(self.args.get("parties", 4)))  # type: ignore[call-overload]
        preload = self.args.get("preload")
        if isinstance(preload, list):
            import_from(*preload)

    @command
    def meet(self) -> int:
        """Wait until all parties are inside at once; return the thread id."""
        self._barrier.wait(timeout=_WAIT_TIMEOUT)
        return threading.get_ident()

    @command
    def add(self, a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @command
    def wait_for_file(self, path: str) -> int:
        """Block until *path* exists; return the thread id."""
        _wait_for_file(path)
        return threading.get_ident()

    @command
    def unsafe_wait(self, entered: str, gate: str) -> str:
        """Create *entered*, then block until *gate* exists."""
        Path(entered).touch()
        _wait_for_file(gate)
        return "done"

    @command
    @serialized
    def exclusive(self, entered: str, gate: str) -> int:
        """Create *entered*, then block until *gate* exists (one call at a time)."""
        Path(entered).touch()
        _wait_for_file(gate)
        return threading.get_ident()

    @command
    def import_module(self, directory: str, name: str) -> str:
        """Import module *name* from *directory*."""
        import_from(directory, name)
        return name

    @command
    def import_then_fail(self, directory: str, name: str) -> None:
        """Import module *name* from *directory*, then raise."""
        import_from(directory, name)
        raise ValueError("failed on purpose")

    @command
    def count(self, n: int) -> Iterator[int]:
        """Stream 0 .. n-1."""
        yield from range(n)
