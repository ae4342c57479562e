"""The work every contender runs, as plain top-level functions.

Process-pool peers pickle functions by reference, so these must import from a
small, plain module in the worker (a spawned child imports this module, and only
this module, to run them). ``benchmarks._adapters`` serves the same functions to
snakepit's workers and ``benchmarks.suite._rawpipe_child`` to the raw-pipe
baseline: every contender runs the same code per call.

NumPy is never imported here at module level (see ``_tasks_numpy`` for the
variant that does): a worker of the plain variant must stay free of it.
"""

from __future__ import annotations

import importlib
import os
import time


def initialize() -> None:
    """The plain worker initializer: nothing to do (the numpy variant imports
    NumPy; see ``_tasks_numpy.initialize``)."""


def initialize_numpy() -> None:
    """The "with numpy" worker initializer: import ``_tasks_numpy`` (and so NumPy)
    in the worker. Named here, not there, so the parent that passes it never
    imports NumPy itself (a forked worker would inherit it for free)."""
    importlib.import_module("benchmarks.suite._tasks_numpy")


def pid_numpy(hold: float = 0.0) -> int:
    """:func:`pid` after :func:`initialize_numpy`: the rendezvous call for pools
    without an initializer (``anyio.to_process``)."""
    initialize_numpy()
    return pid(hold)


def add(a: int, b: int) -> int:
    """As small as a call gets, so the harness is what is measured."""
    return a + b


def echo(data: bytes) -> bytes:
    """Send the payload back: the transport is what is measured."""
    return data


def pid(hold: float = 0.0) -> int:
    """The worker's pid, after holding the worker for *hold* seconds.

    The hold keeps a ready worker busy so queued calls go to workers that are
    still starting: see the startup section.
    """
    if hold > 0:
        time.sleep(hold)
    return os.getpid()


def python_work(n: int) -> int:
    """CPU-bound pure Python: the sum of i*i for i < n (holds the GIL)."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def expected_python_work(n: int) -> int:
    """:func:`python_work`'s result, in closed form."""
    return (n - 1) * n * (2 * n - 1) // 6 if n > 0 else 0


def numpy_matmul(n: int) -> float:
    """``trace(a @ a.T)`` for ``a = arange(n*n).reshape(n, n) / n``: the one in
    ``_tasks_numpy``, imported on first use so this module stays NumPy-free."""
    from benchmarks.suite._tasks_numpy import numpy_matmul

    return numpy_matmul(n)


def expected_matmul(n: int) -> float:
    """:func:`numpy_matmul`'s result: the sum of every element of *a* squared."""
    count = n * n
    return (count - 1) * count * (2 * count - 1) / 6 / (n * n)
