"""The chaos adapter: its harmless commands called in-process, a few through a real
worker. The destructive ones (exit, segfault, reply-fd garbage...) belong to the
reliability suite, which runs them through pools."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from snakepit.adapters import chaos as chaos_module
from snakepit.exceptions import SerializationError
from snakepit.protocol import Chunk, Error, ErrorKind, Reply, encode
from snakepit.worker import WorkerOptions, command_line
from tests.worker.test_runtime import TIMEOUT, Driver

# Imported through the package: ruff's isort cannot see that adapters/ is
# snakepit.adapters, and would sort snakepit.adapters.chaos as third-party.
ChaosAdapter = chaos_module.ChaosAdapter
UnencodableError = chaos_module.UnencodableError
protocol_fds = chaos_module.protocol_fds

SPEC = "snakepit.adapters.chaos:ChaosAdapter"
STREAMS = {"stream_then_crash", "slow_stream", "tuple_keyed_stream"}
PLAIN = {
    "echo",
    "exit",
    "sys_exit",
    "segfault",
    "sigkill_self",
    "raise_error",
    "raise_base_exception",
    "sleep",
    "busy",
    "hang",
    "ignore_sigterm",
    "ignore_sigterm_and_sleep",
    "print_flood",
    "write_fd1_raw",
    "write_stderr_no_newline",
    "unencodable_result",
    "tuple_keyed_result",
    "raise_unencodable_exception",
    "huge_result",
    "alloc",
    "free",
    "spawn_grandchild",
    "read_stdin",
    "write_protocol_garbage",
    "write_malformed_reply",
    "write_partial_frame_then_exit",
    "huge_header",
    "close_protocol_fd",
}
HAS_PROC = Path("/proc/self/status").exists()


@pytest.fixture
def chaos() -> Iterator[ChaosAdapter]:
    adapter = ChaosAdapter()
    adapter.setup()
    yield adapter
    adapter.free()
    adapter.teardown()


# --- The command table and the adapter arguments ---


def test_the_command_table_lists_every_command_with_its_stream_flag() -> None:
    commands = ChaosAdapter.commands()
    assert set(commands) == PLAIN | STREAMS
    for name, info in commands.items():
        assert info.stream is (name in STREAMS), name
        assert info.doc, f"{name} has no docstring"
    assert ChaosAdapter.__thread_safe__


def test_adapter_arguments_make_setup_and_teardown_fail() -> None:
    with pytest.raises(RuntimeError, match=r"^no boot$"):
        ChaosAdapter(setup_error="no boot").setup()
    with pytest.raises(TypeError, match="setup_sleep"):
        ChaosAdapter(setup_sleep="1").setup()
    adapter = ChaosAdapter(setup_sleep=0, teardown_sleep=0.0, teardown_error="bye")
    adapter.setup()
    with pytest.raises(RuntimeError, match=r"^bye$"):
        adapter.teardown()
    plain = ChaosAdapter()
    plain.setup()
    plain.teardown()


# --- Harmless commands ---


def test_echo_returns_the_request_id_payload_and_pid(chaos: ChaosAdapter) -> None:
    assert chaos.echo(request_id=7) == {
        "request_id": 7,
        "payload": None,
        "pid": os.getpid(),
    }
    reply = chaos.echo("r-1", payload={"x": [1]}, size=300)
    assert reply["request_id"] == "r-1"
    assert reply["payload"] == {"x": [1]}
    assert reply["data"] == bytes(range(256)) + bytes(range(44))
    encode(Reply(1, reply))


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("RuntimeError", RuntimeError),
        ("ValueError", ValueError),
        ("KeyError", KeyError),
        ("MemoryError", MemoryError),
        ("KeyboardInterrupt", KeyboardInterrupt),
    ],
)
def test_raise_error_raises_the_named_builtin(
    chaos: ChaosAdapter, type_name: str, expected: type[BaseException]
) -> None:
    with pytest.raises(expected) as info:
        chaos.raise_error(type_name=type_name, message="boom")
    assert type(info.value) is expected
    assert info.value.args == ("boom",)


def test_raise_error_refuses_unknown_names(chaos: ChaosAdapter) -> None:
    for name in ("NoSuchError", "len", "object"):
        with pytest.raises(ValueError, match="not a builtin exception type"):
            chaos.raise_error(type_name=name)
    with pytest.raises(RuntimeError, match=r"^boom$"):
        chaos.raise_error()


def test_raise_base_exception(chaos: ChaosAdapter) -> None:
    with pytest.raises(BaseException) as info:
        chaos.raise_base_exception(message="BOOM")
    assert type(info.value) is BaseException
    assert info.value.args == ("BOOM",)


def test_unencodable_result_cannot_be_encoded(chaos: ChaosAdapter) -> None:
    value = chaos.unencodable_result()
    with pytest.raises(TypeError):
        msgpack.packb(value)
    with pytest.raises(SerializationError):
        encode(Reply(1, value))


def test_unencodable_exception_holds_a_lock(chaos: ChaosAdapter) -> None:
    with pytest.raises(UnencodableError) as info:
        chaos.raise_unencodable_exception()
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(TypeError):
        msgpack.packb(info.value.args)
    assert "unencodable" in str(info.value)  # str() still works: the worker sends it


def test_huge_result_has_the_requested_size(chaos: ChaosAdapter) -> None:
    assert chaos.huge_result(0) == b""
    blob = chaos.huge_result(n_bytes=1_000_003)
    assert type(blob) is bytes
    assert len(blob) == 1_000_003
    assert blob[255:258] == b"\xff\x00\x01"
    with pytest.raises(ValueError):
        chaos.huge_result(-1)


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_alloc_grows_and_free_shrinks_the_rss(chaos: ChaosAdapter) -> None:
    # 64 MiB is above glibc's largest mmap threshold (32 MiB): a fresh mapping,
    # resident once touched and unmapped when freed.
    before = chaos.free()
    grown = chaos.alloc(mb=64)
    assert grown - before >= 48 * 2**20
    shrunk = chaos.free()
    assert grown - shrunk >= 48 * 2**20


def test_sleep_and_busy_return(chaos: ChaosAdapter) -> None:
    assert chaos.sleep(seconds=0) == {"slept": 0, "pid": os.getpid()}
    busy = chaos.busy(seconds=0.01)
    assert busy["iterations"] > 0
    assert busy["pid"] == os.getpid()
    with pytest.raises(ValueError):
        chaos.sleep(-1)
    with pytest.raises(TypeError):
        chaos.busy(True)


def test_print_flood_writes_exactly_n_bytes(
    chaos: ChaosAdapter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert chaos.print_flood(n_bytes=1050) == 1050
    out = capsys.readouterr().out
    assert len(out) == 1050
    lines = out.splitlines(keepends=True)
    assert [len(line) for line in lines] == [100] * 10 + [50]
    assert all(line.endswith("\n") for line in lines)

    assert chaos.print_flood(n_bytes=200_000) == 200_000
    assert len(capsys.readouterr().out) == 200_000

    chaos.print_flood(n_bytes=500, newlines=False)
    assert capsys.readouterr().out == "x" * 500

    chaos.print_flood(n_bytes=300, stream="stderr")
    captured = capsys.readouterr()
    assert (captured.out, len(captured.err)) == ("", 300)

    assert chaos.write_stderr_no_newline(n_bytes=700) == 700
    assert capsys.readouterr().err == "x" * 700

    with pytest.raises(ValueError, match="stream"):
        chaos.print_flood(10, stream="stdin")


def test_slow_stream_yields_indexed_items(chaos: ChaosAdapter) -> None:
    assert list(chaos.slow_stream(n=3, delay=0)) == [
        {"index": 0},
        {"index": 1},
        {"index": 2},
    ]
    assert list(chaos.slow_stream(n=0)) == []


# --- Finding the reply fd ---


@pytest.mark.parametrize(
    "argv",
    [
        ["worker", "--adapter", "m:C", "--fds", "5,9"],
        ["worker", "--fds=5,9", "--threads", "2"],
        ["worker", "--adapter-args", "--fds", "--fds", "5,9"],
        ["worker", "--worker-id=--fds", "--fds", "5,9"],
    ],
)
def test_protocol_fds_reads_the_command_line(argv: list[str]) -> None:
    assert protocol_fds(argv) == (5, 9)


def test_protocol_fds_reads_what_command_line_builds() -> None:
    options = WorkerOptions(
        adapter=SPEC,
        request_fd=11,
        reply_fd=12,
        adapter_args={"x": "--fds"},
        worker_id="--fds",
    )
    argv = command_line(options)
    # The worker's sys.argv: the module's path, then the flags.
    worker_argv = ["/x/snakepit/worker/__main__.py", *argv[3:]]
    assert protocol_fds(worker_argv) == (11, 12)


@pytest.mark.parametrize(
    "argv",
    [
        ["pytest", "-q"],
        ["worker", "--fds"],
        ["worker", "--fds", "three,four"],
        ["worker", "--adapter", "--fds"],
    ],
)
def test_protocol_fds_fails_outside_a_worker(argv: list[str]) -> None:
    with pytest.raises(RuntimeError):
        protocol_fds(argv)


# --- In a real worker ---


def test_a_real_worker_serves_the_chaos_commands() -> None:
    with Driver(SPEC) as worker:
        hello = worker.hello()
        assert hello.adapter == SPEC
        assert set(hello.commands) == PLAIN | STREAMS
        for name, entry in hello.commands.items():
            assert entry["stream"] is (name in STREAMS), name
            assert entry["doc"], name

        reply = worker.call("echo", request_id=42, payload="p")
        assert reply.value == {"request_id": 42, "payload": "p", "pid": worker.proc.pid}
        assert worker.call("read_stdin").value == ""
        # Raw bytes on fd 1 land in the log pipe, not in the protocol.
        assert worker.call("write_fd1_raw").value == "ok"
        assert worker.call("print_flood", n_bytes=300_000).value == 300_000

        error = worker.call("unencodable_result")
        assert isinstance(error, Error)
        assert (error.kind, error.type) == (
            ErrorKind.RESULT_ENCODING.value,
            type(threading.Lock()).__name__,
        )
        error = worker.call("raise_unencodable_exception")
        assert isinstance(error, Error)
        assert (error.kind, error.type) == (
            ErrorKind.EXCEPTION.value,
            "UnencodableError",
        )
        error = worker.call("raise_base_exception")
        assert (error.kind, error.type, error.message) == (
            ErrorKind.EXCEPTION.value,
            "BaseException",
            "BOOM",
        )
        assert worker.call("echo", request_id=43).value["request_id"] == 43
    assert b"\x00\x00\x00\x10garbage" in worker.output["stdout"]
    assert len(worker.output["stdout"]) >= 300_000


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_ignore_sigterm_works_from_a_call_thread() -> None:
    with Driver(SPEC) as worker:
        worker.hello()
        assert worker.call("ignore_sigterm") == Reply(1, True)
        status = Path(f"/proc/{worker.proc.pid}/status").read_text()
        (ignored,) = (
            int(line.split()[1], 16)
            for line in status.splitlines()
            if line.startswith("SigIgn:")
        )
        assert ignored & (1 << (signal.SIGTERM - 1))
        worker.proc.send_signal(signal.SIGTERM)
        # kill() settles a signal's fate at once: an ignored one is dropped, a
        # fatal one dooms the process before it can answer another call. So an
        # answer to a call sent after the signal proves the worker survived it.
        assert worker.call("echo", request_id=2).value["pid"] == worker.proc.pid
        assert worker.proc.poll() is None


def test_close_protocol_fd_closes_the_channel_but_not_the_process() -> None:
    with Driver(SPEC) as worker:
        worker.hello()
        worker.submit("close_protocol_fd", seconds=TIMEOUT)
        worker.recv_eof()
        assert worker.proc.poll() is None


def test_stream_then_crash_streams_then_exits() -> None:
    with Driver(SPEC) as worker:
        worker.hello()
        call_id = worker.submit("stream_then_crash", n=2, code=3)
        assert [worker.recv() for _ in range(2)] == [
            Chunk(call_id, {"index": 0}),
            Chunk(call_id, {"index": 1}),
        ]
        worker.recv_eof()
        assert worker.wait() == 3  # the command's status, not an ExitCode


def test_chaos_runs_in_the_thread_profile() -> None:
    with Driver(SPEC, threads=2) as worker:
        assert worker.hello().capacity == 2
        assert worker.call("echo", request_id=1).value["request_id"] == 1
