"""``snakepit new-adapter NAME``: write a documented adapter skeleton and its tests.

:func:`write_adapter` writes ``NAME.py`` (an :class:`~snakepit.adapter.Adapter`
subclass with ``setup``, a plain command, a streaming command and ``teardown``,
each docstring saying what it is for) and ``test_NAME.py`` (tests in real worker
processes with the fixtures of :mod:`snakepit.testing`). The tests pass as
generated, so a new adapter starts from green and every edit is checked.
:func:`run_new_adapter` is the command-line glue.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import keyword
import os
import string
import sys
from pathlib import Path

__all__ = ("write_adapter", "run_new_adapter", "adapter_class_name")

#: Exit status of a refused request (bad name, files in the way), as argparse's.
USAGE_ERROR = 2

_ADAPTER_TEMPLATE = string.Template('''\
"""The ``$name`` adapter: what snakepit's workers run.

Written by ``snakepit new-adapter $name``; edit it freely,
and keep its tests passing: ``test_$name.py``.

Each worker process of a pool imports this module, builds one adapter object
(with the pool's ``adapter_args`` as keyword arguments), calls ``setup()``
once, serves calls until the pool stops it, then calls ``teardown()``.

Use it in a pool (the worker imports this module by name, so its folder must be
on the import path: the working directory, an installed package, or
``PYTHONPATH``)::

    from snakepit.pool import open_pool

    ADAPTER = "$name:$cls"
    async with open_pool(adapter=ADAPTER, size=2) as pool:
        print(await pool.execute("greet", {"who": "Ada"}))

or in a configuration: ``{"pools": [{"name": "default", "adapter_module":
ADAPTER}]}``.
"""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.adapter import Adapter, command


class $cls(Adapter):
    """What the workers of a ``$name`` pool serve.

    Arguments and results travel as msgpack: use None, bool, int, float, str,
    bytes, lists, and dicts with str keys. A command that raises sends its error
    back to the caller (``snakepit.exceptions.RemoteError``, with the remote
    type and traceback); the worker keeps serving.
    """

    def setup(self) -> None:
        """Prepare this worker; called once per worker process, before any call.

        Load models, open connections and read files here, not at import time
        or in ``__init__``: a failure here is reported as a worker that cannot
        start (``PoolUnavailable``, with the worker's stderr). ``self.args``
        holds the pool's ``adapter_args``.
        """
        self.greeting = str(self.args.get("greeting", "Hello"))
        self.calls = 0

    @command
    def greet(self, who: str) -> str:
        """Return a greeting for *who* (a plain command: one call, one result).

        Callers run ``await pool.execute("greet", {"who": "Ada"})``; the
        arguments arrive as keyword arguments. State kept on ``self`` (here
        ``calls``) lives in this worker process only: each worker has its own.
        """
        self.calls += 1
        return f"{self.greeting}, {who}!"

    @command
    def count_up(self, n: int) -> Iterator[dict[str, int]]:
        """Yield *n* progress chunks (a streaming command: a generator).

        Each item is sent as soon as it is yielded; callers read them with
        ``async for chunk in pool.execute_stream("count_up", {"n": 3})``. If a
        caller stops early, the generator is closed between two items.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        for step in range(1, n + 1):
            yield {"step": step, "of": n}

    def teardown(self) -> None:
        """Release what ``setup`` acquired; called once when the pool stops this
        worker in order (not when it is killed or crashes)."""
        self.calls = 0
''')

_TEST_TEMPLATE = string.Template('''\
"""Tests of the ``$name`` adapter, in worker processes.

Written by ``snakepit new-adapter $name``. They use the
fixtures of snakepit's pytest plugin (``snakepit.testing``: pytest loads it
when snakepit is installed; from a source checkout, add ``-p
snakepit.testing``) and anyio's pytest plugin (installed with anyio) for the
async tests. Run them with::

    python -m pytest test_$name.py

See docs/testing.md in snakepit for every fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from snakepit.exceptions import InvalidArguments, RemoteError

if TYPE_CHECKING:
    from snakepit.telemetry import CapturedEvents
    from snakepit.testing import PoolFactory

#: How a pool names the adapter, "module:Class": the worker imports it by name.
ADAPTER = "$name:$cls"
STARTED = ("snakepit", "worker", "started")

#: Every test here is async, run by anyio's pytest plugin (on asyncio).
pytestmark = pytest.mark.anyio


async def test_greet_uses_the_adapter_args(snakepit_pool: PoolFactory) -> None:
    """A plain command's result comes back; ``adapter_args`` reach ``setup()``."""
    with anyio.fail_after(30):  # a hung worker fails the test, never hangs it
        async with snakepit_pool(ADAPTER, adapter_args={"greeting": "Hi"}) as pool:
            assert await pool.execute("greet", {"who": "Ada"}) == "Hi, Ada!"
            # A call with the wrong arguments fails alone; the worker serves on.
            with pytest.raises(InvalidArguments):
                await pool.execute("greet", {"whom": "Ada"})
            assert await pool.execute("greet", {"who": "Bob"}) == "Hi, Bob!"


async def test_count_up_streams_its_chunks(snakepit_pool: PoolFactory) -> None:
    """A streaming command's chunks arrive in order; its error comes back."""
    with anyio.fail_after(30):
        async with snakepit_pool(ADAPTER) as pool:
            stream = pool.execute_stream("count_up", {"n": 3})
            chunks = [chunk async for chunk in stream]
            assert chunks == [
                {"step": 1, "of": 3},
                {"step": 2, "of": 3},
                {"step": 3, "of": 3},
            ]
            with pytest.raises(RemoteError) as caught:
                async for _ in pool.execute_stream("count_up", {"n": -1}):
                    pass
            assert caught.value.remote_type == "ValueError"


async def test_workers_start_and_leave_nothing_behind(
    snakepit_no_leaks: None,
    snakepit_pool: PoolFactory,
    snakepit_events: CapturedEvents,
) -> None:
    """Every worker reports ready; once the pool is stopped, no process is
    left (``snakepit_no_leaks`` checks after the test)."""
    with anyio.fail_after(30):
        async with snakepit_pool(ADAPTER, size=2) as pool:
            started = await snakepit_events.wait_for(STARTED, count=2)
            assert {e.metadata["worker_id"] for e in started} == set(
                pool.list_workers()
            )
''')


def adapter_class_name(name: str) -> str:
    """The adapter class ``snakepit new-adapter`` writes for module *name*:
    ``text_stats`` gives ``TextStatsAdapter``, ``my_adapter`` ``MyAdapter``."""
    base = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
    if not base.endswith("Adapter"):
        base += "Adapter"
    # "adapter" would shadow the Adapter base class the skeleton imports.
    return "MyAdapter" if base == "Adapter" else base


_HINT = "pick another NAME (a Python identifier such as text_stats)"


def _check_name(name: str) -> None:
    """Raise :class:`ValueError`, saying why and what to do, unless *name* can be
    the module name of a new adapter."""
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a Python identifier; {_HINT}")
    if keyword.iskeyword(name):
        raise ValueError(f"{name!r} is a Python keyword; {_HINT}")
    if name == "snakepit" or name in sys.stdlib_module_names:
        raise ValueError(
            f"{name!r} would shadow the module {name!r} of "
            f"{'snakepit' if name == 'snakepit' else 'the standard library'}; {_HINT}"
        )
    if name == "conftest" or name.startswith("test_") or name.endswith("_test"):
        raise ValueError(
            f"{name!r}.py would be collected by pytest as a test file; {_HINT}"
        )


def _check_not_importable(name: str) -> None:
    """Raise :class:`ValueError` if a module *name* is importable already: the
    new one would shadow it, or workers would import the old one instead."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        where = spec.origin or ", ".join(spec.submodule_search_locations or ())
        raise ValueError(
            f"a module named {name!r} is importable already ({where}): workers "
            f"could import it instead of the new adapter; {_HINT}"
        )


def write_adapter(name: str, directory: str | os.PathLike[str] = ".") -> list[Path]:
    """Write the adapter skeleton ``NAME.py`` and its tests ``test_NAME.py``.

    Args:
        name: the adapter's module name; the class is
            :func:`adapter_class_name` of it.
        directory: where to write them; created if missing.

    Returns:
        The paths written: the adapter, then its tests.

    Raises:
        ValueError: *name* cannot be a new module's name (not an identifier, a
            keyword, a standard-library or importable module, a test-file name);
            or *directory* is not a folder.
        FileExistsError: one of the files exists already; nothing was written.
    """
    _check_name(name)
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{str(folder)!r} exists and is not a directory")
    cls = adapter_class_name(name)
    files = {
        folder / f"{name}.py": _ADAPTER_TEMPLATE.substitute(name=name, cls=cls),
        folder / f"test_{name}.py": _TEST_TEMPLATE.substitute(name=name, cls=cls),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise FileExistsError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}"
            "; nothing was written. Remove or rename "
            f"{'it' if len(existing) == 1 else 'them'}, choose another NAME, or "
            "write elsewhere with --dir DIR"
        )
    _check_not_importable(name)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for path, text in files.items():
            with path.open("x", encoding="utf-8") as out:  # never overwrite
                out.write(text)
            written.append(path)
    except BaseException:
        for path in written:  # all or nothing
            path.unlink(missing_ok=True)
        raise
    return written


def _plugin_installed() -> bool:
    """Whether pytest loads snakepit's plugin by itself (its entry point is
    installed), or needs ``-p snakepit.testing``."""
    return any(
        ep.name == "snakepit"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )


def run_new_adapter(name: str, directory: str | None) -> int:
    """``snakepit new-adapter NAME [--dir DIR]``: write the skeleton, print what
    was written and how to run its tests; return the exit status (0, or 2 when
    refused, with the reason and the fix on stderr)."""
    try:
        adapter, tests = write_adapter(name, directory or ".")
    except (ValueError, FileExistsError) as exc:
        print(f"snakepit new-adapter: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    cls = adapter_class_name(name)
    plugin = "" if _plugin_installed() else " -p snakepit.testing"
    print(f"wrote {adapter}: the adapter {cls} (adapter_module '{name}:{cls}')")
    print(f"wrote {tests}: its tests, with snakepit's pytest fixtures")
    print(f"next: python -m pytest{plugin} {tests}")
    return 0
