"""The raw-pipe baseline, parent side: N children, each behind two pipes.

One child per worker (``python -m benchmarks.suite._rawpipe_child``), spoken to
over its stdin and stdout with bare length-prefixed msgpack frames. Two ways to
drive them:

- **blocking** (:meth:`RawPipeWorkers.call`): write one request, block reading
  its reply; with N children the calls go round-robin, one in flight in all;
- **pipelined** (:meth:`RawPipeWorkers.closed_loop_pipelined`): keep *inflight*
  requests outstanding, spread evenly over the children, driven by
  ``selectors``; every request a round of replies frees is written to its child
  in one batched ``writev``.

It is what one process can get out of pipes and msgpack with no pool around
them: no queue, no supervision, no per-call bookkeeping beyond a FIFO.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.suite._drivers import Timing, check_failed
from benchmarks.suite._frames import FrameReader, encode, enlarge_pipe, write_all
from benchmarks.suite._paths import job_env


class RawPipeWorkers:
    """*workers* raw-pipe children, started at once; :meth:`close` ends them."""

    def __init__(self, workers: int, *, numpy: bool = False) -> None:
        argv = [sys.executable, "-m", "benchmarks.suite._rawpipe_child"]
        if numpy:
            argv.append("--numpy")
        self.children: list[subprocess.Popen[bytes]] = []
        self.readers: list[FrameReader] = []
        env = job_env()
        try:
            for _ in range(workers):
                child = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
                )
                self.children.append(child)
                assert child.stdin is not None
                assert child.stdout is not None
                enlarge_pipe(child.stdin.fileno())
                enlarge_pipe(child.stdout.fileno())
                self.readers.append(FrameReader(child.stdout.fileno()))
        except BaseException:
            self.close()
            raise
        self._next = 0

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def _in_fd(self, index: int) -> int:
        stdin = self.children[index].stdin
        assert stdin is not None
        return stdin.fileno()

    def call(self, command: str, *args: Any) -> Any:
        """Blocking mode: one request to the next child, then wait for its reply."""
        index = self._next
        self._next = (index + 1) % len(self.children)
        write_all(self._in_fd(index), encode([command, args]))
        return self.readers[index].read_one()

    def call_each(self, command: str, *args: Any) -> list[Any]:
        """One request to every child at once, then every reply (child order)."""
        for index in range(len(self.children)):
            write_all(self._in_fd(index), encode([command, args]))
        return [reader.read_one() for reader in self.readers]

    def closed_loop_blocking(
        self,
        command: str,
        args: Callable[[int], Sequence[Any]],
        check: Callable[[int, Any], bool],
        calls: int,
    ) -> Timing:
        """*calls* blocking calls in turn; latency from write to reply."""
        clock = time.perf_counter
        latencies = [0.0] * calls
        began = clock()
        for i in range(calls):
            start = clock()
            result = self.call(command, *args(i))
            latencies[i] = clock() - start
            if not check(i, result):
                raise check_failed(i, result)
        return Timing.of(latencies, clock() - began, inflight=1)

    def closed_loop_pipelined(
        self,
        command: str,
        args: Callable[[int], Sequence[Any]],
        check: Callable[[int, Any], bool],
        calls: int,
        inflight: int,
        timeout: float = 300.0,
    ) -> Timing:
        """Keep *inflight* requests outstanding over the children (as evenly as
        possible) until *calls* have completed; latency from the write being
        queued to the reply being decoded.

        Writes block: at most *inflight* small requests are ever outstanding, far
        less than a pipe holds, so a write never waits on the child.
        """
        count = len(self.children)
        quotas = [inflight // count + (k < inflight % count) for k in range(count)]
        clock = time.perf_counter
        latencies = [0.0] * calls
        pending: list[deque[tuple[int, float]]] = [deque() for _ in range(count)]
        out: list[list[bytes]] = [[] for _ in range(count)]
        issued = 0
        done = 0
        selector = selectors.DefaultSelector()
        for k in range(count):
            selector.register(self.readers[k].fd, selectors.EVENT_READ, k)

        def queue(k: int) -> None:
            nonlocal issued
            out[k] += encode([command, args(issued)])
            pending[k].append((issued, clock()))
            issued += 1

        began = clock()
        deadline = began + timeout
        try:
            for k in range(count):
                for _ in range(quotas[k]):
                    if issued < calls:
                        queue(k)
            for k in range(count):
                if out[k]:
                    write_all(self._in_fd(k), out[k])
                    out[k] = []
            while done < calls:
                events = selector.select(timeout=max(0.0, deadline - clock()))
                if not events:
                    raise TimeoutError(f"raw-pipe: {calls - done} calls unanswered")
                for key, _ in events:
                    k = key.data
                    found = self.readers[k].read()
                    if found is None:
                        raise EOFError("a raw-pipe child closed its pipe")
                    now = clock()
                    for result in found:
                        i, sent = pending[k].popleft()
                        latencies[i] = now - sent
                        if not check(i, result):
                            raise check_failed(i, result)
                        done += 1
                        if issued < calls:
                            queue(k)
                    if out[k]:  # the batch this read freed, in one writev
                        write_all(self._in_fd(k), out[k])
                        out[k] = []
        finally:
            selector.close()
        return Timing.of(latencies, clock() - began, inflight=inflight)

    def close(self, timeout: float = 10.0) -> None:
        """Close every child's stdin (it exits at EOF); kill what does not exit."""
        for child in self.children:
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
