"""The showcase adapter: its commands called in-process, then served by a real worker."""

from __future__ import annotations

import inspect
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from snakepit.adapters import showcase as showcase_module
from snakepit.protocol import Chunk, End, Error, ErrorKind, Reply, encode
from tests.worker.test_runtime import Driver

# Imported through the package: ruff's isort cannot see that adapters/ is
# snakepit.adapters, and would sort snakepit.adapters.showcase as third-party.
ShowcaseAdapter = showcase_module.ShowcaseAdapter
SPEC = "snakepit.adapters.showcase:ShowcaseAdapter"
STREAMS = {"stream_fibonacci", "stream_progress"}
PLAIN = {
    "ping",
    "echo",
    "add",
    "sleep",
    "error_demo",
    "adapter_info",
    "cpu_bound_task",
    "set_counter",
    "get_counter",
    "increment_counter",
}


@pytest.fixture
def showcase() -> Iterator[ShowcaseAdapter]:
    adapter = ShowcaseAdapter()
    adapter.setup()
    yield adapter
    adapter.teardown()


def _encodable(value: object) -> object:
    encode(Reply(1, value))  # raises SerializationError if it cannot travel
    return value


# --- The command table ---


def test_the_command_table_lists_every_command_with_its_stream_flag() -> None:
    commands = ShowcaseAdapter.commands()
    assert set(commands) == PLAIN | STREAMS
    for name, info in commands.items():
        assert info.stream is (name in STREAMS), name
        assert info.doc, f"{name} has no docstring"
        assert info.method == name


# --- Basics ---


def test_ping_answers_pong_with_pid_and_time(showcase: ShowcaseAdapter) -> None:
    before = time.time()
    reply = showcase.ping()
    _encodable(reply)
    timestamp = reply.pop("timestamp")
    assert reply == {"status": "pong", "pid": os.getpid()}
    assert isinstance(timestamp, float)
    assert before <= timestamp <= time.time()
    assert showcase.ping(message="hi")["message"] == "hi"


def test_echo_returns_its_keyword_arguments(showcase: ShowcaseAdapter) -> None:
    assert showcase.echo(message="hi") == {"message": "hi"}
    assert showcase.echo() == {}
    value = {"n": 1, "blob": b"\x00", "list": [1, "two"], "none": None}
    assert _encodable(showcase.echo(**value)) == value


def test_add(showcase: ShowcaseAdapter) -> None:
    assert showcase.add(a=2, b=3) == 5
    assert showcase.add(1.5, 2) == 3.5
    assert showcase.add("a", "b") == "ab"


def test_sleep_returns_how_long(showcase: ShowcaseAdapter) -> None:
    assert showcase.sleep(0) == {"slept": 0}
    assert showcase.sleep(seconds=0.001) == {"slept": 0.001}
    with pytest.raises(ValueError, match="seconds"):
        showcase.sleep(-1)
    with pytest.raises(TypeError, match="seconds"):
        showcase.sleep("1")


@pytest.mark.parametrize(
    "error_type",
    ["ValueError", "RuntimeError", "KeyError", "ZeroDivisionError", "TypeError"],
)
def test_error_demo_raises_the_named_builtin(
    showcase: ShowcaseAdapter, error_type: str
) -> None:
    with pytest.raises(Exception) as info:
        showcase.error_demo(error_type=error_type, message="on purpose")
    assert type(info.value).__name__ == error_type
    assert info.value.args == ("on purpose",)


def test_error_demo_defaults_and_unknown_names_raise_value_error(
    showcase: ShowcaseAdapter,
) -> None:
    with pytest.raises(ValueError, match="on purpose"):
        showcase.error_demo()
    with pytest.raises(ValueError, match=r"^nope$") as info:
        showcase.error_demo(error_type="SystemExit", message="nope")
    assert type(info.value) is ValueError


def test_adapter_info_describes_the_process(showcase: ShowcaseAdapter) -> None:
    info = _encodable(showcase.adapter_info())
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    assert info == {
        "pid": os.getpid(),
        "python_version": sys.version.split()[0],
        "gil_enabled": True if is_gil_enabled is None else is_gil_enabled(),
        "thread": threading.get_ident(),
        "adapter": "ShowcaseAdapter",
        "commands": sorted(PLAIN | STREAMS),
    }


def test_cpu_bound_task_computes_its_sum(showcase: ShowcaseAdapter) -> None:
    expected = sum(i * i for i in range(1000)) % 1_000_000_007
    assert showcase.cpu_bound_task(n=1000) == {"result": expected, "n": 1000}
    assert showcase.cpu_bound_task(0) == {"result": 0, "n": 0}
    default = showcase.cpu_bound_task()
    assert default["n"] == 100_000
    with pytest.raises(ValueError):
        showcase.cpu_bound_task(-1)


# --- The counter ---


def test_the_counter_starts_at_zero_and_counts(showcase: ShowcaseAdapter) -> None:
    assert showcase.get_counter() == 0
    assert showcase.increment_counter() == 1
    assert showcase.increment_counter(by=5) == 6
    assert showcase.get_counter() == 6
    assert showcase.set_counter(value=-3) == -3
    assert showcase.increment_counter(by=-2) == -5
    assert showcase.get_counter() == -5


def test_each_adapter_instance_has_its_own_counter(showcase: ShowcaseAdapter) -> None:
    other = ShowcaseAdapter()
    other.setup()
    showcase.set_counter(10)
    assert other.get_counter() == 0


def test_the_counter_takes_only_ints(showcase: ShowcaseAdapter) -> None:
    for bad in (1.5, "1", True, None):
        with pytest.raises(TypeError):
            showcase.set_counter(bad)
        with pytest.raises(TypeError):
            showcase.increment_counter(bad)
    assert showcase.get_counter() == 0


# --- Streams ---


def test_stream_fibonacci_yields_indexed_numbers(showcase: ShowcaseAdapter) -> None:
    stream = showcase.stream_fibonacci(n=8)
    assert inspect.isgenerator(stream)
    assert list(stream) == [
        {"index": i, "value": v} for i, v in enumerate([0, 1, 1, 2, 3, 5, 8, 13])
    ]
    assert len(list(showcase.stream_fibonacci())) == 10
    assert list(showcase.stream_fibonacci(0)) == []
    with pytest.raises(ValueError):
        list(showcase.stream_fibonacci(-1))


def test_stream_progress_counts_to_one_hundred_percent(
    showcase: ShowcaseAdapter,
) -> None:
    assert list(showcase.stream_progress(steps=4)) == [
        {"step": 1, "total": 4, "percent": 25.0},
        {"step": 2, "total": 4, "percent": 50.0},
        {"step": 3, "total": 4, "percent": 75.0},
        {"step": 4, "total": 4, "percent": 100.0},
    ]
    assert len(list(showcase.stream_progress())) == 5
    assert list(showcase.stream_progress(steps=0)) == []


def test_stream_progress_sleeps_between_steps(showcase: ShowcaseAdapter) -> None:
    start = time.monotonic()
    items = list(showcase.stream_progress(steps=3, delay=0.01))
    assert len(items) == 3
    assert time.monotonic() - start >= 0.02  # two pauses; sleep never ends early
    with pytest.raises(ValueError):
        list(showcase.stream_progress(delay=-1.0))


# --- In a real worker ---


def test_a_real_worker_serves_the_showcase() -> None:
    with Driver(SPEC) as worker:
        hello = worker.hello()
        assert hello.adapter == SPEC
        assert set(hello.commands) == PLAIN | STREAMS
        for name, entry in hello.commands.items():
            assert entry["stream"] is (name in STREAMS), name
            assert entry["doc"], name
        assert hello.commands["add"] == {"stream": False, "doc": "Return a + b."}

        ping = worker.call("ping", message="hi")
        assert isinstance(ping, Reply)
        assert ping.value["pid"] == worker.proc.pid
        assert ping.value["message"] == "hi"
        assert worker.call("echo", message="hi", n=[1, 2]).value == {
            "message": "hi",
            "n": [1, 2],
        }
        assert worker.call("add", a=2, b=3).value == 5
        assert worker.call("increment_counter", by=2).value == 2
        assert worker.call("get_counter").value == 2

        error = worker.call("error_demo", error_type="KeyError", message="k")
        assert isinstance(error, Error)
        assert (error.kind, error.type) == (ErrorKind.EXCEPTION.value, "KeyError")

        info = worker.call("adapter_info").value
        assert info["pid"] == worker.proc.pid
        assert info["commands"] == sorted(PLAIN | STREAMS)

        call_id = worker.submit("stream_fibonacci", n=4)
        assert [worker.recv() for _ in range(5)] == [
            Chunk(call_id, {"index": 0, "value": 0}),
            Chunk(call_id, {"index": 1, "value": 1}),
            Chunk(call_id, {"index": 2, "value": 1}),
            Chunk(call_id, {"index": 3, "value": 2}),
            End(call_id),
        ]
