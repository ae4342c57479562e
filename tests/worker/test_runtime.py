"""Real worker processes, driven over their pipes by a small synchronous parent.

Every wait is bounded (``select`` with a deadline, ``wait`` with a timeout) and every
test kills and reaps its worker in a ``finally`` (the ``Driver`` context manager).
Nothing waits on wall time: blocking commands wait for a file the test creates.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import final

import msgpack
import pytest

from snakepit.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Call,
    Cancel,
    Chunk,
    End,
    Error,
    ErrorKind,
    FrameDecoder,
    Hello,
    Message,
    Ping,
    Pong,
    Reply,
    Shutdown,
    encode,
)
from snakepit.worker import ExitCode, WorkerOptions, command_line
from snakepit.worker._options import UsageError, parse_args

ROOT = Path(__file__).resolve().parents[2]
BASIC = "tests.workers.basic:BasicAdapter"
THREADED = "tests.workers.basic:ThreadedAdapter"
TIMEOUT = 20.0


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


@final
class Driver:
    """A minimal synchronous parent for one worker process."""

    def __init__(
        self,
        adapter: str = BASIC,
        *,
        threads: int = 1,
        max_frame_bytes: int | None = None,
        adapter_args: dict[str, object] | None = None,
        parent_pid: int | None = None,
    ) -> None:
        request_read, self.request_write = os.pipe()
        self.reply_read, reply_write = os.pipe()
        options = WorkerOptions(
            adapter=adapter,
            request_fd=request_read,
            reply_fd=reply_write,
            threads=threads,
            parent_pid=os.getpid() if parent_pid is None else parent_pid,
            adapter_args=adapter_args,
            worker_id="test-worker-1",
            run_id="test-run",
        )
        if max_frame_bytes is not None:
            options = options._replace(max_frame_bytes=max_frame_bytes)
        self.decoder = FrameDecoder(options.max_frame_bytes)
        self.pending: list[Message] = []
        self.next_id = 0
        self.eof = False
        try:
            self.proc = subprocess.Popen(
                command_line(options),
                pass_fds=(request_read, reply_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                env=worker_env(),
                start_new_session=True,
            )
        finally:
            os.close(request_read)
            os.close(reply_write)
        # Drain stdout and stderr concurrently so a chatty worker never blocks.
        self.output = {"stdout": bytearray(), "stderr": bytearray()}
        self.drainers = [
            threading.Thread(target=self._drain, args=(stream, name), daemon=True)
            for name, stream in (
                ("stdout", self.proc.stdout),
                ("stderr", self.proc.stderr),
            )
        ]
        for thread in self.drainers:
            thread.start()

    def _drain(self, stream: object, name: str) -> None:
        read = stream.read1  # type: ignore[attr-defined]
        while chunk := read(65536):
            self.output[name] += chunk

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        for thread in self.drainers:
            thread.join(timeout=TIMEOUT)
        for fd in (self.request_write, self.reply_read):
            try:
                os.close(fd)
            except OSError:
                pass
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    # --- Talking ---

    def send(self, msg: Message) -> None:
        self.send_raw(encode(msg))

    def send_raw(self, data: bytes) -> None:
        os.write(self.request_write, data)

    def close_requests(self) -> None:
        os.close(self.request_write)

    def recv(self, timeout: float = TIMEOUT) -> Message:
        """Return the next message from the worker; fail after *timeout*."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            assert not self.eof, f"reply channel closed; stderr: {self.stderr}"
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no message from the worker in time"
            ready, _, _ = select.select([self.reply_read], [], [], remaining)
            if ready:
                data = os.read(self.reply_read, 1 << 20)
                if not data:
                    self.eof = True
                self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def recv_eof(self, timeout: float = TIMEOUT) -> None:
        """Wait for the end of the reply channel; fail on any message."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the reply channel did not close in time"
            ready, _, _ = select.select([self.reply_read], [], [], remaining)
            if ready:
                data = os.read(self.reply_read, 1 << 20)
                assert self.decoder.feed(data) == []
                self.eof = not data

    def hello(self) -> Hello:
        msg = self.recv()
        assert isinstance(msg, Hello), msg
        return msg

    def submit(self, command: str, **args: object) -> int:
        self.next_id += 1
        self.send(Call(self.next_id, command, args))
        return self.next_id

    def call(self, command: str, **args: object) -> Message:
        call_id = self.submit(command, **args)
        reply = self.recv()
        assert reply.id == call_id  # type: ignore[union-attr]
        return reply

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the worker's exit and for its output to be drained (its
        stdout and stderr end when it exits): return its exit status."""
        code = self.proc.wait(timeout=timeout)
        for thread in self.drainers:
            thread.join(timeout=timeout)
        return code

    @property
    def stderr(self) -> str:
        return self.output["stderr"].decode(errors="replace")


@pytest.fixture
def worker() -> Iterator[Driver]:
    with Driver() as driver:
        driver.hello()
        yield driver


# --- Handshake and plain calls ---


def test_hello_describes_the_worker() -> None:
    with Driver() as driver:
        hello = driver.hello()
        assert hello.version == PROTOCOL_VERSION
        assert hello.pid == driver.proc.pid
        assert hello.python_version == sys.version.split()[0]
        is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
        assert hello.gil_enabled is (
            True if is_gil_enabled is None else is_gil_enabled()
        )
        assert hello.adapter == BASIC
        assert hello.commands["add"] == {"stream": False, "doc": "Add two numbers."}
        assert hello.commands["count"] == {"stream": True, "doc": "Stream 0 .. n-1."}
        assert "setup_ran" in hello.commands
        assert hello.capacity == 1


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_worker_and_run_ids_show_in_the_command_line(worker: Driver) -> None:
    cmdline = Path(f"/proc/{worker.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert b"--worker-id" in cmdline
    assert b"test-worker-1" in cmdline
    assert b"test-run" in cmdline


def test_calls_return_values(worker: Driver) -> None:
    value = {"bytes": b"\x00\xff", "text": "é", 1: [1, 2], "none": None}
    assert worker.call("add", a=2, b=3) == Reply(1, 5)
    assert worker.call("echo", value=value) == Reply(2, value)
    assert worker.call("setup_ran") == Reply(3, True)


def test_a_command_sees_the_session_of_its_call(worker: Driver) -> None:
    worker.send(Call(1, "session", {}, session_id="s-1"))
    assert worker.recv() == Reply(1, "s-1")
    worker.send(Call(2, "session", {}))
    assert worker.recv() == Reply(2, None)
    worker.send(Call(3, "session_stream", {}, session_id="s-2"))
    assert [worker.recv() for _ in range(3)] == [
        Chunk(3, "s-2"),
        Chunk(3, "s-2"),
        End(3),
    ]
    worker.send(Call(4, "session", {}))
    assert worker.recv() == Reply(4, None)


def test_a_command_sees_the_metadata_of_its_call(worker: Driver) -> None:
    meta = {"traceparent": "00-abc-def-01"}
    worker.send(Call(1, "metadata", {}, meta=meta))
    assert worker.recv() == Reply(1, meta)
    worker.send(Call(2, "metadata", {}))  # none, and nothing left from the last
    assert worker.recv() == Reply(2, {})
    worker.send(Call(3, "metadata", {}, meta={"n": 1}))  # type: ignore[dict-item]
    reply = worker.recv()
    assert isinstance(reply, Error)
    assert reply.kind == ErrorKind.DECODE.value
    assert "Call.meta" in reply.message


def test_protocol_fds_are_not_inheritable(worker: Driver) -> None:
    argv = worker.proc.args
    assert isinstance(argv, list)
    fds = [int(fd) for fd in argv[argv.index("--fds") + 1].split(",")]
    assert worker.call("inheritable", fds=fds) == Reply(1, [False, False])


# --- Failures as data ---


def test_a_remote_exception_carries_type_message_and_traceback(worker: Driver) -> None:
    error = worker.call("fail", message="boom")
    assert isinstance(error, Error)
    assert (error.kind, error.type, error.message) == (
        "exception",
        "ValueError",
        "boom",
    )
    assert "raise ValueError(message)  # the line a remote traceback must show" in (
        error.traceback
    )
    assert "basic.py" in error.traceback
    assert "_runtime.py" not in error.traceback  # the worker's own frame is cut
    assert worker.call("add", a=1, b=1) == Reply(2, 2)


def test_an_unknown_command_names_it_and_lists_the_commands(worker: Driver) -> None:
    error = worker.call("nope")
    assert isinstance(error, Error)
    assert error.kind == "command_not_found"
    assert "'nope'" in error.message
    assert (
        "add, base_exception, blob, busy_for, count, count_then_fail, echo, fail,"
        in (error.message)
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"a": 1}, "missing a required argument: 'b'"),
        ({"a": 1, "b": 2, "c": 3}, "unexpected keyword argument 'c'"),
    ],
)
def test_bad_arguments_name_the_parameter(
    worker: Driver, args: dict[str, object], fragment: str
) -> None:
    error = worker.call("add", **args)
    assert isinstance(error, Error)
    assert error.kind == "invalid_arguments"
    assert "command 'add'" in error.message
    assert fragment in error.message


def test_a_type_error_inside_a_command_is_an_exception(worker: Driver) -> None:
    error = worker.call("type_error_inside")
    assert isinstance(error, Error)
    assert (error.kind, error.type) == ("exception", "TypeError")
    assert "len(5)" in error.traceback


@pytest.mark.parametrize(
    ("command", "args", "type_name", "message"),
    [
        ("sys_exit", {"code": 3}, "SystemExit", "3"),
        ("base_exception", {}, "BaseException", "not an Exception"),
    ],
)
def test_system_exit_and_base_exception_are_errors_and_the_worker_lives(
    worker: Driver, command: str, args: dict[str, object], type_name: str, message: str
) -> None:
    error = worker.call(command, **args)
    assert isinstance(error, Error)
    assert (error.kind, error.type, error.message) == ("exception", type_name, message)
    assert worker.call("ping") == Reply(2, "pong")
    assert worker.proc.poll() is None


def test_an_unencodable_result_fails_that_call_only(worker: Driver) -> None:
    error = worker.call("unencodable")
    assert isinstance(error, Error)
    assert (error.kind, error.type, error.traceback) == ("result_encoding", "dict", "")
    assert "lock" in error.message
    assert "'unencodable'" in error.message
    assert worker.call("add", a=1, b=2) == Reply(2, 3)


def test_large_payloads_arrive_whole_call_after_call(worker: Driver) -> None:
    # The rest of a large frame is read into one buffer kept across calls: each
    # payload must come back exactly, whatever the one before it left there.
    sizes = [3 * 1024 * 1024 + 1, 1024 * 1024 - 3, 5 * 1024 * 1024, 100, 70_000]
    for call_id, size in enumerate(sizes, 1):
        payload = os.urandom(size)
        assert worker.call("echo", value=payload) == Reply(call_id, payload)


def test_a_result_larger_than_a_frame_fails_that_call_only() -> None:
    with Driver(max_frame_bytes=4096) as driver:
        driver.hello()
        error = driver.call("blob", size=10_000)
        assert isinstance(error, Error)
        assert (error.kind, error.type) == ("result_encoding", "bytes")
        assert "max_frame_bytes (4096)" in error.message
        assert driver.call("blob", size=10) == Reply(2, b"x" * 10)


def test_a_malformed_call_is_answered_with_a_decode_error(worker: Driver) -> None:
    worker.send(Call(1, 5, {}))  # type: ignore[arg-type]
    worker.send(Call(2, "add", [1, 2]))  # type: ignore[arg-type]
    worker.send(Call(3, "add", {"a": 1, "b": 2}, session_id=7))  # type: ignore[arg-type]
    for call_id in (1, 2, 3):
        error = worker.recv()
        assert isinstance(error, Error)
        assert (error.id, error.kind) == (call_id, "decode")
    assert worker.call("add", a=1, b=2) == Reply(1, 3)


def test_output_on_stdout_never_reaches_the_protocol(worker: Driver) -> None:
    assert worker.call("print_bytes", size=1_000_000) == Reply(1, "printed")
    assert worker.call("write_fd1_raw") == Reply(2, "written")
    assert worker.call("add", a=1, b=2) == Reply(3, 3)
    worker.send(Shutdown())
    assert worker.recv() == Bye()
    assert worker.wait() == ExitCode.OK
    for thread in worker.drainers:
        thread.join(timeout=TIMEOUT)
    assert b"p" * 1_000_000 in worker.output["stdout"]
    assert b"\x00\x00\x00\x10garbage" in worker.output["stdout"]


def test_sigint_is_ignored(worker: Driver) -> None:
    os.kill(worker.proc.pid, signal.SIGINT)
    assert worker.call("ping") == Reply(1, "pong")
    assert worker.proc.poll() is None


# --- Pings, streams, cancellation ---


def test_a_ping_is_answered_while_a_command_runs(
    worker: Driver, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    call_id = worker.submit("wait_for_file", path=str(gate))
    worker.send(Ping(99))
    pong = worker.recv()
    assert isinstance(pong, Pong)
    assert (pong.id, pong.in_flight) == (99, 1)
    if Path("/proc/self/statm").exists():
        assert pong.rss_bytes > 1_000_000
    gate.touch()
    assert worker.recv() == Reply(call_id, f"saw {gate}")
    worker.send(Ping(100))
    pong = worker.recv()
    assert isinstance(pong, Pong)
    assert (pong.id, pong.in_flight) == (100, 0)


def test_a_stream_sends_chunks_then_end(worker: Driver) -> None:
    call_id = worker.submit("count", n=4)
    received = [worker.recv() for _ in range(5)]
    assert received == [
        Chunk(call_id, 0),
        Chunk(call_id, 1),
        Chunk(call_id, 2),
        Chunk(call_id, 3),
        End(call_id),
    ]


def test_an_empty_stream_sends_only_end(worker: Driver) -> None:
    call_id = worker.submit("count", n=0)
    assert worker.recv() == End(call_id)


def test_a_stream_that_raises_ends_with_an_error(worker: Driver) -> None:
    call_id = worker.submit("count_then_fail", n=2)
    assert worker.recv() == Chunk(call_id, 0)
    assert worker.recv() == Chunk(call_id, 1)
    error = worker.recv()
    assert isinstance(error, Error)
    assert (error.id, error.kind, error.type) == (call_id, "exception", "RuntimeError")
    assert "failed after 2" in error.traceback
    assert worker.call("add", a=1, b=2) == Reply(call_id + 1, 3)


def test_an_unencodable_chunk_ends_the_stream_with_an_error(worker: Driver) -> None:
    call_id = worker.submit("stream_unencodable")
    assert worker.recv() == Chunk(call_id, 1)
    error = worker.recv()
    assert isinstance(error, Error)
    assert (error.kind, error.type) == ("result_encoding", "object")
    assert "chunk 1" in error.message
    assert worker.call("ping") == Reply(call_id + 1, "pong")


def test_cancel_stops_a_stream_between_chunks(worker: Driver, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    call_id = worker.submit("ticks", closed_marker=str(marker))
    assert worker.recv() == Chunk(call_id, 0)
    worker.send(Cancel(call_id))
    while True:
        msg = worker.recv()
        if not isinstance(msg, Chunk):
            break
    assert msg == End(call_id)
    assert marker.read_text() == "closed"  # the generator was closed before End
    assert worker.call("ping") == Reply(call_id + 1, "pong")


def test_cancel_of_a_running_plain_call_is_ignored(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with Driver(THREADED, threads=2) as worker:
        worker.hello()
        call_id = worker.submit("wait_for_file", path=str(gate))
        later = worker.submit("add", a=1, b=2)
        # Calls are taken in order: the later one's reply proves the first runs.
        assert worker.recv() == Reply(later, 3)
        worker.send(Cancel(call_id))
        worker.send(Cancel(12345))  # unknown ids too
        worker.send(Ping(1))
        assert isinstance(worker.recv(), Pong)
        gate.touch()
        assert worker.recv() == Reply(call_id, f"saw {gate}")


def test_cancel_of_a_call_still_waiting_for_its_turn_skips_it(
    worker: Driver, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    running = worker.submit("wait_for_file", path=str(gate))
    waiting = worker.submit("wait_for_file", path=str(tmp_path / "never"))
    worker.send(Cancel(waiting))
    worker.send(Ping(1))
    reply = worker.recv()  # answered at once, while the first call still runs
    assert isinstance(reply, Error)
    assert (reply.id, reply.kind) == (waiting, ErrorKind.CANCELLED.value)
    assert isinstance(worker.recv(), Pong)
    gate.touch()
    assert worker.recv() == Reply(running, f"saw {gate}")
    # it never ran (it would have waited forever): the worker is free
    assert worker.call("ping") == Reply(waiting + 1, "pong")


# --- Lending the lead ---


def _switches(names: list[object]) -> int:
    return sum(1 for a, b in itertools.pairwise(names) if a != b)


def test_one_thread_reads_runs_and_answers_a_run_of_small_calls(
    worker: Driver,
) -> None:
    # With one thread the reader keeps the lead while it runs each call: were it
    # handed over at every call, the two server threads would alternate. (The
    # watchdog may still move it if the machine stalls a call for a whole tick.)
    for _ in range(3):  # both server threads have started and settled
        worker.call("server_thread")
    names = [worker.call("server_thread").value for _ in range(20)]  # type: ignore[union-attr]
    assert _switches(names) <= 3, names
    ids = [worker.submit("server_thread") for _ in range(20)]  # sent ahead
    replies = [worker.recv() for _ in ids]
    assert [reply.id for reply in replies] == ids  # type: ignore[union-attr]
    names = [reply.value for reply in replies]  # type: ignore[union-attr]
    assert _switches(names) <= 3, names


def test_a_long_call_loses_its_lent_lead_and_one_thread_leads_again_after(
    worker: Driver, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    long = worker.submit("wait_for_file", path=str(gate))
    worker.send(Ping(1))  # read by the other thread once the watchdog steps in
    pong = worker.recv()
    assert isinstance(pong, Pong) and (pong.id, pong.in_flight) == (1, 1)
    gate.touch()
    assert worker.recv() == Reply(long, f"saw {gate}")
    for _ in range(3):  # the thread that lost the lead settles as the follower
        worker.call("server_thread")
    names = [worker.call("server_thread").value for _ in range(20)]  # type: ignore[union-attr]
    assert _switches(names) <= 3, names


def _voluntary_switches(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_calls_longer_than_a_tick_never_wake_the_watchdog(worker: Driver) -> None:
    """Lending the lead to a call that outlasts a tick wakes the watchdog twice
    (at the lend, then to take the lead back) and another thread once more,
    where handing the lead on costs one wake-up: a call after a long one, or
    alone, is not lent, and the main thread (the watchdog) sleeps through."""
    from snakepit.worker._runtime import LEND_TICK

    pid = worker.proc.pid
    worker.call("busy_for", seconds=3 * LEND_TICK)  # the watchdog settles idle
    worker.call("busy_for", seconds=3 * LEND_TICK)
    before = _voluntary_switches(pid, pid)
    names = [
        worker.call("busy_for", seconds=3 * LEND_TICK).value  # type: ignore[union-attr]
        for _ in range(6)
    ]
    assert _voluntary_switches(pid, pid) - before <= 1
    assert _switches(names) >= 4, names  # handed on at each call: threads alternate


def test_a_saturated_thread_worker_still_answers_pings_and_calls(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    with Driver(THREADED, threads=2) as driver:
        driver.hello()
        a = driver.submit("wait_for_file", path=str(first))
        b = driver.submit("wait_for_file", path=str(second))  # the last thread
        driver.send(Ping(1))  # taken back from b by the watchdog
        pong = driver.recv()
        assert isinstance(pong, Pong) and (pong.id, pong.in_flight) == (1, 2)
        first.touch()
        assert driver.recv() == Reply(a, f"saw {first}")
        # a's thread is free: the next call runs while b still holds its thread
        assert driver.call("add", a=1, b=2) == Reply(b + 1, 3)
        second.touch()
        assert driver.recv() == Reply(b, f"saw {second}")


# --- Threads ---


def test_four_threads_run_four_calls_at_once() -> None:
    with Driver(THREADED, threads=4) as driver:
        assert driver.hello().capacity == 4
        ids = [driver.submit("meet") for _ in range(4)]
        replies = [driver.recv() for _ in ids]
        # Each call waited at a 4-party barrier: all four were inside at once.
        assert all(isinstance(reply, Reply) for reply in replies), replies
        assert sorted(reply.id for reply in replies) == ids  # type: ignore[union-attr]
        assert len({reply.value for reply in replies}) == 4  # type: ignore[union-attr]


def test_replies_come_back_out_of_order_matched_by_id(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with Driver(THREADED, threads=4) as driver:
        driver.hello()
        slow = driver.submit("wait_for_file", path=str(gate))
        fast = driver.submit("add", a=1, b=2)
        assert driver.recv() == Reply(fast, 3)  # the later call answered first
        gate.touch()
        assert driver.recv() == Reply(slow, f"saw {gate}")


def test_threads_need_a_thread_safe_adapter() -> None:
    with Driver(BASIC, threads=4) as driver:
        assert driver.wait() == ExitCode.ADAPTER_IMPORT
        driver.recv_eof()
        assert "not declared thread-safe" in driver.stderr


# --- Ending ---


def test_shutdown_drains_tears_down_and_says_bye(tmp_path: Path) -> None:
    marker = tmp_path / "teardown"
    gate = tmp_path / "gate"
    with Driver(adapter_args={"teardown_marker": str(marker)}) as driver:
        driver.hello()
        busy = driver.submit("wait_for_file", path=str(gate))
        driver.send(Shutdown())
        driver.send(Ping(7))  # still answered while draining
        pong = driver.recv()
        assert isinstance(pong, Pong)
        assert (pong.id, pong.in_flight) == (7, 1)
        late = driver.submit("add", a=1, b=2)
        refused = driver.recv()
        assert isinstance(refused, Error)
        assert (refused.id, refused.kind) == (late, "shutting_down")
        assert not marker.exists()
        gate.touch()
        assert driver.recv() == Reply(busy, f"saw {gate}")
        assert driver.recv() == Bye()
        driver.recv_eof()
        assert driver.wait() == ExitCode.OK
        assert marker.read_text() == "teardown ran"


def test_a_failing_teardown_still_says_bye_and_exits_with_6() -> None:
    with Driver("tests.workers.basic:FailingTeardownAdapter") as driver:
        driver.hello()
        driver.send(Shutdown())
        assert driver.recv() == Bye()
        assert driver.wait() == ExitCode.TEARDOWN_FAILED
        assert "teardown exploded on purpose" in driver.stderr


def test_end_of_file_on_requests_exits_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "teardown"
    with Driver(adapter_args={"teardown_marker": str(marker)}) as driver:
        driver.hello()
        driver.submit("wait_for_file", path=str(tmp_path / "never"))
        driver.close_requests()
        # Well before the command's own 30 s timeout: the call is abandoned.
        assert driver.wait(timeout=10) == ExitCode.OK
        assert not marker.exists()  # no teardown: the parent is gone


def test_a_protocol_error_on_requests_exits_with_5() -> None:
    with Driver() as driver:
        driver.hello()
        driver.send_raw(b"\x00\x00\x00\x03\xc1\xc1\xc1")
        assert driver.wait() == ExitCode.PROTOCOL_ERROR
        assert "protocol error on the request channel" in driver.stderr


@pytest.mark.parametrize(
    "wire",
    [[2, 1, "add"], [2, "one", "add", {}, None, None, None], [99, 1]],
    ids=["call too short", "call id not an int", "unknown tag"],
)
def test_a_well_framed_body_that_is_no_message_exits_with_5(wire: list[object]) -> None:
    with Driver() as driver:
        driver.hello()
        body = msgpack.packb(wire)
        driver.send_raw(struct.pack(">I", len(body)) + body)
        assert driver.wait() == ExitCode.PROTOCOL_ERROR
        assert "protocol error on the request channel" in driver.stderr


def test_a_too_large_request_header_exits_with_5() -> None:
    with Driver(max_frame_bytes=4096) as driver:
        driver.hello()
        driver.send_raw(b"\x00\x00\x10\x01")  # 4097 bytes announced
        assert driver.wait() == ExitCode.PROTOCOL_ERROR
        assert "4097" in driver.stderr


def test_a_message_only_workers_send_is_a_protocol_error() -> None:
    with Driver() as driver:
        driver.hello()
        driver.send(Reply(1, 2))
        assert driver.wait() == ExitCode.PROTOCOL_ERROR
        assert "Reply" in driver.stderr


def test_setup_failure_exits_with_4_before_hello() -> None:
    with Driver("tests.workers.basic:FailingSetupAdapter") as driver:
        assert driver.wait() == ExitCode.ADAPTER_SETUP
        driver.recv_eof()  # no Hello
        first_line = driver.stderr.splitlines()[0]
        assert "setup of adapter" in first_line
        assert "RuntimeError: setup exploded on purpose" in first_line
        assert "Traceback (most recent call last)" in driver.stderr


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("tests.workers.no_such_module:Adapter", "ModuleNotFoundError"),
        ("tests.workers.basic:Missing", "AttributeError"),
        ("tests.workers.basic:NotAnAdapter", "not a snakepit.adapter.Adapter"),
    ],
)
def test_an_adapter_that_cannot_load_exits_with_3_before_hello(
    spec: str, fragment: str
) -> None:
    with Driver(spec) as driver:
        assert driver.wait() == ExitCode.ADAPTER_IMPORT
        driver.recv_eof()
        assert "snakepit worker:" in driver.stderr
        assert fragment in driver.stderr


def test_a_worker_whose_parent_is_already_gone_exits_at_once() -> None:
    with Driver(parent_pid=1 if os.getppid() != 1 else 2) as driver:
        assert driver.wait() == ExitCode.OK
        driver.recv_eof()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--adapter", BASIC],
        ["--adapter", BASIC, "--fds", "3"],
        ["--adapter", BASIC, "--fds", "1,2"],
        ["--adapter", "no_colon", "--fds", "3,4"],
        ["--adapter", BASIC, "--fds", "3,4", "--threads", "0"],
        ["--adapter", BASIC, "--fds", "3,4", "--bogus", "1"],
        ["--adapter", BASIC, "--fds", "3,4", "--adapter-args", "[1]"],
        ["--adapter", BASIC, "--fds", "3,4", "--max-frame-bytes", "10"],
        ["--adapter", BASIC, "--fds", "3,3"],
        ["--adapter", BASIC, "--adapter", BASIC, "--fds", "3,4"],
        ["--adapter", BASIC, "--fds"],
    ],
)
def test_invalid_command_lines_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


def test_a_usage_error_exits_with_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakepit.worker", "--adapter", BASIC],
        cwd=ROOT,
        env=worker_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == ExitCode.USAGE
    assert b"--fds is required" in result.stderr
    assert b"usage:" in result.stderr


def test_help_prints_the_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakepit.worker", "--help"],
        cwd=ROOT,
        env=worker_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == ExitCode.OK
    assert result.stdout.startswith(b"usage: python -m snakepit.worker")


def test_unopened_fds_are_a_usage_error() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakepit.worker",
            "--adapter",
            BASIC,
            "--fds",
            "900,901",
        ],
        cwd=ROOT,
        env=worker_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == ExitCode.USAGE
    assert b"fd 900 is not usable" in result.stderr


def test_command_line_and_parse_args_agree() -> None:
    options = WorkerOptions(
        adapter="pkg.mod:Outer.Inner",
        request_fd=5,
        reply_fd=8,
        threads=3,
        max_frame_bytes=10_000,
        parent_pid=1234,
        adapter_args={"path": "/tmp/x", "n": [1, 2]},
        worker_id="pool-1",
        run_id="run-9",
    )
    argv = command_line(options, python="/usr/bin/python3")
    assert argv[:3] == ["/usr/bin/python3", "-m", "snakepit.worker"]
    assert parse_args(argv[3:]) == options
    minimal = WorkerOptions(adapter="m:C", request_fd=3, reply_fd=4)
    assert parse_args(command_line(minimal)[3:]) == minimal
    assert parse_args(["--adapter=m:C", "--fds=3,4"]) == minimal
