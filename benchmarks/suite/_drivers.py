"""Closed loops: keep at most *inflight* calls outstanding, time each one.

Every contender is driven the same way, whatever its API:

- sync pools (``concurrent.futures``-style executors, ``apply_async`` pools) go
  through :func:`closed_loop_sync`: the main thread takes one of *inflight*
  semaphore permits, starts call *i*, and the call's completion callback (run by
  the pool's result thread) stamps the latency, checks the result and gives the
  permit back. In-flight 1 is therefore submit-and-wait, one at a time;
- async pools (snakepit, ``anyio.to_process``) go through
  :func:`closed_loop_async`: *inflight* tasks in one anyio task group, each
  awaiting its next call as soon as its last returns (a shared counter hands out
  the call numbers).

Every result is checked: a contender that answers wrongly fails, it does not post
a fast number. :func:`ready_sync` and :func:`ready_async` are the startup
section's rendezvous ("every worker has answered one call").
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from benchmarks._common import percentile

#: Called once per call with ``(result, None)`` or ``(None, error)``.
Done = Callable[[Any, "BaseException | None"], None]
#: Start call number *i*; arrange for *done* to be called when it completes.
Submit = Callable[[int, Done], None]
Check = Callable[[int, Any], bool]


class CheckFailed(Exception):
    """A call returned a wrong result: the contender's numbers mean nothing."""


def check_failed(i: int, result: Any) -> CheckFailed:
    shown = repr(result)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CheckFailed(f"call {i} returned a wrong result: {shown}")


@attrs.frozen(kw_only=True)
class Timing:
    """One timed closed loop: its rate and per-call latency percentiles."""

    calls: int
    inflight: int
    elapsed_s: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, latencies: list[float], elapsed_s: float, *, inflight: int) -> Timing:
        ordered = sorted(latencies)
        return cls(
            calls=len(ordered),
            inflight=inflight,
            elapsed_s=elapsed_s,
            req_per_s=len(ordered) / elapsed_s,
            p50_ms=percentile(ordered, 50) * 1e3,
            p99_ms=percentile(ordered, 99) * 1e3,
            max_ms=ordered[-1] * 1e3,
        )

    def metrics(self) -> dict[str, float]:
        return attrs.asdict(self)


def closed_loop_sync(
    submit: Submit, check: Check, calls: int, inflight: int, timeout: float = 300.0
) -> Timing:
    """Run *calls* calls through *submit*, at most *inflight* at once.

    Raises:
        CheckFailed: a result was wrong.
        TimeoutError: the calls did not all complete within *timeout*.
        Exception: the first error a call raised.
    """
    clock = time.perf_counter
    latencies = [0.0] * calls
    permits = threading.Semaphore(inflight)
    lock = threading.Lock()
    finished = threading.Event()
    failures: list[BaseException] = []
    state = {"done": 0}

    def start(i: int) -> None:
        begin = clock()

        def done(result: Any, error: BaseException | None) -> None:
            latencies[i] = clock() - begin
            if error is None and not check(i, result):
                error = check_failed(i, result)
            with lock:
                if error is not None:
                    failures.append(error)
                state["done"] += 1
                if state["done"] == calls or error is not None:
                    finished.set()
            permits.release()

        submit(i, done)

    gc.collect()
    began = clock()
    deadline = began + timeout
    for i in range(calls):
        if not permits.acquire(timeout=max(0.0, deadline - clock())):
            raise TimeoutError(f"no call completed within {timeout:g} s")
        if failures:
            break
        start(i)
    if not finished.wait(max(0.0, deadline - clock())):
        raise TimeoutError(
            f"{calls - state['done']} calls unanswered after {timeout:g} s"
        )
    elapsed = clock() - began
    if failures:
        raise failures[0]
    return Timing.of(latencies, elapsed, inflight=inflight)


async def closed_loop_async(
    call: Callable[[int], Awaitable[Any]], check: Check, calls: int, inflight: int
) -> Timing:
    """*inflight* tasks, each awaiting ``call(i)`` for the next *i*, in turn.

    Raises:
        CheckFailed: a result was wrong (the other tasks are cancelled).
    """
    import anyio

    clock = time.perf_counter
    latencies = [0.0] * calls
    counter = iter(range(calls))

    async def caller() -> None:
        for i in counter:
            begin = clock()
            result = await call(i)
            latencies[i] = clock() - begin
            if not check(i, result):
                raise check_failed(i, result)

    gc.collect()
    began = clock()
    async with anyio.create_task_group() as tg:
        for _ in range(min(inflight, calls)):
            tg.start_soon(caller)
    return Timing.of(latencies, clock() - began, inflight=inflight)


#: How long a startup rendezvous call holds its worker (see :func:`ready_sync`).
HOLD_S = 0.01


def ready_sync(
    submit_pid: Callable[[Done], None], workers: int, timeout: float
) -> tuple[float, set[int]]:
    """Keep *workers* ``pid(HOLD_S)`` calls in flight until *workers* distinct
    pids have answered; return ``(perf_counter when the last new pid answered,
    the pids)``. The calls still in flight then are waited for (untimed).

    The hold keeps a worker that answered busy for a moment, so calls queued
    meanwhile go to workers still starting, instead of all to the first one up.

    Raises:
        TimeoutError: fewer than *workers* pids answered within *timeout*.
        Exception: the first error a call raised.
    """
    # Re-entrant: a pool may run *done* at once, inside ``submit_pid``.
    changed = threading.Condition(threading.RLock())
    seen: set[int] = set()
    failures: list[BaseException] = []
    state = {"outstanding": 0, "ready_at": 0.0}

    def launch() -> None:
        state["outstanding"] += 1
        submit_pid(done)

    def done(result: Any, error: BaseException | None) -> None:
        now = time.perf_counter()
        with changed:
            state["outstanding"] -= 1
            if error is not None:
                failures.append(error)
            elif result not in seen:
                seen.add(result)
                if len(seen) == workers:
                    state["ready_at"] = now
            changed.notify_all()

    deadline = time.monotonic() + timeout
    with changed:
        for _ in range(workers):
            launch()
        while len(seen) < workers and not failures:
            # Replace every call that completed, so *workers* stay in flight.
            while state["outstanding"] < workers:
                launch()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(seen)} of {workers} workers answered within {timeout:g} s"
                )
            changed.wait(min(left, 1.0))
        while state["outstanding"] and not failures:
            if not changed.wait(max(0.0, deadline - time.monotonic())):
                break
    if failures:
        raise failures[0]
    return state["ready_at"], seen


async def ready_async(
    call_pid: Callable[[], Awaitable[int]], workers: int
) -> tuple[float, set[int]]:
    """:func:`ready_sync` for an async pool: *workers* tasks each calling
    ``pid(HOLD_S)`` until *workers* distinct pids have answered (the caller
    bounds it with ``anyio.fail_after``)."""
    import anyio

    seen: set[int] = set()
    ready = anyio.Event()
    state = {"ready_at": 0.0}

    async def caller() -> None:
        while not ready.is_set():
            pid = await call_pid()
            if pid not in seen:
                seen.add(pid)
                if len(seen) == workers:
                    state["ready_at"] = time.perf_counter()
                    ready.set()

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(caller)
    return state["ready_at"], seen
