"""The threaded showcase adapter: a thread-safe adapter for the thread profile.

Every command is safe to run on several threads at once and says which thread ran
it, so a thread-profile pool (``worker_profile="thread"``) can show its calls
spreading over a worker's threads. Under a free-threaded interpreter (3.13t and
later), :meth:`~ThreadedShowcaseAdapter.compute_intensive` calls run in parallel;
with the GIL they take turns, and only the GIL-releasing ones (``sleep``,
NumPy's ``matrix_multiply``) overlap.

Worker side: standard library only; NumPy is imported inside
:meth:`~ThreadedShowcaseAdapter.matrix_multiply`, when it is called.

Commands:

- ``ping(message=None)``: a health check with pid, thread id and the time.
- ``add(a, b)``: return ``a + b``.
- ``compute_intensive(n)``: a pure-Python CPU loop; result and thread id.
- ``matrix_multiply(size)``: multiply two ``size`` x ``size`` matrices (NumPy).
- ``sleep(seconds)``: block; thread id, pid, and how many sleeps overlapped it.
- ``increment_counter(by)``: a per-worker counter, shared by the threads, under
  a lock.
- ``adapter_info()``: pid, thread id, Python version, whether the GIL is on.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import sys
import threading
import time

from snakepit.adapter import ThreadSafeAdapter, command

from .showcase import _check_count, _check_seconds

__all__ = ("ThreadedShowcaseAdapter",)

_CPU_MODULUS = 1_000_000_007
_MAX_MATRIX_SIZE = 4096


def _gil_enabled() -> bool:
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_gil_enabled is None else bool(is_gil_enabled())


class ThreadedShowcaseAdapter(ThreadSafeAdapter):
    """A tour of a thread-safe adapter: each command reports the thread it ran on.

    It takes no adapter arguments (any given are kept in :attr:`args` and
    ignored). Its only shared state, the counter and the count of running sleeps,
    is guarded by :meth:`~snakepit.adapter.ThreadSafeAdapter.lock`.

    .. versionadded:: 0.1
    """

    def setup(self) -> None:
        """Start the counter at 0, with no sleep running."""
        self.counter = 0
        # running sleep -> the most sleeps seen running at once while it ran
        self._sleeping: dict[object, int] = {}

    # --- Basics ---

    @command
    def ping(self, message: str | None = None) -> dict[str, object]:
        """Answer pong, with the pid, the thread id and the time."""
        reply: dict[str, object] = {
            "status": "pong",
            "pid": os.getpid(),
            "thread_id": threading.get_ident(),
            "timestamp": time.time(),
        }
        if message is not None:
            reply["message"] = message
        return reply

    @command
    def add(self, a: float, b: float) -> float:
        """Return a + b."""
        return a + b

    @command
    def adapter_info(self) -> dict[str, object]:
        """Describe the worker: pid, thread id, Python version, GIL."""
        return {
            "pid": os.getpid(),
            "thread_id": threading.get_ident(),
            "python_version": sys.version.split()[0],
            "gil_enabled": _gil_enabled(),
            "thread_safe": self.__thread_safe__,
            "adapter": type(self).__qualname__,
            "commands": sorted(self.commands()),
        }

    # --- Work ---

    @command
    def compute_intensive(self, n: int = 100_000) -> dict[str, int]:
        """Burn CPU in pure Python: the sum of i*i for i < n, modulo 1e9+7."""
        _check_count("n", n)
        # A fresh int per call: under free-threading, objects shared by threads
        # (a module constant) pay for contended reference counting.
        modulus = int(str(_CPU_MODULUS))
        total = 0
        for i in range(n):
            total = (total + i * i) % modulus
        return {"result": total, "n": n, "thread_id": threading.get_ident()}

    @command
    def matrix_multiply(self, size: int = 100) -> dict[str, object]:
        """Multiply two size x size matrices with NumPy; return a checksum."""
        _check_count("size", size)
        if size > _MAX_MATRIX_SIZE:
            raise ValueError(f"size must be <= {_MAX_MATRIX_SIZE}, got {size}")
        try:
            import numpy as np
        except ImportError as exc:
            raise ImportError(
                "matrix_multiply needs numpy, which is not installed in the "
                f"worker's interpreter ({sys.executable}); install it there "
                "(pip install numpy)"
            ) from exc
        # Each call builds its own arrays: nothing is shared between threads.
        a = np.arange(size * size, dtype=np.float64).reshape(size, size) / (size or 1)
        product = a @ a.T
        return {
            "size": size,
            "trace": float(np.trace(product)),
            "sum": float(product.sum()),
            "thread_id": threading.get_ident(),
        }

    @command
    def sleep(self, seconds: float) -> dict[str, object]:
        """Sleep *seconds* (other threads keep serving); say who slept.

        ``concurrent`` is the most sleeps that ran at once while this one ran,
        itself included: calls spread over a worker's threads overlap.
        """
        pause = _check_seconds("seconds", seconds)
        me = object()
        with self.lock("sleeping"):
            self._sleeping[me] = 0
            running = len(self._sleeping)
            for sleep in self._sleeping:
                self._sleeping[sleep] = max(self._sleeping[sleep], running)
        try:
            time.sleep(pause)
        finally:
            with self.lock("sleeping"):
                concurrent = self._sleeping.pop(me)
        return {
            "slept": seconds,
            "thread_id": threading.get_ident(),
            "pid": os.getpid(),
            "concurrent": concurrent,
        }

    @command
    def increment_counter(self, by: int = 1) -> int:
        """Add *by* (default 1) to the worker's counter, under its lock; return
        the new value."""
        if type(by) is not int:
            raise TypeError(f"by must be an int, got {type(by).__name__}")
        with self.lock("counter"):
            self.counter += by
            return self.counter
