"""Pools of supervised worker processes (the parent side).

``async with open_pool(adapter="pkg.mod:Class", size=4) as pool:
await pool.execute("add", {"a": 1, "b": 2})``

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._pool import Pool as Pool
from ._pool import open_pool as open_pool
from ._stream import ChunkStream as ChunkStream
from ._worker import WorkerProcess as WorkerProcess

__all__ = ("Pool", "open_pool", "ChunkStream", "WorkerProcess")
