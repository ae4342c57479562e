"""snakepit's pytest plugin: fixtures for testing your own adapters and trees.

Installed with snakepit, the plugin is registered as the ``pytest11`` entry point
``snakepit``, so pytest loads it in every run (``-p no:snakepit`` turns it off).
From a source checkout that is not installed, load it with ``-p snakepit.testing``.
Because it is loaded everywhere, it does nothing unless a test asks: no fixture is
autouse, and importing it imports only pytest and the standard library (snakepit's
pools, telemetry and psutil are imported when a fixture is first used).

Fixtures (each documented below; see ``docs/testing.md`` for a worked example):

- ``snakepit_pool``: a factory, ``async with snakepit_pool("pkg.mod:Class",
  size=1, **pool_config) as pool:``, starting a real pool and stopping it;
- ``snakepit_app``: the same for a whole application configuration;
- ``snakepit_events``: the telemetry events emitted during the test;
- ``snakepit_fake_clock``: a manual clock for ``Supervisor(clock=...)``;
- ``snakepit_no_leaks``: fails the test if it leaves a child process behind, and
  kills the leftovers. The ini option ``snakepit_leak_check = true`` applies it to
  every test (default: off).

Worker-side code must never import this module: it imports pytest.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math
import os
import site
import sys
import sysconfig
import typing
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import pytest

if typing.TYPE_CHECKING:
    import psutil

    from snakepit._app import ConfigSource, Snakepit
    from snakepit.adapter import Adapter
    from snakepit.pool import Pool
    from snakepit.telemetry import CapturedEvents

# The fixtures and hooks are used by name through pytest, not imported.
__all__ = (
    "FakeClock",
    "PoolFactory",
    "AppFactory",
    # pytest calls these (the plugin's hooks); they are public for it, not for you
    "pytest_addoption",
    "pytest_configure",
    "pytest_collection_modifyitems",
)

_LEAK_CHECK_INI = "snakepit_leak_check"
_LEAK_TIMEOUT_INI = "snakepit_leak_timeout"
_NO_LEAKS = "snakepit_no_leaks"


# --- Hooks ---


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the plugin's ini options (both leave every test alone by default)."""
    parser.addini(
        _LEAK_CHECK_INI,
        type="bool",
        default=False,
        help="snakepit: apply the snakepit_no_leaks fixture to every test (fail a "
        "test that leaves a child process behind). Default: false.",
    )
    parser.addini(
        _LEAK_TIMEOUT_INI,
        type="string",
        default="3.0",
        help="snakepit: seconds a child process that is still exiting after a test "
        "gets before it counts as leaked (and is killed). Default: 3.0.",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a malformed ``snakepit_leak_timeout`` at startup, not in a test."""
    _leak_timeout(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    """With ``snakepit_leak_check = true``, make every test use ``snakepit_no_leaks``.

    The fixture goes first among the test's function-scoped fixtures, after the
    broader-scoped ones: it then sees the processes of session or module fixtures
    as already there (they are not the test's), and it is torn down after every
    function-scoped fixture, so it judges what they leave too.
    """
    if not config.getini(_LEAK_CHECK_INI):
        return
    for item in items:
        names = getattr(item, "fixturenames", None)
        if not isinstance(names, list) or _NO_LEAKS in names:
            continue
        names.insert(_first_function_scoped(item, names), _NO_LEAKS)


def _first_function_scoped(item: Any, names: list[str]) -> int:
    """The index of the first function-scoped fixture in *names* (pytest sorts a
    test's fixtures from the broadest scope down), or ``len(names)``."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = getattr(info, "name2fixturedefs", None) or {}
    for index, name in enumerate(names):
        fixturedefs = definitions.get(name)
        if not fixturedefs or fixturedefs[-1].scope == "function":
            return index
    return len(names)


# --- snakepit_pool and snakepit_app ---


class PoolFactory(Protocol):
    """The type of the ``snakepit_pool`` fixture (for annotations)."""

    def __call__(
        self,
        adapter: str | type[Adapter] | None = None,
        /,
        *,
        size: int = 1,
        **pool_config: Any,
    ) -> AbstractAsyncContextManager[Pool]:
        """Return an ``async with`` block running a pool of *adapter*."""


class AppFactory(Protocol):
    """The type of the ``snakepit_app`` fixture (for annotations)."""

    def __call__(
        self, config: ConfigSource = None, /
    ) -> AbstractAsyncContextManager[Snakepit]:
        """Return an ``async with`` block running the application *config*."""


def _adapter_path(adapter: str | type[Adapter] | None) -> str:
    """``"pkg.mod:Class"`` for *adapter*: a string as it is, a class by its module
    and name (the worker imports it by name), ``None`` the showcase adapter."""
    from snakepit.adapter import Adapter
    from snakepit.config import DEFAULT_ADAPTER

    if adapter is None:
        return DEFAULT_ADAPTER
    if isinstance(adapter, str):
        return adapter
    if not (isinstance(adapter, type) and issubclass(adapter, Adapter)):
        raise TypeError(
            "snakepit_pool: the adapter is 'package.module:Class' or an Adapter "
            f"subclass, not {adapter!r}"
        )
    if adapter.__module__ == "__main__" or "<locals>" in adapter.__qualname__:
        raise TypeError(
            f"snakepit_pool: {adapter.__qualname__} cannot be imported by name in a "
            "worker process; define it at the top level of a module the worker can "
            "import, and pass that class or 'package.module:Class'"
        )
    return f"{adapter.__module__}:{adapter.__qualname__}"


def _interpreter_paths() -> set[str]:
    """The import-path folders every process of this interpreter has anyway: the
    standard library and site-packages."""
    paths = set(sysconfig.get_paths().values())
    paths.update(site.getsitepackages())
    user_site = site.getusersitepackages()
    if user_site:
        paths.add(user_site)
    return {os.path.realpath(p) for p in paths}


def _worker_pythonpath() -> str:
    """``PYTHONPATH`` giving a worker the test process's own import path.

    pytest puts test folders and its ``pythonpath`` ini option on ``sys.path``; a
    worker is a new interpreter and would lack them, so it could not import an
    adapter the test itself imports. Like ``multiprocessing``'s spawn, pass them
    on (not the interpreter's own folders, which another ``python_executable``
    must not receive).
    """
    own = _interpreter_paths()
    entries: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.curdir)
        real = os.path.realpath(path)
        if (
            real in own
            or os.path.basename(real) == "lib-dynload"
            or not os.path.isdir(real)
        ):
            continue
        entries.append(path)
    entries += filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))
    return os.pathsep.join(dict.fromkeys(entries))


@pytest.fixture(scope="session")
def _snakepit_data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One temporary folder for the run records of every pool of the session."""
    return str(tmp_path_factory.mktemp("snakepit-data"))


@pytest.fixture
def _snakepit_worker_env(
    monkeypatch: pytest.MonkeyPatch, _snakepit_data_dir: str
) -> None:
    """The environment the pools of the test start their workers with.

    Run records (orphan cleanup) go to a temporary folder unless
    ``SNAKEPIT_DATA_DIR`` is set already, so tests never write to the user's
    state folder; ``PYTHONPATH`` carries the test process's import path, so
    workers import whatever the test can. Both are undone after the test.
    """
    if "SNAKEPIT_DATA_DIR" not in os.environ:
        monkeypatch.setenv("SNAKEPIT_DATA_DIR", _snakepit_data_dir)
    monkeypatch.setenv("PYTHONPATH", _worker_pythonpath())


@pytest.fixture
def snakepit_pool(_snakepit_worker_env: None) -> PoolFactory:
    """Start real pools of worker processes in a test, and stop them.

    Returns a factory; ``async with snakepit_pool(adapter, size=1, **pool_config)
    as pool:`` starts a :class:`~snakepit.pool.Pool` (as
    :func:`~snakepit.pool.open_pool` does: the block begins once every worker is
    ready) and stops it when the block ends, every worker exited.

    - *adapter*: ``"package.module:Class"``, or the adapter class itself (defined
      at the top level of a module the worker can import); omitted: the showcase
      adapter.
    - *size*: the number of workers (default 1: tests start fast).
    - *pool_config*: any other pool key (``adapter_args``, ``queue_timeout``,
      ``start_method``, ...; see ``docs/configuration.md``).

    Workers get the test process's import path, and run records go to a
    temporary folder (unless ``SNAKEPIT_DATA_DIR`` is set). Bound the block with
    :func:`anyio.fail_after`.
    """

    def start(
        adapter: str | type[Adapter] | None = None,
        /,
        *,
        size: int = 1,
        **pool_config: Any,
    ) -> AbstractAsyncContextManager[Pool]:
        from snakepit.config import PoolConfig
        from snakepit.pool import open_pool

        config = PoolConfig(
            adapter_module=_adapter_path(adapter), pool_size=size, **pool_config
        )
        return open_pool(config)

    return start


@pytest.fixture
def snakepit_app(_snakepit_worker_env: None) -> AppFactory:
    """Start a whole snakepit application (every pool of a config) in a test.

    Returns a factory; ``async with snakepit_app(config) as sp:`` runs
    :func:`~snakepit.open_snakepit` on *config* (a ``Config``, a mapping in either
    format, a TOML path, or ``None`` for the working directory's
    ``snakepit.toml``) and stops every pool in order when the block ends. The
    workers' environment is the one ``snakepit_pool`` gives them.
    """

    def start(config: ConfigSource = None, /) -> AbstractAsyncContextManager[Snakepit]:
        from snakepit._app import open_snakepit

        return open_snakepit(config)

    return start


# --- snakepit_events ---


@pytest.fixture
def snakepit_events() -> Iterator[CapturedEvents]:
    """Every telemetry event emitted while the test runs, in emission order.

    A :class:`~snakepit.telemetry.CapturedEvents` (from
    :func:`~snakepit.telemetry.capture_events`): ``names()``, ``named(event)``,
    and ``await snakepit_events.wait_for(event, count=1)``, which waits (without
    polling) until the event has been emitted; bound it with
    :func:`anyio.fail_after`. Your own events are captured too, so the events are
    not checked against snakepit's catalogue.
    """
    from snakepit.telemetry import capture_events

    with capture_events(check_catalogue=False) as events:
        yield events


# --- snakepit_fake_clock ---


@typing.final
class FakeClock:
    """A monotonic clock that moves only when told to.

    ``clock()`` returns the current time in seconds; :meth:`advance` moves it
    forward. Pass it as ``Supervisor(clock=clock)`` (or to a
    ``DynamicSupervisor``): the restart-intensity window then reads it, so a test
    decides how much time passes between crashes, without waiting.

    .. versionadded:: 0.1
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        """Return the current time, in seconds."""
        return self._now

    @property
    def now(self) -> float:
        """The current time, in seconds."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock *seconds* forward and return the new time.

        Raises:
            ValueError: *seconds* is negative or not finite (a monotonic clock
                never goes back).
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(
                f"a monotonic clock only moves forward: advance(seconds >= 0), "
                f"got {seconds!r}"
            )
        self._now += seconds
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


@pytest.fixture
def snakepit_fake_clock() -> FakeClock:
    """A fresh :class:`FakeClock` at 0.0 seconds, for restart-intensity tests.

    ``Tree(clock=snakepit_fake_clock)``, then ``snakepit_fake_clock.advance(11)``
    between two crashes makes them 11 seconds apart for the supervisor's
    ``intensity``/``period`` window, at once.
    """
    return FakeClock()


# --- snakepit_no_leaks ---


def _identity(process: psutil.Process) -> tuple[int, float] | None:
    """(pid, start time): a process, even once its pid is reused; ``None`` if
    it is gone."""
    import psutil

    try:
        return process.pid, process.create_time()
    except psutil.Error:
        return None


def _describe(process: psutil.Process) -> str:
    import psutil

    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        command = "?"
    if len(command) > 120:
        command = command[:117] + "..."
    return f"pid {process.pid} ({command})"


def _leak_timeout(config: pytest.Config) -> float:
    raw = config.getini(_LEAK_TIMEOUT_INI)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise pytest.UsageError(
            f"{_LEAK_TIMEOUT_INI} must be a number of seconds >= 0, not {raw!r}"
        )
    return value


def _end_leftovers(
    me: psutil.Process, before: set[tuple[int, float] | None], timeout: float
) -> list[str]:
    """Wait up to *timeout* for the children of *me* not in *before* to exit;
    kill those still running and describe them."""
    import psutil

    new = [p for p in me.children(recursive=True) if _identity(p) not in before]
    if not new:
        return []
    _, alive = psutil.wait_procs(new, timeout=timeout)
    leaked = []
    for process in alive:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue  # it has exited; its parent has not collected it yet
        except psutil.Error:
            continue
        leaked.append(process)
    described = [_describe(p) for p in leaked]
    for process in leaked:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(leaked, timeout=max(timeout, 1.0))
    return described


@pytest.fixture
def snakepit_no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves a child process behind (a worker, a template,
    a reaper, a subprocess of its own), and kill what it left.

    It notes the process's children when it is set up; after the test (and every
    fixture set up after it) has been torn down, a new child still running gets
    ``snakepit_leak_timeout`` seconds (ini option, default 3) to finish exiting.
    Whatever still runs then is killed, so the next test starts clean, and the
    test is reported as an error in its teardown, listing each leftover.

    Request it first, so it is torn down after your other fixtures; or set the
    ini option ``snakepit_leak_check = true`` to apply it to every test.
    """
    import psutil

    timeout = _leak_timeout(request.config)
    me = psutil.Process(os.getpid())
    before = {_identity(p) for p in me.children(recursive=True)}
    yield
    leaked = _end_leftovers(me, before, timeout)
    if leaked:
        pytest.fail(
            f"the test left {len(leaked)} child process(es) behind (now killed): "
            + ", ".join(leaked)
            + ". Stop what it starts before it ends: leave every pool's `async "
            "with` block, wait for subprocesses.",
            pytrace=False,
        )
