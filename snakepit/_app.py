"""The application: a root supervisor with one subtree per configured pool.

``open_snakepit(config)`` starts it and returns once every pool is ready; the
handle routes ``execute`` calls to pools by name.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from os import PathLike
from typing import Any, final

from anyio.abc import TaskStatus

from snakepit._registry import resolve_instance
from snakepit._service import running
from snakepit.config import Config, PoolConfig
from snakepit.exceptions import (
    ChildStartError,
    PoolNotFound,
    RestartIntensityExceeded,
    SnakepitError,
)
from snakepit.pool import ChunkStream, Pool
from snakepit.supervisor import INFINITY, ChildSpec, ChildType, Strategy, Supervisor

__all__ = ("ConfigSource", "Snakepit", "open_snakepit")

logger = logging.getLogger("snakepit")

#: What ``open_snakepit`` and ``snakepit.start`` accept as configuration.
ConfigSource = Config | Mapping[str, Any] | str | PathLike[str] | None


class _Root(Supervisor):
    """One child per pool, one for one; a pool that breaks is restarted."""

    strategy = Strategy.ONE_FOR_ONE

    def __init__(self, app: Snakepit) -> None:
        super().__init__(name="snakepit")
        self._app = app

    def init(self) -> list[ChildSpec]:
        return [
            ChildSpec(
                id=pool.name,
                start=partial(self._app._run_pool, pool),
                type=ChildType.SUPERVISOR,
                shutdown=INFINITY,
            )
            for pool in self._app.config.get_pool_configs()
        ]


@final
class Snakepit:
    """A running application: its pools, and calls routed to them by name.

    Get one from :func:`open_snakepit` (async) or ``snakepit.start()`` (sync).

    .. versionadded:: 0.1
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._pools: dict[str, Pool] = {}
        self._root = _Root(self)
        self._closed = False

    # --- Running ---

    async def _run_pool(
        self, pool_config: PoolConfig, *, task_status: TaskStatus[Pool]
    ) -> None:
        names = [p.name for p in self.config.get_pool_configs()]
        instance = resolve_instance(pool_config.instance, names)
        pool = Pool(pool_config, instance=instance)
        self._pools[pool_config.name] = pool
        await pool.run(task_status=task_status)

    async def aclose(self) -> None:
        """Stop in order: every pool stops taking calls and fails its queued calls
        with :class:`~snakepit.exceptions.PoolClosed`; calls in flight finish
        (within each pool's ``shutdown_timeout``); then every worker is stopped."""
        self._closed = True
        for pool in self._pools.values():
            pool.close_nowait()
        await self._root.stop()

    # --- Routing ---

    def pool(self, name: str | None = None) -> Pool:
        """The pool *name* (default: the pool named ``default``, else the first).

        Raises:
            PoolNotFound: no pool has that name.
        """
        if name is None:
            name = self.default_pool_name
        try:
            return self._pools[name]
        except KeyError:
            known = ", ".join(repr(p.name) for p in self.config.get_pool_configs())
            raise PoolNotFound(
                f"no pool named {name!r} (configured pools: {known})"
            ) from None

    @property
    def default_pool_name(self) -> str:
        """Where calls without ``pool=`` go."""
        names = [p.name for p in self.config.get_pool_configs()]
        return "default" if "default" in names else names[0]

    # --- The execute API ---

    async def execute(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> Any:
        """Run *command* with *args* on a worker of *pool*; return its result.

        See :meth:`snakepit.pool.Pool.execute` for the errors.
        """
        return await self.pool(pool).execute(
            command, args, timeout=timeout, session_id=session_id
        )

    async def execute_in_session(
        self,
        session_id: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        pool: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """:meth:`execute`, preferring the worker that served *session_id* last."""
        return await self.pool(pool).execute(
            command, args, timeout=timeout, session_id=session_id
        )

    async def map(
        self,
        command: str,
        calls: Iterable[Mapping[str, Any]],
        *,
        pool: str | None = None,
        chunksize: int | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run *command* once per argument map of *calls* on *pool*, in chunks;
        return the results in order (see :meth:`snakepit.pool.Pool.map`)."""
        return await self.pool(pool).map(
            command,
            calls,
            chunksize=chunksize,
            timeout=timeout,
            return_exceptions=return_exceptions,
        )

    def execute_stream(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> ChunkStream:
        """Run a streaming command; ``async for`` over the result."""
        return self.pool(pool).execute_stream(
            command, args, timeout=timeout, session_id=session_id
        )

    def get_stats(self, pool: str | None = None) -> dict[str, int]:
        """Integer counts for *pool*, or summed over every pool when ``None``
        (see :meth:`snakepit.pool.Pool.get_stats`)."""
        if pool is not None:
            return self.pool(pool).get_stats()
        total: dict[str, int] = {}
        for each in self._pools.values():
            for key, value in each.get_stats().items():
                total[key] = total.get(key, 0) + value
        return total

    async def recycle_worker(self, pool: str, worker_id: str) -> str:
        """Replace worker *worker_id* of *pool* now, start-before-stop; return the
        id of its replacement.

        Raises:
            PoolNotFound: no pool has that name.
            WorkerNotFound: no such worker serves in that pool.
            WorkerStartError: the replacement did not start (the worker keeps
                serving).
        """
        return await self.pool(pool).recycle_worker(worker_id)

    def lifecycle_stats(self) -> dict[str, Any]:
        """Lifecycle numbers over every pool: ``total_workers``,
        ``workers_by_pool``, ``total_requests``, ``workers_near_ttl``,
        ``workers_near_max_requests`` (at 90 % of the limit) and
        ``recycles_by_reason``."""
        by_pool = {name: p.lifecycle_stats() for name, p in self._pools.items()}
        reasons: dict[str, int] = {}
        for stats in by_pool.values():
            for reason, count in stats["recycles_by_reason"].items():
                reasons[reason] = reasons.get(reason, 0) + count
        return {
            "total_workers": sum(s["workers"] for s in by_pool.values()),
            "workers_by_pool": {name: s["workers"] for name, s in by_pool.items()},
            "total_requests": sum(s["requests"] for s in by_pool.values()),
            "workers_near_ttl": sum(s["workers_near_ttl"] for s in by_pool.values()),
            "workers_near_max_requests": sum(
                s["workers_near_max_requests"] for s in by_pool.values()
            ),
            "recycles_by_reason": reasons,
        }

    def worker_stats(self, pool: str | None = None) -> list[dict[str, Any]]:
        """Capacity, load and more per worker of *pool*, or of every pool (each
        dict then also names its ``pool``)."""
        if pool is not None:
            return self.pool(pool).worker_stats()
        return [
            {"pool": name, **row}
            for name, each in self._pools.items()
            for row in each.worker_stats()
        ]

    def list_workers(self, pool: str | None = None) -> list[str]:
        """Worker ids of *pool*, or of every pool when ``None``."""
        if pool is not None:
            return self.pool(pool).list_workers()
        return [w for each in self._pools.values() for w in each.list_workers()]


def _unwrap_start_failure(exc: BaseException) -> BaseException:
    """The error that kept a pool from starting, not the supervisor's wrapper."""
    cause = exc.__cause__
    if isinstance(exc, ChildStartError) and isinstance(cause, SnakepitError):
        return cause
    return exc


@asynccontextmanager
async def open_snakepit(config: ConfigSource = None) -> AsyncIterator[Snakepit]:
    """Start every configured pool; stop them all in order on exit.

    Args:
        config: a :class:`~snakepit.config.Config`, a mapping (legacy or multi-pool
            keys), a path to a TOML file, or ``None`` (``snakepit.toml`` or
            ``[tool.snakepit]`` in ``pyproject.toml`` in the working directory,
            else one ``default`` pool of the showcase adapter).

    Returns once every pool's workers are ready.

    Raises:
        ConfigError: the configuration is invalid (every problem listed).
        PoolUnavailable: a pool's workers could not be started.

    .. versionadded:: 0.1
    """
    app = Snakepit(Config.load(config))

    def stopped(exc: BaseException) -> None:
        logger.error("snakepit: a pool kept failing; the app stopped: %s", exc)
        app._closed = True

    async with running(
        app._root.run,
        app,
        app.aclose,
        late=RestartIntensityExceeded,
        on_late=stopped,
        unwrap=_unwrap_start_failure,
    ) as started:
        yield started
