"""Find a call's command on the adapter and check its arguments before it runs.

Checking first, against the signature, is what tells a caller's mistake (a missing
or unexpected argument: ``invalid_arguments``) from a ``TypeError`` raised inside
the command (``exception``). The check is a pair of set comparisons on the hot
path; :meth:`inspect.Signature.bind` runs only to word the error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping

from snakepit.adapter import Adapter
from snakepit.exceptions import CommandNotFound, InvalidArguments

_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD


class Command:
    """One command bound to the adapter instance, with its argument check."""

    __slots__ = (
        "_accepted",
        "_required",
        "_signature",
        "_var_keyword",
        "func",
        "name",
        "stream",
    )

    def __init__(self, name: str, func: Callable[..., object], stream: bool) -> None:
        self.name = name
        self.func = func
        self.stream = stream
        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            signature = None  # no introspectable signature: let the call decide
        self._signature = signature
        params = signature.parameters.values() if signature is not None else ()
        self._accepted = frozenset(p.name for p in params if p.kind in _BY_NAME)
        self._required: frozenset[str] | None = frozenset(
            p.name for p in params if p.kind in _BY_NAME and p.default is p.empty
        )
        self._var_keyword = signature is None or any(
            p.kind is _VAR_KEYWORD for p in params
        )
        if any(p.kind is _POSITIONAL_ONLY and p.default is p.empty for p in params):
            self._required = None  # a required positional-only parameter: never fits

    def check(self, args: Mapping[str, object]) -> None:
        """Raise :class:`InvalidArguments` unless *args* fit the signature."""
        keys = args.keys()
        required = self._required
        if (
            required is not None
            and keys >= required
            and (keys <= self._accepted if not self._var_keyword else _all_str(keys))
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
        if self._signature is None:
            return
        try:
            self._signature.bind(**args)
        except TypeError as exc:
            raise InvalidArguments(
                "TypeError", f"command {self.name!r}: {exc}"
            ) from exc


def _all_str(keys: Iterable[object]) -> bool:
    return all(type(key) is str for key in keys)


class CommandTable:
    """The commands of one adapter instance, by name."""

    __slots__ = ("_adapter_name", "_commands")

    def __init__(self, adapter: Adapter) -> None:
        cls = type(adapter)
        self._adapter_name = f"{cls.__module__}:{cls.__qualname__}"
        self._commands = {
            name: Command(name, getattr(adapter, info.method), info.stream)
            for name, info in cls.commands().items()
        }

    def get(self, name: str) -> Command:
        """Return the command *name*.

        Raises:
            CommandNotFound: the adapter has no such command; the message lists
                the commands it has.
        """
        command = self._commands.get(name)
        if command is None:
            available = ", ".join(sorted(self._commands)) or "(none)"
            raise CommandNotFound(
                "CommandNotFound",
                f"unknown command {name!r}; adapter {self._adapter_name} has: "
                f"{available}",
            )
        return command
