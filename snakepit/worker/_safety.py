"""The thread-safety checker: ``--thread-safety-checks warn`` or ``strict``.

Opt-in and for development. When it is off (the default) nothing here touches a
call: commands are dispatched unwrapped, and the report command only says that
checks are off. When it is on, every command is wrapped so that the checker

- **records concurrency** per command: calls, the most executions seen running
  at once, the distinct threads that ran it, and the other commands it
  overlapped with (for a :func:`~snakepit.adapter.serialized` command, counted
  inside its lock, so waiting for the lock is not running);
- **watches libraries** (workers with more than one thread only): after each call
  it compares ``sys.modules`` with what it saw before (a length check, then a
  diff), and matches new modules against the compatibility matrix. A library
  listed ``not_thread_safe`` or ``conditional`` gets a :class:`ThreadSafetyWarning`
  once; libraries already loaded by the adapter's import or ``setup()`` are
  checked before ``Hello``;
- **watches** :attr:`~snakepit.adapter.Adapter.__unsafe_commands__`: one of them
  starting while another call of the same command runs is a violation.

``strict`` adds failures: a call that would overlap another call of the same
unsafe command fails with :class:`ThreadSafetyError` instead of running; the
call after which a ``not_thread_safe`` library was first seen fails with it (once
per library; the command's own error, if any, is its context); and such a
library loaded at import or ``setup()`` stops the worker before ``Hello`` (exit
code 3, after ``teardown()``).

The matrix is ``snakepit/interpreter/compatibility.json`` (read as a file next to
the package, so the parent-side ``snakepit.interpreter`` package is never
imported), plus the file named by ``$SNAKEPIT_COMPAT_MATRIX``, whose entries win.
Both are optional, and read once, only when checks are on.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import NamedTuple, cast

from snakepit.adapter import (
    _SERIAL,  # the key of a @serialized method's lock
    Adapter,
    CommandInfo,
    ThreadSafetyError,
    ThreadSafetyWarning,
    _serial_lock,
)

from ._options import ThreadSafetyChecks, WorkerOptions

THREAD_SAFETY_REPORT_COMMAND = "__snakepit_thread_safety_report__"
"""The reserved command every worker answers with its thread-safety report."""

MATRIX_ENV = "SNAKEPIT_COMPAT_MATRIX"
"""An extra compatibility matrix (a JSON file path), read after the packaged one."""

_NOT_SAFE = "not_thread_safe"
_CONDITIONAL = "conditional"
_ALIASES = {
    "not_thread_safe": _NOT_SAFE,
    "unsafe": _NOT_SAFE,
    "not_safe": _NOT_SAFE,
    "conditional": _CONDITIONAL,
    "conditionally_thread_safe": _CONDITIONAL,
    "partial": _CONDITIONAL,
    "thread_safe": "thread_safe",
    "safe": "thread_safe",
}
_WARNING_FILE = "<snakepit thread-safety checks>"


# --- The compatibility matrix ---


class Library(NamedTuple):
    """One library of the matrix that is not plainly thread-safe."""

    name: str
    thread_safety: str
    notes: str
    workaround: str


class Matrix(NamedTuple):
    """The matrix as the checker uses it: unsafe libraries by import name."""

    by_import: dict[str, Library]
    sources: list[str]
    problems: list[str]


def load_matrix() -> Matrix:
    """Read the packaged matrix and ``$SNAKEPIT_COMPAT_MATRIX``; never raise."""
    matrix = Matrix({}, [], [])
    from importlib.resources import files

    try:
        packaged = files("snakepit") / "interpreter" / "compatibility.json"
        _merge(matrix, str(packaged), packaged.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass  # not written, or not shipped: the library rule has nothing to match
    except (OSError, UnicodeDecodeError) as exc:
        matrix.problems.append(f"cannot read the packaged matrix: {exc}")
    extra = os.environ.get(MATRIX_ENV)
    if extra:
        try:
            with open(extra, encoding="utf-8") as file:
                _merge(matrix, extra, file.read())
        except (OSError, UnicodeDecodeError) as exc:
            matrix.problems.append(f"cannot read {MATRIX_ENV}={extra!r}: {exc}")
    return matrix


def _merge(matrix: Matrix, source: str, text: str) -> None:
    try:
        data: object = json.loads(text)
    except ValueError as exc:
        matrix.problems.append(f"{source}: invalid JSON: {exc}")
        return
    matrix.sources.append(source)
    for key, raw in _raw_entries(data):
        parsed = _library(key, raw)
        if parsed is None:
            continue
        library, import_names = parsed
        for import_name in import_names:
            if library.thread_safety == "thread_safe":
                matrix.by_import.pop(import_name, None)  # a later source may clear
            else:
                matrix.by_import[import_name] = library


def _raw_entries(data: object) -> Iterator[tuple[str | None, object]]:
    """Yield ``(key, entry)`` from a list of entries, a name-to-entry map, or
    either under a ``libraries`` (or ``entries``) key."""
    if isinstance(data, dict):
        for key in ("libraries", "entries"):
            if key in data:
                yield from _raw_entries(data[key])
                return
        for key, value in data.items():
            if isinstance(value, dict):
                yield str(key), value
    elif isinstance(data, list):
        for value in data:
            yield None, value


def _library(key: str | None, raw: object) -> tuple[Library, list[str]] | None:
    if not isinstance(raw, dict):
        return None
    name = raw.get("name", key)
    if not isinstance(name, str) or not name:
        return None
    safety = raw.get("thread_safety")
    if isinstance(safety, bool):
        safety = "thread_safe" if safety else _NOT_SAFE
    if not isinstance(safety, str):
        return None
    safety = _ALIASES.get(safety.strip().lower().replace("-", "_").replace(" ", "_"))
    if safety is None:
        return None
    names = raw.get("import_name", raw.get("import_names", name))
    import_names = [names] if isinstance(names, str) else names
    if not isinstance(import_names, list):
        return None
    library = Library(
        name, safety, _text(raw.get("notes")), _text(raw.get("workaround"))
    )
    return library, [n for n in import_names if isinstance(n, str) and n]


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


# --- The checker ---


class _Stats:
    """What the checker saw of one command; guarded by the checker's lock."""

    __slots__ = (
        "calls",
        "max_concurrent",
        "name",
        "overlapped",
        "running",
        "serialized",
        "thread_ids",
        "unsafe",
    )

    def __init__(self, name: str, serialized: bool, unsafe: bool) -> None:
        self.name = name
        self.serialized = serialized
        self.unsafe = unsafe
        self.calls = 0
        self.running = 0
        self.max_concurrent = 0
        self.thread_ids: set[int] = set()
        self.overlapped: set[str] = set()


class ThreadSafetyChecker:
    """Watch one worker's calls; see the module docstring for the rules."""

    def __init__(
        self, adapter: Adapter, options: WorkerOptions, baseline: Collection[str]
    ) -> None:
        cls = type(adapter)
        unsafe = frozenset(cls.__unsafe_commands__)
        self._adapter = adapter
        self._options = options
        self._strict = options.thread_safety_checks is ThreadSafetyChecks.STRICT
        self._lock = threading.Lock()
        self._stats = {
            name: _Stats(name, info.serialized, name in unsafe)
            for name, info in cls.commands().items()
        }
        self._running: dict[str, _Stats] = {}
        self._violations: dict[tuple[str, str], dict[str, object]] = {}
        self._libraries: dict[str, dict[str, object]] = {}
        self._watch_libraries = options.threads > 1
        self._matrix = load_matrix() if self._watch_libraries else Matrix({}, [], [])
        self._seen = set(baseline)
        self._seen_count = len(self._seen)

    def start(self) -> str | None:
        """Check what the adapter's import and ``setup()`` loaded.

        Returns:
            Why a strict worker must not serve, or ``None``.
        """
        for problem in self._matrix.problems:
            self._warn(f"compatibility matrix: {problem}")
        unsafe = self._scan(None)
        if not (self._strict and unsafe):
            return None
        cls = type(self._adapter)
        return (
            f"thread safety checks (strict): adapter "
            f"{cls.__module__}:{cls.__qualname__} loaded {_names(unsafe)} at import "
            f"or setup(), listed as not thread-safe, and this worker runs calls on "
            f"{self._options.threads} threads. Use worker_profile='process', or "
            "relax the checks to warn."
        )

    def wrap(
        self, info: CommandInfo, func: Callable[..., object]
    ) -> Callable[..., object]:
        """Return *func* (command *info*, bound) with the checks around it."""
        stats = self._stats[info.name]
        body = func
        lock: threading.RLock | None = None
        if inspect.ismethod(func):
            key = getattr(func.__func__, _SERIAL, None)
            raw = getattr(func.__func__, "__wrapped__", None)
            if isinstance(key, str) and inspect.isfunction(raw):
                # Take the method's own lock here and count inside it, so that
                # calls waiting for the lock are not counted as running.
                body = cast("Callable[..., object]", raw.__get__(func.__self__))
                lock = _serial_lock(self._adapter, key)
        if info.stream:
            return functools.wraps(func)(self._streaming(stats, body, lock))
        return functools.wraps(func)(self._plain(stats, body, lock))

    def _plain(
        self,
        stats: _Stats,
        body: Callable[..., object],
        lock: threading.RLock | None,
    ) -> Callable[..., object]:
        def checked(**kwargs: object) -> object:
            if lock is None:
                return self._run(stats, body, kwargs)
            with lock:
                return self._run(stats, body, kwargs)

        return checked

    def _run(
        self, stats: _Stats, body: Callable[..., object], kwargs: dict[str, object]
    ) -> object:
        self._enter(stats)
        try:
            return body(**kwargs)
        finally:
            self._leave(stats)
            self._after(stats.name, raising=True)

    def _streaming(
        self,
        stats: _Stats,
        body: Callable[..., object],
        lock: threading.RLock | None,
    ) -> Callable[..., Iterator[object]]:
        def checked(**kwargs: object) -> Iterator[object]:
            if lock is None:
                yield from self._run_stream(stats, body, kwargs)
            else:
                with lock:
                    yield from self._run_stream(stats, body, kwargs)

        return checked

    def _run_stream(
        self, stats: _Stats, body: Callable[..., object], kwargs: dict[str, object]
    ) -> Iterator[object]:
        self._enter(stats)
        closed = False
        try:
            yield from cast("Iterable[object]", body(**kwargs))
        except GeneratorExit:
            closed = True  # cancelled: close quietly, whatever was imported
            raise
        finally:
            self._leave(stats)
            self._after(stats.name, raising=not closed)

    # --- Concurrency ---

    def _enter(self, stats: _Stats) -> None:
        ident = threading.get_ident()
        with self._lock:
            running = stats.running + 1
            refused = None
            first = False
            if stats.unsafe and running > 1:
                refused = (
                    f"command {stats.name!r} is listed in __unsafe_commands__ but "
                    f"started while {stats.running} other call(s) of it ran"
                )
                first = self._violation("unsafe_command", stats.name, refused)
            if refused is None or not self._strict:
                stats.running = running
                stats.calls += 1
                stats.max_concurrent = max(stats.max_concurrent, running)
                stats.thread_ids.add(ident)
                for other in self._running.values():
                    if other is not stats:
                        other.overlapped.add(stats.name)
                        stats.overlapped.add(other.name)
                self._running[stats.name] = stats
        if refused is not None:
            if first:
                self._warn(refused)
            if self._strict:
                raise ThreadSafetyError(f"thread safety checks (strict): {refused}")

    def _leave(self, stats: _Stats) -> None:
        with self._lock:
            stats.running -= 1
            if not stats.running:
                del self._running[stats.name]

    def _violation(self, rule: str, subject: str, message: str) -> bool:
        """Count a violation (under the lock); return True the first time."""
        record = self._violations.get((rule, subject))
        if record is None:
            self._violations[rule, subject] = {
                "rule": rule,
                "subject": subject,
                "count": 1,
                "message": message,
                "raised": self._strict,
            }
            return True
        record["count"] = cast("int", record["count"]) + 1
        return False

    # --- Libraries ---

    def _after(self, command: str, *, raising: bool) -> None:
        if not self._watch_libraries or len(sys.modules) == self._seen_count:
            return  # the fast path: nothing was imported since the last look
        unsafe = self._scan(command)
        if unsafe and self._strict and raising:
            raise ThreadSafetyError(
                "thread safety checks (strict): "
                + " ".join(self._describe(lib, mod, command) for lib, mod in unsafe)
            )

    def _scan(self, command: str | None) -> list[tuple[Library, str]]:
        """Match modules imported since the last scan; warn about each new unsafe
        library; return the ``not_thread_safe`` ones."""
        if not self._watch_libraries:
            return []
        found: list[tuple[Library, str]] = []
        with self._lock:
            modules = sys.modules.copy()
            self._seen_count = len(modules)
            new = [name for name in modules if name not in self._seen]
            self._seen.update(new)
            for module in sorted(new):
                library = self._match(module)
                if library is None or library.name in self._libraries:
                    continue
                self._libraries[library.name] = {
                    "name": library.name,
                    "module": module,
                    "thread_safety": library.thread_safety,
                    "notes": library.notes,
                    "workaround": library.workaround,
                    "first_seen": command,
                }
                found.append((library, module))
                if library.thread_safety == _NOT_SAFE:
                    self._violation(
                        "unsafe_library",
                        library.name,
                        self._describe(library, module, command),
                    )
        for library, module in found:
            self._warn(self._describe(library, module, command))
        return [(lib, mod) for lib, mod in found if lib.thread_safety == _NOT_SAFE]

    def _match(self, module: str) -> Library | None:
        by_import = self._matrix.by_import
        parts = module.split(".")
        for end in range(1, len(parts) + 1):
            library = by_import.get(".".join(parts[:end]))
            if library is not None:
                return library
        return None

    def _describe(self, library: Library, module: str, command: str | None) -> str:
        kind = (
            "not thread-safe"
            if library.thread_safety == _NOT_SAFE
            else "only conditionally thread-safe"
        )
        where = (
            "at adapter import or setup()"
            if command is None
            else f"after command {command!r}"
        )
        text = (
            f"{library.name} (module {module!r}, first seen imported {where}) is "
            f"{kind} per the compatibility matrix, and this worker runs calls on "
            f"{self._options.threads} threads."
        )
        if library.notes:
            text += f" Notes: {library.notes.rstrip('.')}."
        if library.workaround:
            text += f" Workaround: {library.workaround.rstrip('.')}."
        return text

    def _warn(self, message: str) -> None:
        warnings.warn_explicit(
            f"snakepit worker: {message}",
            ThreadSafetyWarning,
            filename=_WARNING_FILE,
            lineno=0,
            module=__name__,
        )

    # --- The report ---

    def report(self) -> dict[str, object]:
        """Return the report the reserved command answers with."""
        with self._lock:
            commands: dict[str, object] = {
                name: {
                    "calls": stats.calls,
                    "running": stats.running,
                    "max_concurrent": stats.max_concurrent,
                    "threads": len(stats.thread_ids),
                    "thread_ids": sorted(stats.thread_ids),
                    "overlapped_with": sorted(stats.overlapped),
                    "serialized": stats.serialized,
                    "unsafe": stats.unsafe,
                }
                for name, stats in self._stats.items()
            }
            concurrent = [
                name for name, stats in self._stats.items() if stats.max_concurrent > 1
            ]
            libraries = [dict(entry) for entry in self._libraries.values()]
            violations = [dict(entry) for entry in self._violations.values()]
        report = _header(self._adapter, self._options)
        report.update(
            commands=commands,
            concurrent_commands=concurrent,
            unsafe_libraries=libraries,
            violations=violations,
            matrix={
                "checked": self._watch_libraries,
                "libraries": len({lib.name for lib in self._matrix.by_import.values()}),
                "sources": list(self._matrix.sources),
                "problems": list(self._matrix.problems),
            },
        )
        return report


def _names(found: list[tuple[Library, str]]) -> str:
    return ", ".join(sorted({library.name for library, _ in found}))


def _header(adapter: Adapter, options: WorkerOptions) -> dict[str, object]:
    cls = type(adapter)
    mode = options.thread_safety_checks
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return {
        "mode": mode.value,
        "enabled": mode is not ThreadSafetyChecks.OFF,
        "message": "",
        "pid": os.getpid(),
        "adapter": f"{cls.__module__}:{cls.__qualname__}",
        "thread_safe": bool(cls.__thread_safe__),
        "threads": options.threads,
        "gil_enabled": True if is_gil_enabled is None else bool(is_gil_enabled()),
    }


def checks_off_report(adapter: Adapter, options: WorkerOptions) -> dict[str, object]:
    """Return the report of a worker whose checks are off: the same keys, empty."""
    report = _header(adapter, options)
    report.update(
        message=(
            "thread safety checks are off; start the worker with "
            "--thread-safety-checks warn (thread_safety_checks: true in the pool "
            "config) to record them"
        ),
        commands={},
        concurrent_commands=[],
        unsafe_libraries=[],
        violations=[],
        matrix={"checked": False, "libraries": 0, "sources": [], "problems": []},
    )
    return report
