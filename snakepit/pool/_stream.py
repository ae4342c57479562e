"""The async iterator returned by ``Pool.execute_stream``."""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING, Any, final

import anyio

from snakepit import telemetry
from snakepit._callmeta import collect
from snakepit.protocol import Call, encode_frame

from ._worker import StreamFailure, WorkerProcess

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ("ChunkStream",)


@final
class ChunkStream:
    """The chunks a streaming command yields, as an async iterator.

    The call is dispatched on the first ``__anext__``. Closing the stream early
    (``aclose()``, leaving ``async with``, or ``break`` then closing) cancels the
    generator in the worker.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        pool: Pool,
        command: str,
        args: dict[str, Any],
        *,
        timeout: float,
        session_id: str | None,
    ) -> None:
        self._pool = pool
        self._command = command
        self._req_id = pool._next_id()
        # Encode now: unencodable arguments fail at the call, before dispatch.
        self._call = Call(self._req_id, command, args, session_id, None)
        self._frame = encode_frame(self._call, pool.config.max_frame_bytes)
        self._timeout = timeout
        self._session_id = session_id
        self._worker: WorkerProcess | None = None
        self._receive: Any = None
        self._span: telemetry.Span | None = None
        self._finished = False
        self._deadline = math.inf

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Any:
        if self._finished:
            raise StopAsyncIteration
        try:
            if self._worker is None:
                await self._dispatch()
            with anyio.fail_after(self._remaining()):
                item = await self._receive.receive()
        except anyio.EndOfStream:
            self._finish(success=True)
            raise StopAsyncIteration from None
        except TimeoutError:
            self._abandon("timeout")
            self._finish(success=False)
            from snakepit.exceptions import RequestTimeout

            raise RequestTimeout(
                f"pool {self._pool.config.name!r}: stream {self._command!r} ran past "
                f"its timeout of {self._timeout}s"
            ) from None
        except BaseException:
            self._abandon("abandoned")
            self._finish(success=False)
            raise
        if isinstance(item, StreamFailure):
            self._finish(success=False)
            raise item.error
        return item

    def _remaining(self) -> float:
        return max(0.0, self._deadline - anyio.current_time())

    async def _dispatch(self) -> None:
        self._span = telemetry.span(
            ("snakepit", "request"),
            {"pool": self._pool.config.name, "command": self._command},
        )
        self._span.__enter__()
        meta = collect()  # after the request span started, like execute()
        if meta is not None:
            self._frame = encode_frame(
                self._call._replace(meta=meta), self._pool.config.max_frame_bytes
            )
        self._deadline = anyio.current_time() + self._timeout
        worker = await self._pool._acquire(self._session_id, self._command)
        self._worker = worker
        self._span.set_metadata(worker_id=worker.id)
        send, self._receive = anyio.create_memory_object_stream[Any](math.inf)
        worker.open_stream(self._req_id, self._command, send)
        worker.send_call(self._frame)

    def _abandon(self, reason: str) -> None:
        if self._worker is not None and not self._finished:
            self._worker.abandon(self._req_id, reason)

    def _finish(self, *, success: bool) -> None:
        if self._finished:
            return
        self._finished = True
        if not success:
            self._pool._count_error()
        if self._receive is not None:
            self._receive.close()
        if self._span is not None:
            self._span.set_metadata(success=success)
            self._span.__exit__(None, None, None)

    async def aclose(self) -> None:
        """Stop the stream; the worker's generator is cancelled."""
        if not self._finished:
            self._abandon("abandoned")
            self._finish(success=True)

    async def __aenter__(self) -> ChunkStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Dropped without aclose(): cancel the worker's generator anyway.
        if not getattr(self, "_finished", True) and self._worker is not None:
            self._worker.abandon(self._req_id, "abandoned")
