"""Define what a worker runs: subclass :class:`Adapter` and mark methods with
:func:`command`.

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

import inspect
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import ClassVar, NamedTuple, TypeVar, overload

__all__ = (
    "Adapter",
    "ThreadSafeAdapter",
    "CommandInfo",
    "command",
    "current_session_id",
)

_F = TypeVar("_F", bound=Callable[..., object])
_MARK = "__snakepit_command__"

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


class CommandInfo(NamedTuple):
    """What the worker knows about one command, from :meth:`Adapter.commands`.

    Attributes:
        name: the command name callers use.
        method: the adapter attribute that implements it.
        stream: whether it streams (its items are sent one by one).
        doc: the first line of its docstring, or ``""``.

    .. versionadded:: 0.1
    """

    name: str
    method: str
    stream: bool
    doc: str


class _Mark(NamedTuple):
    name: str | None
    stream: bool | None


@overload
def command(func: _F, /) -> _F: ...


@overload
def command(
    *, name: str | None = None, stream: bool | None = None
) -> Callable[[_F], _F]: ...


def command(
    func: _F | None = None,
    /,
    *,
    name: str | None = None,
    stream: bool | None = None,
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
        setattr(inner, _MARK, _Mark(name, stream))
        return target

    if func is not None:
        return mark(func)
    return mark


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

    _snakepit_commands: ClassVar[Mapping[str, CommandInfo]] = MappingProxyType({})

    def __init__(self, **adapter_args: object) -> None:
        self.args: dict[str, object] = dict(adapter_args)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._snakepit_commands = MappingProxyType(_collect_commands(cls))

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

    Subclass it (or set ``__thread_safe__ = True``) to allow the thread profile.

    .. versionadded:: 0.1
    """

    __thread_safe__: ClassVar[bool] = True
