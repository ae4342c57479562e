"""The blocking facade: snakepit on a background event-loop thread.

For code without an event loop, mirroring the Elixir module functions:
``snakepit.start(config)``, ``snakepit.execute("add", {"a": 1, "b": 2})``,
``snakepit.stop()``. Every method is safe to call from any thread.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, final

from anyio.from_thread import BlockingPortal, start_blocking_portal

from snakepit._app import ConfigSource, Snakepit, open_snakepit
from snakepit.config import Config
from snakepit.exceptions import AlreadyStarted, ConfigError, NotStarted
from snakepit.pool import ChunkStream

__all__ = (
    "SyncChunkStream",
    "SyncSnakepit",
    "execute",
    "execute_in_session",
    "execute_stream",
    "get_stats",
    "list_workers",
    "lifecycle_stats",
    "recycle_worker",
    "start",
    "stop",
)


@final
class SyncChunkStream:
    """A streaming call's chunks as a plain iterator; ``close()`` cancels it.

    .. versionadded:: 0.1
    """

    def __init__(self, portal: BlockingPortal, stream: ChunkStream) -> None:
        self._portal = portal
        self._stream = stream

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return self._portal.call(self._stream.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Stop the stream early; the worker's generator is cancelled."""
        self._portal.call(self._stream.aclose)

    def __enter__(self) -> SyncChunkStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@final
class SyncSnakepit:
    """A started application, with blocking methods (see :class:`Snakepit`).

    Use it as a context manager, or call :meth:`stop`.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        backend: str = "asyncio",
        use_uvloop: bool | None = None,
    ) -> None:
        self._portal_cm = start_blocking_portal(
            backend, _backend_options(backend, use_uvloop)
        )
        self._portal = self._portal_cm.__enter__()
        try:
            self._app_cm = self._portal.wrap_async_context_manager(
                open_snakepit(config)
            )
            self._app: Snakepit = self._app_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(*sys.exc_info())
            raise
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def config(self) -> Config:
        """The application's configuration."""
        return self._app.config

    def execute(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> Any:
        """Run *command* and block until its result (see ``Snakepit.execute``)."""
        return self._call(
            self._app.execute,
            command,
            args,
            pool=pool,
            timeout=timeout,
            session_id=session_id,
        )

    def map(
        self,
        command: str,
        calls: Iterable[Mapping[str, Any]],
        *,
        pool: str | None = None,
        chunksize: int | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run *command* once per argument map of *calls*; block until every
        result is in (see ``Snakepit.map``)."""
        results: list[Any] = self._call(
            self._app.map,
            command,
            list(calls),
            pool=pool,
            chunksize=chunksize,
            timeout=timeout,
            return_exceptions=return_exceptions,
        )
        return results

    def execute_in_session(
        self,
        session_id: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        pool: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """:meth:`execute` with session affinity."""
        return self.execute(
            command, args, pool=pool, timeout=timeout, session_id=session_id
        )

    def execute_stream(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> SyncChunkStream:
        """Run a streaming command; iterate the result for its chunks."""
        stream = self._call(
            self._app.execute_stream,
            command,
            args,
            pool=pool,
            timeout=timeout,
            session_id=session_id,
        )
        return SyncChunkStream(self._portal, stream)

    def get_stats(self, pool: str | None = None) -> dict[str, int]:
        """Integer counts of *pool*, or summed over every pool."""
        return self._call(self._app.get_stats, pool)  # type: ignore[no-any-return]

    def list_workers(self, pool: str | None = None) -> list[str]:
        """Worker ids of *pool*, or of every pool."""
        return self._call(self._app.list_workers, pool)  # type: ignore[no-any-return]

    def worker_stats(self, pool: str | None = None) -> list[dict[str, Any]]:
        """Capacity, load and more per worker (see ``Snakepit.worker_stats``)."""
        return self._call(self._app.worker_stats, pool)  # type: ignore[no-any-return]

    def recycle_worker(self, pool: str, worker_id: str) -> str:
        """Replace a worker now; return its replacement's id (see
        ``Snakepit.recycle_worker``)."""
        return self._call(self._app.recycle_worker, pool, worker_id)  # type: ignore[no-any-return]

    def lifecycle_stats(self) -> dict[str, Any]:
        """Lifecycle numbers over every pool (see ``Snakepit.lifecycle_stats``)."""
        return self._call(self._app.lifecycle_stats)  # type: ignore[no-any-return]

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        if self._stopped:
            raise NotStarted("this snakepit application was stopped")

        async def run() -> Any:
            result = func(*args, **kwargs)
            if hasattr(result, "__await__"):
                return await result
            return result

        return self._portal.call(run)

    def stop(self) -> None:
        """Shut down in order (in-flight calls finish, queued ones fail, every
        worker exits). A no-op when already stopped."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self._app_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)
            _forget(self)

    def __enter__(self) -> SyncSnakepit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- Module-level functions, acting on the started application ---

_current: SyncSnakepit | None = None
_current_lock = threading.Lock()


def _forget(handle: SyncSnakepit) -> None:
    global _current
    with _current_lock:
        if _current is handle:
            _current = None


def _backend_options(backend: str, use_uvloop: bool | None) -> dict[str, Any]:
    """anyio's options for *backend*: uvloop on asyncio when it is installed
    (``use_uvloop=None``), or as asked."""
    if backend != "asyncio":
        if use_uvloop:
            raise ConfigError(
                f"use_uvloop=True needs backend='asyncio', not {backend!r}"
            )
        return {}
    if use_uvloop is None:
        try:
            use_uvloop = importlib.util.find_spec("uvloop") is not None
        except ImportError:  # an import hook that refuses it: as good as absent
            use_uvloop = False
    return {"use_uvloop": use_uvloop}


def start(
    config: ConfigSource = None,
    *,
    backend: str = "asyncio",
    use_uvloop: bool | None = None,
) -> SyncSnakepit:
    """Start the application on a background event-loop thread.

    The module-level functions (``snakepit.execute``...) then act on it.

    Args:
        config: the configuration (see :class:`~snakepit.config.Config`).
        backend: the event loop: ``"asyncio"`` or ``"trio"``.
        use_uvloop: run asyncio on uvloop; ``None`` (the default) uses it when it
            is installed.

    Raises:
        AlreadyStarted: one is already started; call :func:`stop` first.
        ConfigError: the configuration is invalid.
        PoolUnavailable: a pool's workers could not be started.

    .. versionadded:: 0.1
    """
    global _current
    with _current_lock:
        if _current is not None:
            raise AlreadyStarted(
                "snakepit is already started; call snakepit.stop() first"
            )
        _current = handle = SyncSnakepit(config, backend=backend, use_uvloop=use_uvloop)
    return handle


def stop() -> None:
    """Stop the application started with :func:`start` (no-op if none)."""
    with _current_lock:
        handle = _current
    if handle is not None:
        handle.stop()


def _started() -> SyncSnakepit:
    handle = _current
    if handle is None:
        raise NotStarted("snakepit is not started: call snakepit.start(config) first")
    return handle


def execute(
    command: str,
    args: Mapping[str, Any] | None = None,
    *,
    pool: str | None = None,
    timeout: float | None = None,
    session_id: str | None = None,
) -> Any:
    """Run *command* on the started application; block until its result."""
    return _started().execute(
        command, args, pool=pool, timeout=timeout, session_id=session_id
    )


def execute_in_session(
    session_id: str,
    command: str,
    args: Mapping[str, Any] | None = None,
    *,
    pool: str | None = None,
    timeout: float | None = None,
) -> Any:
    """:func:`execute` with session affinity."""
    return _started().execute_in_session(
        session_id, command, args, pool=pool, timeout=timeout
    )


def execute_stream(
    command: str,
    args: Mapping[str, Any] | None = None,
    *,
    pool: str | None = None,
    timeout: float | None = None,
    session_id: str | None = None,
) -> SyncChunkStream:
    """Run a streaming command on the started application."""
    return _started().execute_stream(
        command, args, pool=pool, timeout=timeout, session_id=session_id
    )


def get_stats(pool: str | None = None) -> dict[str, int]:
    """Stats of the started application (see :meth:`SyncSnakepit.get_stats`)."""
    return _started().get_stats(pool)


def list_workers(pool: str | None = None) -> list[str]:
    """Worker ids of the started application."""
    return _started().list_workers(pool)


def recycle_worker(pool: str, worker_id: str) -> str:
    """Replace a worker of the started application now; return the new id."""
    return _started().recycle_worker(pool, worker_id)


def lifecycle_stats() -> dict[str, Any]:
    """Lifecycle numbers of the started application."""
    return _started().lifecycle_stats()
