"""The showcase adapter: the default adapter, one small command per feature.

It mirrors the showcase adapter of the Elixir library: a health check, echo and
arithmetic, a blocking and a CPU-bound command, raised errors, a per-worker counter
(state kept on the adapter instance, so it lives as long as the worker process) and
two streaming commands.

Worker side: standard library only (see DESIGN 2.1).

Commands:

- ``ping(message=None)``: a health check with the worker's pid and the time.
- ``echo(**kwargs)``: return the arguments it was called with.
- ``add(a, b)``: return ``a + b``.
- ``sleep(seconds)``: block, then say how long.
- ``error_demo(error_type, message)``: raise a builtin exception.
- ``adapter_info()``: describe the worker's interpreter and this adapter.
- ``cpu_bound_task(n)``: a pure-Python loop (holds the GIL).
- ``set_counter(value)``, ``get_counter()``, ``increment_counter(by)``: the
  per-worker counter.
- ``stream_fibonacci(n)``: stream the first *n* Fibonacci numbers.
- ``stream_progress(steps, delay)``: stream progress reports.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator

from snakepit.adapter import Adapter, command

__all__ = ("ShowcaseAdapter",)

_ERROR_TYPES: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "RuntimeError": RuntimeError,
    "KeyError": KeyError,
    "ZeroDivisionError": ZeroDivisionError,
    "TypeError": TypeError,
}

_CPU_MODULUS = 1_000_000_007


def _check_count(name: str, value: object) -> int:
    """Return *value* if it is a non-negative int (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _check_seconds(name: str, value: object) -> float:
    """Return *value* if it is a non-negative number (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


class ShowcaseAdapter(Adapter):
    """The default adapter: a tour of what a command can do.

    It takes no adapter arguments (any given are kept in :attr:`args` and
    ignored). Not thread-safe: the counter is a plain attribute, so it runs in
    the process profile (one call at a time per worker).

    .. versionadded:: 0.1
    """

    def setup(self) -> None:
        """Start the per-worker counter at 0."""
        self.counter = 0

    # --- Basics ---

    @command
    def ping(self, message: str | None = None) -> dict[str, object]:
        """Answer pong, with the worker's pid and the time (echoes *message*)."""
        reply: dict[str, object] = {
            "status": "pong",
            "timestamp": time.time(),
            "pid": os.getpid(),
        }
        if message is not None:
            reply["message"] = message
        return reply

    @command
    def echo(self, **kwargs: object) -> dict[str, object]:
        """Return the arguments it was called with, as a map."""
        return dict(kwargs)

    @command
    def add(self, a: float, b: float) -> float:
        """Return a + b."""
        return a + b

    @command
    def sleep(self, seconds: float) -> dict[str, float]:
        """Sleep *seconds* (blocking the worker), then say how long."""
        time.sleep(_check_seconds("seconds", seconds))
        return {"slept": seconds}

    @command
    def error_demo(
        self,
        error_type: str = "ValueError",
        message: str = "this error was raised on purpose by error_demo",
    ) -> None:
        """Raise a builtin exception: ValueError, RuntimeError, KeyError,
        ZeroDivisionError or TypeError (any other name raises ValueError)."""
        raise _ERROR_TYPES.get(error_type, ValueError)(message)

    @command
    def adapter_info(self) -> dict[str, object]:
        """Describe the worker: pid, Python version, GIL, thread, commands."""
        is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
        return {
            "pid": os.getpid(),
            "python_version": sys.version.split()[0],
            "gil_enabled": True if is_gil_enabled is None else bool(is_gil_enabled()),
            "thread": threading.get_ident(),
            "adapter": type(self).__qualname__,
            "commands": sorted(self.commands()),
        }

    @command
    def cpu_bound_task(self, n: int = 100_000) -> dict[str, int]:
        """Burn CPU in pure Python: the sum of i*i for i < n, modulo 1e9+7."""
        _check_count("n", n)
        total = 0
        for i in range(n):
            total = (total + i * i) % _CPU_MODULUS
        return {"result": total, "n": n}

    # --- The per-worker counter ---

    @command
    def set_counter(self, value: int) -> int:
        """Set this worker's counter to *value*; return it."""
        if type(value) is not int:
            raise TypeError(f"value must be an int, got {type(value).__name__}")
        self.counter = value
        return self.counter

    @command
    def get_counter(self) -> int:
        """Return this worker's counter."""
        return self.counter

    @command
    def increment_counter(self, by: int = 1) -> int:
        """Add *by* (default 1) to this worker's counter; return the new value."""
        if type(by) is not int:
            raise TypeError(f"by must be an int, got {type(by).__name__}")
        self.counter += by
        return self.counter

    # --- Streams ---

    @command
    def stream_fibonacci(self, n: int = 10) -> Iterator[dict[str, int]]:
        """Stream the first n Fibonacci numbers as {"index", "value"} maps."""
        _check_count("n", n)
        current, following = 0, 1
        for index in range(n):
            yield {"index": index, "value": current}
            current, following = following, current + following

    @command
    def stream_progress(
        self, steps: int = 5, delay: float = 0.0
    ) -> Iterator[dict[str, object]]:
        """Stream {"step", "total", "percent"} for steps 1..steps, *delay* s apart."""
        _check_count("steps", steps)
        pause = _check_seconds("delay", delay)
        for step in range(1, steps + 1):
            if step > 1 and pause:
                time.sleep(pause)
            yield {"step": step, "total": steps, "percent": 100.0 * step / steps}
