"""The process profile against the thread profile, and free-threading for real.

The seed library's comparison table (memory, small-request throughput, CPU-bound
throughput, process vs thread profile) measured on this machine, in one run::

    python -m benchmarks.profiles [--seconds 4] [--rounds 4] [--json PATH]
        [--ft-python PATH]

Every pool runs the same adapter, ``ThreadedShowcaseAdapter`` (thread-safe, so it
serves both profiles). Layouts are written ``process 2x1`` (2 worker processes, 1
call each) and ``thread 1x2`` (1 worker process running 2 calls at once on 2
threads); ``BLAS 1`` pins every BLAS thread variable to 1 through ``adapter_env``
(the process profile sets 1, the thread profile ``threads_per_worker``).

1. Small requests: ``add(a, b)`` with 64 calls in flight, on ``process 2x1``,
   ``thread 1x2`` and ``thread 2x2``: req/s, latency, pool start time, and the
   private memory of the pool's workers (USS, summed over the pids of
   ``worker_stats()``) measured idle after the warm-up.
2. CPU-bound jobs, in flight = capacity, on the parent's (GIL) interpreter: pure
   Python (``compute_intensive`` with a fixed *n*, about 50-150 ms a job) and NumPy
   (``matrix_multiply``), on ``process 2x1``, ``thread 1x2`` and
   ``thread 1x2, BLAS 1``: jobs/s, and USS after that workload's warm-up (so the
   NumPy rows include NumPy).
3. Free-threading: the same jobs on ONE thread-profile worker with 1 thread, then
   2 threads (BLAS 1 in both, so only Python threads differ), on the GIL
   interpreter (the control) and on a free-threaded CPython (``--ft-python``, else
   ``$SNAKEPIT_FT_PYTHON``, else ``~/.cache/snakepit/venv-3.13t/bin/python``):
   jobs/s and the speed-up 2 threads / 1 thread. The GIL column is what the
   workers say: their ``Hello`` (sent after the adapter is imported), then
   ``adapter_info`` after the timed rounds (an extension module without
   free-threading support re-enables the GIL when first imported, and NumPy is
   first imported inside ``matrix_multiply``).

How it is timed. Every pool is started first (the start is timed on its own,
never in a rate) and stays open, idle, while the others run. For each workload,
its pools are warmed up, their memory is read, then they take turns for
``--rounds`` rounds (the order reversed every other round), each turn a closed
loop of ``--seconds / --rounds`` seconds: every one of *in-flight* callers sends
its next call when its last returns, until the turn's window closes. The rate
counts the calls finished in the window, plus the finished fraction of those
still running at its end (they complete, untimed). A row's rate is over all its
turns; a ratio (``x process``, the speed-up) is the median over rounds of the
ratio within each round: on a shared machine the CPU time left by other work
changes from second to second, and only turns run side by side compare fairly.
The run ends by saying how many CPUs other processes kept busy meanwhile (from
``/proc/stat``, minus this process and its workers). Every result is checked
(``add(i, i + 1) == 2i + 1``; ``compute_intensive`` and the matrix trace against
their closed forms): a broken row fails the run. On 2 cores a perfect speed-up is
2.0x; the parent's event loop shares those cores with the workers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import psutil

from benchmarks._common import (
    format_machine_info,
    format_table,
    machine_info,
    percentile,
    write_json,
)
from snakepit.config import PoolConfig
from snakepit.exceptions import RemoteError, SnakepitError
from snakepit.pool import Pool, open_pool
from snakepit.profiles import BLAS_THREAD_VARIABLES

ADAPTER = "snakepit.adapters.threaded_showcase:ThreadedShowcaseAdapter"
#: The free-threaded interpreter: ``--ft-python``, else this variable, else the
#: default path.
FT_ENV = "SNAKEPIT_FT_PYTHON"
DEFAULT_FT_PYTHON = Path.home() / ".cache/snakepit/venv-3.13t/bin/python"

SMALL_INFLIGHT = 64
#: ``compute_intensive(n)``: about 70 ms a job on an idle 2.5 GHz Xeon core.
CPU_N = 500_000
MATRIX_SIZE = 512
_MODULUS = 1_000_000_007
_MIB = 1024 * 1024

GIL = "gil"
FT = "ft"
INTERPRETER_NAMES = {GIL: "GIL build", FT: "free-threaded"}


class BenchmarkError(Exception):
    """A row returned wrong results: its numbers mean nothing."""


# --- Workloads: a command, its arguments, and the check of its result ---


def expected_cpu(n: int) -> int:
    """``compute_intensive(n)``'s result: the sum of i*i for i < n, mod 1e9+7."""
    return (n - 1) * n * (2 * n - 1) // 6 % _MODULUS


def expected_trace(size: int) -> float:
    """``trace(a @ a.T)`` for ``a = arange(size**2).reshape(size, size) / size``:
    the sum of every element of *a* squared."""
    count = size * size
    return (count - 1) * count * (2 * count - 1) / 6 / (size * size)


@attrs.frozen(kw_only=True)
class Workload:
    key: str
    command: str
    args: Callable[[int], dict[str, Any]]
    check: Callable[[int, Any], bool]
    needs_numpy: bool = False


def _check_add(i: int, result: Any) -> bool:
    return bool(result == 2 * i + 1)


def _check_cpu(i: int, result: Any) -> bool:
    return bool(result["n"] == CPU_N and result["result"] == expected_cpu(CPU_N))


def _check_matrix(i: int, result: Any) -> bool:
    return bool(
        result["size"] == MATRIX_SIZE
        and math.isclose(result["trace"], expected_trace(MATRIX_SIZE), rel_tol=1e-9)
    )


ADD = Workload(
    key="add", command="add", args=lambda i: {"a": i, "b": i + 1}, check=_check_add
)
PYTHON = Workload(
    key="python",
    command="compute_intensive",
    args=lambda i: {"n": CPU_N},
    check=_check_cpu,
)
NUMPY = Workload(
    key="numpy",
    command="matrix_multiply",
    args=lambda i: {"size": MATRIX_SIZE},
    check=_check_matrix,
    needs_numpy=True,
)


# --- Pool layouts ---


@attrs.frozen(kw_only=True)
class Layout:
    """A pool: profile, processes x threads, interpreter, BLAS threads."""

    profile: str
    workers: int
    threads: int
    interpreter: str = GIL
    blas: int | None = None  # None: what the profile sets

    @property
    def capacity(self) -> int:
        return self.workers * self.threads

    @property
    def blas_threads(self) -> int:
        if self.blas is not None:
            return self.blas
        return self.threads if self.profile == "thread" else 1

    @property
    def label(self) -> str:
        text = f"{self.profile} {self.workers}x{self.threads}"
        return text + (f", BLAS {self.blas}" if self.blas is not None else "")

    def inflight(self, workload: Workload) -> int:
        return SMALL_INFLIGHT if workload is ADD else self.capacity

    def config(self, python: str | None) -> PoolConfig:
        env = {}
        if self.blas is not None:  # overrides the profile's BLAS variables
            env = dict.fromkeys(BLAS_THREAD_VARIABLES, str(self.blas))
        name = f"{self.interpreter}-{self.profile}-{self.workers}x{self.threads}"
        return PoolConfig(
            name=name + (f"-blas{self.blas}" if self.blas is not None else ""),
            adapter_module=ADAPTER,
            pool_size=self.workers,
            worker_profile=self.profile,
            threads_per_worker=self.threads,
            python_executable=python,
            adapter_env=env,
            # Throughput is measured, not the queue's limits: never refuse a call.
            max_queue_size=1000,
            queue_timeout=120.0,
            startup_timeout=60.0,
        )


PROCESS_2X1 = Layout(profile="process", workers=2, threads=1)
THREAD_1X2 = Layout(profile="thread", workers=1, threads=2)
THREAD_2X2 = Layout(profile="thread", workers=2, threads=2)
GIL_1 = Layout(profile="thread", workers=1, threads=1, blas=1)
GIL_2 = Layout(profile="thread", workers=1, threads=2, blas=1)
FT_1 = Layout(profile="thread", workers=1, threads=1, blas=1, interpreter=FT)
FT_2 = Layout(profile="thread", workers=1, threads=2, blas=1, interpreter=FT)

#: What is compared, by table: each workload on pools that take turns, in this
#: order. The first pool of each is the base of the ratios.
COMPARISONS: tuple[tuple[int, Workload, tuple[Layout, ...]], ...] = (
    (1, ADD, (PROCESS_2X1, THREAD_1X2, THREAD_2X2)),
    (2, PYTHON, (PROCESS_2X1, THREAD_1X2, GIL_2)),
    (2, NUMPY, (PROCESS_2X1, THREAD_1X2, GIL_2)),
    (3, PYTHON, (GIL_1, GIL_2)),
    (3, NUMPY, (GIL_1, GIL_2)),
    (3, PYTHON, (FT_1, FT_2)),
    (3, NUMPY, (FT_1, FT_2)),
)
SECTIONS = (1, 2, 3)
#: (1 thread, 2 threads) pairs of the free-threading table.
SPEEDUP_PAIRS = ((GIL_1, GIL_2), (FT_1, FT_2))


@attrs.frozen(kw_only=True)
class Row:
    """One workload on one pool over all its turns (``unavailable``: why not)."""

    section: int = 0
    layout: str
    interpreter: str
    workload: str
    workers: int
    threads: int
    capacity: int
    inflight: int
    blas_threads: int
    python_version: str | None = None
    calls: int = 0
    timed_s: float = 0.0
    rate: float = 0.0
    round_rates: tuple[float, ...] = ()
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    workers_cpu_s: float = 0.0  # CPU the workers used in the timed turns
    cpus_used: float = 0.0  # that over the turns' wall time
    start_s: float = 0.0
    uss_bytes: int = 0
    gil_hello: bool | None = None
    gil_after: bool | None = None
    unavailable: str | None = None

    @property
    def ok(self) -> bool:
        return self.unavailable is None

    @property
    def cpu_ms_per_call(self) -> float:
        return self.workers_cpu_s / self.calls * 1e3 if self.calls else 0.0


@attrs.frozen(kw_only=True)
class Turn:
    """One closed-loop window: calls sent, work credited, latencies, and the
    wall time until the last call returned."""

    calls: int
    credit: float
    window_s: float
    elapsed_s: float
    latencies: list[float]


# --- Measuring ---


async def closed_loop(
    pool: Pool, workload: Workload, inflight: int, seconds: float, min_calls: int = 0
) -> Turn:
    """*inflight* callers, each sending its next call when its last returns,
    until *seconds* have passed and at least *min_calls* were sent. Calls still
    running when the window closes complete and count for the fraction of their
    time inside it. Every result is checked."""
    spans: list[tuple[float, float]] = []
    wrong: list[tuple[int, Any]] = []
    sent = 0
    clock = time.perf_counter

    async def caller() -> None:
        nonlocal sent
        while sent < min_calls or clock() < deadline:
            i = sent
            sent += 1
            begin = clock()
            result = await pool.execute(workload.command, workload.args(i))
            spans.append((begin, clock()))
            if not workload.check(i, result):
                wrong.append((i, result))

    gc.collect()
    began = clock()
    deadline = began + seconds
    async with anyio.create_task_group() as tg:
        for _ in range(inflight):
            tg.start_soon(caller)
    elapsed = clock() - began
    if wrong:
        i, result = wrong[0]
        raise BenchmarkError(
            f"{workload.command}: {len(wrong)} wrong results (call {i} -> {result!r})"
        )
    if len(spans) != sent:
        raise BenchmarkError(f"{workload.command}: {len(spans)} of {sent} returned")
    credit = sum(
        1.0 if end <= deadline else max(0.0, (deadline - begin) / (end - begin))
        for begin, end in spans
    )
    return Turn(
        calls=sent,
        credit=credit,
        window_s=seconds,
        elapsed_s=elapsed,
        latencies=[end - begin for begin, end in spans],
    )


async def worker_gil(pool: Pool) -> dict[int, bool]:
    """Each worker's ``adapter_info()["gil_enabled"]``, by pid: as many calls at
    once as the pool's capacity, so every worker answers at least one."""
    answers: list[dict[str, Any]] = []

    async def ask() -> None:
        answers.append(await pool.execute("adapter_info"))

    async with anyio.create_task_group() as tg:
        for _ in range(pool.get_stats()["capacity"]):
            tg.start_soon(ask)
    return {a["pid"]: bool(a["gil_enabled"]) for a in answers}


def pool_cpu_s(pool: Pool) -> float:
    """CPU seconds (user + system) the pool's workers have used so far."""
    total = 0.0
    for stats in pool.worker_stats():
        times = psutil.Process(stats["pid"]).cpu_times()
        total += times.user + times.system
    return total


def pool_uss(pool: Pool) -> int:
    """Private memory (USS) of the pool's workers, summed."""
    return sum(
        psutil.Process(stats["pid"]).memory_full_info().uss
        for stats in pool.worker_stats()
    )


@attrs.define
class Live:
    """A started pool and what its start told."""

    layout: Layout
    pool: Pool
    start_s: float
    python_version: str | None
    gil_hello: bool | None


async def start(
    stack: contextlib.AsyncExitStack, layout: Layout, python: str | None
) -> Live:
    clock = time.perf_counter
    began = clock()
    pool = await stack.enter_async_context(open_pool(layout.config(python)))
    start_s = clock() - began
    hellos = [pool.worker(wid).hello for wid in pool.list_workers()]
    known = [h for h in hellos if h is not None]
    return Live(
        layout=layout,
        pool=pool,
        start_s=start_s,
        python_version=known[0].python_version if known else None,
        gil_hello=any(h.gil_enabled for h in known) if known else None,
    )


def unavailable_row(layout: Layout, workload: Workload, why: str) -> Row:
    return Row(
        layout=layout.label,
        interpreter=layout.interpreter,
        workload=workload.key,
        workers=layout.workers,
        threads=layout.threads,
        capacity=layout.capacity,
        inflight=layout.inflight(workload),
        blas_threads=layout.blas_threads,
        unavailable=why,
    )


async def compare(
    workload: Workload,
    lives: Sequence[Live],
    *,
    seconds: float,
    rounds: int,
) -> list[Row]:
    """Warm up *lives*' pools, read their memory, then let them take turns."""
    uss: dict[int, int] = {}
    running: list[Live] = []
    rows: list[Row] = []
    for index, live in enumerate(lives):
        inflight = live.layout.inflight(workload)
        warmup = 500 if workload is ADD else 2 * live.layout.capacity
        try:
            await closed_loop(live.pool, workload, inflight, 0.0, warmup)
        except RemoteError as exc:
            if workload.needs_numpy and exc.remote_type in {
                "ImportError",
                "ModuleNotFoundError",
            }:
                why = exc.message.split(";")[0]
                rows.append(unavailable_row(live.layout, workload, why))
                continue
            raise
        uss[index] = pool_uss(live.pool)
        running.append(live)
    turns: dict[int, list[Turn]] = {id(live): [] for live in running}
    cpu_s: dict[int, float] = dict.fromkeys(turns, 0.0)
    for round_ in range(rounds):
        order = running if round_ % 2 == 0 else running[::-1]
        for live in order:
            before = pool_cpu_s(live.pool)
            turn = await closed_loop(
                live.pool, workload, live.layout.inflight(workload), seconds / rounds
            )
            cpu_s[id(live)] += pool_cpu_s(live.pool) - before
            turns[id(live)].append(turn)
    for index, live in enumerate(lives):
        if id(live) not in turns:
            continue  # reported unavailable above
        mine = turns[id(live)]
        latencies = sorted(x for turn in mine for x in turn.latencies)
        after = await worker_gil(live.pool)
        layout = live.layout
        rows.append(
            Row(
                layout=layout.label,
                interpreter=layout.interpreter,
                workload=workload.key,
                workers=layout.workers,
                threads=layout.threads,
                capacity=layout.capacity,
                inflight=layout.inflight(workload),
                blas_threads=layout.blas_threads,
                python_version=live.python_version,
                calls=sum(turn.calls for turn in mine),
                timed_s=sum(turn.window_s for turn in mine),
                rate=sum(t.credit for t in mine) / sum(t.window_s for t in mine),
                round_rates=tuple(turn.credit / turn.window_s for turn in mine),
                p50_ms=percentile(latencies, 50) * 1e3,
                p99_ms=percentile(latencies, 99) * 1e3,
                workers_cpu_s=cpu_s[id(live)],
                cpus_used=cpu_s[id(live)] / sum(t.elapsed_s for t in mine),
                start_s=live.start_s,
                uss_bytes=uss[index],
                gil_hello=live.gil_hello,
                gil_after=any(after.values()),
            )
        )
    return rows


async def run_all(
    *,
    seconds: float,
    rounds: int,
    pythons: dict[str, str | None],
    missing: dict[str, str | None],
    sections: Sequence[int] = SECTIONS,
) -> tuple[list[Row], float]:
    """Start every pool of the *sections*' :data:`COMPARISONS` (all stay open),
    then run each comparison. Pools of an absent interpreter, or that fail to
    start, and NumPy rows where NumPy is missing, are reported as unavailable.
    Returns the rows and the CPU seconds the workers used."""
    rows: list[Row] = []
    comparisons = [c for c in COMPARISONS if c[0] in sections]
    async with contextlib.AsyncExitStack() as stack:
        lives: dict[Layout, Live] = {}
        failed: dict[Layout, str] = {}
        layouts = dict.fromkeys(layout for *_, group in comparisons for layout in group)
        for layout in layouts:
            name = f"{layout.label} ({INTERPRETER_NAMES[layout.interpreter]})"
            if layout.interpreter not in pythons:
                failed[layout] = missing["interpreter"] or "no interpreter"
                continue
            print(f"starting {name} ...", file=sys.stderr, flush=True)
            try:
                lives[layout] = await start(stack, layout, pythons[layout.interpreter])
            except (SnakepitError, OSError) as exc:
                first = (str(exc).splitlines() or [""])[0]
                failed[layout] = f"did not start: {type(exc).__name__}: {first}"
        for section, workload, group in comparisons:
            names = ", ".join(layout.label for layout in group)
            print(f"timing {workload.key} on {names} ...", file=sys.stderr, flush=True)
            found, ready = [], []
            for layout in group:
                why = failed.get(layout)
                if why is None and workload.needs_numpy:
                    why = missing.get(layout.interpreter)
                if why is not None:
                    found.append(unavailable_row(layout, workload, why))
                else:
                    ready.append(lives[layout])
            found += await compare(workload, ready, seconds=seconds, rounds=rounds)
            rows += [attrs.evolve(row, section=section) for row in found]
        workers_cpu_s = 0.0
        for live in lives.values():
            for stats in live.pool.worker_stats():
                times = psutil.Process(stats["pid"]).cpu_times()
                workers_cpu_s += times.user + times.system
    return rows, workers_cpu_s


def busy_cpu_s() -> tuple[float, float]:
    """(CPU seconds spent busy by the whole machine, stolen by its hypervisor)."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0)
    return float(busy + getattr(t, "softirq", 0.0)), float(getattr(t, "steal", 0.0))


def own_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


# --- The interpreters ---

_INTERPRETER_SCRIPT = """
import json, sys, sysconfig
info = {
    "version": sys.version.replace("\\n", " "),
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
}
try:
    import msgpack
    fallback = msgpack.Packer.__module__ == "msgpack.fallback"
    kind = " (pure-Python fallback)" if fallback else " (C extension)"
    info["msgpack"] = ".".join(map(str, msgpack.version)) + kind
except ImportError:
    info["msgpack"] = None
try:
    import numpy
    info["numpy"] = numpy.__version__
except ImportError as exc:
    info["numpy"] = None
    lines = str(exc).strip().splitlines()
    info["numpy_error"] = lines[0] if lines else type(exc).__name__
is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
info["gil_enabled_after_imports"] = True if is_gil_enabled is None else is_gil_enabled()
print(json.dumps(info))
"""


def describe_interpreter(executable: str) -> dict[str, Any]:
    """Version, build, msgpack and NumPy of *executable*, asked in a subprocess
    that imports only msgpack and NumPy."""
    try:
        proc = subprocess.run(
            [executable, "-c", _INTERPRETER_SCRIPT],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"executable": executable, "error": f"{type(exc).__name__}: {exc}"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"executable": executable, "error": f"exit {proc.returncode}: {tail}"}
    return {"executable": executable, **json.loads(proc.stdout)}


def find_ft_python(option: str | None) -> tuple[str | None, str]:
    """(the free-threaded interpreter or None, where it came from or why not)."""
    if option:
        path, source = option, "--ft-python"
    elif os.environ.get(FT_ENV):
        path, source = os.environ[FT_ENV], f"${FT_ENV}"
    else:
        path, source = str(DEFAULT_FT_PYTHON), "default path"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"{path} ({source}) is not an executable file"
    return path, source


def interpreter_lines(name: str, info: dict[str, Any]) -> str:
    if "error" in info:
        return f"{name}: {info['executable']}: cannot run: {info['error']}"
    build = "free-threaded build" if info["free_threaded"] else "GIL build"
    gil = "on" if info["gil_enabled_after_imports"] else "off"
    imported = "msgpack and NumPy" if info["numpy"] else "msgpack"
    return (
        f"{name}: {info['executable']}\n"
        f"          {info['version']}\n"
        f"          {build}; GIL {gil} after importing {imported}; "
        f"msgpack {info['msgpack']}, numpy {info['numpy'] or 'not importable'}"
    )


# --- Tables ---


def find_row(
    rows: Sequence[Row], section: int, layout: Layout, workload: Workload
) -> Row | None:
    key = (section, layout.label, layout.interpreter, workload.key)
    return next(
        (r for r in rows if (r.section, r.layout, r.interpreter, r.workload) == key),
        None,
    )


def ratio(row: Row | None, base: Row | None) -> float | None:
    """The median over rounds of *row*'s rate over *base*'s in the same round."""
    if row is None or base is None or not (row.ok and base.ok):
        return None
    pairs = zip(row.round_rates, base.round_rates, strict=True)
    return statistics.median(mine / theirs for mine, theirs in pairs)


def _mib(value: float) -> str:
    return f"{value / _MIB:.1f}"


def _x(value: float | None, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.2f}{suffix}"


def _gil(value: bool | None) -> str:
    return "?" if value is None else ("on" if value else "off")


def small_table(rows: Sequence[Row]) -> str:
    headers = (
        "layout",
        "capacity",
        "calls",
        "req/s",
        "p50 ms",
        "p99 ms",
        "x process",
        "start s",
        "USS MiB",
        "USS/process",
    )
    layouts = COMPARISONS[0][2]
    base = find_row(rows, 1, layouts[0], ADD)
    cells = []
    for layout in layouts:
        row = find_row(rows, 1, layout, ADD)
        if row is None or not row.ok:
            cells.append((layout.label, str(layout.capacity), *["n/a"] * 8))
            continue
        cells.append(
            (
                layout.label,
                str(row.capacity),
                f"{row.calls:,}",
                f"{row.rate:,.0f}",
                f"{row.p50_ms:.2f}",
                f"{row.p99_ms:.2f}",
                _x(ratio(row, base)),
                f"{row.start_s:.2f}",
                _mib(row.uss_bytes),
                _mib(row.uss_bytes / row.workers),
            )
        )
    return format_table(headers, cells)


def cpu_table(rows: Sequence[Row]) -> tuple[str, list[str]]:
    headers = (
        "workload",
        "layout",
        "BLAS",
        "jobs",
        "jobs/s",
        "p50 ms/job",
        "x process",
        "CPUs used",
        "CPU ms/job",
        "USS MiB",
    )
    shown = (PROCESS_2X1, THREAD_1X2, GIL_2)
    cells, notes = [], []
    for workload in (PYTHON, NUMPY):
        base = find_row(rows, 2, PROCESS_2X1, workload)
        for layout in shown:
            row = find_row(rows, 2, layout, workload)
            label = (workload.key, layout.label, str(layout.blas_threads))
            if row is None or not row.ok:
                cells.append((*label, *["n/a"] * 7))
                if row is not None:
                    notes.append(f"{workload.key} on {layout.label}: {row.unavailable}")
                continue
            cells.append(
                (
                    *label,
                    str(row.calls),
                    f"{row.rate:.2f}",
                    f"{row.p50_ms:.1f}",
                    _x(ratio(row, base)),
                    f"{row.cpus_used:.2f}",
                    f"{row.cpu_ms_per_call:.1f}",
                    _mib(row.uss_bytes),
                )
            )
    return format_table(headers, cells), notes


def speedups(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """For each interpreter and workload: jobs/s on 1 thread and on 2, the
    speed-up (median of the rounds' ratios), and the GIL as the workers saw it."""
    found = []
    for one, two in SPEEDUP_PAIRS:
        for workload in (PYTHON, NUMPY):
            a = find_row(rows, 3, one, workload)
            b = find_row(rows, 3, two, workload)
            if a is None or b is None:
                continue
            ok = a.ok and b.ok
            version = next(
                (
                    r.python_version
                    for r in rows
                    if r.interpreter == one.interpreter and r.python_version
                ),
                None,
            )
            found.append(
                {
                    "interpreter": one.interpreter,
                    "python_version": version,
                    "workload": workload.key,
                    "jobs_per_s_1_thread": a.rate if ok else None,
                    "jobs_per_s_2_threads": b.rate if ok else None,
                    "speedup": ratio(b, a),
                    "cpus_used": [a.cpus_used, b.cpus_used] if ok else None,
                    "cpu_ms_per_job": (
                        [a.cpu_ms_per_call, b.cpu_ms_per_call] if ok else None
                    ),
                    "gil_hello": [a.gil_hello, b.gil_hello] if ok else None,
                    "gil_after": [a.gil_after, b.gil_after] if ok else None,
                    "unavailable": None if ok else (a.unavailable or b.unavailable),
                }
            )
    return found


def ft_table(found: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    headers = (
        "interpreter",
        "workload",
        "GIL hello/after",
        "1 thread jobs/s",
        "2 threads jobs/s",
        "speed-up",
        "CPUs used 1t/2t",
        "CPU ms/job 1t/2t",
    )
    cells, notes = [], []
    for item in found:
        name = INTERPRETER_NAMES[item["interpreter"]]
        if item["python_version"]:
            name += f" {item['python_version']}"
        if item["unavailable"] is not None:
            cells.append((name, item["workload"], *["n/a"] * 6))
            notes.append(f"{name}, {item['workload']}: {item['unavailable']}")
            continue
        states = {
            f"{_gil(hello)}/{_gil(after)}"
            for hello, after in zip(item["gil_hello"], item["gil_after"], strict=True)
        }
        cells.append(
            (
                name,
                item["workload"],
                " | ".join(sorted(states)),
                f"{item['jobs_per_s_1_thread']:.2f}",
                f"{item['jobs_per_s_2_threads']:.2f}",
                _x(item["speedup"], "x"),
                "/".join(f"{x:.2f}" for x in item["cpus_used"]),
                "/".join(f"{x:.0f}" for x in item["cpu_ms_per_job"]),
            )
        )
    return format_table(headers, cells), notes


# --- Main ---


def _sections(text: str) -> list[int]:
    try:
        chosen = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        chosen = set()
    if not chosen or not chosen <= set(SECTIONS):
        raise argparse.ArgumentTypeError(f"choose among 1,2,3 (not {text!r})")
    return sorted(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profiles", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=4.0,
        help="timed seconds per row, over all its rounds (default: %(default)s; "
        "17 rows)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="turns each pool takes per workload; ratios are the median of the "
        "rounds' (default: %(default)s)",
    )
    parser.add_argument(
        "--sections",
        type=_sections,
        default=list(SECTIONS),
        help="comma-separated tables to run: 1 small requests, 2 CPU-bound, "
        "3 free-threading (default: 1,2,3)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--ft-python",
        help=f"the free-threaded interpreter (default: ${FT_ENV}, else "
        f"{DEFAULT_FT_PYTHON})",
    )
    args = parser.parse_args(argv)
    if not args.seconds > 0 or args.rounds < 1:
        parser.error("--seconds and --rounds must be positive")

    info = machine_info(("anyio", "msgpack", "psutil", "attrs", "numpy", "snakepit"))
    gil_info = describe_interpreter(sys.executable)
    ft_path, ft_source = find_ft_python(args.ft_python)
    ft_info = describe_interpreter(ft_path) if ft_path is not None else None

    pythons: dict[str, str | None] = {GIL: None}
    missing: dict[str, str | None] = {"interpreter": None}
    if ft_path is None:
        missing["interpreter"] = f"no free-threaded interpreter: {ft_source}"
    elif ft_info is not None and "error" in ft_info:
        missing["interpreter"] = f"{ft_path} does not run: {ft_info['error']}"
    else:
        pythons[FT] = ft_path
    for key, described in ((GIL, gil_info), (FT, ft_info)):
        if described and "error" not in described and not described["numpy"]:
            reason = described.get("numpy_error") or "not installed"
            missing[key] = (
                f"numpy is not importable by {described['executable']}: {reason}"
            )

    print(format_machine_info(info))
    print(interpreter_lines("workers (GIL)", gil_info))
    if ft_info is not None:
        print(interpreter_lines(f"workers (FT, {ft_source})", ft_info))
    else:
        print(f"workers (FT): none, {missing['interpreter']}")
    print(
        f"adapter:  {ADAPTER}\n"
        f"timing:   {args.seconds:g} s per row in {args.rounds} interleaved "
        "rounds; ratios are medians of the rounds'; asyncio event loop"
    )
    sys.stdout.flush()

    began = time.perf_counter()
    busy_before, steal_before = busy_cpu_s()
    own_before = own_cpu_s()
    try:
        rows, workers_cpu_s = anyio.run(
            lambda: run_all(
                seconds=args.seconds,
                rounds=args.rounds,
                pythons=pythons,
                missing=missing,
                sections=args.sections,
            )
        )
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total_s = time.perf_counter() - began
    busy_after, steal_after = busy_cpu_s()
    # What other processes made the CPUs do meanwhile, in CPUs busy on average.
    others = busy_after - busy_before - (own_cpu_s() - own_before) - workers_cpu_s
    other_load = max(0.0, others) / total_s
    steal = (steal_after - steal_before) / total_s

    if 1 in args.sections:
        print(
            f"\n1. Small requests: add(a, b), {SMALL_INFLIGHT} in flight "
            "(USS: the workers' private memory, idle after warm-up)"
        )
        print(small_table(rows))
    if 2 in args.sections:
        print(
            "\n2. CPU-bound jobs, in flight = capacity, GIL interpreter "
            f"(python: compute_intensive n={CPU_N:,}; numpy: matrix_multiply "
            f"size={MATRIX_SIZE}; USS after that warm-up; CPUs used: the "
            "workers' CPU time over wall time)"
        )
        text, notes = cpu_table(rows)
        print(text)
        for note in notes:
            print(f"  unavailable: {note}")
    found = speedups(rows)
    if 3 in args.sections:
        print(
            "\n3. Free-threading: ONE thread-profile worker, 1 vs 2 threads, "
            "BLAS 1 (GIL: as the workers report it, in Hello / after the run)"
        )
        text, notes = ft_table(found)
        print(text)
        for note in notes:
            print(f"  unavailable: {note}")
    print(f"\n{total_s:.0f} s in all (pool starts, warm-ups and timed rounds)")
    print(
        f"meanwhile other processes kept {other_load:.2f} of "
        f"{info['cpus_usable']} CPUs busy on average, and the hypervisor stole "
        f"{steal:.2f}" + (": the numbers are skewed" if other_load > 0.1 else "")
    )

    if args.json is not None:
        write_json(
            args.json,
            {
                "benchmark": "profiles",
                "machine": info,
                "interpreters": {GIL: gil_info, FT: ft_info},
                "settings": {
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "sections": args.sections,
                    "adapter": ADAPTER,
                    "small_inflight": SMALL_INFLIGHT,
                    "cpu_n": CPU_N,
                    "matrix_size": MATRIX_SIZE,
                    "ft_python": ft_path,
                    "ft_python_source": ft_source,
                },
                "rows": [attrs.asdict(r) for r in rows],
                "free_threading": found,
                "total_s": total_s,
                "other_load_cpus": other_load,
                "steal_cpus": steal,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
