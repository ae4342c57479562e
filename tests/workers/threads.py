"""A thread-safe test adapter that proves calls overlap, without timing."""

from __future__ import annotations

import os
import threading

from snakepit.adapter import ThreadSafeAdapter, command

_barriers: dict[int, threading.Barrier] = {}
_lock = threading.Lock()


class ThreadsAdapter(ThreadSafeAdapter):
    """Commands that meet at a barrier, so they can only finish together."""

    @command
    def meet(self, parties: int, timeout: float = 10.0) -> dict[str, int]:
        """Wait until *parties* calls of this process are here at once."""
        with _lock:
            barrier = _barriers.setdefault(parties, threading.Barrier(parties))
        barrier.wait(timeout=timeout)
        return {"pid": os.getpid(), "thread": threading.get_ident()}

    @command
    def where(self) -> dict[str, int]:
        """This worker's pid and the calling thread."""
        return {"pid": os.getpid(), "thread": threading.get_ident()}
