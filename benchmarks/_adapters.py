"""The benchmark suite's adapter: the same tasks the peers run, as commands.

``python -m benchmarks`` starts snakepit pools with
``adapter="benchmarks._adapters:BenchAdapter"``; each command calls the function of
``benchmarks.suite._tasks`` that the peers' workers call, so both sides do the
same work per call. ``benchmarks._numpy_adapter:NumpyBenchAdapter`` is the variant
whose module imports NumPy when the worker loads it.

Stateless, so declared thread-safe: the thread profile can serve it too.
"""

from __future__ import annotations

from benchmarks.suite import _tasks
from snakepit.adapter import Adapter, command

__all__ = ("BenchAdapter",)


class BenchAdapter(Adapter):
    """``add``, ``echo``, ``pid``, ``python_work``, ``numpy_matmul``: the suite's
    workloads. NumPy is imported by ``numpy_matmul`` on its first call only."""

    __thread_safe__ = True

    @command
    def add(self, a: int, b: int) -> int:
        """Return ``a + b``: the smallest call."""
        return a + b

    @command
    def echo(self, data: bytes) -> bytes:
        """Return *data*: a payload each way."""
        return data

    @command
    def pid(self, hold: float = 0.0) -> int:
        """The worker's pid, after holding the worker *hold* seconds."""
        return _tasks.pid(hold)

    @command
    def python_work(self, n: int) -> int:
        """CPU-bound pure Python: the sum of i*i for i < n."""
        return _tasks.python_work(n)

    @command
    def numpy_matmul(self, n: int) -> float:
        """``trace(a @ a.T)`` of an n x n matrix (NumPy)."""
        return _tasks.numpy_matmul(n)
