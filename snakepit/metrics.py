"""Prometheus metrics for snakepit, from its telemetry events and its live stats.

Install the extra (``pip install 'snakepit[prometheus]'``), then mount the metrics
of an application in a registry, yours or prometheus_client's default one:

.. code-block:: python

    from snakepit.metrics import SnakepitMetrics

    async with snakepit.open_snakepit(config) as sp:
        with SnakepitMetrics(sp):  # attach; detach on exit
            ...

Two sources feed the metrics, so that nothing is counted twice and no number goes
stale:

- **events**: counters and histograms (requests, durations, restarts, recycles,
  health-check failures...) are updated by telemetry handlers, synchronously, as
  the events are emitted. They count from :meth:`SnakepitMetrics.attach` on.
- **stats**: gauges no event carries (queue depth, workers by state, capacity,
  load) are read from the pools' ``get_stats()`` by a collector when the registry
  is scraped.

``serve_metrics`` serves a registry over HTTP (``prometheus_client``'s own
server); ``snakepit run CONFIG --metrics-port N`` uses it. See ``docs/metrics.md``
for every metric, with its labels.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, final

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client import start_http_server as _start_http_server
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.metrics_core import Metric
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "snakepit.metrics needs prometheus-client: pip install 'snakepit[prometheus]'"
    ) from exc

from snakepit import telemetry

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = (
    "SnakepitMetrics",
    "MetricsServer",
    "serve_metrics",
    "DEFAULT_DURATION_BUCKETS",
    "REQUEST_OUTCOME_OK",
)

logger: Final = logging.getLogger("snakepit.metrics")

DEFAULT_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
"""Buckets (seconds) of ``snakepit_request_duration_seconds`` and
``snakepit_worker_startup_seconds``: from a fast call (well under a millisecond) to
a long inference (minutes)."""

REQUEST_OUTCOME_OK: Final = "ok"
"""The ``outcome`` label of a request that returned its result."""

#: The exception class names of a cancellation (asyncio, trio), counted as one
#: outcome so a dashboard does not depend on the event loop.
_CANCELLED: Final = frozenset({"CancelledError", "Cancelled"})

_REQUEST_STOP: Final = ("snakepit", "request", "stop")
_REQUEST_EXCEPTION: Final = ("snakepit", "request", "exception")
_QUEUE_TIMEOUT: Final = ("snakepit", "pool", "queue_timeout")
_SATURATED: Final = ("snakepit", "pool", "saturated")
_CAPACITY_REACHED: Final = ("snakepit", "pool", "capacity_reached")
_WORKER_STARTED: Final = ("snakepit", "worker", "started")
_WORKER_EXITED: Final = ("snakepit", "worker", "exited")
_WORKER_RESTARTED: Final = ("snakepit", "worker", "restarted")
_WORKER_RECYCLED: Final = ("snakepit", "worker", "recycled")
_RECYCLE_FAILED: Final = ("snakepit", "worker", "recycle_failed")
_HEALTH_CHECK_FAILED: Final = ("snakepit", "worker", "health_check_failed")

#: Retries of one pool's stats read that raced a change made by the event loop.
_STATS_ATTEMPTS: Final = 5

_ids = itertools.count(1)


# --- What the metrics are given ---


class _PoolLike(Protocol):
    """A :class:`snakepit.pool.Pool`, as far as the metrics read it."""

    @property
    def config(self) -> Any: ...

    def get_stats(self) -> dict[str, int]: ...


class _AppLike(Protocol):
    """A :class:`snakepit.Snakepit` or :class:`snakepit.SyncSnakepit`."""

    @property
    def config(self) -> Any: ...

    def get_stats(self, pool: str | None = None) -> dict[str, int]: ...


def _stats_reader(
    target: object,
) -> tuple[frozenset[str] | None, Callable[[], Iterator[tuple[str, dict[str, int]]]]]:
    """Return the pool names *target* covers (``None``: every pool) and a function
    that yields ``(pool, stats)`` for each of its pools that is running now."""
    if target is None:
        return None, lambda: iter(())
    config: Any = getattr(target, "config", None)
    if hasattr(config, "get_pool_configs"):  # an application, async or sync
        app = cast("_AppLike", target)
        names = tuple(p.name for p in config.get_pool_configs())

        def read_app() -> Iterator[tuple[str, dict[str, int]]]:
            from snakepit.exceptions import SnakepitError

            for name in names:
                try:
                    stats = _read(functools.partial(app.get_stats, name))
                except SnakepitError:  # not started yet, or the app stopped
                    continue
                if stats is not None:
                    yield name, stats

        return frozenset(names), read_app
    if isinstance(getattr(config, "name", None), str):  # a pool
        pool = cast("_PoolLike", target)
        name = pool.config.name

        def read_pool() -> Iterator[tuple[str, dict[str, int]]]:
            stats = _read(pool.get_stats)
            if stats is not None:
                yield name, stats

        return frozenset({name}), read_pool
    raise TypeError(
        "SnakepitMetrics needs a Snakepit application (open_snakepit), a "
        f"SyncSnakepit (snakepit.start), a Pool or None; got {type(target).__name__}"
    )


def _read(get: Callable[[], dict[str, int]]) -> dict[str, int] | None:
    """Call *get*, retrying when it raced the event loop.

    A scrape runs in the HTTP server's thread while the pool changes in the event
    loop's; iterating a queue or worker table that changes meanwhile raises
    ``RuntimeError``. A retry reads it again; a pool that keeps changing is
    left out of this scrape rather than failing it.
    """
    for _ in range(_STATS_ATTEMPTS):
        try:
            return get()
        except RuntimeError:
            continue
    logger.debug("pool stats kept changing during a scrape; left out of it")
    return None


# --- The scrape-time gauges ---


@final
class _StatsCollector:
    """Gauges read from the pools' ``get_stats()`` at each scrape."""

    def __init__(self, read: Callable[[], Iterator[tuple[str, dict[str, int]]]]):
        self._read = read

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        return {
            "queued": GaugeMetricFamily(
                "snakepit_queue_depth",
                "Calls waiting in the pool's queue for a worker.",
                labels=("pool",),
            ),
            "workers": GaugeMetricFamily(
                "snakepit_workers",
                "Workers serving calls, by state: available (a free slot) or busy "
                "(every slot taken).",
                labels=("pool", "state"),
            ),
            "capacity": GaugeMetricFamily(
                "snakepit_capacity",
                "Calls the pool's workers can run at once (the sum of their slots).",
                labels=("pool",),
            ),
            "load": GaugeMetricFamily(
                "snakepit_load",
                "Calls running on the pool's workers now.",
                labels=("pool",),
            ),
        }

    def describe(self) -> Iterable[Metric]:
        """The families, without samples (lets the registry check names)."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        """Read every running pool's stats now."""
        families = self._families()
        for pool, stats in self._read():
            families["queued"].add_metric((pool,), stats["queued"])
            for state in ("available", "busy"):
                families["workers"].add_metric((pool, state), stats[state])
            families["capacity"].add_metric((pool,), stats["capacity"])
            families["load"].add_metric((pool,), stats["load"])
        return list(families.values())


# --- The metrics ---


@final
class SnakepitMetrics:
    """The Prometheus metrics of a snakepit application or pool, in a registry.

    Nothing is registered or attached until :meth:`attach` (or entering it as a
    context manager); :meth:`detach` (or leaving it) removes every metric from the
    registry and every telemetry handler it attached, so an instance can be
    mounted in a long-lived registry and taken out again.

    Args:
        target: what to measure: a :class:`snakepit.Snakepit` (from
            ``open_snakepit``), a :class:`snakepit.SyncSnakepit` (from
            ``snakepit.start``) or a :class:`snakepit.pool.Pool`. Only its pools'
            events are counted, and its pools' stats give the gauges. ``None``
            counts the events of every pool in the process and has no gauges.
        registry: where to register (default: prometheus_client's ``REGISTRY``,
            which ``start_http_server`` and most frameworks serve).
        buckets: the histogram buckets, in seconds.

    Attributes:
        registry: the registry it mounts in.
        requests, request_duration, queue_timeouts, saturated, capacity_reached,
        worker_starts, worker_startup, worker_exits, restarts, recycles,
        recycle_failures, health_check_failures: the event-fed metrics
            (prometheus_client ``Counter`` and ``Histogram`` objects), for tests
            and custom exports; ``docs/metrics.md`` lists their names.

    Raises:
        TypeError: *target* is none of the above.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        target: object,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Iterable[float] = DEFAULT_DURATION_BUCKETS,
    ) -> None:
        self._pools, read = _stats_reader(target)
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self._handler_id = f"snakepit.metrics.{next(_ids)}"
        self._lock = threading.Lock()
        self._attached = False
        buckets = tuple(buckets)
        # registry=None: created unregistered; attach() registers them.
        self.requests = Counter(
            "snakepit_requests",
            "Calls that ended, by pool, command and outcome ('ok', 'cancelled' or "
            "the exception's class name).",
            ("pool", "command", "outcome"),
            registry=None,
        )
        self.request_duration = Histogram(
            "snakepit_request_duration_seconds",
            "Time from submission to outcome of a call, queueing included.",
            ("pool", "command"),
            registry=None,
            buckets=buckets,
        )
        self.queue_timeouts = Counter(
            "snakepit_queue_timeouts",
            "Calls dropped after waiting queue_timeout for a worker.",
            ("pool",),
            registry=None,
        )
        self.saturated = Counter(
            "snakepit_saturated",
            "Calls refused at once because the queue was full (max_queue_size).",
            ("pool",),
            registry=None,
        )
        self.capacity_reached = Counter(
            "snakepit_capacity_reached",
            "Times a worker took its last free slot.",
            ("pool",),
            registry=None,
        )
        self.worker_starts = Counter(
            "snakepit_worker_starts",
            "Worker processes that finished their handshake.",
            ("pool",),
            registry=None,
        )
        self.worker_startup = Histogram(
            "snakepit_worker_startup_seconds",
            "Time from spawning a worker to its handshake.",
            ("pool",),
            registry=None,
            buckets=buckets,
        )
        self.worker_exits = Counter(
            "snakepit_worker_exits",
            "Worker processes that exited, by reason (shutdown, exited, timeout, "
            "killed...).",
            ("pool", "reason"),
            registry=None,
        )
        self.restarts = Counter(
            "snakepit_worker_restarts",
            "Workers replaced by the pool's supervisor after an exit.",
            ("pool",),
            registry=None,
        )
        self.recycles = Counter(
            "snakepit_worker_recycles",
            "Workers replaced on purpose, by reason (ttl_expired, max_requests, "
            "memory_threshold, manual...).",
            ("pool", "reason"),
            registry=None,
        )
        self.recycle_failures = Counter(
            "snakepit_worker_recycle_failures",
            "Recycles whose replacement did not start (retried later), by reason.",
            ("pool", "reason"),
            registry=None,
        )
        self.health_check_failures = Counter(
            "snakepit_health_check_failures",
            "Workers that failed their health check (and were replaced), by reason.",
            ("pool", "reason"),
            registry=None,
        )
        self._collectors: tuple[Any, ...] = (
            self.requests,
            self.request_duration,
            self.queue_timeouts,
            self.saturated,
            self.capacity_reached,
            self.worker_starts,
            self.worker_startup,
            self.worker_exits,
            self.restarts,
            self.recycles,
            self.recycle_failures,
            self.health_check_failures,
            *(() if target is None else (_StatsCollector(read),)),
        )
        # Events that only add one to a counter: the counter, and the metadata
        # keys of its labels after "pool".
        self._counted: dict[telemetry.EventName, tuple[Counter, tuple[str, ...]]] = {
            _QUEUE_TIMEOUT: (self.queue_timeouts, ()),
            _SATURATED: (self.saturated, ()),
            _CAPACITY_REACHED: (self.capacity_reached, ()),
            _WORKER_EXITED: (self.worker_exits, ("reason",)),
            _WORKER_RESTARTED: (self.restarts, ()),
            _WORKER_RECYCLED: (self.recycles, ("reason",)),
            _RECYCLE_FAILED: (self.recycle_failures, ("reason",)),
            _HEALTH_CHECK_FAILED: (self.health_check_failures, ("reason",)),
        }
        self._events = (
            _REQUEST_STOP,
            _REQUEST_EXCEPTION,
            _WORKER_STARTED,
            *self._counted,
        )

    # --- Mounting ---

    @property
    def attached(self) -> bool:
        """Whether the metrics are in the registry and counting."""
        return self._attached

    def attach(self) -> None:
        """Register the metrics in the registry and start counting events.

        Raises:
            RuntimeError: already attached.
            ValueError: the registry already has metrics of these names (another
                ``SnakepitMetrics`` is attached to it).
        """
        with self._lock:
            if self._attached:
                raise RuntimeError("these snakepit metrics are already attached")
            registered: list[Any] = []
            try:
                for collector in self._collectors:
                    self.registry.register(collector)
                    registered.append(collector)
            except BaseException:
                for collector in registered:
                    self.registry.unregister(collector)
                raise
            telemetry.attach_many(self._handler_id, self._events, self._handle)
            self._attached = True

    def detach(self) -> None:
        """Stop counting and remove the metrics from the registry; a no-op when not
        attached. Attaching again later starts from the values they had."""
        with self._lock:
            if not self._attached:
                return
            self._attached = False
            telemetry.detach(self._handler_id)
            for collector in self._collectors:
                self.registry.unregister(collector)

    def __enter__(self) -> SnakepitMetrics:
        self.attach()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    # --- Events to metrics ---

    def _handle(
        self,
        event: telemetry.EventName,
        measurements: telemetry.Measurements,
        metadata: telemetry.Metadata,
        config: None,
    ) -> None:
        """The telemetry handler: update the metric *event* maps to, if the event
        is of one of our pools. Runs in the emitter; never raises on a well-formed
        event (a handler that raises would be detached)."""
        pool = metadata.get("pool")
        if not isinstance(pool, str) or (
            self._pools is not None and pool not in self._pools
        ):
            return
        counted = self._counted.get(event)
        if counted is not None:
            counter, keys = counted
            counter.labels(pool, *(str(metadata.get(k)) for k in keys)).inc()
        elif event == _WORKER_STARTED:
            self.worker_starts.labels(pool).inc()
            self.worker_startup.labels(pool).observe(measurements["startup_seconds"])
        else:  # a request's end
            command = str(metadata.get("command"))
            if event == _REQUEST_STOP:
                ok = metadata.get("success", True)
                outcome = REQUEST_OUTCOME_OK if ok else "error"
            else:
                kind = str(metadata.get("kind"))
                outcome = "cancelled" if kind in _CANCELLED else kind
            self.requests.labels(pool, command, outcome).inc()
            duration = measurements["duration"]
            self.request_duration.labels(pool, command).observe(duration)


# --- Serving over HTTP ---


@final
class MetricsServer:
    """A running metrics endpoint, from :func:`serve_metrics`; a context manager
    that closes it on exit.

    Attributes:
        metrics: the attached :class:`SnakepitMetrics`.
        host: the address it listens on.
        port: the port it listens on (the one the system chose, for port 0).

    .. versionadded:: 0.1
    """

    def __init__(
        self, metrics: SnakepitMetrics, server: WSGIServer, thread: threading.Thread
    ) -> None:
        self.metrics = metrics
        self._server = server
        self._thread = thread
        self._closed = False
        self._close_lock = threading.Lock()
        address = server.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])

    @property
    def url(self) -> str:
        """The URL to scrape, such as ``http://127.0.0.1:9464/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving, close the socket and detach the metrics; a no-op when
        closed already. Blocks up to half a second (the server's poll interval)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        finally:
            self.metrics.detach()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_metrics(
    target: object,
    *,
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Attach :class:`SnakepitMetrics` for *target* and serve *registry* over HTTP,
    at ``/metrics``, from a thread of prometheus_client's own server.

    Use the result as a context manager (``with serve_metrics(sp, port=9464):``),
    or call its ``close()``: either stops the server and detaches the metrics.

    Args:
        target: as for :class:`SnakepitMetrics`.
        port: the TCP port; 0 lets the system choose (see ``MetricsServer.port``).
        host: the address to listen on; loopback by default, so nothing is exposed
            beyond the machine unless asked for (``"0.0.0.0"``).
        registry: the registry to mount the metrics in and to serve (default:
            prometheus_client's ``REGISTRY``, which also has the process metrics).

    Raises:
        OSError: the address is taken or invalid.
        OverflowError: *port* is not in 0-65535.

    .. versionadded:: 0.1
    """
    registry = REGISTRY if registry is None else registry
    metrics = SnakepitMetrics(target, registry)
    metrics.attach()
    try:
        server, thread = _start_http_server(port, addr=host, registry=registry)
    except BaseException:
        metrics.detach()
        raise
    return MetricsServer(metrics, server, thread)


class _LateApp:
    """An application's stand-in for metrics attached before it starts: its
    configuration now, its stats once :attr:`app` is set (``snakepit run``)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.app: Any = None

    def get_stats(self, pool: str) -> dict[str, int]:
        if self.app is None:
            from snakepit.exceptions import NotStarted

            raise NotStarted("the application is starting")
        stats: dict[str, int] = self.app.get_stats(pool)
        return stats


@asynccontextmanager
async def _cli_endpoint(config: Any, host: str, port: int) -> AsyncIterator[_LateApp]:
    """``snakepit run --metrics-port``: serve the metrics of the application
    *config* describes in the default registry while the block runs, and print
    the URL to scrape. Entered before the application starts, so its first
    workers' starts are counted; set the result's ``app`` once it has.

    Closing the server waits for its thread, so it is done in a worker thread,
    shielded: the CLI closes it while it is being cancelled.
    """
    import anyio

    late = _LateApp(config)
    try:
        server = serve_metrics(late, port=port, host=host)
    except (OSError, OverflowError) as exc:  # taken, or not a port at all
        raise SystemExit(
            f"snakepit: --metrics-port: cannot serve on {host}:{port}: {exc}"
        ) from exc
    try:
        print(f"metrics: {server.url}", flush=True)
        yield late
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.close)
