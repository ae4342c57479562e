"""Thread-safe adapters and the thread-safety checker.

In-process: the lock and thread-local helpers, ``@serialized``, the matrix reader.
Through real workers (the synchronous ``Driver`` of ``test_runtime``): the refusal
of a non-thread-safe adapter, the report, and the ``warn``/``strict`` rules.
Overlap is forced with barriers and files, never with sleeps.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from snakepit.adapter import (
    Adapter,
    CommandInfo,
    ThreadSafeAdapter,
    ThreadSafetyError,
    command,
    serialized,
)
from snakepit.exceptions import InvalidArguments
from snakepit.protocol import Chunk, End, Error, Reply
from snakepit.worker import (
    THREAD_SAFETY_REPORT_COMMAND,
    ExitCode,
    ThreadSafetyChecks,
    WorkerOptions,
    command_line,
)
from snakepit.worker._dispatch import CommandTable
from snakepit.worker._options import UsageError, parse_args
from snakepit.worker._safety import MATRIX_ENV, load_matrix
from tests.worker import test_runtime
from tests.worker.test_runtime import BASIC, Driver

CHECKED = "tests.workers.threadsafety:CheckedAdapter"
REPORT = THREAD_SAFETY_REPORT_COMMAND
TIMEOUT = 20.0
FAKE_UNSAFE = "snakepit_fake_unsafe_lib"
FAKE_CONDITIONAL = "snakepit_fake_conditional_lib"


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def run_threads(target: Callable[[], object], n: int) -> list[object]:
    results: list[object] = [None] * n

    def run(i: int) -> None:
        results[i] = target()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    return results


# --- The lock helper ---


def test_lock_returns_one_reentrant_lock_per_name() -> None:
    adapter = ThreadSafeAdapter()
    lock = adapter.lock()
    assert adapter.lock("default") is lock
    assert adapter.lock("cache") is not lock
    with lock, lock:  # reentrant
        pass
    assert ThreadSafeAdapter().lock() is not lock  # per instance


def test_lock_is_created_once_when_threads_race_for_it() -> None:
    adapter = ThreadSafeAdapter()
    barrier = threading.Barrier(8)

    def get() -> object:
        barrier.wait(timeout=TIMEOUT)
        return adapter.lock("contended")

    locks = run_threads(get, 8)
    assert all(lock is locks[0] for lock in locks)


def test_a_named_lock_guards_shared_state() -> None:
    class Store(ThreadSafeAdapter):
        def setup(self) -> None:
            self.total = 0

        @command
        def bump(self) -> None:
            for _ in range(200):
                with self.lock("total"):
                    value = self.total
                    time.sleep(0)  # invite a switch inside the critical section
                    self.total = value + 1

    store = Store()
    store.setup()
    run_threads(store.bump, 4)
    assert store.total == 800


# --- Thread-local state ---


def test_local_is_per_thread_and_per_instance() -> None:
    adapter = ThreadSafeAdapter()
    assert adapter.local is adapter.local
    assert ThreadSafeAdapter().local is not adapter.local
    adapter.local.name = "main"

    def look() -> object:
        seen = getattr(adapter.local, "name", None)
        adapter.local.name = threading.current_thread().name
        return seen

    assert run_threads(look, 3) == [None, None, None]
    assert adapter.local.name == "main"


def test_thread_local_calls_its_factory_once_per_thread() -> None:
    adapter = ThreadSafeAdapter()
    made: list[int] = []
    lock = threading.Lock()

    def factory() -> dict[str, int]:
        with lock:
            made.append(threading.get_ident())
        return {"owner": threading.get_ident()}

    def use() -> object:
        first = adapter.thread_local("conn", factory)
        assert adapter.thread_local("conn", factory) is first
        assert first["owner"] == threading.get_ident()
        return first

    mine = use()
    assert adapter.thread_local("conn", factory) is mine
    theirs = run_threads(use, 3)
    assert len({id(value) for value in [mine, *theirs]}) == 4
    assert len(made) == 4
    assert adapter.thread_local("other", lambda: 5) == 5  # names are separate


# --- @serialized ---


class Gate(ThreadSafeAdapter):
    """``exclusive`` records its entries and exits and waits for a per-call gate."""

    def setup(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.entered = {name: threading.Event() for name in "ab"}
        self.gates = {name: threading.Event() for name in "ab"}

    @command
    @serialized
    def exclusive(self, who: str) -> str:
        """Run alone."""
        self.log.append(("enter", who))
        self.entered[who].set()
        assert self.gates[who].wait(TIMEOUT)
        self.log.append(("exit", who))
        return who

    @command(serialized=True)
    def numbers(self, n: int) -> Iterator[int]:
        yield from range(n)

    @command
    def free(self) -> str:
        return "free"


def _frames_of(thread: threading.Thread) -> set[object]:
    frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]
    codes: set[object] = set()
    while frame is not None:
        codes.add(frame.f_code)
        frame = frame.f_back
    return codes


def test_serialized_commands_run_one_at_a_time() -> None:
    adapter = Gate()
    adapter.setup()
    body = Gate.exclusive.__wrapped__.__code__  # type: ignore[attr-defined]
    wrapper = Gate.exclusive.__code__
    a = threading.Thread(target=adapter.exclusive, args=("a",))
    b = threading.Thread(target=adapter.exclusive, args=("b",))
    a.start()
    assert adapter.entered["a"].wait(TIMEOUT)
    b.start()
    # b has reached the serialized wrapper but not the body: it waits for a.
    wait_until(lambda: wrapper in _frames_of(b), "b to reach the lock")
    assert body not in _frames_of(b)
    assert adapter.free() == "free"  # other commands still run meanwhile
    assert not adapter.entered["b"].is_set()
    adapter.gates["a"].set()
    assert adapter.entered["b"].wait(TIMEOUT)
    adapter.gates["b"].set()
    a.join(TIMEOUT)
    b.join(TIMEOUT)
    assert adapter.log == [("enter", "a"), ("exit", "a"), ("enter", "b"), ("exit", "b")]


def test_a_serialized_stream_holds_its_lock_until_it_ends() -> None:
    adapter = Gate()
    stream = adapter.numbers(3)
    assert next(stream) == 0
    taken = threading.Event()

    def other() -> None:
        assert list(adapter.numbers(2)) == [0, 1]
        taken.set()

    thread = threading.Thread(target=other)
    thread.start()
    wait_until(lambda: Gate.numbers.__code__ in _frames_of(thread), "the lock")
    assert not taken.is_set()
    assert list(stream) == [1, 2]
    thread.join(TIMEOUT)
    assert taken.is_set()


def test_serialized_is_listed_and_keeps_the_signature_and_docstring() -> None:
    commands = Gate.commands()
    assert commands["exclusive"] == CommandInfo(
        "exclusive", "exclusive", False, "Run alone.", serialized=True
    )
    assert commands["numbers"].stream is True
    assert commands["numbers"].serialized is True
    assert commands["free"].serialized is False
    adapter = Gate()
    adapter.setup()
    table = CommandTable(adapter)
    table.get("exclusive").check({"who": "a"})
    with pytest.raises(InvalidArguments, match="'who'"):
        table.get("exclusive").check({})


def test_serialized_works_in_either_order_and_only_once() -> None:
    class Both(ThreadSafeAdapter):
        @serialized
        @command
        def first(self) -> int:
            return 1

        @command
        @serialized
        def second(self) -> int:
            return 2

    assert Both.commands()["first"].serialized
    assert Both.commands()["second"].serialized
    assert serialized(Both.first) is Both.first
    assert Both().first() == 1


def test_serialized_refuses_what_it_cannot_lock() -> None:
    with pytest.raises(TypeError, match="plain method"):
        serialized(staticmethod(lambda: 1))

    async def coroutine(self: object) -> None:
        pass

    with pytest.raises(TypeError, match="async"):
        serialized(coroutine)


def test_unsafe_commands_must_name_commands() -> None:
    with pytest.raises(TypeError, match="not commands"):

        class Typo(ThreadSafeAdapter):
            __unsafe_commands__ = frozenset({"trian"})

            @command
            def train(self) -> None: ...

    with pytest.raises(TypeError, match="collection of command names"):

        class Text(ThreadSafeAdapter):
            __unsafe_commands__ = "train"

            @command
            def train(self) -> None: ...


# --- The worker flag ---


def test_the_flag_round_trips_and_is_off_by_default() -> None:
    options = WorkerOptions("m:C", 3, 4)
    assert options.thread_safety_checks is ThreadSafetyChecks.OFF
    assert "--thread-safety-checks" not in command_line(options)
    for mode in ThreadSafetyChecks:
        argv = command_line(options._replace(thread_safety_checks=mode))
        assert parse_args(argv[3:]).thread_safety_checks is mode
    with pytest.raises(UsageError, match="one of off, warn, strict"):
        parse_args(["--adapter", "m:C", "--fds", "3,4", "--thread-safety-checks", "on"])


# --- A non-thread-safe adapter on several threads ---


def test_a_non_thread_safe_adapter_is_refused_with_how_to_fix_it() -> None:
    with Driver(BASIC, threads=2) as driver:
        assert driver.wait() == ExitCode.ADAPTER_IMPORT
        driver.recv_eof()
        message = " ".join(driver.stderr.split())
    assert f"adapter {BASIC!r} is not declared thread-safe" in message
    assert "on 2 threads (--threads 2)" in message
    assert (
        "subclass snakepit.adapter.ThreadSafeAdapter or set __thread_safe__ = True, "
        "after making its commands safe to run concurrently; or use "
        "worker_profile='process'"
    ) in message


# --- The checker, through real workers ---


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Driver]:
    """Start a Driver whose worker has ``--thread-safety-checks MODE``."""

    def start(
        mode: str = "warn", adapter: str = CHECKED, threads: int = 4, **kwargs: object
    ) -> Driver:
        def with_checks(options: WorkerOptions, **kw: str | None) -> list[str]:
            options = options._replace(thread_safety_checks=ThreadSafetyChecks(mode))
            return command_line(options, **kw)

        monkeypatch.setattr(test_runtime, "command_line", with_checks)
        return Driver(adapter, threads=threads, **kwargs)  # type: ignore[arg-type]

    return start


@pytest.fixture
def matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A test matrix naming two fake libraries, and their modules in a folder."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / f"{FAKE_UNSAFE}.py").write_text("VALUE = 1\n")
    (lib / f"{FAKE_CONDITIONAL}.py").write_text("VALUE = 2\n")
    path = tmp_path / "matrix.json"
    path.write_text(
        json.dumps(
            {
                "format": 1,
                "libraries": [
                    {
                        "name": "fake-unsafe",
                        "import_name": FAKE_UNSAFE,
                        "thread_safety": "not_thread_safe",
                        "notes": "shares a global cursor",
                        "workaround": "use the process profile",
                    },
                    {
                        "name": "fake-conditional",
                        "import_name": FAKE_CONDITIONAL,
                        "thread_safety": "conditional",
                        "notes": "one client per thread",
                    },
                ],
            }
        )
    )
    monkeypatch.setenv(MATRIX_ENV, str(path))
    return lib


def report_of(driver: Driver) -> dict[str, object]:
    reply = driver.call(REPORT)
    assert isinstance(reply, Reply), reply
    assert isinstance(reply.value, dict)
    return reply.value


def test_checks_are_off_by_default_and_cost_nothing() -> None:
    adapter = Gate()
    table = CommandTable(adapter)
    assert table.get("free").func == adapter.free  # the bound method, unwrapped
    with Driver("tests.workers.basic:ThreadedAdapter", threads=2) as driver:
        hello = driver.hello()
        assert REPORT not in hello.commands
        report = report_of(driver)
    assert report["mode"] == "off"
    assert report["enabled"] is False
    assert "thread safety checks are off" in str(report["message"])
    assert report["commands"] == {}
    assert report["pid"] == hello.pid
    assert report["threads"] == 2


def test_the_report_records_concurrency_per_command(
    checked: Callable[..., Driver], tmp_path: Path
) -> None:
    entered, gate = tmp_path / "entered", tmp_path / "gate"
    with checked("warn") as driver:
        driver.hello()
        ids = [driver.submit("meet") for _ in range(4)]  # a 4-party barrier
        replies = [driver.recv() for _ in ids]
        assert all(isinstance(reply, Reply) for reply in replies), replies
        thread_ids = sorted(
            reply.value for reply in replies if isinstance(reply, Reply)
        )  # type: ignore[type-var]
        driver.submit("exclusive", entered=str(entered), gate=str(gate))
        wait_until(entered.exists, "exclusive to start")
        assert driver.call("add", a=1, b=2).value == 3  # type: ignore[union-attr]
        gate.touch()
        assert isinstance(driver.recv(), Reply)
        stream = driver.submit("count", n=2)
        assert [driver.recv() for _ in range(3)] == [
            Chunk(stream, 0),
            Chunk(stream, 1),
            End(stream),
        ]
        report = report_of(driver)
    assert report["mode"] == "warn"
    assert report["enabled"] is True
    assert report["adapter"] == CHECKED
    assert report["thread_safe"] is True
    assert report["threads"] == 4
    commands = report["commands"]
    assert isinstance(commands, dict)
    meet = commands["meet"]
    assert (meet["calls"], meet["max_concurrent"], meet["threads"]) == (4, 4, 4)
    assert meet["thread_ids"] == thread_ids
    assert meet["running"] == 0
    assert commands["add"]["max_concurrent"] == 1
    assert commands["add"]["overlapped_with"] == ["exclusive"]
    assert commands["exclusive"]["overlapped_with"] == ["add"]
    assert commands["exclusive"]["serialized"] is True
    assert commands["unsafe_wait"]["unsafe"] is True
    assert commands["unsafe_wait"]["calls"] == 0
    assert commands["count"]["calls"] == 1
    assert report["concurrent_commands"] == ["meet"]
    assert report["unsafe_libraries"] == []
    assert report["violations"] == []
    assert REPORT not in commands


def test_a_serialized_command_counts_only_the_call_holding_its_lock(
    checked: Callable[..., Driver], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with checked("warn") as driver:
        driver.hello()
        first = driver.submit("exclusive", entered=str(tmp_path / "1"), gate=str(gate))
        wait_until((tmp_path / "1").exists, "the first call to start")
        second = driver.submit("exclusive", entered=str(tmp_path / "2"), gate=str(gate))
        assert report_of(driver)["commands"]["exclusive"]["running"] == 1  # type: ignore[index]
        assert not (tmp_path / "2").exists()
        gate.touch()
        assert {driver.recv().id, driver.recv().id} == {first, second}  # type: ignore[union-attr]
        stats = report_of(driver)["commands"]["exclusive"]  # type: ignore[index]
    assert (stats["calls"], stats["max_concurrent"]) == (2, 1)


def test_warn_mode_warns_about_an_unsafe_command_overlapping_itself(
    checked: Callable[..., Driver], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with checked("warn") as driver:
        driver.hello()
        first = driver.submit(
            "unsafe_wait", entered=str(tmp_path / "1"), gate=str(gate)
        )
        wait_until((tmp_path / "1").exists, "the first call to start")
        second = driver.submit(
            "unsafe_wait", entered=str(tmp_path / "2"), gate=str(gate)
        )
        wait_until((tmp_path / "2").exists, "the second call to start")
        gate.touch()
        replies = {driver.recv(), driver.recv()}
        assert replies == {Reply(first, "done"), Reply(second, "done")}
        wait_until(lambda: "ThreadSafetyWarning" in driver.stderr, "the warning")
        report = report_of(driver)
    assert "'unsafe_wait' is listed in __unsafe_commands__" in driver.stderr
    assert report["violations"] == [
        {
            "rule": "unsafe_command",
            "subject": "unsafe_wait",
            "count": 1,
            "message": "command 'unsafe_wait' is listed in __unsafe_commands__ but "
            "started while 1 other call(s) of it ran",
            "raised": False,
        }
    ]
    assert report["commands"]["unsafe_wait"]["max_concurrent"] == 2  # type: ignore[index]


def test_strict_mode_refuses_an_unsafe_command_overlapping_itself(
    checked: Callable[..., Driver], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with checked("strict") as driver:
        driver.hello()
        first = driver.submit(
            "unsafe_wait", entered=str(tmp_path / "1"), gate=str(gate)
        )
        wait_until((tmp_path / "1").exists, "the first call to start")
        refused = driver.call(
            "unsafe_wait", entered=str(tmp_path / "2"), gate=str(gate)
        )
        assert isinstance(refused, Error), refused
        assert refused.type == "ThreadSafetyError"
        assert "'unsafe_wait' is listed in __unsafe_commands__" in refused.message
        assert not (tmp_path / "2").exists()  # it never ran
        gate.touch()
        assert driver.recv() == Reply(first, "done")
        report = report_of(driver)
    stats = report["commands"]["unsafe_wait"]  # type: ignore[index]
    assert (stats["calls"], stats["max_concurrent"]) == (1, 1)
    assert report["violations"][0]["raised"] is True  # type: ignore[index]


def test_strict_mode_fails_the_call_that_imported_an_unsafe_library(
    checked: Callable[..., Driver], matrix: Path
) -> None:
    with checked("strict") as driver:
        driver.hello()
        error = driver.call("import_module", directory=str(matrix), name=FAKE_UNSAFE)
        assert isinstance(error, Error), error
        assert error.type == "ThreadSafetyError"
        assert (
            "fake-unsafe (module 'snakepit_fake_unsafe_lib', first seen imported "
            "after command 'import_module') is not thread-safe"
        ) in error.message
        # Once: the library is known now, and later calls run.
        again = driver.call("import_module", directory=str(matrix), name=FAKE_UNSAFE)
        assert again == Reply(again.id, FAKE_UNSAFE)  # type: ignore[union-attr]
        # A conditional library is only warned about.
        maybe = driver.call(
            "import_module", directory=str(matrix), name=FAKE_CONDITIONAL
        )
        assert isinstance(maybe, Reply), maybe
        wait_until(lambda: "fake-conditional" in driver.stderr, "the warning")
        report = report_of(driver)
    assert "ThreadSafetyWarning" in driver.stderr
    assert (
        "Notes: shares a global cursor. Workaround: use the process profile."
    ) in driver.stderr
    libraries = {lib["name"]: lib for lib in report["unsafe_libraries"]}  # type: ignore[attr-defined]
    assert libraries["fake-unsafe"] == {
        "name": "fake-unsafe",
        "module": FAKE_UNSAFE,
        "thread_safety": "not_thread_safe",
        "notes": "shares a global cursor",
        "workaround": "use the process profile",
        "first_seen": "import_module",
    }
    assert libraries["fake-conditional"]["thread_safety"] == "conditional"
    assert [v["subject"] for v in report["violations"]] == ["fake-unsafe"]  # type: ignore[attr-defined]
    assert report["matrix"]["checked"] is True  # type: ignore[index]


def test_strict_error_keeps_the_commands_own_error_as_context(
    checked: Callable[..., Driver], matrix: Path
) -> None:
    with checked("strict") as driver:
        driver.hello()
        error = driver.call("import_then_fail", directory=str(matrix), name=FAKE_UNSAFE)
    assert isinstance(error, Error), error
    assert error.type == "ThreadSafetyError"
    assert "ValueError: failed on purpose" in error.traceback


def test_warn_mode_reports_a_library_loaded_at_setup(
    checked: Callable[..., Driver], matrix: Path
) -> None:
    args = {"preload": [str(matrix), FAKE_UNSAFE]}
    with checked("warn", adapter_args=args) as driver:
        driver.hello()
        wait_until(lambda: "fake-unsafe" in driver.stderr, "the warning")
        assert driver.call("add", a=1, b=1).value == 2  # type: ignore[union-attr]
        report = report_of(driver)
    assert "first seen imported at adapter import or setup()" in driver.stderr
    libraries = report["unsafe_libraries"]
    assert isinstance(libraries, list)
    assert [lib["first_seen"] for lib in libraries] == [None]


def test_strict_mode_refuses_to_start_with_an_unsafe_library_loaded(
    checked: Callable[..., Driver], matrix: Path
) -> None:
    args = {"preload": [str(matrix), FAKE_UNSAFE]}
    with checked("strict", adapter_args=args) as driver:
        assert driver.wait() == ExitCode.ADAPTER_IMPORT
        driver.recv_eof()
    assert "thread safety checks (strict)" in driver.stderr
    assert "loaded fake-unsafe at import or setup()" in driver.stderr


def test_one_thread_records_calls_but_skips_the_library_rule(
    checked: Callable[..., Driver], matrix: Path
) -> None:
    with checked("strict", threads=1) as driver:
        driver.hello()
        reply = driver.call("import_module", directory=str(matrix), name=FAKE_UNSAFE)
        assert isinstance(reply, Reply), reply
        report = report_of(driver)
    assert report["unsafe_libraries"] == []
    assert report["matrix"]["checked"] is False  # type: ignore[index]
    assert report["commands"]["import_module"]["calls"] == 1  # type: ignore[index]


# --- The matrix reader ---


def _matrix_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(text)
    monkeypatch.setenv(MATRIX_ENV, str(path))


@pytest.mark.parametrize(
    "data",
    [
        [{"name": "x", "import_name": "xmod", "thread_safety": "not_thread_safe"}],
        {"libraries": {"x": {"import_name": "xmod", "thread_safety": "unsafe"}}},
        {"x": {"import_name": ["xmod"], "thread_safety": False}},
        {
            "entries": [
                {"name": "x", "import_name": "xmod", "thread_safety": "Not-Thread-Safe"}
            ]
        },
    ],
)
def test_the_matrix_reader_accepts_several_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: object
) -> None:
    _matrix_file(tmp_path, monkeypatch, json.dumps(data))
    library = load_matrix().by_import["xmod"]
    assert (library.name, library.thread_safety) == ("x", "not_thread_safe")


def test_the_matrix_reader_skips_junk_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = [
        1,
        None,
        {"name": 5},
        {"name": "y", "thread_safety": "maybe"},
        {"name": "z"},
    ]
    _matrix_file(tmp_path, monkeypatch, json.dumps({"libraries": junk}))
    assert not [k for k in load_matrix().by_import if k in ("y", "z")]
    _matrix_file(tmp_path, monkeypatch, "{not json")
    assert any("invalid JSON" in p for p in load_matrix().problems)
    monkeypatch.setenv(MATRIX_ENV, str(tmp_path / "missing.json"))
    assert any("cannot read" in p for p in load_matrix().problems)


def test_an_extra_matrix_can_clear_a_packaged_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MATRIX_ENV, raising=False)
    packaged = load_matrix()
    if "pandas" not in packaged.by_import:
        pytest.skip("the packaged matrix does not list pandas as unsafe")
    assert packaged.by_import["pandas"].thread_safety == "not_thread_safe"
    entry = {"name": "pandas", "import_name": "pandas", "thread_safety": "thread_safe"}
    _matrix_file(tmp_path, monkeypatch, json.dumps([entry]))
    assert "pandas" not in load_matrix().by_import


def test_checks_wrap_commands_only_when_on() -> None:
    """The in-process view of "off costs nothing": no wrapper, no bookkeeping."""

    class Plain(Adapter):
        @command
        def go(self) -> int:
            return 1

    adapter = Plain()
    assert CommandTable(adapter).get("go").func == adapter.go
    assert CommandTable(adapter).get(REPORT).func()["mode"] == "off"  # type: ignore[index]


def test_the_error_and_warning_are_worker_side_types() -> None:
    assert issubclass(ThreadSafetyError, RuntimeError)
