"""Throughput and latency of tiny calls: a snakepit pool against its peers.

Each contender runs ``add(a, b)`` on 2 worker processes (``--workers``), *calls*
times at each in-flight limit (``--concurrency``), all in the same run::

    python -m benchmarks.throughput [--calls 20000] [--workers 2]
        [--concurrency 1,64] [--warmup 200] [--rounds 3] [--json PATH] [--profile]

The contenders, each driven as a closed loop that keeps at most C calls in flight:

``snakepit(process)``
    ``open_pool(adapter=showcase, size=workers)``; C tasks each awaiting
    ``pool.execute("add", {"a": a, "b": b})`` in turn (the pool queues what its
    workers cannot take yet; its queue is sized so it never saturates).
``ProcessPoolExecutor``
    ``concurrent.futures.ProcessPoolExecutor(max_workers=workers)``. The main thread
    takes one of C semaphore permits, submits, and attaches a done-callback that
    checks the result, stamps the latency and gives the permit back. This was the
    fastest fair driver measured (in one run on 2 cores; against keeping C futures
    and calling ``concurrent.futures.wait(FIRST_COMPLETED)``, which rescans them all
    on every completion: about -15% at C=64 and -20% at C=1; and against asyncio's
    ``loop.run_in_executor`` behind a semaphore: about -35%). Latency ends when the
    executor's thread completes the future, the earliest any caller could see it.
    Workers start with ``forkserver`` (else ``spawn``): the start method only changes
    startup, which is not timed, and forking a parent that has run event loops and
    threads is unsafe.
``anyio.to_process``
    C tasks each awaiting ``anyio.to_process.run_sync(add, a, b, limiter=L)``
    with ``L = anyio.CapacityLimiter(workers)``, so at most *workers* processes.

Every contender is warmed up (``--warmup`` calls at the highest C, which also
starts all its workers) before anything is timed; worker startup is never timed.
Latency is per call, from submit to result. Every result is checked
(``add(i, i + 1) == 2 * i + 1``, and the results sum to ``calls**2``): a broken
contender fails the run instead of posting a fast number. ``snakepit/x`` is
snakepit's req/s over the row's req/s at the same C (above 1: snakepit is faster).

The contenders take turns, ``--rounds`` times, and each row keeps its round with
the best req/s (with that round's latencies); the JSON output has every round. On
a small shared machine one round's req/s can swing by a third from run to run,
as the scheduler places the parent and the workers; the best of a few rounds is
the steadiest estimate of what each contender can do. About 25 s per round with
the defaults on 2 cores.

``--profile`` runs the snakepit contender once more at the highest C under
cProfile (the parent process only) and prints the top functions inside
``snakepit/`` by cumulative time, then the top of the whole profile by own time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import gc
import multiprocessing
import pstats
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
import anyio.to_process
import attrs

import snakepit
from benchmarks._common import (
    Measurement,
    add,
    format_machine_info,
    format_table,
    machine_info,
    write_json,
)
from snakepit.pool import open_pool

SNAKEPIT = "snakepit(process)"
PPE = "ProcessPoolExecutor"
TO_PROCESS = "anyio.to_process"
#: ``--contenders`` names, in the order they run and are printed.
CONTENDERS = {"snakepit": SNAKEPIT, "ppe": PPE, "to_process": TO_PROCESS}
SHOWCASE = "snakepit.adapters.showcase:ShowcaseAdapter"
HEADERS = ("contender", "inflight", "calls", "req/s", "p50 ms", "p99 ms", "snakepit/x")


class BenchmarkError(Exception):
    """A contender returned wrong results or lost calls: its numbers mean nothing."""


class _Tally:
    """Checks every result of one run: ``add(i, i + 1)`` must be ``2 * i + 1``."""

    def __init__(self, contender: str, calls: int) -> None:
        self.contender = contender
        self.calls = calls
        self.latencies = [0.0] * calls
        self.done = 0
        self.total = 0
        self.wrong: list[tuple[int, object]] = []

    def record(self, i: int, result: object, latency: float) -> None:
        self.latencies[i] = latency
        self.done += 1
        if result == 2 * i + 1:
            self.total += 2 * i + 1
        else:
            self.wrong.append((i, result))

    def measurement(self, inflight: int, elapsed: float) -> Measurement:
        """Summarise the run once every result is checked.

        Raises:
            BenchmarkError: a result was wrong or missing.
        """
        if self.wrong:
            shown = ", ".join(f"call {i} -> {r!r}" for i, r in self.wrong[:5])
            raise BenchmarkError(
                f"{self.contender} at inflight {inflight}: {len(self.wrong)} wrong "
                f"results ({shown})"
            )
        if self.done != self.calls or self.total != self.calls**2:
            raise BenchmarkError(
                f"{self.contender} at inflight {inflight}: {self.done} of "
                f"{self.calls} results arrived, summing to {self.total} instead of "
                f"{self.calls**2}"
            )
        return Measurement.from_latencies(
            self.contender, inflight, elapsed, self.latencies
        )


# --- Drivers: closed loops keeping at most `inflight` calls outstanding ---


async def closed_loop_async(
    contender: str,
    call: Callable[[int, int], Awaitable[object]],
    calls: int,
    inflight: int,
) -> Measurement:
    """*inflight* tasks, each awaiting ``call(i, i + 1)`` for the next *i*."""
    tally = _Tally(contender, calls)
    indices = iter(range(calls))
    clock = time.perf_counter

    async def caller() -> None:
        for i in indices:
            begin = clock()
            result = await call(i, i + 1)
            tally.record(i, result, clock() - begin)

    gc.collect()
    began = clock()
    async with anyio.create_task_group() as tg:
        for _ in range(min(inflight, calls)):
            tg.start_soon(caller)
    elapsed = clock() - began
    return tally.measurement(inflight, elapsed)


def closed_loop_executor(
    contender: str,
    executor: concurrent.futures.Executor,
    calls: int,
    inflight: int,
) -> Measurement:
    """Submit ``add(i, i + 1)`` whenever one of *inflight* permits is free; a
    done-callback checks the result, stamps the latency and frees the permit."""
    tally = _Tally(contender, calls)
    permits = threading.Semaphore(inflight)
    lock = threading.Lock()  # callbacks run in the executor's thread, or in ours
    finished = threading.Event()
    errors: list[BaseException] = []
    clock = time.perf_counter

    def submit(i: int) -> None:
        begin = clock()

        def done(future: concurrent.futures.Future[int]) -> None:
            latency = clock() - begin
            try:
                result: object = future.result()
            except BaseException as exc:  # reported below, not lost in a callback
                errors.append(exc)
                result = exc
            with lock:
                tally.record(i, result, latency)
                if tally.done == calls:
                    finished.set()
            permits.release()

        executor.submit(add, i, i + 1).add_done_callback(done)

    gc.collect()
    began = clock()
    for i in range(calls):
        permits.acquire()
        submit(i)
    finished.wait()
    elapsed = clock() - began
    if errors:
        raise BenchmarkError(f"{contender}: a call raised: {errors[0]!r}") from errors[
            0
        ]
    return tally.measurement(inflight, elapsed)


# --- Contenders: each starts its workers, warms up, then runs every plan ---


async def run_snakepit(
    workers: int,
    warmup: int,
    plan: Sequence[tuple[int, int]],
    profiler: cProfile.Profile | None = None,
) -> list[Measurement]:
    """*plan*: ``(inflight, calls)`` pairs, timed in order. With *profiler*, only
    the timed runs are profiled."""
    most = max(inflight for inflight, _ in plan)
    async with open_pool(
        adapter=SHOWCASE,
        size=workers,
        # Throughput is measured here, not the queue's limits: never refuse a call.
        max_queue_size=max(1000, most),
        queue_timeout=60.0,
    ) as pool:

        async def call(a: int, b: int) -> object:
            return await pool.execute("add", {"a": a, "b": b})

        await closed_loop_async(SNAKEPIT, call, warmup, max(most, workers))
        results = []
        for inflight, calls in plan:
            if profiler is not None:
                profiler.enable()
            try:
                results.append(await closed_loop_async(SNAKEPIT, call, calls, inflight))
            finally:
                if profiler is not None:
                    profiler.disable()
        return results


def ppe_start_method() -> str:
    """``forkserver`` where there is one, else ``spawn``; never a plain ``fork``
    of this parent, which has run event loops and threads by then."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def run_ppe(
    workers: int, warmup: int, plan: Sequence[tuple[int, int]]
) -> list[Measurement]:
    context = multiprocessing.get_context(ppe_start_method())
    most = max(inflight for inflight, _ in plan)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context
    ) as executor:
        closed_loop_executor(PPE, executor, warmup, max(most, workers))
        return [
            closed_loop_executor(PPE, executor, calls, inflight)
            for inflight, calls in plan
        ]


async def run_to_process(
    workers: int, warmup: int, plan: Sequence[tuple[int, int]]
) -> list[Measurement]:
    limiter = anyio.CapacityLimiter(workers)

    async def call(a: int, b: int) -> object:
        return await anyio.to_process.run_sync(add, a, b, limiter=limiter)

    most = max(inflight for inflight, _ in plan)
    # At the highest C, so every one of the limiter's processes gets started.
    await closed_loop_async(TO_PROCESS, call, warmup, max(most, workers))
    # The event loop's end kills anyio's worker processes. asyncio may then log
    # "Unknown child process pid ..." when its child watcher loses the race to
    # reap one: noise from the peer's shutdown, after the timing.
    return [
        await closed_loop_async(TO_PROCESS, call, calls, inflight)
        for inflight, calls in plan
    ]


def run_contender(
    key: str,
    *,
    workers: int,
    warmup: int,
    plan: Sequence[tuple[int, int]],
    backend: str,
) -> list[Measurement]:
    if key == "snakepit":
        return anyio.run(run_snakepit, workers, warmup, plan, backend=backend)
    if key == "ppe":
        return run_ppe(workers, warmup, plan)
    return anyio.run(run_to_process, workers, warmup, plan, backend=backend)


# --- Report ---


def speedups(rows: Sequence[Measurement]) -> dict[tuple[str, int], float]:
    """Snakepit's req/s over each row's at the same in-flight limit."""
    ours = {r.inflight: r.req_per_s for r in rows if r.contender == SNAKEPIT}
    return {
        (r.contender, r.inflight): ours[r.inflight] / r.req_per_s
        for r in rows
        if r.inflight in ours
    }


def best_rows(runs: Sequence[Measurement]) -> list[Measurement]:
    """Each (contender, inflight)'s run with the highest req/s."""
    best: dict[tuple[str, int], Measurement] = {}
    for run in runs:
        key = (run.contender, run.inflight)
        if key not in best or run.req_per_s > best[key].req_per_s:
            best[key] = run
    return list(best.values())


def table(rows: Sequence[Measurement], notes: dict[str, str]) -> str:
    """One line per contender and C, grouped by C, with snakepit's speed-up."""
    ratios = speedups(rows)
    order = list(CONTENDERS.values())
    cells = []
    for row in sorted(rows, key=lambda r: (r.inflight, order.index(r.contender))):
        ratio = ratios.get((row.contender, row.inflight))
        cells.append(
            (
                row.contender + notes.get(row.contender, ""),
                str(row.inflight),
                str(row.calls),
                f"{row.req_per_s:,.0f}",
                f"{row.p50_ms:.3f}",
                f"{row.p99_ms:.3f}",
                "n/a" if ratio is None else f"{ratio:.2f}",
            )
        )
    return format_table(HEADERS, cells)


def profile_report(profiler: cProfile.Profile, top: int) -> None:
    """Top *top* functions inside snakepit/ by cumulative time, then the whole
    profile by own time."""
    package = re.escape(str(Path(snakepit.__file__).resolve().parent))
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(package, top)
    stats.sort_stats("tottime").print_stats(top + 5)


def _int_list(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("needs positive integers, e.g. 1,64")
    return values


def _contender_list(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CONTENDERS]
    if not keys or unknown:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(CONTENDERS)} (not {', '.join(unknown) or text!r})"
        )
    return [k for k in CONTENDERS if k in keys]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=20_000,
        help="timed calls per contender and concurrency (default: %(default)s)",
    )
    parser.add_argument(
        "--to-process-calls",
        type=int,
        help="timed calls for anyio.to_process, if it is too slow for --calls "
        "(default: --calls); req/s stays comparable",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes per contender (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=[1, 64],
        help="comma-separated in-flight limits (default: 1,64)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="untimed calls per contender first (default: %(default)s)",
    )
    parser.add_argument(
        "--contenders",
        type=_contender_list,
        default=list(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run every contender this many times, in turn, and keep each row's "
        "best req/s: on a busy machine the best is the least disturbed "
        "(default: %(default)s)",
    )
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then profile snakepit's parent at the highest concurrency",
    )
    args = parser.parse_args(argv)
    if min(args.calls, args.workers, args.warmup, args.rounds) < 1:
        parser.error("--calls, --workers, --warmup and --rounds must be positive")
    if args.to_process_calls is not None and args.to_process_calls < 1:
        parser.error("--to-process-calls must be positive")

    info = machine_info(("anyio", "msgpack", "psutil", "attrs", "snakepit"))
    print(format_machine_info(info))
    print(
        f"workload: add(i, i + 1), {args.calls} timed calls per row after "
        f"{args.warmup} warm-up calls, {args.workers} worker processes, "
        f"{args.backend} event loop; ProcessPoolExecutor workers by "
        f"{ppe_start_method()}"
        + (f"; best of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    sys.stdout.flush()

    runs: list[Measurement] = []
    notes: dict[str, str] = {}
    for round_ in range(1, args.rounds + 1):
        for key in args.contenders:
            calls = args.calls
            if key == "to_process" and args.to_process_calls is not None:
                calls = args.to_process_calls
                if calls != args.calls:
                    notes[TO_PROCESS] = "*"
            counter = f" (round {round_} of {args.rounds})" if args.rounds > 1 else ""
            print(
                f"running {CONTENDERS[key]}{counter} ...", file=sys.stderr, flush=True
            )
            try:
                runs += run_contender(
                    key,
                    workers=args.workers,
                    warmup=args.warmup,
                    plan=[(c, calls) for c in args.concurrency],
                    backend=args.backend,
                )
            except BenchmarkError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
    rows = best_rows(runs)

    print()
    print(table(rows, notes))
    if notes:
        print(
            f"* {TO_PROCESS} timed over {args.to_process_calls} calls, not "
            f"{args.calls}; req/s and the ratio stay comparable"
        )
    if args.json is not None:
        ratios = speedups(rows)
        write_json(
            args.json,
            {
                "benchmark": "throughput",
                "machine": info,
                "settings": {
                    "calls": args.calls,
                    "to_process_calls": args.to_process_calls or args.calls,
                    "workers": args.workers,
                    "concurrency": args.concurrency,
                    "warmup": args.warmup,
                    "backend": args.backend,
                    "rounds": args.rounds,
                    "ppe_start_method": ppe_start_method(),
                },
                "rows": [
                    {
                        **attrs.asdict(r),
                        "snakepit_ratio": ratios.get((r.contender, r.inflight)),
                    }
                    for r in rows
                ],
                "runs": [attrs.asdict(r) for r in runs],
            },
        )
    if args.profile:
        most = args.concurrency[-1]
        print(f"\nprofile of snakepit's parent, inflight {most}, {args.calls} calls:")
        profiler = cProfile.Profile()
        anyio.run(
            run_snakepit,
            args.workers,
            args.warmup,
            [(most, args.calls)],
            profiler,
            backend=args.backend,
        )
        profile_report(profiler, 10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
