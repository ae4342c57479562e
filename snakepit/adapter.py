"""Define what a worker runs: subclass :class:`Adapter` and mark methods with
:func:`command`.

For the thread profile (several calls at once in one worker), subclass
:class:`ThreadSafeAdapter`: it offers named locks, per-thread state and
:func:`serialized` commands. See ``docs/thread-safety.md``.

Worker side: standard library only, so it loads in any worker interpreter.

.. code-block:: python

    from snakepit.adapter import Adapter, command

    class MathAdapter(Adapter):
        def setup(self) -> None:
            self.scale = self.args.get("scale", 1)

        @command
        def add(self, a: int, b: int) -> int:
            \"\"\"Add two numbers.\"\"\"
            return (a + b) * self.scale

        @command(name="count")
        def count_up(self, n: int):
            yield from range(n)  # a generator: a streaming command

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from types import MappingProxyType
from typing import ClassVar, NamedTuple, TypeVar, cast, overload

__all__ = (
    "Adapter",
    "ThreadSafeAdapter",
    "CommandInfo",
    "command",
    "serialized",
    "current_session_id",
    "call_metadata",
    "ThreadSafetyError",
    "ThreadSafetyWarning",
)

_F = TypeVar("_F", bound=Callable[..., object])
_T = TypeVar("_T")
_MARK = "__snakepit_command__"
_SERIAL = "__snakepit_serialized__"  # on a @serialized wrapper: its lock's key

# What the worker knows about the call running in each call thread; set by the
# worker around every call (a thread runs one call at a time).
_call_context = threading.local()


def current_session_id() -> str | None:
    """Return the session id of the call this thread is running, or ``None``.

    Inside a command, this is the ``session_id`` the caller passed (for example
    with ``execute_in_session``), so an adapter can keep per-session state. It is
    ``None`` outside a call, for calls without a session, and in threads the
    command starts itself.

    .. versionadded:: 0.1
    """
    return getattr(_call_context, "session_id", None)


_NO_METADATA: Mapping[str, str] = MappingProxyType({})


def call_metadata() -> Mapping[str, str]:
    """Return the metadata of the call this thread is running (read-only).

    The parent attaches it to a call (for example the trace context of
    ``snakepit.tracing``); it is empty outside a call, for calls without any, and
    in threads the command starts itself.

    .. versionadded:: 0.1
    """
    meta = getattr(_call_context, "meta", None)
    return _NO_METADATA if meta is None else MappingProxyType(meta)


class ThreadSafetyError(RuntimeError):
    """Raised in a worker by the thread-safety checker in ``strict`` mode.

    A call fails with it (the parent sees a :class:`~snakepit.exceptions.RemoteError`
    whose ``remote_type`` is ``"ThreadSafetyError"``) when it would run a command
    listed in :attr:`Adapter.__unsafe_commands__` while another call of that
    command runs, or when it is the call after which a library the compatibility
    matrix lists as ``not_thread_safe`` was first seen imported.

    .. versionadded:: 0.1
    """


class ThreadSafetyWarning(RuntimeWarning):
    """Issued in a worker by the thread-safety checker (``warn`` and ``strict``).

    It goes to the worker's stderr, which the parent logs: a library the
    compatibility matrix lists as not (or only conditionally) thread-safe was
    imported by a thread-profile worker, or a command listed in
    :attr:`Adapter.__unsafe_commands__` ran concurrently with itself.

    .. versionadded:: 0.1
    """


class CommandInfo(NamedTuple):
    """What the worker knows about one command, from :meth:`Adapter.commands`.

    Attributes:
        name: the command name callers use.
        method: the adapter attribute that implements it.
        stream: whether it streams (its items are sent one by one).
        doc: the first line of its docstring, or ``""``.
        serialized: whether it runs one call at a time (:func:`serialized`).

    .. versionadded:: 0.1
    """

    name: str
    method: str
    stream: bool
    doc: str
    serialized: bool = False


class _Mark(NamedTuple):
    name: str | None
    stream: bool | None


@overload
def command(func: _F, /) -> _F: ...


@overload
def command(
    *,
    name: str | None = None,
    stream: bool | None = None,
    serialized: bool = False,
) -> Callable[[_F], _F]: ...


def command(
    func: _F | None = None,
    /,
    *,
    name: str | None = None,
    stream: bool | None = None,
    serialized: bool = False,
) -> _F | Callable[[_F], _F]:
    """Mark an adapter method as a command callers can run.

    Use it bare (``@command``) or with options (``@command(name="other")``). The
    method is called with the call's arguments as keyword arguments. A generator
    function is a streaming command: each item it yields is sent as a chunk.

    Args:
        func: the method, when used bare.
        name: the command name; defaults to the method's name.
        stream: force streaming on (the method returns any iterable) or off (a
            generator's result is sent whole, which fails to encode); by default,
            a command streams exactly when it is a generator function.
        serialized: run one call of it at a time, as :func:`serialized` does.

    Raises:
        TypeError: the target is a coroutine function (async commands are not
            supported) or not callable, or *name* is empty.

    .. versionadded:: 0.1
    """
    if name is not None and (type(name) is not str or not name):
        raise TypeError(f"a command name must be a non-empty str, got {name!r}")

    def mark(target: _F) -> _F:
        inner = (
            target.__func__
            if isinstance(target, (staticmethod, classmethod))
            else target
        )
        if not callable(inner):
            raise TypeError(f"@command needs a function, got {target!r}")
        if inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner):
            raise TypeError(
                f"@command cannot mark {inner.__qualname__}: async commands are not "
                "supported (workers run plain functions, in threads)"
            )
        if serialized:
            target = inner = _serialize(target)
        setattr(inner, _MARK, _Mark(name, stream))
        return target

    if func is not None:
        return mark(func)
    return mark


def serialized(func: _F, /) -> _F:
    """Make an adapter method run one call at a time, under a lock of its own.

    Calls of the method from several threads wait for each other; other methods
    still run alongside. The lock belongs to the adapter instance (one lock per
    method per instance) and is reentrant, so the method may call itself. For a
    generator method (a streaming command) the lock is held until the stream ends
    or is closed, and the stream must be consumed in the thread that started it
    (the worker does).

    Combine it with :func:`command` in either order, or write
    ``@command(serialized=True)``.

    .. code-block:: python

        class Counter(ThreadSafeAdapter):
            @command
            @serialized
            def bump(self) -> int:
                self.n = getattr(self, "n", 0) + 1
                return self.n

    Raises:
        TypeError: *func* is not a plain function (a static or class method has
            no instance to lock), or is a coroutine function.

    .. versionadded:: 0.1
    """
    return _serialize(func)


def _serialize(func: _F) -> _F:
    if getattr(func, _SERIAL, None) is not None:
        return func  # already serialized: one lock is enough
    if not inspect.isfunction(func):
        raise TypeError(f"@serialized needs a plain method (with self), got {func!r}")
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"@serialized cannot wrap {func.__qualname__}: async methods are not "
            "supported"
        )
    key = func.__qualname__
    wrapper: Callable[..., object]
    if inspect.isgeneratorfunction(func):
        gen = cast("Callable[..., Iterator[object]]", func)

        @functools.wraps(func)
        def stream_wrapper(
            self: object, *args: object, **kwargs: object
        ) -> Iterator[object]:
            with _serial_lock(self, key):
                yield from gen(self, *args, **kwargs)

        wrapper = stream_wrapper
    else:

        @functools.wraps(func)
        def call_wrapper(self: object, *args: object, **kwargs: object) -> object:
            with _serial_lock(self, key):
                return func(self, *args, **kwargs)

        wrapper = call_wrapper
    setattr(wrapper, _SERIAL, key)
    return cast("_F", wrapper)


# --- Per-instance locks and thread-local state ---

# Guards only the first creation of an instance's _LockState (the state itself
# has its own guard); never held while user code runs.
_STATE_GUARD = threading.Lock()
_STATE_ATTR = "_snakepit_lock_state"


class _LockState:
    """An adapter instance's named locks, serialized-method locks and locals."""

    __slots__ = ("guard", "local", "locks", "serial", "values")

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.locks: dict[str, threading.RLock] = {}
        self.serial: dict[str, threading.RLock] = {}
        self.local = threading.local()
        self.values = threading.local()  # .map: this thread's thread_local() values


def _lock_state(obj: object) -> _LockState:
    state = vars(obj).get(_STATE_ATTR)
    if state is None:
        with _STATE_GUARD:
            state = vars(obj).setdefault(_STATE_ATTR, _LockState())
    return cast("_LockState", state)


def _named(
    table: dict[str, threading.RLock], guard: threading.Lock, key: str
) -> threading.RLock:
    lock = table.get(key)
    if lock is None:
        with guard:
            lock = table.setdefault(key, threading.RLock())
    return lock


def _serial_lock(obj: object, key: str) -> threading.RLock:
    """Return *obj*'s lock for the serialized method *key*."""
    state = _lock_state(obj)
    return _named(state.serial, state.guard, key)


def _collect_commands(cls: type) -> dict[str, CommandInfo]:
    """Build *cls*'s command table, later classes in the MRO overriding earlier."""
    by_method: dict[str, CommandInfo] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            inner = (
                value.__func__
                if isinstance(value, (staticmethod, classmethod))
                else value
            )
            mark = getattr(inner, _MARK, None) if callable(inner) else None
            if type(mark) is not _Mark:
                # A plain attribute hides an inherited command of the same name.
                by_method.pop(attr, None)
                continue
            stream = mark.stream
            if stream is None:
                stream = inspect.isgeneratorfunction(inner)
            by_method[attr] = CommandInfo(
                name=mark.name or attr,
                method=attr,
                stream=stream,
                doc=_first_line(inspect.getdoc(inner)),
                serialized=getattr(inner, _SERIAL, None) is not None,
            )
    table: dict[str, CommandInfo] = {}
    for info in by_method.values():
        clash = table.get(info.name)
        if clash is not None:
            raise TypeError(
                f"{cls.__qualname__}: methods {clash.method!r} and {info.method!r} "
                f"both define the command {info.name!r}"
            )
        table[info.name] = info
    return dict(sorted(table.items()))


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


class Adapter:
    """The base class of the object a worker serves calls with.

    A worker process imports the subclass, builds one instance with the pool's
    ``adapter_args`` as keyword arguments (kept as :attr:`args`), calls
    :meth:`setup` once, then runs commands on it until it exits, and calls
    :meth:`teardown` on an orderly exit. Commands are the methods marked with
    :func:`command`; the table is built when the subclass is defined, so a
    mistake (two commands with one name) fails at import.

    Override ``__init__`` only if you must, and then call ``super().__init__``;
    expensive work belongs in :meth:`setup`, whose failure is reported as such.

    Attributes:
        args: the adapter arguments, a dict.

    .. versionadded:: 0.1
    """

    __thread_safe__: ClassVar[bool] = False
    """Whether one instance may run several commands at once, from several threads.
    The thread profile (``--threads`` above 1) refuses adapters without it."""

    __unsafe_commands__: ClassVar[Collection[str]] = frozenset()
    """Names of commands that must never run concurrently with themselves. Only
    the thread-safety checker reads it: ``warn`` mode warns when one overlaps
    another call of itself, ``strict`` mode fails the later call with
    :class:`ThreadSafetyError`. Every name must be a command of the class.

    .. versionadded:: 0.1"""

    _snakepit_commands: ClassVar[Mapping[str, CommandInfo]] = MappingProxyType({})

    def __init__(self, **adapter_args: object) -> None:
        self.args: dict[str, object] = dict(adapter_args)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._snakepit_commands = MappingProxyType(_collect_commands(cls))
        unsafe = cls.__unsafe_commands__
        if isinstance(unsafe, str) or not all(type(n) is str for n in unsafe):
            raise TypeError(
                f"{cls.__qualname__}.__unsafe_commands__ must be a collection of "
                f"command names, got {unsafe!r}"
            )
        unknown = sorted(set(unsafe) - set(cls._snakepit_commands))
        if unknown:
            raise TypeError(
                f"{cls.__qualname__}.__unsafe_commands__ names {unknown}, which are "
                "not commands of the class"
            )

    def setup(self) -> None:
        """Prepare the adapter; called once per worker process, before any call.

        Load models or open connections here. If it raises, the worker exits
        before serving (exit code 4) and the error is on its stderr.
        """

    def teardown(self) -> None:
        """Release resources; called once on an orderly shutdown, after the last
        call. Not called when the worker is killed or its parent vanished."""

    @classmethod
    def commands(cls) -> Mapping[str, CommandInfo]:
        """Return the adapter's commands by name, sorted by name.

        .. versionadded:: 0.1
        """
        return cls._snakepit_commands


class ThreadSafeAdapter(Adapter):
    """An :class:`Adapter` declared safe to run several commands at once.

    Subclass it (or set ``__thread_safe__ = True`` on an :class:`Adapter`) to
    allow the thread profile, once its commands are safe to run concurrently. It
    offers the tools for that: :meth:`lock` for named locks, :attr:`local` and
    :meth:`thread_local` for per-thread state, and :func:`serialized` for
    commands that must run one at a time.

    .. code-block:: python

        class Store(ThreadSafeAdapter):
            def setup(self) -> None:
                self.items: dict[str, object] = {}

            @command
            def put(self, key: str, value: object) -> int:
                with self.lock("items"):
                    self.items[key] = value
                    return len(self.items)

    .. versionadded:: 0.1
    """

    __thread_safe__: ClassVar[bool] = True

    def lock(self, name: str = "default") -> threading.RLock:
        """Return this adapter's reentrant lock called *name*.

        The lock is created on first use, safely when several threads ask at
        once; every later call with the same *name* returns the same lock. Use
        one name per piece of shared state (``with self.lock("cache"): ...``).

        Args:
            name: which lock.

        .. versionadded:: 0.1
        """
        state = _lock_state(self)
        return _named(state.locks, state.guard, name)

    @property
    def local(self) -> threading.local:
        """A :class:`threading.local` of this adapter: attributes set on it are
        seen only by the thread that set them (``self.local.conn = connect()``).

        .. versionadded:: 0.1
        """
        return _lock_state(self).local

    def thread_local(self, name: str, factory: Callable[[], _T]) -> _T:
        """Return the calling thread's value called *name*, making it first.

        The first time a thread asks for *name*, ``factory()`` is called in that
        thread and its result kept for that thread; later calls from the same
        thread return it. Use it for objects that must not be shared between
        threads, such as database connections.

        Args:
            name: which value.
            factory: makes the value; called at most once per thread and name.

        .. versionadded:: 0.1
        """
        values = _lock_state(self).values
        table: dict[str, object] | None = getattr(values, "map", None)
        if table is None:
            table = values.map = {}
        if name in table:
            return cast("_T", table[name])
        value = factory()
        table[name] = value
        return value
