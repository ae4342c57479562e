"""Children whose lives a test controls, for supervisor tests."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from snakepit.exceptions import Shutdown
from snakepit.supervisor import ChildSpec, ChildType, Restart


class Probe:
    """Makes child specs and records what happens to them.

    ``log`` holds ``("start", id, gen)``, ``("stop", id, gen)`` (stopped by the
    supervisor) and ``("exit", id, gen, reason)`` (exited on the test's order).
    A child's ref is ``(id, gen)``; ``gen`` counts its starts.
    """

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.gens: Counter[Hashable] = Counter()
        self.fail_next: Counter[Hashable] = Counter()
        self.hang_next: Counter[Hashable] = Counter()
        self._exits: dict[Hashable, anyio.abc.ObjectSendStream[str]] = {}

    def spec(
        self,
        child_id: Hashable,
        restart: Restart = Restart.PERMANENT,
        *,
        shutdown: Any = None,
        significant: bool = False,
    ) -> ChildSpec:
        extra = {} if shutdown is None else {"shutdown": shutdown}
        return ChildSpec(
            id=child_id,
            start=partial(self.child, child_id),
            restart=restart,
            significant=significant,
            **extra,
        )

    async def child(self, child_id: Hashable, *, task_status: TaskStatus[Any]) -> None:
        if self.fail_next[child_id] > 0:
            self.fail_next[child_id] -= 1
            raise RuntimeError(f"start of {child_id!r} failed on purpose")
        if self.hang_next[child_id] > 0:
            self.hang_next[child_id] -= 1
            await anyio.sleep_forever()
        self.gens[child_id] += 1
        gen = self.gens[child_id]
        send, receive = anyio.create_memory_object_stream[str](math.inf)
        self._exits[child_id] = send
        self.log.append(("start", child_id, gen))
        task_status.started((child_id, gen))
        try:
            reason = await receive.receive()
        except BaseException:
            self.log.append(("stop", child_id, gen))
            raise
        finally:
            receive.close()
            send.close()
        self.log.append(("exit", child_id, gen, reason))
        if reason == "normal":
            return
        if reason == "shutdown":
            raise Shutdown("asked to")
        raise RuntimeError(f"{child_id!r} crashed on purpose")

    def exit(self, child_id: Hashable, reason: str) -> None:
        """Make the running child *child_id* exit: normal, shutdown or abnormal."""
        try:
            self._exits[child_id].send_nowait(reason)
        except anyio.ClosedResourceError:
            pass  # it already stopped

    def stops(self) -> list[Hashable]:
        return [entry[1] for entry in self.log if entry[0] == "stop"]

    def starts(self) -> list[Hashable]:
        return [entry[1] for entry in self.log if entry[0] == "start"]


class FakeClock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def supervisor_spec(child_id: Hashable, run: Any, **kwargs: Any) -> ChildSpec:
    return ChildSpec(id=child_id, start=run, type=ChildType.SUPERVISOR, **kwargs)


class Outcome:
    """How a supervisor's run ended, filled in by :func:`running`."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.done = anyio.Event()


@asynccontextmanager
async def running(sup: Any) -> AsyncIterator[Outcome]:
    """Start *sup* in a task group, yield, then stop it.

    An exception from ``run`` after it started is caught into the outcome (a
    start failure propagates from here instead).
    """
    outcome = Outcome()

    async def runner(*, task_status: TaskStatus[Any]) -> None:
        proxy = _Started(task_status)
        try:
            await sup.run(task_status=proxy)
        except Exception as exc:
            if not proxy.called:
                raise
            outcome.error = exc
        finally:
            outcome.done.set()

    async with anyio.create_task_group() as tg:
        await tg.start(runner)
        yield outcome
        await sup.stop()


class _Started:
    def __init__(self, inner: TaskStatus[Any]) -> None:
        self.inner = inner
        self.called = False

    def started(self, value: object = None) -> None:
        self.called = True
        self.inner.started(value)
