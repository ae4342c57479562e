"""Find a call's command on the adapter and check its arguments before it runs.

Checking first, against the signature, is what tells a caller's mistake (a missing
or unexpected argument: ``invalid_arguments``) from a ``TypeError`` raised inside
the command (``exception``). The check is a pair of set comparisons on the hot
path; :meth:`inspect.Signature.bind` runs only to word the error.

Every table also has the reserved command ``__snakepit_thread_safety_report__``;
with a checker, the adapter's commands are wrapped by it (and only then). The
reserved ``__snakepit_map__`` (``Pool.map``'s chunks) is the runtime's own.

What the check needs of a method's signature is worked out once per function,
not once per instance: :func:`prepare_commands` does it in a template (see
:mod:`._template`), so the workers it forks find it done instead of each paying
for :func:`inspect.signature` again (about 1 ms of a forked worker's start).
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterable, Mapping

from snakepit.adapter import Adapter
from snakepit.exceptions import CommandNotFound, InvalidArguments

from ._options import WorkerOptions
from ._safety import (
    THREAD_SAFETY_REPORT_COMMAND,
    ThreadSafetyChecker,
    checks_off_report,
)

#: Runs one plain command over a list of argument maps (see ``Runtime._run_map``).
MAP_COMMAND = "__snakepit_map__"

_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD


class _Shape:
    """What the argument check needs of one callable's signature."""

    __slots__ = ("accepted", "required", "signature", "var_keyword")

    def __init__(self, func: Callable[..., object]) -> None:
        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            signature = None  # no introspectable signature: let the call decide
        self.signature = signature
        params = signature.parameters.values() if signature is not None else ()
        self.accepted = frozenset(p.name for p in params if p.kind in _BY_NAME)
        self.required: frozenset[str] | None = frozenset(
            p.name for p in params if p.kind in _BY_NAME and p.default is p.empty
        )
        self.var_keyword = signature is None or any(
            p.kind is _VAR_KEYWORD for p in params
        )
        if any(p.kind is _POSITIONAL_ONLY and p.default is p.empty for p in params):
            self.required = None  # a required positional-only parameter: never fits


#: The shapes of plain methods once bound (any instance), by their function.
_METHOD_SHAPES: dict[Callable[..., object], _Shape] = {}
#: The shape of a command that takes no arguments (the thread-safety report).
_NO_ARGUMENTS = _Shape(lambda: None)


def _shape(func: Callable[..., object]) -> _Shape:
    if type(func) is types.MethodType:
        shape = _METHOD_SHAPES.get(func.__func__)
        if shape is not None:
            return shape
    return _Shape(func)


def prepare_method(cls: type, name: str) -> None:
    """Work out the shape of method *name* of *cls*, if it is a plain function,
    for every instance to come (bound methods of it then find it done)."""
    func = inspect.getattr_static(cls, name, None)
    if isinstance(func, types.FunctionType) and func not in _METHOD_SHAPES:
        _METHOD_SHAPES[func] = _Shape(types.MethodType(func, cls))


def prepare_commands(cls: type[Adapter]) -> None:
    """Work out the argument checks of adapter class *cls*'s commands now, once
    (a template does, for all the workers it forks)."""
    for info in cls.commands().values():
        prepare_method(cls, info.method)


class Command:
    """One command bound to the adapter instance, with its argument check."""

    __slots__ = ("_shape", "func", "name", "stream")

    def __init__(
        self,
        name: str,
        func: Callable[..., object],
        stream: bool,
        *,
        shape: _Shape | None = None,
    ) -> None:
        self.name = name
        self.func = func
        self.stream = stream
        self._shape = _shape(func) if shape is None else shape

    def check(self, args: Mapping[str, object]) -> None:
        """Raise :class:`InvalidArguments` unless *args* fit the signature."""
        keys = args.keys()
        shape = self._shape
        required = shape.required
        if (
            required is not None
            and keys >= required
            and (keys <= shape.accepted if not shape.var_keyword else _all_str(keys))
        ):
            return
        self._explain(args)

    def _explain(self, args: Mapping[str, object]) -> None:
        for key in args:  # the annotation is what a call should be, not what it is
            if type(key) is not str:
                raise InvalidArguments(
                    "TypeError",
                    f"command {self.name!r}: argument names must be strings, "
                    f"got {key!r}",
                )
        signature = self._shape.signature
        if signature is None:
            return
        try:
            signature.bind(**args)
        except TypeError as exc:
            raise InvalidArguments(
                "TypeError", f"command {self.name!r}: {exc}"
            ) from exc


def _all_str(keys: Iterable[object]) -> bool:
    return all(type(key) is str for key in keys)


class CommandTable:
    """The commands of one adapter instance, by name, plus the reserved report.

    Args:
        adapter: the set-up adapter.
        options: the worker's options (for the report); defaults to a
            one-thread worker's.
        checker: wraps each command when thread-safety checks are on.
    """

    __slots__ = ("_adapter_name", "_commands")

    def __init__(
        self,
        adapter: Adapter,
        options: WorkerOptions | None = None,
        checker: ThreadSafetyChecker | None = None,
    ) -> None:
        cls = type(adapter)
        self._adapter_name = f"{cls.__module__}:{cls.__qualname__}"
        self._commands: dict[str, Command] = {}
        for name, info in cls.commands().items():
            func = getattr(adapter, info.method)
            if checker is not None:
                func = checker.wrap(info, func)
            self._commands[name] = Command(name, func, info.stream)
        report: Callable[[], object]
        if checker is not None:
            report = checker.report
        else:
            if options is None:
                options = WorkerOptions(cls.__qualname__, -1, -1)
            report = functools.partial(checks_off_report, adapter, options)
        self._commands[THREAD_SAFETY_REPORT_COMMAND] = Command(
            THREAD_SAFETY_REPORT_COMMAND, report, False, shape=_NO_ARGUMENTS
        )

    def get(self, name: str) -> Command:
        """Return the command *name*.

        Raises:
            CommandNotFound: the adapter has no such command; the message lists
                the commands it has.
        """
        command = self._commands.get(name)
        if command is None:
            available = (
                ", ".join(
                    sorted(
                        n for n in self._commands if n != THREAD_SAFETY_REPORT_COMMAND
                    )
                )
                or "(none)"
            )
            raise CommandNotFound(
                "CommandNotFound",
                f"unknown command {name!r}; adapter {self._adapter_name} has: "
                f"{available}",
            )
        return command
