"""A worker slot: one place in a pool, kept filled with a live worker process.

The pool's supervisor holds one permanent slot per worker. A slot reports started
at once, then starts its worker (bounded by the pool's startup limiter) and serves
events until cancelled:

- its worker exited (crashed, killed on timeout, failed a health check): a worker
  that dies *after* its handshake is replaced here, however often, with a short
  backoff when it crashes in a tight loop; that is a worker's ordinary failure;
- a recycle was requested: start-before-stop. The replacement starts and takes
  calls; only then does the old worker stop taking calls, finish those in flight
  (within ``drain_timeout``) and shut down. If the replacement cannot start, the old
  worker keeps serving and the recycle is retried later. A recycle never counts
  against the pool's restart intensity.

A worker that fails to *start* (outside a recycle) makes the slot exit abnormally,
so the supervisor's restart intensity counts it, and past it the pool fails fast.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from snakepit.exceptions import WorkerStartError
from snakepit.lifecycle import RecycleReason

from ._worker import WorkerProcess

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ("RecycleTicket", "WorkerSlot")

#: A worker that lived less than this crashed "in a tight loop".
TIGHT_LOOP_SECONDS = 1.0
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0
#: First delay before retrying a recycle whose replacement failed to start.
RECYCLE_RETRY_START = 1.0
RECYCLE_RETRY_MAX = 30.0


@attrs.define(eq=False)
class RecycleTicket:
    """The outcome of one recycle request, for whoever waits on it."""

    done: anyio.Event = attrs.Factory(anyio.Event)
    new_worker_id: str | None = None
    error: BaseException | None = None


@attrs.frozen
class _Exited:
    worker: WorkerProcess


@attrs.frozen
class _Recycle:
    worker: WorkerProcess
    reason: RecycleReason
    ticket: RecycleTicket | None
    retry_delay: float = RECYCLE_RETRY_START


class WorkerSlot:
    """Keeps one worker process alive for its pool (a supervised child)."""

    def __init__(self, index: int, pool: Pool) -> None:
        self.index = index
        self._pool = pool
        self.worker: WorkerProcess | None = None
        self._tg: TaskGroup | None = None
        self._send: MemoryObjectSendStream[_Exited | _Recycle] | None = None

    async def run(self, *, task_status: TaskStatus[Any]) -> None:
        """Report started, then keep a worker alive until cancelled.

        Raises:
            WorkerStartError: a worker could not start; the supervisor decides.
        """
        task_status.started(self)
        send, receive = anyio.create_memory_object_stream[_Exited | _Recycle](math.inf)
        self._send = send
        failure: WorkerStartError | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    await self._serve(receive)
                except WorkerStartError as exc:
                    failure = exc
                    tg.cancel_scope.cancel()
        finally:
            self._send = None
            send.close()
            receive.close()
        if failure is not None:
            raise failure

    async def _serve(self, receive: Any) -> None:
        await self._start_new(previous=self.worker)
        backoff = BACKOFF_START
        async for event in receive:
            if isinstance(event, _Recycle):
                await self._recycle(event)
                continue
            exited: WorkerProcess = event.worker
            if exited is not self.worker:
                continue  # a retired worker: already replaced
            if self._pool.closing:
                continue
            lived = time.monotonic() - exited.started_at
            if lived < TIGHT_LOOP_SECONDS:
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            else:
                backoff = BACKOFF_START
            await self._start_new(previous=exited)

    async def _start_worker(self) -> WorkerProcess:
        assert self._tg is not None
        worker = self._pool._make_worker(self)
        async with self._pool._limiter:
            await self._tg.start(self._run_worker, worker)
        return worker

    async def _start_new(self, previous: WorkerProcess | None) -> None:
        try:
            worker = await self._start_worker()
        except WorkerStartError as exc:
            self._pool._record_start_failure(exc)
            raise
        self.worker = worker
        if previous is not None:
            self._pool._count_restart(previous, worker)

    async def _run_worker(
        self, worker: WorkerProcess, *, task_status: TaskStatus[WorkerProcess]
    ) -> None:
        try:
            with anyio.CancelScope() as scope:
                worker.scope = scope
                await worker.run(task_status=task_status)
        finally:
            self._pool._worker_exited(worker)
        if self._send is not None:
            self._send.send_nowait(_Exited(worker))

    # --- Recycling ---

    def request_recycle(
        self, worker: WorkerProcess, reason: RecycleReason, ticket: RecycleTicket | None
    ) -> None:
        """Ask for *worker* to be replaced (never blocks)."""
        if self._send is None:
            if ticket is not None:
                ticket.error = WorkerStartError("the slot is stopping")
                ticket.done.set()
            return
        worker.recycling = True
        self._send.send_nowait(_Recycle(worker, reason, ticket))

    async def _recycle(self, request: _Recycle) -> None:
        old, ticket = request.worker, request.ticket
        if old is not self.worker or not old.accepting or self._pool.closing:
            old.recycling = False
            if ticket is not None:
                ticket.error = WorkerStartError(
                    f"worker {old.id} is no longer serving; nothing to recycle"
                )
                ticket.done.set()
            return
        async with self._pool._recycle_limiter:
            try:
                new = await self._start_worker()
            except WorkerStartError as exc:
                self._pool._recycle_failed(old, request.reason, exc)
                old.recycling = False
                if ticket is not None:
                    ticket.error = exc
                    ticket.done.set()
                else:
                    self._retry_later(request)
                return
        self.worker = new
        self._pool.note_recycle(old, request.reason)
        if ticket is not None:
            ticket.new_worker_id = new.id
            ticket.done.set()
        old.stop_accepting()
        assert self._tg is not None
        self._tg.start_soon(self._retire, old)

    def _retry_later(self, request: _Recycle) -> None:
        assert self._tg is not None

        async def retry() -> None:
            await anyio.sleep(request.retry_delay)
            if self._send is not None and request.worker is self.worker:
                request.worker.recycling = True
                self._send.send_nowait(
                    attrs.evolve(
                        request,
                        retry_delay=min(request.retry_delay * 2, RECYCLE_RETRY_MAX),
                    )
                )

        self._tg.start_soon(retry)

    async def _retire(self, old: WorkerProcess) -> None:
        """Let *old* finish its calls (bounded), then shut it down gracefully."""
        with anyio.move_on_after(self._pool.config.drain_timeout):
            await old.drained.wait()
        if old.scope is not None:
            old.scope.cancel()
