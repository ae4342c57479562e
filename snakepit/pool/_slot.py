"""A worker slot: one place in a pool, kept filled with a live worker process.

The pool's supervisor holds one permanent slot per worker. A slot reports started
at once, then starts its worker (bounded by the pool's startup limiter) and waits
for it to exit. A worker that crashes *after* its handshake is replaced inside the
slot, however often, with a short backoff when it crashes in a tight loop: that is
a worker's ordinary failure, not the pool's. A worker that fails to *start* makes
the slot exit abnormally, so the supervisor's restart intensity counts it, and
past it the pool fails fast instead of looping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from snakepit.exceptions import WorkerStartError

from ._worker import WorkerProcess

__all__ = ("WorkerSlot",)

#: A worker that lived less than this crashed "in a tight loop".
TIGHT_LOOP_SECONDS = 1.0
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0


class WorkerSlot:
    """Keeps one worker process alive for its pool (a supervised child)."""

    def __init__(
        self,
        index: int,
        make_worker: Callable[[], WorkerProcess],
        limiter: anyio.CapacityLimiter,
        on_start_failure: Callable[[WorkerStartError], None],
        on_replaced: Callable[[WorkerProcess, WorkerProcess], None],
    ) -> None:
        self.index = index
        self._make_worker = make_worker
        self._limiter = limiter
        self._on_start_failure = on_start_failure
        self._on_replaced = on_replaced
        self.worker: WorkerProcess | None = None

    async def run(self, *, task_status: TaskStatus[Any]) -> None:
        """Report started, then keep a worker alive until cancelled.

        Raises:
            WorkerStartError: a worker could not start; the supervisor decides.
        """
        task_status.started(self)
        backoff = BACKOFF_START
        while True:
            previous = self.worker
            worker = self._make_worker()
            failure: WorkerStartError | None = None
            async with anyio.create_task_group() as tg:
                try:
                    async with self._limiter:
                        await tg.start(worker.run)
                except WorkerStartError as exc:
                    failure = exc
                else:
                    self.worker = worker
                    if previous is not None:
                        self._on_replaced(previous, worker)
            if failure is not None:
                self._on_start_failure(failure)
                raise failure
            lived = time.monotonic() - worker.started_at
            if lived < TIGHT_LOOP_SECONDS:
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            else:
                backoff = BACKOFF_START
