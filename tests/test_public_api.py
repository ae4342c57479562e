"""Every public module has a complete, documented, tuple ``__all__``."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

import snakepit
from snakepit import exceptions

#: Modules that exist from the start: a failure to import them is a failure.
CORE = ("snakepit", "snakepit.supervisor", "snakepit.telemetry", "snakepit.exceptions")
#: Modules still being written: skipped until they exist (and only then).
LATER = (
    "snakepit.protocol",
    "snakepit.adapter",
    "snakepit.worker",
    "snakepit.pool",
    "snakepit.profiles",
    "snakepit.interpreter",
    "snakepit.lifecycle",
    "snakepit.testing",
    "snakepit.metrics",
    "snakepit.tracing",
)


def load(name: str) -> ModuleType:
    """Import *name*; skip only if it (not something it imports) is not written yet.

    An empty directory imports as a namespace package; that is "not written yet"
    too.
    """
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if name in LATER and exc.name == name:
            pytest.skip(f"{name} does not exist yet")
        raise
    if getattr(module, "__file__", None) is None:
        if name in LATER:
            pytest.skip(f"{name} has no __init__.py yet")
        pytest.fail(f"{name} is a namespace package, not a module")
    return module


@pytest.fixture(params=CORE + LATER)
def module(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


def public_objects(module: ModuleType) -> list[tuple[str, object]]:
    return [(name, getattr(module, name)) for name in module.__all__]


def own_doc(obj: object) -> str | None:
    """The docstring *obj* itself carries, not one it inherits."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        return doc if isinstance(doc, str) else None
    return getattr(obj, "__doc__", None)


def test_module_has_a_docstring(module: ModuleType) -> None:
    assert (module.__doc__ or "").strip(), f"{module.__name__} has no docstring"


def test_all_is_a_tuple_of_unique_names_that_resolve(module: ModuleType) -> None:
    assert isinstance(module.__all__, tuple), f"{module.__name__}.__all__"
    assert all(isinstance(name, str) for name in module.__all__)
    duplicates = {n for n in module.__all__ if module.__all__.count(n) > 1}
    assert not duplicates, f"{module.__name__}.__all__ repeats {duplicates}"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names missing objects: {missing}"


def test_all_is_complete(module: ModuleType) -> None:
    """Every public class or function snakepit defines that the module exposes
    is listed in ``__all__``."""
    unlisted = [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and name not in module.__all__
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and (getattr(obj, "__module__", "") or "").startswith("snakepit")
    ]
    assert not unlisted, f"{module.__name__} exposes {unlisted} outside __all__"


def test_public_classes_and_functions_have_docstrings(module: ModuleType) -> None:
    undocumented = [
        name
        for name, obj in public_objects(module)
        if (inspect.isclass(obj) or inspect.isfunction(obj))
        and not (own_doc(obj) or "").strip()
    ]
    assert not undocumented, f"{module.__name__}: no docstring on {undocumented}"


def test_public_methods_have_docstrings(module: ModuleType) -> None:
    """The methods and properties a public class defines itself are documented."""
    undocumented = []
    for name, obj in public_objects(module):
        if not inspect.isclass(obj) or not obj.__module__.startswith("snakepit"):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if not (inspect.isfunction(value) or isinstance(value, property)):
                continue
            if not (value.__doc__ or "").strip():
                undocumented.append(f"{name}.{attr}")
    assert not undocumented, f"{module.__name__}: no docstring on {undocumented}"


# --- snakepit.exceptions ---


def exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(exceptions).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == exceptions.__name__
    ]


def test_exceptions_are_found() -> None:
    assert len(exception_classes()) >= 10


@pytest.mark.parametrize("exc", exception_classes(), ids=lambda e: e.__name__)
def test_every_exception_has_one_root_and_a_docstring(
    exc: type[BaseException],
) -> None:
    assert issubclass(exc, exceptions.SnakepitError)
    assert issubclass(exc, Exception), "cancellation is never wrapped"
    assert exc.__name__ in exceptions.__all__
    assert (own_doc(exc) or "").strip(), f"{exc.__name__} has no docstring"


def test_all_of_exceptions_is_only_exceptions() -> None:
    for name, obj in public_objects(exceptions):
        assert inspect.isclass(obj), name
        assert issubclass(obj, exceptions.SnakepitError), name


# --- snakepit's lazy names ---


def test_lazy_names_resolve() -> None:
    lazy = snakepit._LAZY
    assert set(lazy) <= set(snakepit.__all__)
    for name, (module_name, attribute) in lazy.items():
        target = importlib.import_module(module_name)
        expected = target if attribute is None else getattr(target, attribute)
        assert getattr(snakepit, name) is expected, name
        assert name in dir(snakepit)


def test_every_top_level_name_is_lazy_or_eager() -> None:
    eager = {name for name in snakepit.__all__ if name in vars(snakepit)}
    unknown = set(snakepit.__all__) - set(snakepit._LAZY) - eager
    assert not unknown, f"snakepit.__all__ names {unknown} with no way to load them"


def test_unknown_top_level_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        snakepit.no_such_name  # noqa: B018
