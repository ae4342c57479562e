"""A pool: supervised worker processes and the dispatcher in front of them.

The dispatcher is plain in-process state: each worker has a capacity and a load; a
call goes to the least-loaded worker with room (or to its session's worker), else
waits in a FIFO queue bounded by ``max_queue_size`` and ``queue_timeout``. Capacity
frees when the worker's answer arrives, so no slot ever leaks, whatever the caller
did meanwhile.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, final

import anyio
from anyio.abc import TaskStatus

from snakepit import telemetry
from snakepit._callmeta import collect
from snakepit._registry import (
    RunRegistry,
    open_run,
    resolve_data_dir,
    resolve_instance,
)
from snakepit._service import running
from snakepit.config import PoolConfig
from snakepit.exceptions import (
    ConfigError,
    PoolClosed,
    PoolSaturated,
    PoolUnavailable,
    QueueTimeout,
    RestartIntensityExceeded,
    SerializationError,
    SnakepitError,
    WorkerNotFound,
    WorkerStartError,
)
from snakepit.lifecycle import RecycleReason, is_near, run_lifecycle
from snakepit.profiles import profile_for
from snakepit.protocol import Error, Frame, encode_call
from snakepit.supervisor import ChildSpec, Restart, Strategy, Supervisor
from snakepit.telemetry import Span
from snakepit.telemetry._bus import span_listened
from snakepit.telemetry._span import QUIET_SPAN, QuietSpan
from snakepit.worker._dispatch import MAP_COMMAND

from ._ahead import CallTimes
from ._signal import Signal, loop_clock, new_signal, signal_type
from ._slot import RecycleTicket, WorkerSlot
from ._spawn import worker_env
from ._stream import ChunkStream
from ._template import Template
from ._worker import NotRun, Pending, Recalled, WorkerProcess, remote_error

__all__ = ("Pool", "open_pool")

logger = logging.getLogger("snakepit.pool")

_E_REQUEST = ("snakepit", "request")
_E_SATURATED = ("snakepit", "pool", "saturated")
_E_QUEUE_TIMEOUT = ("snakepit", "pool", "queue_timeout")
_E_RESTARTED = ("snakepit", "worker", "restarted")
_E_RECYCLED = ("snakepit", "worker", "recycled")
_E_CAPACITY = ("snakepit", "pool", "capacity_reached")
_E_RECYCLE_FAILED = ("snakepit", "worker", "recycle_failed")
#: After a call, re-sample a worker's RSS if the last sample is this old.
_RSS_SAMPLE_AFTER_CALL = 0.5

#: How often a call refused by a stopping worker is sent elsewhere.
_MAX_REDISPATCH = 3
#: Sessions remembered for affinity (oldest forgotten first).
_MAX_SESSIONS = 10_000


class _PoolSupervisor(Supervisor):
    """One permanent slot per worker, restarted one for one."""

    strategy = Strategy.ONE_FOR_ONE

    def __init__(self, pool: Pool) -> None:
        super().__init__(name=f"pool:{pool.config.name}")
        self.intensity = pool.config.restart_intensity
        self.period = pool.config.restart_period
        self._pool = pool

    def init(self) -> list[ChildSpec]:
        return [
            ChildSpec(
                id=f"slot-{i}",
                start=self._pool._make_slot(i).run,
                restart=Restart.PERMANENT,
                shutdown=self._pool.config.shutdown_timeout + 5.0,
            )
            for i in range(self._pool.config.pool_size)
        ]


@final
class Pool:
    """Worker processes of one adapter and profile, and the calls sent to them.

    Build one with :func:`open_pool`, or run :meth:`run` as a supervised child.
    *instance* is its orphan-cleanup instance token (an application passes its
    own); by default the pool's ``instance`` key, else ``SNAKEPIT_INSTANCE``, else
    derived from the working directory and the pool's name.

    .. versionadded:: 0.1
    """

    def __init__(self, config: PoolConfig, *, instance: str | None = None) -> None:
        self.config = config
        # Read per call: a property of the (frozen) config, looked up once.
        self._request_timeout = config.effective_request_timeout
        #: The instance token (orphan cleanup); ``None``: the pool's own default.
        self._instance = instance
        self._registry: RunRegistry | None = None
        self._template: Template | None = None
        profile = profile_for(config.worker_profile)()
        self._capacity = profile.capacity(config.threads_per_worker)
        #: Calls are sent ahead to busy workers, so idle ones may take them back.
        self._pipelining = config.pipeline_depth > 1
        #: Which commands are short enough to send calls ahead behind them.
        self._call_times = CallTimes() if self._pipelining else None
        self._kill_on_abandon = profile.kill_on_abandon
        self._workers: dict[str, WorkerProcess] = {}
        self._queue: collections.deque[Pending] = collections.deque()
        self._queue_filled = anyio.Event()
        self._sessions: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._ids = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self._limiter = anyio.CapacityLimiter(config.startup_batch_size)
        self._recycle_limiter = anyio.CapacityLimiter(config.max_concurrent_recycles)
        self._recycles_by_reason: dict[str, int] = {}
        #: Every worker past its handshake and not yet exited, draining ones too.
        self._live: set[WorkerProcess] = set()
        self._memory_threshold = (
            None
            if config.memory_threshold_mb is None
            else config.memory_threshold_mb * 1024 * 1024
        )
        self._supervisor = _PoolSupervisor(self)
        self._closed = False
        self._broken: BaseException | None = None
        self._last_start_failure: WorkerStartError | None = None
        self._changed = anyio.Event()
        #: anyio.current_time, as the backend reads it (found once in _serve).
        self._clock: Callable[[], float] = anyio.current_time
        self._new_signal: Callable[[], Signal] = new_signal
        self._stats = dict.fromkeys(
            (
                "requests",
                "errors",
                "queue_timeouts",
                "saturated",
                "restarts",
                "recycles",
            ),
            0,
        )

    # --- Running ---

    async def run(
        self, *, task_status: TaskStatus[Pool] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start ``pool_size`` workers; report started once all are ready; serve
        until :meth:`aclose` (or cancellation).

        First the pool records its run and ends what dead runs of its instance
        left behind (see ``docs/reliability.md``, "Orphan cleanup").

        Raises:
            PoolUnavailable: workers could not be started (past the restart
                intensity); chained to the last start failure, whose message
                carries the worker's stderr tail.
        """
        instance = self._instance or resolve_instance(
            self.config.instance, [self.config.name]
        )
        async with open_run(
            instance=instance,
            data_dir=resolve_data_dir(self.config.data_dir),
            pools=[self.config.name],
        ) as registry:
            self._registry = registry
            await self._serve(task_status)

    async def _serve(self, task_status: TaskStatus[Pool]) -> None:
        self._clock = loop_clock()
        self._new_signal = signal_type()
        try:
            async with anyio.create_task_group() as tg:
                sup_done = anyio.Event()

                async def supervise() -> None:
                    try:
                        await self._supervisor.run()
                    except RestartIntensityExceeded as exc:
                        self._break(exc)
                    finally:
                        sup_done.set()
                        if self._template is not None:
                            self._template.close()  # no worker is left
                        self._notify()

                if self.config.start_method == "template":
                    registry = self._registry
                    self._template = await tg.start(
                        Template(
                            self.config,
                            worker_env(
                                self.config,
                                worker_id=f"{self.config.name}-template",
                                run_id=registry.run_id if registry else None,
                                instance=registry.instance if registry else None,
                            ),
                            registry.run_id if registry else None,
                        ).run
                    )
                if self._registry is not None:
                    tg.start_soon(self._registry.write_changes)
                tg.start_soon(supervise)
                tg.start_soon(self._expire_queue)
                while (
                    len(self._workers) < self.config.pool_size and not sup_done.is_set()
                ):
                    await self._wait_changed()
                if not sup_done.is_set():
                    if self._registry is not None:
                        # A started pool's run file names all its workers.
                        await self._registry.flush()
                    task_status.started(self)
                    tg.start_soon(run_lifecycle, self)
                await sup_done.wait()
                tg.cancel_scope.cancel()
            if self._broken is not None and not self._closed:
                raise self._unavailable()
        finally:
            self._closed = True
            self._fail_queue(PoolClosed(f"pool {self.config.name!r} is closed"))

    async def aclose(self) -> None:
        """Stop taking calls, fail queued ones with :class:`PoolClosed`, let calls
        in flight finish (within ``shutdown_timeout``), and stop every worker."""
        self.close_nowait()
        await self._supervisor.stop()

    def close_nowait(self) -> None:
        """Stop taking calls and fail the queued ones with :class:`PoolClosed`;
        workers keep running the calls in flight. Does not wait."""
        self._closed = True
        self._fail_queue(PoolClosed(f"pool {self.config.name!r} is shutting down"))

    def _break(self, exc: BaseException) -> None:
        self._broken = exc
        self._fail_queue(self._unavailable())

    def _unavailable(self) -> PoolUnavailable:
        cause = self._last_start_failure
        detail = f": {cause}" if cause is not None else ""
        error = PoolUnavailable(
            f"pool {self.config.name!r}: workers could not be started{detail}"
        )
        error.__cause__ = cause or self._broken
        return error

    # --- Slots and workers (called by the slots and workers) ---

    def _make_slot(self, index: int) -> WorkerSlot:
        return WorkerSlot(index, self)

    def _make_worker(self, slot: WorkerSlot) -> WorkerProcess:
        worker = WorkerProcess(
            self.config,
            f"{self.config.name}-{next(self._worker_ids)}",
            capacity=self._capacity,
            kill_on_abandon=self._kill_on_abandon,
            on_ready=self._worker_ready,
            on_gone=self._worker_gone,
            on_release=self._release,
        )
        worker.slot = slot
        worker.registry = self._registry
        worker.template = self._template
        worker.call_times = self._call_times
        limit = self.config.worker_max_requests
        jitter = self.config.worker_max_requests_jitter
        worker.max_requests = limit + random.randint(0, jitter) if jitter else limit
        return worker

    def _record_start_failure(self, failure: WorkerStartError) -> None:
        self._last_start_failure = failure
        logger.error("%s", failure)

    def _count_restart(self, previous: WorkerProcess, worker: WorkerProcess) -> None:
        self._stats["restarts"] += 1
        telemetry.execute(
            _E_RESTARTED,
            {"count": 1},
            {
                "worker_id": worker.id,
                "previous_worker_id": previous.id,
                "pool": self.config.name,
                "pid": worker.pid,
            },
        )

    def _worker_ready(self, worker: WorkerProcess) -> None:
        self._workers[worker.id] = worker
        self._live.add(worker)
        self._serve_queue(worker)
        if self._pipelining and not self._queue:
            for _ in range(worker.capacity - worker.load):
                self._recall_for(worker)
        self._notify()

    def _worker_gone(self, worker: WorkerProcess) -> None:
        self._workers.pop(worker.id, None)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    # --- Dispatch ---

    def _next_id(self) -> int:
        return next(self._ids)

    def _pick(self, session_id: str | None) -> WorkerProcess | None:
        if session_id is not None:
            wid = self._sessions.get(session_id)
            worker = self._workers.get(wid) if wid is not None else None
            if worker is not None and worker.load < worker.capacity:
                return worker
        # The least loaded worker with a free unit; only if there is none, the
        # least loaded one a call may be sent ahead to. Two passes, so that a
        # pool of many workers does not ask each busy one how long its calls
        # may take (room_ahead) while another is free.
        best: WorkerProcess | None = None
        for worker in self._workers.values():
            load = worker.load
            if load < worker.capacity and (best is None or load < best.load):
                best = worker
                if load == 0:
                    break
        if best is not None:
            return best
        for worker in self._workers.values():
            load = worker.load
            if (
                load < worker.limit
                and (best is None or load < best.load)
                and worker.room_ahead() > 0  # else busy with a call that may be long
            ):
                best = worker
        return best

    def _take_free(
        self, session_id: str | None, first: bool = False
    ) -> WorkerProcess | None:
        """Take a worker with room now, unless callers already queue (FIFO) and
        this call is not *first* (a recalled call: it was sent once already)."""
        if self._queue and not first:
            return None
        worker = self._pick(session_id)
        return None if worker is None else self._take(worker, session_id)

    def _take(self, worker: WorkerProcess, session_id: str | None) -> WorkerProcess:
        worker.load += 1
        if worker.load == worker.capacity:
            telemetry.execute(
                _E_CAPACITY,
                {"count": 1, "capacity": worker.capacity},
                {"pool": self.config.name, "worker_id": worker.id},
            )
        if session_id is not None:
            self._sessions[session_id] = worker.id
            self._sessions.move_to_end(session_id)
            if len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return worker

    async def _acquire(
        self, session_id: str | None, command: str, first: bool = False
    ) -> WorkerProcess:
        """Wait for a worker with free capacity and take one unit of it (*first*:
        ahead of the queue, see :meth:`_take_free`)."""
        self._check_open()
        worker = self._take_free(session_id, first)
        if worker is not None:
            return worker
        waiter = Pending(command, self._new_signal(), session_id=session_id)
        self._enqueue(waiter, first)
        try:
            await waiter.event.wait()  # bounded: see _expire_queue
        except BaseException:
            self._leave_queue(waiter)
            raise
        if waiter.worker is not None:
            return waiter.worker
        self._leave_queue(waiter)
        assert waiter.failure is not None
        raise waiter.failure

    async def _call(
        self,
        req_id: int,
        command: str,
        frame: Frame,
        session_id: str | None,
        limit: float,
        span: Span | QuietSpan,
        first: bool = False,
    ) -> Any:
        """Send a plain call to a free worker, or queue it encoded; return its
        outcome (see :meth:`execute`). *first*: ahead of the queue (a recalled
        call)."""
        self._check_open()
        worker = self._take_free(session_id, first)
        if worker is None and limit != math.inf:
            # The call's own timeout runs from when it is sent, so its caller
            # must wake up then: take a worker, then call.
            worker = await self._acquire(session_id, command, first)
        if worker is not None:
            if span is not QUIET_SPAN:
                span.set_metadata(worker_id=worker.id)
            return await worker.call(req_id, command, frame, limit)
        pending = Pending(command, self._new_signal(), req_id, frame, session_id)
        self._enqueue(pending, first)
        try:
            await pending.event.wait()  # bounded: see _expire_queue
        except BaseException:
            if pending.worker is None:
                self._leave_queue(pending)
            elif not pending.event.is_set():
                pending.worker.abandon(req_id, "abandoned")
            raise
        worker = pending.worker
        if worker is None:  # failed in the queue (timeout, pool closing)
            self._leave_queue(pending)
            assert pending.failure is not None
            raise pending.failure
        if span is not QUIET_SPAN:
            span.set_metadata(worker_id=worker.id)
        return worker.outcome(pending)

    def _enqueue(self, waiter: Pending, first: bool = False) -> None:
        """Queue *waiter* (*first*: at the head), or raise PoolSaturated if the
        queue is full."""
        if len(self._queue) >= self.config.max_queue_size and not first:
            self._stats["saturated"] += 1
            telemetry.execute(
                _E_SATURATED,
                {"count": 1, "queued": len(self._queue)},
                {
                    "pool": self.config.name,
                    "max_queue_size": self.config.max_queue_size,
                },
            )
            raise PoolSaturated(
                f"pool {self.config.name!r}: {len(self._queue)} calls already wait "
                f"(max_queue_size={self.config.max_queue_size}); try again later or "
                f"raise max_queue_size"
            )
        if not self._queue:
            self._queue_filled.set()
        waiter.queued_at = self._clock()
        if first:
            # Deadlines must follow queue order (see _expire_queue): the head's
            # wait counts from no later than the call it overtakes.
            if self._queue:
                waiter.queued_at = min(waiter.queued_at, self._queue[0].queued_at)
            self._queue.appendleft(waiter)
        else:
            self._queue.append(waiter)

    def _queue_timed_out(self, waiter: Pending) -> QueueTimeout:
        waited = self._clock() - waiter.queued_at
        self._stats["queue_timeouts"] += 1
        telemetry.execute(
            _E_QUEUE_TIMEOUT,
            {"count": 1, "waited_seconds": waited},
            {"pool": self.config.name, "command": waiter.command},
        )
        return QueueTimeout(
            f"pool {self.config.name!r}: no worker was free for {waiter.command!r} "
            f"within queue_timeout={self.config.queue_timeout}s"
        )

    async def _expire_queue(self) -> None:
        """Fail each queued call that waited ``queue_timeout`` with QueueTimeout.

        One task and one timer for the whole queue, rather than a cancel scope per
        queued call: every waiter has the same timeout, so deadlines follow queue
        order and only the head's needs watching.
        """
        queue = self._queue
        timeout = self.config.queue_timeout
        while True:
            if not queue:
                filled = self._queue_filled = anyio.Event()
                await filled.wait()
                continue
            head = queue[0]
            deadline = head.queued_at + timeout
            if self._clock() < deadline:
                await anyio.sleep_until(deadline)
                continue
            queue.popleft()
            head.gone = True
            head.failure = self._queue_timed_out(head)
            head.event.set()

    def _leave_queue(self, waiter: Pending) -> None:
        waiter.gone = True
        if waiter.worker is not None:
            # Assigned just as the caller gave up: hand the capacity on.
            worker, waiter.worker = waiter.worker, None
            self._release(worker)
        try:
            self._queue.remove(waiter)
        except ValueError:
            pass

    def _release(self, worker: WorkerProcess, ended: int = 1) -> None:
        """*ended* calls on *worker* ended (the replies of one read): give their
        capacity to the next waiters, and recycle the worker if it reached a
        limit."""
        worker.load -= ended
        if not worker.accepting:
            if worker.load <= 0:
                worker.drained.set()
            return
        if not worker.recycling:
            if worker.requests >= worker.max_requests:
                self.request_recycle(worker, RecycleReason.MAX_REQUESTS)
            elif (
                self._memory_threshold is not None
                and worker.rss_sample_age() >= _RSS_SAMPLE_AFTER_CALL
            ):
                rss = worker.sample_rss()
                if rss is not None and rss >= self._memory_threshold:
                    self.request_recycle(worker, RecycleReason.MEMORY_THRESHOLD)
        self._serve_queue(worker)
        if self._pipelining and not self._queue:
            for _ in range(min(ended, worker.capacity - worker.load)):
                self._recall_for(worker)

    # --- Lifecycle (used by the slots and snakepit.lifecycle) ---

    @property
    def closing(self) -> bool:
        """Whether the pool stopped taking calls."""
        return self._closed

    def serving_workers(self) -> list[WorkerProcess]:
        """The workers taking calls now."""
        return [w for w in self._workers.values() if w.accepting]

    def live_workers(self) -> list[WorkerProcess]:
        """Every worker that has not exited, including recycled ones still
        finishing their calls (health checks cover them too)."""
        return list(self._live)

    def _worker_exited(self, worker: WorkerProcess) -> None:
        self._live.discard(worker)

    def request_recycle(
        self,
        worker: WorkerProcess,
        reason: RecycleReason,
        ticket: RecycleTicket | None = None,
    ) -> None:
        """Ask *worker*'s slot to replace it, start-before-stop (never blocks)."""
        slot: WorkerSlot | None = getattr(worker, "slot", None)
        if slot is None or self._closed:
            if ticket is not None:
                ticket.error = PoolClosed(f"pool {self.config.name!r} is closed")
                ticket.done.set()
            return
        slot.request_recycle(worker, reason, ticket)

    def note_recycle(self, worker: WorkerProcess, reason: RecycleReason) -> None:
        """Count a recycle of *worker*; emit ``("snakepit", "worker", "recycled")``."""
        self._stats["recycles"] += 1
        key = reason.value
        self._recycles_by_reason[key] = self._recycles_by_reason.get(key, 0) + 1
        telemetry.execute(
            _E_RECYCLED,
            {"count": 1},
            {
                "worker_id": worker.id,
                "pool": self.config.name,
                "reason": key,
                "uptime_seconds": time.monotonic() - worker.started_at,
                "request_count": worker.requests,
            },
        )

    def _recycle_failed(
        self, worker: WorkerProcess, reason: RecycleReason, error: BaseException
    ) -> None:
        logger.error(
            "pool %r: the replacement for worker %s (%s) did not start; the worker "
            "keeps serving: %s",
            self.config.name,
            worker.id,
            reason.value,
            error,
        )
        telemetry.execute(
            _E_RECYCLE_FAILED,
            {"count": 1},
            {
                "worker_id": worker.id,
                "pool": self.config.name,
                "reason": reason.value,
                "error": error,
            },
        )

    async def recycle_worker(self, worker_id: str) -> str:
        """Replace worker *worker_id* now (start-before-stop) and return the id of
        its replacement.

        Raises:
            WorkerNotFound: no such worker serves in this pool.
            WorkerStartError: the replacement did not start (the worker keeps
                serving).
        """
        worker = self._workers.get(worker_id)
        if worker is None or not worker.accepting:
            known = ", ".join(self._workers) or "none"
            raise WorkerNotFound(
                f"pool {self.config.name!r} has no worker {worker_id!r} "
                f"(serving: {known})"
            )
        ticket = RecycleTicket()
        self.request_recycle(worker, RecycleReason.MANUAL, ticket)
        await ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.new_worker_id is not None
        return ticket.new_worker_id

    def lifecycle_stats(self) -> dict[str, Any]:
        """Workers, requests, workers near their TTL or request limit (90 %), and
        recycles by reason, for this pool."""
        now = time.monotonic()
        workers = self.serving_workers()
        return {
            "workers": len(workers),
            "requests": self._stats["requests"],
            "workers_near_ttl": sum(
                1
                for w in workers
                if is_near(now - w.started_at, self.config.worker_ttl)
            ),
            "workers_near_max_requests": sum(
                1 for w in workers if is_near(w.requests, w.max_requests)
            ),
            "recycles_by_reason": dict(self._recycles_by_reason),
        }

    def _serve_queue(self, worker: WorkerProcess) -> None:
        queue = self._queue
        # How much call time may still be sent ahead to *worker*: asked once,
        # when the first call would be, then counted down with each call sent.
        room: float | None = None
        while queue and worker.load < worker.limit and worker.accepting:
            if worker.load >= worker.capacity:
                if room is None:
                    room = worker.room_ahead()
                if room <= 0:
                    break  # busy with calls that may take long
            waiter = queue.popleft()
            if waiter.gone:
                continue
            waiter.worker = self._take(worker, waiter.session_id)
            frame = waiter.frame
            if frame is None:
                waiter.event.set()  # its caller sends
                room = -math.inf  # a call not sent yet is of unknown length
                continue
            try:
                worker.submit(waiter.req_id, waiter, frame)
            except NotRun as exc:  # it is dead or dying: its caller resends
                waiter.failure = exc
                waiter.event.set()
            times = worker.call_times
            if room is not None and times is not None:
                room -= times.mean(waiter.command)

    def _recall_for(self, idle: WorkerProcess) -> None:
        """*idle* has a free unit and nothing waits in the queue: take back, for
        it, a call sent ahead to the worker with the most of them, so no call
        waits behind a long one while a worker idles (see ``pipeline_depth``).
        Called once per unit freed and idle, so it takes back at most one call
        per unit."""
        victim: WorkerProcess | None = None
        surplus = 0
        for worker in self._live:
            ahead = worker.load - worker.capacity
            if ahead > surplus and worker is not idle:
                victim, surplus = worker, ahead
        if victim is not None:
            victim.recall()

    def _fail_queue(self, error: BaseException) -> None:
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.gone:
                waiter.failure = error
                waiter.event.set()

    def _check_open(self) -> None:
        if self._broken is not None:
            raise self._unavailable()
        if self._closed:
            raise PoolClosed(f"pool {self.config.name!r} is closed")

    def _count_error(self) -> None:
        self._stats["errors"] += 1

    # --- Public API ---

    async def execute(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> Any:
        """Run *command* with keyword arguments *args* on a worker; return its result.

        Args:
            command: the adapter command.
            args: its keyword arguments (msgpack-encodable).
            timeout: seconds the call may run once dispatched (default: the pool's
                ``request_timeout``).
            session_id: prefer the worker that served this session last.

        Raises:
            SerializationError: *args* cannot be encoded (nothing was sent).
            PoolSaturated: the queue is full.
            QueueTimeout: no worker was free within ``queue_timeout``.
            RequestTimeout: the call ran past *timeout*.
            RemoteError: the command raised in the worker (see subclasses).
            WorkerCrashed: the worker died during the call.
            PoolClosed: the pool is shutting down.
        """
        limit = self._request_timeout if timeout is None else timeout
        span: Span | QuietSpan = QUIET_SPAN
        if span_listened(_E_REQUEST):
            span = telemetry.span(
                _E_REQUEST, {"pool": self.config.name, "command": command}
            )
        quiet = span is QUIET_SPAN  # no metadata to set: skip the calls
        with span:
            if not quiet:
                span.set_metadata(worker_id=None, success=False)
            try:
                req_id = next(self._ids)
                # A plain dict is encoded as it is: no copy per call.
                payload = args if type(args) is dict else dict(args or {})
                frame = encode_call(
                    req_id,
                    command,
                    payload,
                    session_id,
                    collect(),
                    self.config.max_frame_bytes,
                )
                attempts = 0
                first = False
                while True:
                    try:
                        result = await self._call(
                            req_id, command, frame, session_id, limit, span, first
                        )
                    except Recalled:
                        first = True  # taken back for an idle worker: resend
                        continue
                    except NotRun as exc:
                        attempts += 1
                        if attempts == _MAX_REDISPATCH:
                            raise exc.error from None
                        continue  # it never ran: send it to another worker
                    if not quiet:
                        span.set_metadata(success=True)
                    return result
            except BaseException:
                self._count_error()
                raise
            finally:
                self._stats["requests"] += 1

    async def execute_in_session(
        self,
        session_id: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """:meth:`execute` with session affinity (a hint: any worker may serve)."""
        return await self.execute(command, args, timeout=timeout, session_id=session_id)

    async def map(
        self,
        command: str,
        calls: Iterable[Mapping[str, Any]],
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run *command* once per argument map of *calls*; return the results in
        order.

        The calls travel in chunks, one request each (what ``multiprocessing``'s
        ``Pool.map`` does): a worker runs a chunk's calls one after the other and
        answers them in one reply, so a small call costs a fraction of a request.
        Chunks are dispatched like any call (queue, timeouts, pipelining, a
        crashed worker's chunks that never started go elsewhere), as many at once
        as the workers can take and as many again in the pool's queue: the rest
        wait in ``map``, so a long map never fills ``max_queue_size``.

        Args:
            command: a plain (not streaming) adapter command.
            calls: its keyword arguments, one map per call.
            chunksize: calls per chunk; default: the calls spread over four
                chunks per unit of pool capacity.
            timeout: seconds each chunk may run once dispatched (default: the
                pool's ``request_timeout``).
            return_exceptions: put each failed call's exception in its place in
                the list instead of raising.

        Raises:
            ConfigError: *chunksize* is not a positive int.
            SnakepitError: (unless *return_exceptions*) the first failure in
                input order, once every call has resolved: a call's own
                (``RemoteError``, ``InvalidArguments``...) or its chunk's
                (``WorkerCrashed``, ``RequestTimeout``, ``SerializationError``,
                ``PoolClosed``...).
        """
        items: list[dict[str, Any]] = [
            _call_args(args, index) for index, args in enumerate(calls)
        ]
        capacity = self.config.pool_size * self._capacity
        if chunksize is None:
            chunksize = max(1, math.ceil(len(items) / (4 * capacity)))
        elif type(chunksize) is not int or chunksize < 1:
            raise ConfigError(
                f"map: chunksize must be a positive int, got {chunksize!r}"
            )
        # A result is never an exception (msgpack carries none): the exceptions
        # in the list are the failures.
        results: list[Any] = [None] * len(items)

        async def run_chunk(start: int) -> None:
            chunk = items[start : start + chunksize]
            try:
                outcome = await self.execute(
                    MAP_COMMAND, {"command": command, "calls": chunk}, timeout=timeout
                )
            except SnakepitError as exc:  # the chunk as a whole
                results[start : start + len(chunk)] = [exc] * len(chunk)
                return
            results[start : start + len(chunk)] = outcome["values"]
            for record in outcome["errors"]:  # Error fields, the index as id
                error = Error(*record)
                results[start + error.id] = remote_error(error)

        # As many chunks in flight as the workers run at once, plus as many
        # waiting in the pool's queue, already encoded, so a worker that ends a
        # chunk starts the next at once; the others wait here, so a long map
        # never fills the queue (max_queue_size).
        starts = iter(range(0, len(items), chunksize))
        lanes = capacity + min(capacity, self.config.max_queue_size)
        lanes = max(1, min(math.ceil(len(items) / chunksize), lanes))

        async def lane() -> None:
            for start in starts:
                await run_chunk(start)

        async with anyio.create_task_group() as tg:
            for _ in range(lanes):
                tg.start_soon(lane)
        if not return_exceptions:
            for result in results:
                if isinstance(result, SnakepitError):
                    raise result  # the first failure in input order
        return results

    def execute_stream(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> ChunkStream:
        """Run a streaming command; iterate the result for its chunks.

        Use as ``async with pool.execute_stream(...) as chunks: async for c in
        chunks: ...`` or plainly ``async for``; closing it early cancels the
        generator in the worker.
        """
        self._check_open()
        limit = self._request_timeout if timeout is None else timeout
        return ChunkStream(
            self, command, dict(args or {}), timeout=limit, session_id=session_id
        )

    def get_stats(self) -> dict[str, int]:
        """Counts, as integers: ``workers, available, busy, queued, requests,
        errors, queue_timeouts, saturated, restarts, recycles``, plus ``capacity``
        and ``load`` (totals over the workers)."""
        workers = list(self._workers.values())
        return {
            "workers": len(workers),
            "available": sum(1 for w in workers if w.load < w.capacity),
            "busy": sum(1 for w in workers if w.load >= w.capacity),
            "queued": sum(1 for w in self._queue if not w.gone),
            "capacity": sum(w.capacity for w in workers),
            "load": sum(w.load for w in workers),
            **self._stats,
        }

    def worker_stats(self) -> list[dict[str, Any]]:
        """One dict per serving worker: ``worker_id, pid, capacity, load,
        requests, uptime_seconds, rss_bytes`` (RSS as of the last sample or
        health check; 0 before either)."""
        now = time.monotonic()
        return [
            {
                "worker_id": w.id,
                "pid": w.pid,
                "capacity": w.capacity,
                "load": w.load,
                "requests": w.requests,
                "uptime_seconds": now - w.started_at,
                "rss_bytes": w.rss_bytes,
            }
            for w in self._workers.values()
        ]

    def list_workers(self) -> list[str]:
        """The ids of the workers serving now."""
        return list(self._workers)

    def worker(self, worker_id: str) -> WorkerProcess:
        """The live worker *worker_id* (for inspection and tests).

        Raises:
            KeyError: no such worker serves now.
        """
        return self._workers[worker_id]


def _call_args(args: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One call's keyword arguments for :meth:`Pool.map`, as a plain dict."""
    if type(args) is dict:
        return args
    if not isinstance(args, Mapping):
        raise SerializationError(
            f"map: call {index} is a {type(args).__name__}, not a mapping of "
            "keyword arguments"
        )
    return dict(args)


@asynccontextmanager
async def open_pool(
    config: PoolConfig | None = None,
    *,
    adapter: str | None = None,
    size: int | None = None,
    **options: Any,
) -> AsyncIterator[Pool]:
    """Start a pool and stop it on exit.

    Either pass a :class:`~snakepit.config.PoolConfig`, or keywords:
    ``open_pool(adapter="pkg.mod:Class", size=4, queue_timeout=1.0)`` (``adapter``
    and ``size`` are short for ``adapter_module`` and ``pool_size``; the rest are
    :class:`PoolConfig` keys).

    Returns once every worker is ready.

    Raises:
        PoolUnavailable: the workers could not be started.

    .. versionadded:: 0.1
    """
    if config is None:
        if adapter is not None:
            options["adapter_module"] = adapter
        if size is not None:
            options["pool_size"] = size
        config = PoolConfig(**options)
    elif adapter is not None or size is not None or options:
        raise TypeError("pass either a PoolConfig or keywords, not both")
    pool = Pool(config)
    # Broken after it started, the pool stays open: calls fail with PoolUnavailable.
    async with running(pool.run, pool, pool.aclose, late=PoolUnavailable) as started:
        yield started
