"""The threaded showcase adapter: called in-process, then served by a real worker
on four threads."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest

from snakepit.adapter import ThreadSafeAdapter
from snakepit.adapters import threaded_showcase as threaded_module
from snakepit.protocol import Error, Reply, encode
from tests.worker.test_runtime import Driver

ThreadedShowcaseAdapter = threaded_module.ThreadedShowcaseAdapter
SPEC = "snakepit.adapters.threaded_showcase:ThreadedShowcaseAdapter"
COMMANDS = {
    "ping",
    "add",
    "adapter_info",
    "compute_intensive",
    "matrix_multiply",
    "sleep",
    "increment_counter",
}


@pytest.fixture
def adapter() -> Iterator[ThreadedShowcaseAdapter]:
    instance = ThreadedShowcaseAdapter()
    instance.setup()
    yield instance
    instance.teardown()


def _encodable(value: object) -> object:
    encode(Reply(1, value))  # raises SerializationError if it cannot travel
    return value


def _gil_enabled() -> bool:
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_gil_enabled is None else is_gil_enabled()


def test_it_is_thread_safe_and_lists_its_commands() -> None:
    assert issubclass(ThreadedShowcaseAdapter, ThreadSafeAdapter)
    assert ThreadedShowcaseAdapter.__thread_safe__ is True
    commands = ThreadedShowcaseAdapter.commands()
    assert set(commands) == COMMANDS
    assert all(info.doc and not info.stream for info in commands.values())


def test_ping_and_add(adapter: ThreadedShowcaseAdapter) -> None:
    reply = _encodable(adapter.ping(message="hi"))
    assert isinstance(reply, dict)
    assert reply["status"] == "pong"
    assert (reply["pid"], reply["thread_id"]) == (os.getpid(), threading.get_ident())
    assert reply["message"] == "hi"
    assert "message" not in adapter.ping()
    assert adapter.add(2, 3) == 5


def test_adapter_info_describes_the_interpreter(
    adapter: ThreadedShowcaseAdapter,
) -> None:
    assert _encodable(adapter.adapter_info()) == {
        "pid": os.getpid(),
        "thread_id": threading.get_ident(),
        "python_version": sys.version.split()[0],
        "gil_enabled": _gil_enabled(),
        "thread_safe": True,
        "adapter": "ThreadedShowcaseAdapter",
        "commands": sorted(COMMANDS),
    }


def test_compute_intensive_returns_its_sum_and_thread(
    adapter: ThreadedShowcaseAdapter,
) -> None:
    expected = sum(i * i for i in range(1000)) % 1_000_000_007
    assert adapter.compute_intensive(n=1000) == {
        "result": expected,
        "n": 1000,
        "thread_id": threading.get_ident(),
    }
    assert adapter.compute_intensive()["n"] == 100_000
    with pytest.raises(ValueError):
        adapter.compute_intensive(-1)
    with pytest.raises(TypeError):
        adapter.compute_intensive("5")  # type: ignore[arg-type]


def test_matrix_multiply_without_numpy_says_it_needs_numpy(
    adapter: ThreadedShowcaseAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # makes `import numpy` fail
    with pytest.raises(ImportError, match="matrix_multiply needs numpy"):
        adapter.matrix_multiply(size=4)


def test_matrix_multiply_with_numpy(adapter: ThreadedShowcaseAdapter) -> None:
    np = pytest.importorskip("numpy")
    a = np.arange(9, dtype=np.float64).reshape(3, 3) / 3
    product = a @ a.T
    result = _encodable(adapter.matrix_multiply(size=3))
    assert result == {
        "size": 3,
        "trace": float(np.trace(product)),
        "sum": float(product.sum()),
        "thread_id": threading.get_ident(),
    }


def test_matrix_multiply_checks_its_size(adapter: ThreadedShowcaseAdapter) -> None:
    with pytest.raises(ValueError, match="size"):
        adapter.matrix_multiply(size=-1)
    with pytest.raises(ValueError, match="<= 4096"):
        adapter.matrix_multiply(size=5000)


def test_sleep_says_who_slept(adapter: ThreadedShowcaseAdapter) -> None:
    assert _encodable(adapter.sleep(0)) == {
        "slept": 0,
        "thread_id": threading.get_ident(),
        "pid": os.getpid(),
        "concurrent": 1,
    }
    with pytest.raises(ValueError, match="seconds"):
        adapter.sleep(-1)


def test_the_counter_is_safe_from_many_threads(
    adapter: ThreadedShowcaseAdapter,
) -> None:
    threads = [
        threading.Thread(
            target=lambda: [adapter.increment_counter() for _ in range(500)]
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert adapter.counter == 2000
    assert adapter.increment_counter(by=-2000) == 0
    with pytest.raises(TypeError):
        adapter.increment_counter(by=1.5)  # type: ignore[arg-type]


# --- A real worker on four threads ---


def test_four_sleeps_run_at_once_on_four_threads() -> None:
    with Driver(SPEC, threads=4) as driver:
        assert driver.hello().capacity == 4
        ids = [driver.submit("sleep", seconds=1.0) for _ in range(4)]
        replies = [driver.recv() for _ in ids]
    assert all(isinstance(reply, Reply) for reply in replies), replies
    assert sorted(reply.id for reply in replies) == ids  # type: ignore[union-attr]
    values = [reply.value for reply in replies]  # type: ignore[union-attr]
    assert {value["pid"] for value in values} == {driver.proc.pid}
    assert len({value["thread_id"] for value in values}) == 4
    # Each sleep saw all four running at once: a count the adapter keeps under
    # its lock (the 1 s only leaves room for the four calls to start).
    assert [value["concurrent"] for value in values] == [4, 4, 4, 4]


def test_a_worker_answers_every_command() -> None:
    with Driver(SPEC, threads=4) as driver:
        hello = driver.hello()
        assert set(hello.commands) == COMMANDS
        info = driver.call("adapter_info")
        assert isinstance(info, Reply)
        assert info.value["pid"] == hello.pid  # type: ignore[index]
        assert info.value["gil_enabled"] is hello.gil_enabled  # type: ignore[index]
        work = driver.call("compute_intensive", n=10)
        assert isinstance(work, Reply)
        assert work.value["result"] == sum(i * i for i in range(10))  # type: ignore[index]
        matrix = driver.call("matrix_multiply", size=2)
        try:
            import numpy  # noqa: F401
        except ImportError:
            assert isinstance(matrix, Error), matrix
            assert matrix.type == "ImportError"
            assert "matrix_multiply needs numpy" in matrix.message
        else:
            assert isinstance(matrix, Reply), matrix
        assert driver.call("increment_counter", by=3) == Reply(4, 3)
