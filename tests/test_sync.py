"""The blocking facade, from plain (non-async) test functions."""

from __future__ import annotations

import threading

import pytest

import snakepit
from snakepit.exceptions import AlreadyStarted, ConfigError, NotStarted, RemoteError

CONFIG = {"pools": [{"name": "default", "pool_size": 2}]}


@pytest.fixture(autouse=True)
def _stopped() -> None:
    snakepit.stop()
    yield
    snakepit.stop()


def test_module_functions_act_on_the_started_application() -> None:
    with pytest.raises(NotStarted, match=r"snakepit\.start"):
        snakepit.execute("ping")
    handle = snakepit.start(CONFIG)
    with pytest.raises(AlreadyStarted, match=r"snakepit\.stop"):
        snakepit.start(CONFIG)
    assert snakepit.execute("add", {"a": 5, "b": 3}) == 8
    assert snakepit.execute_in_session("s", "set_counter", {"value": 4}) == 4
    assert snakepit.execute_in_session("s", "increment_counter") == 5
    chunks = list(snakepit.execute_stream("stream_fibonacci", {"n": 5}))
    assert [c["value"] for c in chunks] == [0, 1, 1, 2, 3]
    with pytest.raises(RemoteError):
        snakepit.execute("error_demo")
    stats = snakepit.get_stats()
    assert stats["workers"] == 2
    assert stats["errors"] == 1
    assert len(snakepit.list_workers()) == 2
    assert handle.config.get_pool_config("default").pool_size == 2
    snakepit.stop()
    snakepit.stop()  # idempotent
    with pytest.raises(NotStarted):
        snakepit.get_stats()
    with pytest.raises(NotStarted):
        handle.execute("ping")


def test_handle_is_a_context_manager_and_streams_close_early() -> None:
    with snakepit.start(CONFIG) as sp:
        with sp.execute_stream(
            "stream_progress", {"steps": 1000, "delay": 0.01}
        ) as stream:
            first = next(stream)
            assert first["step"] == 1
        assert sp.execute("add", {"a": 1, "b": 1}) == 2
    with pytest.raises(NotStarted):
        snakepit.execute("ping")
    # after a context-managed stop, start works again
    with snakepit.start(CONFIG) as sp:
        assert sp.execute("add", {"a": 2, "b": 2}) == 4


def test_calls_from_many_threads_at_once() -> None:
    results: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(25):
                results[(t, i)] = snakepit.execute("add", {"a": t, "b": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    with snakepit.start(CONFIG):
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert results == {(t, i): t + i for t in range(8) for i in range(25)}


def _loop_module() -> str:
    import asyncio

    return type(asyncio.get_running_loop()).__module__


def test_the_facade_runs_on_trio_too() -> None:
    with snakepit.start(CONFIG, backend="trio") as handle:
        assert handle.execute("add", {"a": 2, "b": 3}) == 5
        assert handle._portal.call(_sniff) == "trio"


def _sniff() -> str:
    import sniffio

    return sniffio.current_async_library()


def test_asyncio_runs_on_uvloop_when_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    with snakepit.start(CONFIG) as handle:
        assert handle.execute("add", {"a": 2, "b": 3}) == 5
        assert handle._portal.call(_loop_module).startswith("uvloop")
    with snakepit.start(CONFIG, use_uvloop=False) as handle:
        assert handle._portal.call(_loop_module).startswith("asyncio")
    with pytest.raises(ConfigError, match="use_uvloop"):
        snakepit.start(CONFIG, backend="trio", use_uvloop=True)
