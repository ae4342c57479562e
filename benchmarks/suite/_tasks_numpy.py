"""The NumPy variant of the peers' work: importing this module imports NumPy.

A peer's worker imports it through ``_tasks.initialize_numpy`` (its initializer),
as ``benchmarks._numpy_adapter`` is imported by snakepit's workers when they load
their adapter: "a worker with NumPy" means the same thing for every contender.
The parent never imports it (a forked worker would inherit NumPy for free).
"""

from __future__ import annotations

import numpy as np

__all__ = ("numpy_matmul",)


def numpy_matmul(n: int) -> float:
    """``trace(a @ a.T)`` for ``a = arange(n*n).reshape(n, n) / n``."""
    a = np.arange(n * n, dtype=np.float64).reshape(n, n) / n
    return float(np.trace(a @ a.T))
