"""Run a long-lived service in a task group for the length of an ``async with``.

Shared by ``open_pool`` and ``open_snakepit``: start the service, yield once it
reports started, stop it (shielded) on exit, and re-raise failures as they are,
never wrapped in an ``ExceptionGroup`` by the task group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

__all__ = ("running",)

T = TypeVar("T")


def _same(exc: BaseException) -> BaseException:
    return exc


@asynccontextmanager
async def running(
    run: Callable[..., Awaitable[Any]],
    value: T,
    aclose: Callable[[], Awaitable[None]],
    *,
    late: type[BaseException] | tuple[type[BaseException], ...] = (),
    on_late: Callable[[BaseException], None] = lambda exc: None,
    unwrap: Callable[[BaseException], BaseException] = _same,
) -> AsyncIterator[T]:
    """Start ``run(task_status=...)``; yield *value* once it reports started.

    Args:
        run: the service, following anyio's start protocol.
        value: what the ``async with`` yields.
        aclose: stops the service; awaited, shielded, when the block exits.
        late: errors ``run`` may raise *after* it started without ending the
            block (the service is then broken; calls to it fail on their own).
        on_late: called with such an error.
        unwrap: maps a start failure to the error the caller should see.
    """
    started = False

    class _Status:
        def __init__(self, inner: TaskStatus[T]) -> None:
            self._inner = inner

        def started(self, _: object = None) -> None:
            nonlocal started
            started = True
            self._inner.started(value)

    async def serve(*, task_status: TaskStatus[T]) -> None:
        try:
            await run(task_status=_Status(task_status))
        except late as exc:
            if not started:
                raise
            on_late(exc)

    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        try:
            await tg.start(serve)
        except Exception as exc:
            failure = unwrap(exc)
        else:
            try:
                yield value
            except BaseException as exc:
                failure = exc
            finally:
                with anyio.CancelScope(shield=True):
                    await aclose()
    if failure is not None:
        raise failure
