"""The supervisor runtime: starts children, watches them, carries out restart plans.

Every state change goes through one lock, and child exits arrive on a mailbox that
one loop drains, so decisions are made one at a time as in OTP's gen_server. A restart
that fails is retried through the mailbox (never inline), so :meth:`Supervisor.stop`
always gets through.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, ClassVar

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from snakepit import telemetry
from snakepit.exceptions import (
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    ChildStartError,
    ConfigError,
    DuplicateChild,
    RestartIntensityExceeded,
    Shutdown,
    SupervisorNotRunning,
)

from ._plan import ChildView, add_restart, plan_exit, plan_retry
from ._spec import (
    BRUTAL_KILL,
    AutoShutdown,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    ChildStatus,
    ChildType,
    ExitReason,
    Killable,
    Restart,
    Strategy,
)

__all__ = ("Supervisor",)

logger = logging.getLogger("snakepit.supervisor")

_E_STARTED = ("snakepit", "supervisor", "child_started")
_E_EXITED = ("snakepit", "supervisor", "child_exited")
_E_RESTARTED = ("snakepit", "supervisor", "child_restarted")
_E_MAX = ("snakepit", "supervisor", "max_intensity")

#: How long to wait for a child after awaiting its ``kill()``.
KILL_GRACE = 5.0


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    status: ChildStatus = ChildStatus.STOPPED
    ref: object = None
    gen: int = 0
    scope: anyio.CancelScope | None = None
    done: anyio.Event | None = None
    terminating: bool = False


@attrs.frozen
class _Exited:
    child: _Child
    gen: int
    reason: ExitReason
    error: BaseException | None


@attrs.frozen
class _Retry:
    ids: tuple[Hashable, ...]


class _StatusProxy:
    """Passes ``started()`` through to anyio and remembers that it was called.

    Once the child has started, its scope is shielded: from then on only the
    supervisor stops it (``scope.cancel()``), so a run cancelled from outside still
    stops its children one at a time in reverse start order. Before that, a
    cancelled start must be able to reach the child.
    """

    __slots__ = ("called", "inner", "scope")

    def __init__(self, inner: TaskStatus[Any]) -> None:
        self.inner = inner
        self.called = False
        self.scope: anyio.CancelScope | None = None

    def started(self, value: object = None) -> None:
        self.called = True
        if self.scope is not None:
            self.scope.shield = True
        self.inner.started(value)


class _Stop(Exception):
    """Internal: leave the mailbox loop (auto_shutdown)."""


class Supervisor:
    """An OTP supervisor in anyio. Subclass it and implement :meth:`init`.

    Class attributes:
        strategy: :class:`Strategy` (default ``ONE_FOR_ONE``).
        intensity: restarts allowed within *period* (default 3).
        period: the window in seconds (default 5.0).
        auto_shutdown: :class:`AutoShutdown` (default ``NEVER``).

    Start it with ``await task_group.start(sup.run)``; ``sup.run`` is also a valid
    :attr:`ChildSpec.start`, so trees nest. Each run calls :meth:`init` afresh.

    Args:
        name: used in telemetry and logs (default: the class name).
        clock: a zero-argument callable returning monotonic seconds, used for the
            restart-intensity window (tests pass a fake clock).

    .. versionadded:: 0.1
    """

    strategy: ClassVar[Strategy] = Strategy.ONE_FOR_ONE
    intensity: int = 3
    period: float = 5.0
    auto_shutdown: ClassVar[AutoShutdown] = AutoShutdown.NEVER

    def __init__(
        self, *, name: str | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.name = name or type(self).__name__
        self._clock = clock or time.monotonic
        self._children: dict[Hashable, _Child] = {}
        self._restarts: tuple[float, ...] = ()
        self._lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self._main_scope: anyio.CancelScope | None = None
        self._send: MemoryObjectSendStream[_Exited | _Retry] | None = None
        self._running = False
        self._stopping = False
        self._finished: anyio.Event | None = None

    # --- Hooks ---

    def init(self) -> Sequence[ChildSpec]:
        """Return the child specs to start, in start order. Free of side effects."""
        raise NotImplementedError(f"{type(self).__name__} must implement init()")

    # --- Running ---

    async def run(
        self, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order, then supervise them until stopped.

        Reports itself as started (with the supervisor as value) once every child
        has started. Returns ``None`` after :meth:`stop` or an auto-shutdown.

        Raises:
            ChildStartError: a child failed to start; the ones already started were
                stopped in reverse order.
            RestartIntensityExceeded: more than ``intensity`` restarts happened in
                ``period``; every child was stopped in reverse order.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self.name} is already running")
        self._check_flags()
        specs = list(self.init())
        _check_specs(specs)
        self._children = {}
        self._restarts = ()
        self._stopping = False
        self._finished = anyio.Event()
        send, receive = anyio.create_memory_object_stream[_Exited | _Retry](math.inf)
        self._send = send
        failure: BaseException | None = None
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    with anyio.CancelScope() as self._main_scope:
                        for spec in specs:
                            child = _Child(spec)
                            self._children[spec.id] = child
                            try:
                                await self._start(child)
                            except ChildStartError:
                                del self._children[spec.id]
                                raise
                        if self._stopping:
                            return
                        task_status.started(self)
                        await self._loop(receive)
                except (ChildStartError, RestartIntensityExceeded) as exc:
                    failure = exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._shutdown_children()
                    tg.cancel_scope.cancel()
        finally:
            self._running = False
            self._tg = None
            self._main_scope = None
            self._send = None
            send.close()
            receive.close()
            self._finished.set()
        if failure is not None:
            raise failure

    async def stop(self) -> None:
        """Stop every child in reverse start order and make :meth:`run` return.

        Works while the supervisor is busy retrying a failing restart. A no-op if
        it is not running.
        """
        finished = self._finished
        if not self._running or finished is None:
            return
        self._stopping = True
        if self._main_scope is not None:
            self._main_scope.cancel()
        await finished.wait()

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is in progress."""
        return self._running

    # --- Runtime API ---

    async def start_child(self, spec: ChildSpec) -> object:
        """Start *spec* under this supervisor (after the existing children) and
        return its ref.

        Raises:
            DuplicateChild: a child with this id is already present.
            ChildStartError: the child failed to start; nothing is kept.
        """
        self._require_running()
        async with self._lock:
            self._check_new(spec)
            child = _Child(spec)
            self._children[spec.id] = child
            try:
                return await self._start(child)
            except ChildStartError:
                del self._children[spec.id]
                raise

    async def terminate_child(self, child_id: Hashable) -> None:
        """Stop a child without restarting it (no intensity is used).

        The spec is kept (status ``STOPPED``) unless the child is temporary.
        Terminating a stopped child does nothing.

        Raises:
            ChildNotFound: no child has this id.
        """
        self._require_running()
        async with self._lock:
            child = self._get(child_id)
            with anyio.CancelScope(shield=True):
                if child.status is ChildStatus.RUNNING:
                    await self._terminate(child)
            child.status = ChildStatus.STOPPED
            if self._drops_on_terminate(child):
                self._children.pop(child_id, None)

    async def restart_child(self, child_id: Hashable) -> object:
        """Start a stopped child again and return its new ref.

        Raises:
            ChildNotFound: no child has this id.
            ChildRunning: the child is running.
            ChildRestarting: the supervisor is retrying its restart.
            ChildStartError: it failed to start; it stays stopped.
        """
        self._require_running()
        async with self._lock:
            child = self._get(child_id)
            self._require_stopped(child, "restart")
            return await self._start(child)

    async def delete_child(self, child_id: Hashable) -> None:
        """Drop the spec of a stopped child.

        Raises:
            ChildNotFound: no child has this id.
            ChildRunning: the child is running.
            ChildRestarting: the supervisor is retrying its restart.
        """
        self._require_running()
        async with self._lock:
            child = self._get(child_id)
            self._require_stopped(child, "delete")
            del self._children[child_id]

    def which_children(self) -> list[ChildInfo]:
        """Return every child, in start order."""
        return [
            ChildInfo(id=c.spec.id, ref=c.ref, type=c.spec.type, status=c.status)
            for c in self._children.values()
        ]

    def count_children(self) -> ChildCounts:
        """Count specs, running children, supervisors and workers."""
        specs = active = sups = 0
        for c in self._children.values():
            specs += 1
            active += c.status is ChildStatus.RUNNING
            sups += c.spec.type is ChildType.SUPERVISOR
        return ChildCounts(
            specs=specs, active=active, supervisors=sups, workers=specs - sups
        )

    # --- Internals: checks ---

    def _check_flags(self) -> None:
        if not isinstance(self.strategy, Strategy):
            raise ConfigError(
                f"{self.name}: strategy must be a Strategy, not {self.strategy!r}"
            )
        if (
            isinstance(self.intensity, bool)
            or not isinstance(self.intensity, int)
            or self.intensity < 0
        ):
            raise ConfigError(
                f"{self.name}: intensity must be an integer >= 0, "
                f"not {self.intensity!r}"
            )
        if (
            isinstance(self.period, bool)
            or not isinstance(self.period, (int, float))
            or not self.period > 0
        ):
            raise ConfigError(
                f"{self.name}: period must be a number of seconds > 0, "
                f"not {self.period!r}"
            )

    def _check_new(self, spec: ChildSpec) -> None:
        if not isinstance(spec, ChildSpec):
            raise ConfigError(f"{self.name}: expected a ChildSpec, not {spec!r}")
        if spec.id in self._children:
            state = self._children[spec.id].status.value
            raise DuplicateChild(
                f"{self.name}: a child with id {spec.id!r} is already present ({state})"
            )

    def _require_running(self) -> None:
        if not self._running or self._stopping:
            raise SupervisorNotRunning(f"supervisor {self.name} is not running")

    def _get(self, child_id: Hashable) -> _Child:
        try:
            return self._children[child_id]
        except KeyError:
            raise ChildNotFound(f"{self.name}: no child with id {child_id!r}") from None

    def _require_stopped(self, child: _Child, action: str) -> None:
        if child.status is ChildStatus.RUNNING:
            raise ChildRunning(
                f"{self.name}: cannot {action} child {child.spec.id!r}: it is running"
            )
        if child.status is ChildStatus.RESTARTING:
            raise ChildRestarting(
                f"{self.name}: cannot {action} child {child.spec.id!r}: "
                "it is being restarted"
            )

    def _drops_on_terminate(self, child: _Child) -> bool:
        return child.spec.restart is Restart.TEMPORARY

    def _keeps_stopped(self) -> bool:
        """Whether a child that exits without restart keeps its spec."""
        return True

    # --- Internals: one child ---

    async def _start(self, child: _Child) -> object:
        """Start *child* and return its ref; ChildStartError if it fails."""
        assert self._tg is not None
        child.gen += 1
        try:
            ref = await self._tg.start(self._child_task, child, child.gen)
        except Exception as exc:
            child.status = ChildStatus.STOPPED
            raise ChildStartError(
                child.spec.id,
                f"{self.name}: child {child.spec.id!r} failed to start: {exc!r}",
            ) from exc
        child.ref = ref
        child.status = ChildStatus.RUNNING
        telemetry.execute(
            _E_STARTED,
            {"count": 1},
            {
                "supervisor": self.name,
                "child_id": child.spec.id,
                "child_type": child.spec.type.value,
            },
        )
        return ref

    async def _child_task(
        self, child: _Child, gen: int, *, task_status: TaskStatus[Any]
    ) -> None:
        status = _StatusProxy(task_status)
        done = child.done = anyio.Event()
        child.terminating = False
        reason = ExitReason.NORMAL
        error: BaseException | None = None
        try:
            with anyio.CancelScope() as scope:
                child.scope = scope
                status.scope = scope
                try:
                    await child.spec.start(task_status=status)
                except Shutdown as exc:
                    reason, error = ExitReason.SHUTDOWN, exc
                except Exception as exc:
                    if not status.called:
                        raise
                    reason, error = ExitReason.ABNORMAL, exc
            if scope.cancelled_caught:
                reason = ExitReason.SHUTDOWN
        finally:
            done.set()
        if status.called and not child.terminating and self._send is not None:
            self._send.send_nowait(_Exited(child, gen, reason, error))

    async def _terminate(self, child: _Child) -> ExitReason:
        """Stop a running child within its shutdown budget; report how it ended."""
        assert child.scope is not None
        assert child.done is not None
        child.terminating = True
        child.scope.cancel()
        spec = child.spec
        with anyio.move_on_after(spec.shutdown_timeout):
            await child.done.wait()
        if child.done.is_set() and spec.shutdown is not BRUTAL_KILL:
            reason = ExitReason.SHUTDOWN
        else:
            reason = ExitReason.KILLED
            if not child.done.is_set():
                logger.warning(
                    "%s: child %r outlived its shutdown timeout (%s); killed",
                    self.name,
                    spec.id,
                    "brutal_kill"
                    if spec.shutdown is BRUTAL_KILL
                    else f"{spec.shutdown_timeout}s",
                )
            if isinstance(child.ref, Killable):
                await child.ref.kill()
                with anyio.move_on_after(KILL_GRACE):
                    await child.done.wait()
        child.status = ChildStatus.STOPPED
        child.ref = None
        self._emit_exit(child, reason, None)
        return reason

    def _emit_exit(
        self, child: _Child, reason: ExitReason, error: BaseException | None
    ) -> None:
        telemetry.execute(
            _E_EXITED,
            {"count": 1},
            {
                "supervisor": self.name,
                "child_id": child.spec.id,
                "reason": reason.value,
                "error": error,
            },
        )

    # --- Internals: the mailbox loop ---

    async def _loop(self, receive: MemoryObjectReceiveStream[_Exited | _Retry]) -> None:
        try:
            async for message in receive:
                async with self._lock:
                    if isinstance(message, _Exited):
                        await self._handle_exit(message)
                    else:
                        await self._restart_group(self._pending(message.ids))
        except _Stop:
            return

    def _pending(self, ids: Iterable[Hashable]) -> tuple[Hashable, ...]:
        return tuple(
            i
            for i in ids
            if i in self._children
            and self._children[i].status is ChildStatus.RESTARTING
        )

    async def _handle_exit(self, message: _Exited) -> None:
        child = message.child
        if message.gen != child.gen or child.status is not ChildStatus.RUNNING:
            return  # stale: already terminated or restarted
        child_id = child.spec.id
        if self._children.get(child_id) is not child:
            return
        child.status = ChildStatus.STOPPED
        child.ref = None
        if message.reason is ExitReason.ABNORMAL:
            logger.error(
                "%s: child %r exited abnormally: %r",
                self.name,
                child_id,
                message.error,
                exc_info=message.error,
            )
        self._emit_exit(child, message.reason, message.error)
        plan = plan_exit(self.strategy, self._views(), child_id, message.reason)
        if not plan.restart:
            for i in plan.remove:
                self._children.pop(i, None)
            if not self._keeps_stopped():
                for i in plan.keep_stopped:
                    self._children.pop(i, None)
            self._check_auto_shutdown(child)
            return
        self._count_restart()
        for i in plan.stop:
            await self._terminate(self._children[i])
        for i in plan.remove:
            self._children.pop(i, None)
        for i in plan.start:
            self._children[i].status = ChildStatus.RESTARTING
        await self._restart_group(plan.start)

    async def _restart_group(self, ids: tuple[Hashable, ...]) -> None:
        for index, child_id in enumerate(ids):
            child = self._children[child_id]
            try:
                await self._start(child)
            except ChildStartError as exc:
                logger.error(
                    "%s: restart of child %r failed: %s",
                    self.name,
                    child_id,
                    exc.__cause__,
                )
                stop, retry = plan_retry(self.strategy, ids, index)
                for i in stop:
                    if self._children[i].status is ChildStatus.RUNNING:
                        await self._terminate(self._children[i])
                for i in retry:
                    self._children[i].status = ChildStatus.RESTARTING
                self._count_restart()
                assert self._send is not None
                self._send.send_nowait(_Retry(retry))
                return
            telemetry.execute(
                _E_RESTARTED,
                {"count": 1},
                {
                    "supervisor": self.name,
                    "child_id": child_id,
                    "strategy": self.strategy.value,
                },
            )

    def _count_restart(self) -> None:
        self._restarts, exceeded = add_restart(
            self._restarts, self._clock(), self.intensity, self.period
        )
        if exceeded:
            telemetry.execute(
                _E_MAX,
                {"restarts": len(self._restarts)},
                {
                    "supervisor": self.name,
                    "intensity": self.intensity,
                    "period": self.period,
                },
            )
            logger.error(
                "%s: more than %d restarts within %ss; shutting down",
                self.name,
                self.intensity,
                self.period,
            )
            raise RestartIntensityExceeded(
                f"supervisor {self.name}: more than {self.intensity} restarts "
                f"within {self.period}s"
            )

    def _check_auto_shutdown(self, exited: _Child) -> None:
        if self.auto_shutdown is AutoShutdown.NEVER or not exited.spec.significant:
            return
        if self.auto_shutdown is AutoShutdown.ALL_SIGNIFICANT and any(
            c.spec.significant and c.status is ChildStatus.RUNNING
            for c in self._children.values()
        ):
            return
        self._stopping = True
        raise _Stop

    def _views(self) -> list[ChildView]:
        return [
            ChildView(c.spec.id, c.spec.restart, c.status is ChildStatus.RUNNING)
            for c in self._children.values()
        ]

    async def _shutdown_children(self) -> None:
        """Stop every running child in reverse start order (called shielded)."""
        for child in reversed(list(self._children.values())):
            if child.status is ChildStatus.RUNNING:
                await self._terminate(child)
        self._children.clear()


def _check_specs(specs: Sequence[ChildSpec]) -> None:
    seen: set[Hashable] = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise ConfigError(f"init() must return ChildSpec values, not {spec!r}")
        if spec.id in seen:
            raise ConfigError(f"init() returned two children with id {spec.id!r}")
        seen.add(spec.id)
