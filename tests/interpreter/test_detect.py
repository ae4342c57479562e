"""snakepit.interpreter detection: real interpreters, stand-ins, errors, the cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from snakepit import interpreter
from snakepit.exceptions import (
    InterpreterNotFound,
    InterpreterProbeFailed,
    SnakepitError,
)
from snakepit.interpreter import (
    InterpreterInfo,
    Recommendation,
    check_installed,
    clear_cache,
    detect,
    gil_enabled,
    is_free_threaded,
    probe,
    probe_async,
    recommend_profile,
    supports_free_threading,
    validate,
)
from snakepit.pool._spawn import _source_checkout_path
from snakepit.profiles import Profile
from tests.interpreter import (
    FREE_THREADED_PYTHON,
    FREE_THREADED_VENV,
    counting_wrapper,
    line_count,
    patched_python,
    probe_answer,
    pyenv_pythons,
    shell_interpreter,
)

ROOT = Path(__file__).resolve().parents[2]
#: Whether snakepit runs from a source checkout (workers then get it on PYTHONPATH).
FROM_CHECKOUT = _source_checkout_path() is not None


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


# --- The running interpreter ---


def test_the_running_interpreter_answers_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("the running interpreter must not be probed in a child")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    info = probe()
    assert info == probe(sys.executable)  # the same interpreter, by path
    assert info.executable == sys.executable
    assert info.version == tuple(sys.version_info[:3])
    assert info.version_string == "{}.{}.{}".format(*sys.version_info[:3])
    assert info.implementation == sys.implementation.name
    assert info.free_threaded is bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    assert info.gil_enabled is (True if is_gil_enabled is None else is_gil_enabled())
    assert info.has_msgpack and info.has_snakepit
    assert info.modules["msgpack"]  # msgpack is installed with a version


def test_the_shortcuts_agree_with_the_probe() -> None:
    info = probe()
    assert detect() == info.version == tuple(sys.version_info[:3])
    assert is_free_threaded() is info.free_threaded
    assert gil_enabled() is info.gil_enabled
    assert isinstance(hash(info), int)  # a frozen value
    with pytest.raises(AttributeError):
        info.version = (1, 2, 3)  # type: ignore[misc]


@pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="the suite runs on a free-threaded build",
)
def test_the_running_gil_build_gets_the_process_profile() -> None:
    advice = recommend_profile()
    assert isinstance(advice, Recommendation)
    assert advice.profile is Profile.PROCESS
    assert "GIL" in advice.reason
    assert f"Python {probe().version_string}" in advice.reason
    assert validate() == []  # healthy: msgpack and snakepit are here


def test_the_running_interpreter_in_a_child_answers_the_same() -> None:
    """The probe script gives the in-process answer in a subprocess too."""
    here = probe()
    child = probe(sys.executable, env={"SNAKEPIT_TEST_MARK": "child"})
    assert child.version == here.version
    assert child.free_threaded is here.free_threaded
    assert child.has_msgpack and child.has_snakepit
    assert child.modules == here.modules


# --- Other real interpreters ---

PYENV_312 = pyenv_pythons("3.12.*")
PYENV_313 = pyenv_pythons("3.13.*")
OTHERS = [pytest.param(p, id=Path(p).parts[-3]) for p in PYENV_312 + PYENV_313]


@pytest.mark.skipif(not OTHERS, reason="no pyenv 3.12 or 3.13 on this machine")
@pytest.mark.parametrize("python", OTHERS or [pytest.param("", id="none")])
def test_another_real_interpreter(python: str) -> None:
    expected = tuple(int(p) for p in Path(python).parts[-3].split("."))
    info = probe(python)
    assert info.executable == python
    assert info.version == expected == detect(python)
    assert info.implementation == "cpython"
    # pyenv builds are standard builds; they have no msgpack installed, but get
    # this checkout on PYTHONPATH as a worker would
    assert info.free_threaded is False
    assert info.gil_enabled is True
    assert info.has_msgpack is False
    if FROM_CHECKOUT:
        assert info.has_snakepit is True
    assert supports_free_threading(info.version) is (expected >= (3, 13))
    problems = validate(python)
    assert any("msgpack is not installed" in p and python in p for p in problems)
    if expected >= (3, 13):
        assert any("standard build" in p for p in problems)
    advice = recommend_profile(python)
    assert advice.profile is Profile.PROCESS
    assert "GIL" in advice.reason


OLD = pyenv_pythons("2.7.*") + pyenv_pythons("3.[6-9].*")


@pytest.mark.skipif(not OLD, reason="no pyenv Python older than 3.10 here")
def test_an_interpreter_too_old_for_a_worker_is_reported() -> None:
    python = OLD[0]
    info = probe(python)
    assert info.version[:2] < (3, 10)
    assert any("too old" in p and "3.10" in p for p in validate(python))


FREE_THREADED = [
    pytest.param(
        path,
        id=path.parts[-3],
        marks=pytest.mark.skipif(
            not path.exists(), reason=f"no free-threaded CPython at {path} (yet)"
        ),
    )
    for path in (FREE_THREADED_PYTHON, FREE_THREADED_VENV)
]


@pytest.mark.parametrize("path", FREE_THREADED)
def test_a_real_free_threaded_build(path: Path) -> None:
    python = str(path)
    info = probe(python)
    assert info.version >= (3, 13, 0)
    assert is_free_threaded(python) is True
    advice = recommend_profile(python)
    if info.has_msgpack and info.gil_enabled:
        # an extension module without free-threading support (msgpack's, loaded
        # as in a worker) turned the GIL back on: then threads do not pay
        assert advice.profile is Profile.PROCESS
        assert "GIL is on" in advice.reason
    else:
        assert gil_enabled(python) is False
        assert advice.profile is Profile.THREAD
        assert "free-threaded" in advice.reason
        assert not any("GIL" in problem for problem in validate(python))
    if info.has_msgpack:  # a venv made for workers
        assert "msgpack" in check_installed(python)["compatible"]


# --- Stand-ins ---


def test_a_fake_free_threaded_build_runs_the_real_probe(tmp_path: Path) -> None:
    python = str(patched_python(tmp_path))
    info = probe(python)
    assert info.version == (3, 13, 1)
    assert info.free_threaded is True
    assert info.gil_enabled is False
    assert info.has_msgpack and info.has_snakepit  # it is this venv underneath
    assert recommend_profile(python).profile is Profile.THREAD
    assert validate(python) == []


def test_a_free_threaded_build_with_the_gil_on(tmp_path: Path) -> None:
    python = str(patched_python(tmp_path, gil_enabled=True))
    assert is_free_threaded(python) is True
    assert gil_enabled(python) is True
    advice = recommend_profile(python)
    assert advice.profile is Profile.PROCESS
    assert "GIL is on at run time" in advice.reason
    assert any("GIL is on" in p for p in validate(python))


def test_a_shell_stand_in_answers_with_its_json(tmp_path: Path) -> None:
    python, _ = shell_interpreter(
        tmp_path,
        probe_answer(implementation="pypy", modules={"numpy": "2.1.0"}),
    )
    info = probe(python)
    assert info == InterpreterInfo(
        executable=str(python),
        version=(3, 13, 1),
        implementation="pypy",
        free_threaded=True,
        gil_enabled=False,
        has_msgpack=False,
        has_snakepit=False,
        modules={"numpy": "2.1.0"},
    )
    problems = validate(python)
    assert any("msgpack is not installed" in p for p in problems)
    assert any("snakepit cannot be imported" in p for p in problems)
    assert any("pypy, not CPython" in p for p in problems)


def test_the_probe_gets_the_worker_environment(tmp_path: Path) -> None:
    python, log = shell_interpreter(tmp_path, probe_answer())
    probe(python, env={"SNAKEPIT_TEST_MARK": "from-adapter-env"})
    [line] = log.read_text().splitlines()
    assert "mark=from-adapter-env" in line
    if FROM_CHECKOUT:
        assert str(ROOT) in line  # the checkout is on PYTHONPATH, as for workers


# --- The cache ---


def test_probing_twice_runs_the_interpreter_once(tmp_path: Path) -> None:
    python, log = counting_wrapper(tmp_path)
    first = probe(python)
    second = probe(str(python))
    assert line_count(log) == 1
    assert first is second
    assert first.version == tuple(sys.version_info[:3])
    assert detect(python) == first.version  # the shortcuts share the cache
    assert line_count(log) == 1


def test_a_changed_executable_is_probed_again(tmp_path: Path) -> None:
    python, log = shell_interpreter(tmp_path, probe_answer())
    probe(python)
    stat = python.stat()
    os.utime(python, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    probe(python)
    assert line_count(log) == 2
    probe(python)
    assert line_count(log) == 2


def test_other_environments_and_clear_cache_probe_again(tmp_path: Path) -> None:
    python, log = shell_interpreter(tmp_path, probe_answer())
    probe(python)
    probe(python, env={"SNAKEPIT_TEST_MARK": "1"})
    probe(python, env={"SNAKEPIT_TEST_MARK": "1"})
    assert line_count(log) == 2
    clear_cache()
    probe(python)
    assert line_count(log) == 3


# --- Errors ---


def test_a_missing_executable_is_interpreter_not_found() -> None:
    with pytest.raises(InterpreterNotFound, match=re.escape("/nonexistent/python")):
        probe("/nonexistent/python")
    for question in (
        detect,
        is_free_threaded,
        gil_enabled,
        recommend_profile,
        validate,
    ):
        with pytest.raises(InterpreterNotFound, match="does not exist"):
            question("/nonexistent/python")
    assert issubclass(InterpreterNotFound, SnakepitError)
    assert issubclass(InterpreterNotFound, FileNotFoundError)


def test_a_name_not_on_path_is_interpreter_not_found() -> None:
    with pytest.raises(InterpreterNotFound, match=r"no-such-python-3\.99.*not on PATH"):
        probe("no-such-python-3.99")


def test_a_bare_name_is_looked_up_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    info = probe(Path(sys.executable).name)
    assert info.executable == sys.executable


def test_a_directory_or_a_plain_file_is_not_an_interpreter(tmp_path: Path) -> None:
    with pytest.raises(InterpreterNotFound, match="not an executable"):
        probe(tmp_path)
    plain = tmp_path / "python"
    plain.write_text("")
    with pytest.raises(InterpreterNotFound, match=re.escape(str(plain))):
        probe(plain)


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("#!/bin/sh\nexit 3\n", "exit status 3"),
        ("#!/bin/sh\necho hello\n", "not JSON"),
        ("#!/bin/sh\necho '{\"probe\": 1}'\n", "unexpected data"),
        ("#!/bin/sh\necho '[1, 2]'\n", "answered the probe"),
        ("#!/bin/sh\nexec sleep 30\n", "within 0.5 s"),
    ],
    ids=["fails", "not-json", "wrong-shape", "not-an-object", "too-slow"],
)
def test_an_executable_that_does_not_answer(
    tmp_path: Path, script: str, message: str
) -> None:
    python = tmp_path / "not-python"
    python.write_text(script)
    python.chmod(0o755)
    with pytest.raises(InterpreterProbeFailed, match=message) as caught:
        probe(python, timeout=0.5)
    assert str(python) in str(caught.value)
    assert isinstance(caught.value, InterpreterNotFound)


# --- Pure rules ---


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ((3, 13, 0), True),
        ((3, 13), True),
        ((3, 14, 2), True),
        ((4, 0, 0), True),
        ((3, 12, 9), False),
        ((3, 10, 0), False),
        ((2, 7, 18), False),
    ],
)
def test_supports_free_threading_is_the_version_rule(
    version: tuple[int, ...], expected: bool
) -> None:
    assert supports_free_threading(version) is expected


def test_the_probe_script_is_public_and_self_contained() -> None:
    assert "snakepit_probe" in interpreter.PROBE
    assert "import snakepit" not in interpreter.PROBE
    assert interpreter.MIN_WORKER_VERSION == (3, 10)


# --- Async ---


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_probe_async_does_not_block_the_loop(tmp_path: Path) -> None:
    python = str(patched_python(tmp_path))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            info = await probe_async(python)
            tg.cancel_scope.cancel()
    assert info.free_threaded is True
    assert ticks > 1  # the loop kept running while the child answered
    with pytest.raises(InterpreterNotFound):
        await probe_async("/nonexistent/python")
