"""One open pool of one contender, behind the same small synchronous API.

A section's job builds a session with :func:`make_session` (imports and
preparation, untimed), then calls :meth:`Session.start` (the pool starts: what the
startup section times), :meth:`Session.ready` (every worker has answered a call),
:meth:`Session.closed_loop` (timed calls) or :meth:`Session.map` (one timed
batch, through the pool's own map: the batch section) and :meth:`Session.close`.

The async contenders (snakepit, ``anyio.to_process``) run on an asyncio event
loop in a background thread (an anyio blocking portal, as ``snakepit.start()``
does for sync callers, on the same loop: uvloop when it is installed). A whole
closed loop runs inside that loop: the main thread only waits for its end, so no
call crosses threads.

Tasks are named after the functions of ``_tasks``: peers call the function (from
``_tasks_numpy`` when the workers must have NumPy), snakepit the command of the
same name on ``BenchAdapter`` (or ``NumpyBenchAdapter``), the raw-pipe children
the same function again.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from benchmarks.suite import _drivers
from benchmarks.suite._contenders import (
    APPLY,
    EXECUTOR,
    RAW,
    SNAKEPIT,
    TO_PROCESS,
    Contender,
)
from benchmarks.suite._drivers import Done, Timing, check_failed

if TYPE_CHECKING:
    from benchmarks.suite._rawpipe import RawPipeWorkers

ADAPTER = "benchmarks._adapters:BenchAdapter"
NUMPY_ADAPTER = "benchmarks._numpy_adapter:NumpyBenchAdapter"

#: Keyword names of each task's positional arguments (snakepit takes keywords).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "add": ("a", "b"),
    "echo": ("data",),
    "pid": ("hold",),
    "python_work": ("n",),
    "numpy_matmul": ("n",),
}


@attrs.frozen(kw_only=True)
class MapTiming:
    """One timed batch: *items* results in *elapsed_s*, through one map call with
    *chunksize* (None: the pool chose). ``req_per_s`` is items per second."""

    items: int
    chunksize: int | None
    elapsed_s: float
    req_per_s: float

    @classmethod
    def of(cls, items: int, chunksize: int | None, elapsed_s: float) -> MapTiming:
        return cls(
            items=items,
            chunksize=chunksize,
            elapsed_s=elapsed_s,
            req_per_s=items / elapsed_s,
        )

    def metrics(self) -> dict[str, Any]:
        return attrs.asdict(self)


def mp_pool_chunksize(items: int, workers: int) -> int:
    """The chunksize ``multiprocessing.Pool.map`` picks when given none: about
    four chunks per worker, ``ceil(items / (4 * workers))``."""
    return max(1, -(-items // (4 * workers)))


@attrs.frozen
class Task:
    """Call number *i* runs ``name(*args(i))``; ``check(i, result)`` says if the
    result is right."""

    name: str
    args: Callable[[int], Sequence[Any]]
    check: Callable[[int, Any], bool]


class Session:
    """The API every contender offers a section (see the module docstring)."""

    contender: Contender
    workers: int
    pids: set[int]
    startup_s: float = 0.0
    close_s: float = 0.0

    def start(self) -> None:
        raise NotImplementedError

    def ready(self, timeout: float) -> tuple[float, set[int]]:
        """Wait until every worker has answered one call; ``(perf_counter then,
        their pids)``. The pids are kept in :attr:`pids`."""
        raise NotImplementedError

    def closed_loop(
        self, task: Task, calls: int, inflight: int, timeout: float = 300.0
    ) -> Timing:
        raise NotImplementedError

    def map(
        self, task: Task, items: int, chunksize: int | None, timeout: float = 300.0
    ) -> MapTiming:
        """Run calls 0 to *items* - 1 as one batch, through the pool's own map
        with *chunksize* (None: the pool's default); time it (the arguments are
        built first, the results checked after, both untimed).

        Raises:
            CheckFailed: a result was wrong, or missing.
            TimeoutError: the batch did not complete within *timeout*.
        """
        raise NotImplementedError(f"{self.contender.label} has no map here")

    def close(self, timeout: float = 60.0) -> None:
        raise NotImplementedError


def _check_all(task: Task, results: Sequence[Any], items: int) -> None:
    """Every result of a batch checked, in order (a short batch fails too)."""
    for i, result in enumerate(results):
        if not task.check(i, result):
            raise check_failed(i, result)
    if len(results) != items:
        raise _drivers.CheckFailed(f"{len(results)} results for {items} items")


def _tasks_module() -> Any:
    return importlib.import_module("benchmarks.suite._tasks")


def _initializer(numpy: bool) -> Callable[[], None] | None:
    """The peers' worker initializer: the one that imports NumPy in the worker
    (``_tasks.initialize_numpy``), or none."""
    return _tasks_module().initialize_numpy if numpy else None


def _bounded(action: Callable[[], object], timeout: float) -> bool:
    """Run *action* in a daemon thread; False if it did not finish in *timeout*
    (a pool whose close hangs must not hang the job: the caller then kills)."""
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


# --- snakepit and anyio.to_process: async, on a portal's event loop ---


class _PortalSession(Session):
    """An async contender on an asyncio loop in a background thread."""

    def __init__(self, contender: Contender, workers: int) -> None:
        from anyio.from_thread import start_blocking_portal

        self.contender = contender
        self.workers = workers
        self.pids = set()
        self._stack = contextlib.ExitStack()
        # the loop snakepit.start() runs for sync callers: uvloop when installed
        from snakepit._sync import _backend_options

        self.portal = self._stack.enter_context(
            start_blocking_portal(
                backend="asyncio", backend_options=_backend_options("asyncio", None)
            )
        )

    async def _call(self, task: Task, i: int) -> Any:
        raise NotImplementedError

    _pid_task = "pid"

    async def _ready(self, timeout: float) -> tuple[float, set[int]]:
        import anyio

        pid = Task(self._pid_task, lambda i: (_drivers.HOLD_S,), lambda i, r: True)
        with anyio.fail_after(timeout):
            return await _drivers.ready_async(lambda: self._call(pid, 0), self.workers)

    def ready(self, timeout: float) -> tuple[float, set[int]]:
        ready_at, self.pids = self.portal.call(self._ready, timeout)
        return ready_at, self.pids

    async def _closed_loop(
        self, task: Task, calls: int, inflight: int, timeout: float
    ) -> Timing:
        import anyio

        with anyio.fail_after(timeout):
            return await _drivers.closed_loop_async(
                lambda i: self._call(task, i), task.check, calls, inflight
            )

    def closed_loop(
        self, task: Task, calls: int, inflight: int, timeout: float = 300.0
    ) -> Timing:
        return self.portal.call(self._closed_loop, task, calls, inflight, timeout)


class SnakepitSession(_PortalSession):
    """``snakepit.pool.open_pool`` with ``BenchAdapter`` (or its NumPy variant)."""

    def __init__(
        self,
        contender: Contender,
        workers: int,
        *,
        numpy: bool = False,
        max_requests: int | None = None,
    ) -> None:
        super().__init__(contender, workers)
        from snakepit.pool import open_pool

        profile = contender.options.get("profile", "process")
        options: dict[str, Any] = {
            "adapter": NUMPY_ADAPTER if numpy else ADAPTER,
            "size": workers,
            "worker_profile": profile,
            "threads_per_worker": contender.options.get("threads", 1),
            # Rates are measured, not the queue's limits: never refuse a call.
            "max_queue_size": 10_000,
            "queue_timeout": 300.0,
            "startup_timeout": 300.0,
            # Like the peers, start every worker at once (the default is 8).
            "startup_batch_size": workers,
        }
        if contender.options.get("pipeline_depth") is not None:
            options["pipeline_depth"] = contender.options["pipeline_depth"]
        if contender.options.get("start_method") is not None:
            options["start_method"] = contender.options["start_method"]
        if max_requests is not None:
            options["worker_max_requests"] = max_requests
        self._open: Callable[[], Any] = lambda: open_pool(**options)
        self.pool: Any = None

    def start(self) -> None:
        self.pool = self._stack.enter_context(
            self.portal.wrap_async_context_manager(self._open())
        )

    async def _call(self, task: Task, i: int) -> Any:
        names = PARAMETERS[task.name]
        return await self.pool.execute(
            task.name, dict(zip(names, task.args(i), strict=True))
        )

    async def _map(
        self, task: Task, items: int, chunksize: int | None, timeout: float
    ) -> tuple[list[Any], float]:
        import anyio

        names = PARAMETERS[task.name]
        batch = [dict(zip(names, task.args(i), strict=True)) for i in range(items)]
        gc.collect()
        with anyio.fail_after(timeout):
            began = time.perf_counter()
            results = await self.pool.map(task.name, batch, chunksize=chunksize)
            return list(results), time.perf_counter() - began

    def map(
        self, task: Task, items: int, chunksize: int | None, timeout: float = 300.0
    ) -> MapTiming:
        # Timed on the loop, as closed_loop is: the portal's hop is not counted.
        results, elapsed = self.portal.call(self._map, task, items, chunksize, timeout)
        _check_all(task, results, items)
        return MapTiming.of(items, chunksize, elapsed)

    def worker_pids(self) -> list[int]:
        """The pool's own account of its workers' pids."""
        return [s["pid"] for s in self.pool.worker_stats()]

    def close(self, timeout: float = 60.0) -> None:
        if not _bounded(self._stack.close, timeout):
            raise TimeoutError(f"the pool did not close within {timeout:g} s")


class ToProcessSession(_PortalSession):
    """``anyio.to_process.run_sync`` behind a ``CapacityLimiter(workers)``: anyio
    starts a worker process whenever a call finds none idle, up to the limit."""

    def __init__(self, contender: Contender, workers: int, *, numpy: bool) -> None:
        super().__init__(contender, workers)
        self.module = _tasks_module()
        # No initializer: the rendezvous call imports NumPy in each new worker.
        self._pid_task = "pid_numpy" if numpy else "pid"
        self.limiter: Any = None

    def start(self) -> None:
        import anyio

        async def make() -> Any:
            return anyio.CapacityLimiter(self.workers)

        self.limiter = self.portal.call(make)

    async def _call(self, task: Task, i: int) -> Any:
        from anyio import to_process

        function = getattr(self.module, task.name)
        return await to_process.run_sync(function, *task.args(i), limiter=self.limiter)

    def close(self, timeout: float = 60.0) -> None:
        # Ending the event loop ends anyio's worker processes.
        if not _bounded(self._stack.close, timeout):
            raise TimeoutError(f"the event loop did not end within {timeout:g} s")


# --- sync pools ---


class _SyncSession(Session):
    module: Any

    def _submit(
        self, function: Callable[..., Any], args: Sequence[Any], done: Done
    ) -> None:
        raise NotImplementedError

    def ready(self, timeout: float) -> tuple[float, set[int]]:
        pid = self.module.pid

        def submit_pid(done: Done) -> None:
            self._submit(pid, (_drivers.HOLD_S,), done)

        ready_at, self.pids = _drivers.ready_sync(submit_pid, self.workers, timeout)
        return ready_at, self.pids

    def closed_loop(
        self, task: Task, calls: int, inflight: int, timeout: float = 300.0
    ) -> Timing:
        function = getattr(self.module, task.name)
        args = task.args

        def submit(i: int, done: Done) -> None:
            self._submit(function, args(i), done)

        return _drivers.closed_loop_sync(submit, task.check, calls, inflight, timeout)


def _context(method: str | None) -> Any:
    return multiprocessing.get_context(method)


class ExecutorSession(_SyncSession):
    """A ``concurrent.futures``-style executor: the standard library's
    ``ProcessPoolExecutor`` (``mp_context`` = the start method), loky's, or
    pebble's ``ProcessPool`` (``schedule`` returns a future)."""

    def __init__(
        self,
        contender: Contender,
        workers: int,
        *,
        numpy: bool = False,
        max_tasks: int | None = None,
    ) -> None:
        self.contender = contender
        self.workers = workers
        self.pids = set()
        self.module = _tasks_module()
        self.lib = contender.options["lib"]
        self._make: Callable[[], Any]
        initializer = _initializer(numpy)
        if self.lib == "ppe":
            from concurrent.futures import ProcessPoolExecutor

            context = _context(contender.options["start_method"])
            extra: dict[str, Any] = {}
            if max_tasks is not None:
                extra["max_tasks_per_child"] = max_tasks
            self._make = lambda: ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=initializer,
                **extra,
            )
        elif self.lib == "loky":
            loky: Any = importlib.import_module("loky")  # untyped

            self._make = lambda: loky.ProcessPoolExecutor(
                max_workers=workers, initializer=initializer
            )
        elif self.lib == "pebble":
            pebble: Any = importlib.import_module("pebble")

            self._make = lambda: pebble.ProcessPool(
                max_workers=workers,
                max_tasks=max_tasks or 0,
                initializer=initializer,
                context=_context(None),
            )
        else:
            raise ValueError(f"unknown executor {self.lib!r}")
        self.executor: Any = None

    def start(self) -> None:
        self.executor = self._make()
        self._start_call: Callable[[Callable[..., Any], Sequence[Any]], Any]
        if self.lib == "pebble":
            schedule = self.executor.schedule
            self._start_call = lambda f, args: schedule(f, args=args)
        else:
            submit = self.executor.submit
            self._start_call = lambda f, args: submit(f, *args)

    def _submit(
        self, function: Callable[..., Any], args: Sequence[Any], done: Done
    ) -> None:
        def finished(future: Any) -> None:
            error = future.exception()
            done(None if error is not None else future.result(), error)

        future: Any = self._start_call(function, args)
        future.add_done_callback(finished)

    def map(
        self, task: Task, items: int, chunksize: int | None, timeout: float = 300.0
    ) -> MapTiming:
        """``Executor.map(function, *columns, chunksize=)``, drained in full
        (its results come lazily). pebble's map is another API: not here."""
        if self.lib == "pebble":
            raise NotImplementedError("pebble's map is not measured")
        function = getattr(self.module, task.name)
        columns = list(zip(*(task.args(i) for i in range(items)), strict=True))
        extra = {} if chunksize is None else {"chunksize": chunksize}
        gc.collect()
        began = time.perf_counter()
        results = list(self.executor.map(function, *columns, timeout=timeout, **extra))
        elapsed = time.perf_counter() - began
        _check_all(task, results, items)
        return MapTiming.of(items, chunksize, elapsed)

    def close(self, timeout: float = 60.0) -> None:
        executor = self.executor
        if executor is None:
            return
        if self.lib == "pebble":
            executor.close()
            if not _bounded(executor.join, timeout):
                executor.stop()
                executor.join(10)
                raise TimeoutError(f"pebble did not close within {timeout:g} s")
            return
        if not _bounded(lambda: executor.shutdown(wait=True), timeout):
            raise TimeoutError(f"{self.contender.label} did not shut down in time")


class ApplySession(_SyncSession):
    """A ``multiprocessing.Pool``-style pool (the standard library's or
    billiard's): ``apply_async`` with a callback and an error callback."""

    def __init__(
        self,
        contender: Contender,
        workers: int,
        *,
        numpy: bool = False,
        max_tasks: int | None = None,
    ) -> None:
        self.contender = contender
        self.workers = workers
        self.pids = set()
        self.module = _tasks_module()
        initializer = _initializer(numpy)
        self._make: Callable[[], Any]
        if contender.options["lib"] == "billiard":
            billiard: Any = importlib.import_module("billiard")  # untyped

            self._make = lambda: billiard.Pool(
                workers, initializer=initializer, maxtasksperchild=max_tasks
            )
        else:
            context = _context(contender.options.get("start_method"))
            self._make = lambda: context.Pool(
                workers, initializer=initializer, maxtasksperchild=max_tasks
            )
        self.pool: Any = None

    def start(self) -> None:
        self.pool = self._make()

    def _submit(
        self, function: Callable[..., Any], args: Sequence[Any], done: Done
    ) -> None:
        self.pool.apply_async(
            function,
            tuple(args),
            callback=lambda result: done(result, None),
            error_callback=lambda error: done(None, error),
        )

    def map(
        self, task: Task, items: int, chunksize: int | None, timeout: float = 300.0
    ) -> MapTiming:
        """``starmap_async(function, argument tuples, chunksize).get(timeout)``:
        ``starmap`` with a bound wait."""
        function = getattr(self.module, task.name)
        batch = [tuple(task.args(i)) for i in range(items)]
        gc.collect()
        began = time.perf_counter()
        results = self.pool.starmap_async(function, batch, chunksize).get(timeout)
        elapsed = time.perf_counter() - began
        _check_all(task, results, items)
        return MapTiming.of(items, chunksize, elapsed)

    def close(self, timeout: float = 60.0) -> None:
        pool = self.pool
        if pool is None:
            return
        pool.close()
        if not _bounded(pool.join, timeout):
            pool.terminate()
            raise TimeoutError(
                f"{self.contender.label} did not join within {timeout:g} s"
            )


# --- the raw-pipe baseline ---


class RawPipeSession(Session):
    """N raw-pipe children: blocking calls at in-flight 1, else pipelined
    (``raw-pipe(blocking)`` refuses more than 1 in flight)."""

    def __init__(self, contender: Contender, workers: int, *, numpy: bool) -> None:
        from benchmarks.suite._rawpipe import RawPipeWorkers

        self.contender = contender
        self.workers = workers
        self.numpy = numpy
        self.pids = set()
        self._factory = RawPipeWorkers
        self.children: RawPipeWorkers | None = None

    def _started(self) -> RawPipeWorkers:
        if self.children is None:
            raise RuntimeError("start() first")
        return self.children

    def start(self) -> None:
        self.children = self._factory(self.workers, numpy=self.numpy)

    def ready(self, timeout: float) -> tuple[float, set[int]]:
        # Each child gets exactly one call: no hold is needed to spread them.
        self.pids = set(self._started().call_each("pid", 0.0))
        return time.perf_counter(), self.pids

    def closed_loop(
        self, task: Task, calls: int, inflight: int, timeout: float = 300.0
    ) -> Timing:
        if self.contender.options.get("mode") == "blocking" or inflight == 1:
            if inflight != 1:
                raise ValueError("raw-pipe(blocking) keeps one call in flight")
            return self._started().closed_loop_blocking(
                task.name, task.args, task.check, calls
            )
        return self._started().closed_loop_pipelined(
            task.name, task.args, task.check, calls, inflight, timeout
        )

    def close(self, timeout: float = 60.0) -> None:
        if self.children is not None:
            self.children.close(timeout)


def make_session(
    contender: Contender,
    workers: int,
    *,
    numpy: bool = False,
    max_tasks: int | None = None,
) -> Session:
    """Prepare (untimed) a session of *contender* with *workers* workers.

    *numpy*: every worker imports NumPy before answering (snakepit: the NumPy
    adapter; peers: the NumPy task module's initializer; raw-pipe: ``--numpy``).
    For ``PPE(fork,numpy preloaded)`` this process imports NumPy first.
    *max_tasks*: recycle each worker after that many calls.
    """
    if contender.options.get("preload_numpy"):
        importlib.import_module("numpy")  # the parent preloads; children inherit it
    elif "numpy" in sys.modules:
        raise RuntimeError(
            "this job imported numpy: its forked workers would inherit it"
        )
    if contender.kind == SNAKEPIT:
        return SnakepitSession(contender, workers, numpy=numpy, max_requests=max_tasks)
    if max_tasks is not None and contender.kind not in (EXECUTOR, APPLY):
        raise ValueError(f"{contender.label} cannot recycle its workers")
    if contender.kind == TO_PROCESS:
        return ToProcessSession(contender, workers, numpy=numpy)
    if contender.kind == EXECUTOR:
        return ExecutorSession(contender, workers, numpy=numpy, max_tasks=max_tasks)
    if contender.kind == APPLY:
        return ApplySession(contender, workers, numpy=numpy, max_tasks=max_tasks)
    if contender.kind == RAW:
        return RawPipeSession(contender, workers, numpy=numpy)
    raise ValueError(f"unknown contender kind {contender.kind!r}")


def still_running(pids: set[int], timeout: float) -> list[int]:
    """The *pids* still running (zombies count as gone) after up to *timeout*."""
    import psutil

    deadline = time.monotonic() + timeout
    left = set(pids)
    while left:
        for pid in list(left):
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    left.discard(pid)
            except psutil.NoSuchProcess:
                left.discard(pid)
        if not left or time.monotonic() >= deadline:
            break
        procs = []
        for pid in left:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        # A bounded wait on the processes themselves, not a sleep.
        psutil.wait_procs(
            procs, timeout=min(0.5, max(0.0, deadline - time.monotonic()))
        )
    return sorted(left)


def _kill(pids: Sequence[int]) -> None:
    import psutil

    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


@contextlib.contextmanager
def opened(
    contender: Contender,
    workers: int,
    *,
    numpy: bool = False,
    max_tasks: int | None = None,
    timeout: float = 300.0,
) -> Iterator[Session]:
    """A started, ready session; closed on exit, and every worker that answered
    checked gone (else killed, and RuntimeError). ``session.startup_s`` is the
    time from :meth:`Session.start` to the last worker's first answer,
    ``session.close_s`` is set after exit."""
    session = make_session(contender, workers, numpy=numpy, max_tasks=max_tasks)
    if "numpy" in sys.modules and not contender.options.get("preload_numpy"):
        raise RuntimeError("the job imported numpy: forked workers would inherit it")
    failed = True
    try:
        began = time.perf_counter()
        session.start()
        ready_at, _ = session.ready(timeout)
        session.startup_s = ready_at - began
        yield session
        failed = False
    finally:
        pids = set(session.pids)
        closing = time.perf_counter()
        try:
            session.close()
        except Exception:
            if not failed:
                raise
        session.close_s = time.perf_counter() - closing
        left = still_running(pids, 10.0)
        if left:
            _kill(left)
            if not failed:
                raise RuntimeError(
                    f"{len(left)} workers still running 10 s after the pool closed"
                )
