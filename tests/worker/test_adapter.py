"""Adapter, @command and the command table the worker dispatches with (in-process)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snakepit.adapter import (
    Adapter,
    CommandInfo,
    ThreadSafeAdapter,
    command,
    current_session_id,
)
from snakepit.exceptions import CommandNotFound, InvalidArguments, RemoteError
from snakepit.worker import THREAD_SAFETY_REPORT_COMMAND, _dispatch
from snakepit.worker._dispatch import Command, CommandTable


class Math(Adapter):
    @command
    def add(self, a: int, b: int = 0) -> int:
        """Add two numbers.

        More text that is not the summary.
        """
        return a + b

    @command(name="sum")
    def total(self, *values: int, start: int = 0) -> int:
        return start + sum(values)

    @command
    def count(self, n: int) -> Iterator[int]:
        yield from range(n)

    @command(stream=True)
    def letters(self, word: str) -> list[str]:
        return list(word)

    @command
    def anything(self, **kwargs: object) -> dict[str, object]:
        return kwargs

    @command
    def broken(self) -> int:
        return len(5)  # type: ignore[arg-type]

    @command
    @staticmethod
    def version() -> str:
        return "1"

    def helper(self) -> str:
        return "not a command"


# --- @command and the class table ---


def test_commands_are_listed_by_name_with_stream_flag_and_summary() -> None:
    assert Math.commands() == {
        "add": CommandInfo("add", "add", False, "Add two numbers."),
        "anything": CommandInfo("anything", "anything", False, ""),
        "broken": CommandInfo("broken", "broken", False, ""),
        "count": CommandInfo("count", "count", True, ""),
        "letters": CommandInfo("letters", "letters", True, ""),
        "sum": CommandInfo("sum", "total", False, ""),
        "version": CommandInfo("version", "version", False, ""),
    }
    assert list(Math.commands()) == sorted(Math.commands())


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        Math.commands()["x"] = CommandInfo("x", "x", False, "")  # type: ignore[index]


def test_the_base_class_has_no_commands() -> None:
    assert dict(Adapter.commands()) == {}


def test_a_decorated_method_still_works_as_a_method() -> None:
    assert Math().add(1, 2) == 3
    assert Math.version() == "1"


def test_args_setup_and_teardown() -> None:
    adapter = Math(path="/tmp/x", n=3)
    assert adapter.args == {"path": "/tmp/x", "n": 3}
    assert Math().args == {}
    adapter.setup()  # the defaults do nothing
    adapter.teardown()


def test_there_is_no_session_outside_a_call() -> None:
    assert current_session_id() is None


def test_thread_safety_is_declared() -> None:
    class Safe(ThreadSafeAdapter):
        pass

    class AlsoSafe(Adapter):
        __thread_safe__ = True

    assert Adapter.__thread_safe__ is False
    assert Math.__thread_safe__ is False
    assert Safe.__thread_safe__ is True
    assert AlsoSafe.__thread_safe__ is True


def test_subclasses_inherit_override_and_hide_commands() -> None:
    class More(Math):
        @command
        def add(self, a: int, b: int = 0) -> int:
            """Add, differently."""
            return a + b + 1

        def count(self, n: int) -> int:  # type: ignore[override]
            return n  # no longer a command

        @command
        def extra(self) -> None:
            pass

    table = More.commands()
    assert table["add"].doc == "Add, differently."
    assert "count" not in table
    assert "extra" in table
    assert "sum" in table  # inherited untouched
    assert "extra" not in Math.commands()


def test_two_methods_with_one_command_name_fail_at_class_definition() -> None:
    with pytest.raises(TypeError, match="both define the command 'go'"):

        class Clash(Adapter):
            @command(name="go")
            def one(self) -> None:
                pass

            @command(name="go")
            def two(self) -> None:
                pass


def test_async_commands_are_refused() -> None:
    with pytest.raises(TypeError, match="async"):

        class Async(Adapter):
            @command
            async def run(self) -> None:
                pass


@pytest.mark.parametrize("name", ["", 5])
def test_a_command_name_must_be_a_non_empty_string(name: object) -> None:
    with pytest.raises(TypeError, match="non-empty"):
        command(name=name)  # type: ignore[call-overload]


def test_stream_can_be_forced_off() -> None:
    class Whole(Adapter):
        @command(stream=False)
        def gen(self) -> Iterator[int]:
            yield 1

    assert Whole.commands()["gen"].stream is False


# --- The command table the worker uses ---


@pytest.fixture
def table() -> CommandTable:
    return CommandTable(Math())


def test_a_known_command_is_bound_to_the_instance(table: CommandTable) -> None:
    add = table.get("add")
    add.check({"a": 1, "b": 2})
    assert add.func(a=1, b=2) == 3
    assert add.stream is False
    assert table.get("count").stream is True


def test_an_unknown_command_names_it_and_lists_the_others(table: CommandTable) -> None:
    with pytest.raises(CommandNotFound) as info:
        table.get("nope")
    message = info.value.message
    assert "'nope'" in message
    assert "add, anything, broken, count, letters, sum, version" in message
    assert isinstance(info.value, RemoteError)


def test_an_adapter_without_commands_says_so() -> None:
    with pytest.raises(CommandNotFound, match="none"):
        CommandTable(Adapter()).get("x")


@pytest.mark.parametrize(
    ("name", "args", "fragment"),
    [
        ("add", {}, "missing a required argument: 'a'"),
        ("add", {"a": 1, "c": 2}, "unexpected keyword argument 'c'"),
        ("sum", {"values": [1]}, "'values'"),
        ("count", {"n": 1, "m": 2}, "'m'"),
        ("anything", {1: 2}, "argument names must be strings"),
        ("add", {"a": 1, 2: 3}, "argument names must be strings"),
    ],
)
def test_bad_arguments_name_the_command_and_the_parameter(
    table: CommandTable, name: str, args: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidArguments) as info:
        table.get(name).check(args)
    assert f"command {name!r}" in info.value.message
    assert fragment in info.value.message
    assert info.value.remote_type == "TypeError"


def test_keyword_catch_alls_accept_any_names(table: CommandTable) -> None:
    table.get("anything").check({"x": 1, "y": 2})
    table.get("sum").check({"start": 3})


def test_a_type_error_inside_the_command_is_not_an_argument_error(
    table: CommandTable,
) -> None:
    broken = table.get("broken")
    broken.check({})  # the arguments fit...
    with pytest.raises(TypeError):
        broken.func()  # ...the command itself raises


def test_a_required_positional_only_parameter_never_fits() -> None:
    class PositionalOnly(Adapter):
        @command
        def f(self, a: int, /) -> int:
            return a

    with pytest.raises(InvalidArguments, match="'a'"):
        CommandTable(PositionalOnly()).get("f").check({"a": 1})


def test_a_callable_without_a_signature_is_not_checked() -> None:
    with pytest.raises(ValueError):
        inspect.signature(dict)
    unchecked = Command("d", dict, stream=False)
    unchecked.check({"anything": 1})  # the call itself will decide
    assert unchecked.func(anything=1) == {"anything": 1}
    with pytest.raises(InvalidArguments):
        unchecked.check({1: 2})  # type: ignore[dict-item]  # names must be str


class Kinds(Adapter):
    """A plain, a class, a static and a decorated method, as commands."""

    @command
    def plain(self, a: int, *, k: int = 0) -> int:
        return a + k

    @command
    @classmethod
    def of_class(cls, a: int, b: int) -> int:
        return a + b

    @command
    @staticmethod
    def static(a: int) -> int:
        return a

    @command
    @functools.wraps(plain)
    def wrapped(self, *args: object, **kwargs: object) -> object:
        return kwargs


def _verdict(table: CommandTable, name: str, args: dict[str, object]) -> str:
    try:
        table.get(name).check(args)
    except InvalidArguments as exc:
        return exc.message
    return "fits"


@pytest.mark.parametrize(("cls", "plain"), [(Math, "add"), (Kinds, "plain")])
def test_checks_worked_out_ahead_are_the_ones_a_worker_works_out(
    cls: type[Adapter], plain: str
) -> None:
    """A template works its adapter's checks out once (``prepare_commands``)
    for the workers it forks: they must check exactly as if each had."""
    fresh = CommandTable(cls())
    _dispatch.prepare_commands(cls)
    prepared = CommandTable(cls())
    assert getattr(cls, plain) in _dispatch._METHOD_SHAPES  # worked out ahead
    for name in [*cls.commands(), THREAD_SAFETY_REPORT_COMMAND]:
        for args in ({}, {"a": 1}, {"a": 1, "b": 2}, {"a": 1, "k": 2}, {"x": 1}):
            assert _verdict(prepared, name, args) == _verdict(fresh, name, args)


# --- The fast check agrees with Python's own call ---


def _f1(a: int, b: int, c: int = 0) -> None: ...
def _f2(a: int, *, k: int, m: int = 1) -> None: ...
def _f3(a: int = 0, **kw: object) -> None: ...
def _f4(p: int = 0, /, q: int = 0, *args: int) -> None: ...
def _f5(p: int = 0, /, **kw: object) -> None: ...


@pytest.mark.parametrize("func", [_f1, _f2, _f3, _f4, _f5])
@given(names=st.sets(st.sampled_from(["a", "b", "c", "k", "m", "p", "q", "x"])))
def test_the_fast_check_agrees_with_a_real_call(
    func: Callable[..., None], names: set[str]
) -> None:
    args = dict.fromkeys(names, 1)
    try:
        func(**args)  # the bodies never raise: a TypeError is the call's
    except TypeError:
        fits = False
    else:
        fits = True
    checker = Command("f", func, stream=False)
    if fits:
        checker.check(args)
    else:
        with pytest.raises(InvalidArguments):
            checker.check(args)
