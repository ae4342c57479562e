"""``NumpyBenchAdapter``: :class:`~benchmarks._adapters.BenchAdapter` in a module
that imports NumPy at the top, so a worker imports NumPy as it loads its adapter
(the "with numpy" rows of the startup and memory sections; the NumPy rows of the
cpu section)."""

from __future__ import annotations

import numpy as np

from benchmarks._adapters import BenchAdapter

__all__ = ("NumpyBenchAdapter",)

assert np.__version__  # imported for its side effect: the worker loads NumPy


class NumpyBenchAdapter(BenchAdapter):
    """The same commands as :class:`BenchAdapter`, with NumPy loaded."""

    __thread_safe__ = True
