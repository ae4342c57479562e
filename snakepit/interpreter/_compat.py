"""The compatibility matrix: how common libraries behave in a thread-profile worker.

The facts live in ``compatibility.json`` beside this module (data, not code); this
module reads them once and answers questions about them. Names are looked up
case-insensitively, by distribution name (``scikit-learn``), import name
(``sklearn``) or alias, with ``_`` and ``-`` equivalent.

The verdicts follow the Elixir library's ``Snakepit.Compatibility``: in the process
profile every library is fine (one call at a time per worker); in the thread
profile a ``thread_safe`` library is fine and a ``conditional`` or
``not_thread_safe`` one is a warning whose message says what to do.
"""

from __future__ import annotations

import enum
import functools
import importlib.resources
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, final, overload

import attrs

from snakepit.exceptions import UnknownCategory, UnknownProfile
from snakepit.profiles import Profile

__all__ = (
    "CheckResult",
    "CompatibilityReport",
    "LibraryInfo",
    "ReportWarning",
    "Status",
    "ThreadSafety",
    "check",
    "generate_report",
    "get_library_info",
    "list_all",
)

_DATA_FILE = "compatibility.json"
_DATA_FORMAT = 1


class ThreadSafety(str, enum.Enum):
    """How a library behaves when the calls of one worker share it across threads.

    Compares equal to its string, the value used in ``compatibility.json``.

    .. versionadded:: 0.1
    """

    #: Objects may be shared by concurrent calls (mutating your own data aside).
    THREAD_SAFE = "thread_safe"
    #: Safe with a discipline: per-thread objects, no shared mutation, a lock.
    CONDITIONAL = "conditional"
    #: Shared global state or known races; prefer the process profile.
    NOT_THREAD_SAFE = "not_thread_safe"

    def __str__(self) -> str:
        return self.value


class Status(str, enum.Enum):
    """The verdict of :func:`check`; compares equal to its string.

    .. versionadded:: 0.1
    """

    OK = "ok"
    WARNING = "warning"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@final
@attrs.frozen(kw_only=True)
class LibraryInfo:
    """One entry of the compatibility matrix.

    Attributes:
        name: the distribution name, as on PyPI (``"scikit-learn"``).
        import_name: the module users import (``"sklearn"``).
        aliases: other names the entry is found by.
        thread_safety: how it behaves shared across the threads of a worker.
        gil: when it holds or releases the GIL.
        min_version: the oldest release the entry describes (``None`` for the
            standard library).
        notes: what is and is not safe.
        workaround: what to do in the thread profile.

    .. versionadded:: 0.1
    """

    name: str
    import_name: str
    aliases: tuple[str, ...] = ()
    thread_safety: ThreadSafety
    gil: str
    min_version: str | None
    notes: str
    workaround: str

    @property
    def thread_safe(self) -> bool:
        """Whether the library is :attr:`ThreadSafety.THREAD_SAFE` (the Elixir
        library's ``thread_safe`` key)."""
        return self.thread_safety is ThreadSafety.THREAD_SAFE


@final
@attrs.frozen(kw_only=True)
class CheckResult:
    """The answer of :func:`check` for one library and profile.

    Attributes:
        library: the library's name in the matrix, or the name asked about
            (stripped) when it is not in the matrix.
        profile: the profile checked.
        status: :attr:`Status.OK`, :attr:`Status.WARNING` or :attr:`Status.UNKNOWN`.
        message: why; for a warning, the reason and the workaround.

    .. versionadded:: 0.1
    """

    library: str
    profile: Profile
    status: Status
    message: str

    @property
    def ok(self) -> bool:
        """Whether :attr:`status` is :attr:`Status.OK`."""
        return self.status is Status.OK


class ReportWarning(TypedDict):
    """A library of a report that needs care, with what to do about it.

    .. versionadded:: 0.1
    """

    library: str
    message: str


class CompatibilityReport(TypedDict):
    """What :func:`generate_report` returns: plain data, ready for JSON.

    ``compatible`` and ``unknown`` list names; ``warnings`` lists a
    :class:`ReportWarning` per library that needs care. Each library appears once,
    in the order given.

    .. versionadded:: 0.1
    """

    compatible: list[str]
    warnings: list[ReportWarning]
    unknown: list[str]


# --- The data ---


def _key(name: str) -> str:
    """The lookup form of a library name: stripped, lower case, ``_`` as ``-``."""
    return name.strip().lower().replace("_", "-")


def _entry(raw: Mapping[str, Any]) -> LibraryInfo:
    return LibraryInfo(
        name=raw["name"],
        import_name=raw["import_name"],
        aliases=tuple(raw.get("aliases", ())),
        thread_safety=ThreadSafety(raw["thread_safety"]),
        gil=raw["gil"],
        min_version=raw["min_version"],
        notes=raw["notes"],
        workaround=raw["workaround"],
    )


@functools.cache
def _matrix() -> tuple[tuple[LibraryInfo, ...], dict[str, LibraryInfo]]:
    """Every entry, in file order, and the index of every name it is found by."""
    text = (
        importlib.resources.files(__package__ or "snakepit.interpreter")
        .joinpath(_DATA_FILE)
        .read_text(encoding="utf-8")
    )
    data = json.loads(text)
    if data.get("format") != _DATA_FORMAT:
        raise RuntimeError(f"{_DATA_FILE}: unsupported format {data.get('format')!r}")
    entries = tuple(_entry(raw) for raw in data["libraries"])
    index: dict[str, LibraryInfo] = {}
    for entry in entries:
        for name in (entry.name, entry.import_name, *entry.aliases):
            index.setdefault(_key(name), entry)
    return entries, index


def _libraries() -> tuple[LibraryInfo, ...]:
    """Every entry of the matrix, in file order."""
    return _matrix()[0]


def _profile(profile: Profile | str) -> Profile:
    try:
        return Profile(profile)
    except ValueError:
        known = " or ".join(repr(p.value) for p in Profile)
        raise UnknownProfile(f"profile must be {known}, not {profile!r}") from None


# --- Queries ---


def get_library_info(library: str) -> LibraryInfo | None:
    """Return the matrix entry for *library*, or ``None`` if it has none.

    Args:
        library: a distribution name, import name or alias, in any case.

    Returns:
        The entry, or ``None`` for a library the matrix does not list (an unknown
        library is an expected answer, not an error).

    .. versionadded:: 0.1
    """
    return _matrix()[1].get(_key(library))


def check(library: str, profile: Profile | str) -> CheckResult:
    """Say whether *library* is safe to use in a worker of *profile*.

    In the process profile every library is :attr:`Status.OK`, listed or not: a
    worker runs one call at a time. In the thread profile a ``thread_safe`` library
    is :attr:`Status.OK`, a ``conditional`` or ``not_thread_safe`` one is
    :attr:`Status.WARNING` (the message gives the reason and the workaround), and a
    library the matrix does not list is :attr:`Status.UNKNOWN`.

    Args:
        library: a distribution name, import name or alias, in any case.
        profile: ``"process"`` or ``"thread"``.

    Raises:
        UnknownProfile: *profile* is neither.

    .. versionadded:: 0.1
    """
    chosen = _profile(profile)
    info = get_library_info(library)
    name = library.strip() if info is None else info.name
    if chosen is Profile.PROCESS:
        return CheckResult(
            library=name,
            profile=chosen,
            status=Status.OK,
            message="the process profile runs one call at a time per worker",
        )
    if info is None:
        return CheckResult(
            library=name,
            profile=chosen,
            status=Status.UNKNOWN,
            message=f"{name!r} is not in the compatibility matrix; check its "
            "documentation for thread safety before using the thread profile",
        )
    if info.thread_safety is ThreadSafety.THREAD_SAFE:
        return CheckResult(
            library=name,
            profile=chosen,
            status=Status.OK,
            message=f"thread-safe: {info.notes}",
        )
    label = (
        "conditionally thread-safe"
        if info.thread_safety is ThreadSafety.CONDITIONAL
        else "not thread-safe"
    )
    return CheckResult(
        library=name,
        profile=chosen,
        status=Status.WARNING,
        message=f"{label}: {info.notes} Workaround: {info.workaround}",
    )


@overload
def list_all() -> dict[str, list[str]]: ...
@overload
def list_all(category: ThreadSafety | str) -> list[str]: ...
def list_all(category: ThreadSafety | str | None = None) -> Any:
    """List the matrix's libraries by thread safety.

    Args:
        category: ``"thread_safe"``, ``"conditional"`` or ``"not_thread_safe"``
            (or a :class:`ThreadSafety`); ``None`` for every category.

    Returns:
        With a *category*, the sorted names in it. Without, a dict from each
        category's value (all three, in that order) to its sorted names.

    Raises:
        UnknownCategory: *category* is not one of the three.

    .. versionadded:: 0.1
    """
    if category is None:
        return {
            safety.value: sorted(
                e.name for e in _libraries() if e.thread_safety is safety
            )
            for safety in ThreadSafety
        }
    try:
        chosen = ThreadSafety(category)
    except ValueError:
        known = ", ".join(repr(s.value) for s in ThreadSafety)
        raise UnknownCategory(
            f"category must be one of {known}, not {category!r}"
        ) from None
    return sorted(e.name for e in _libraries() if e.thread_safety is chosen)


def generate_report(
    libraries: Iterable[str], profile: Profile | str
) -> CompatibilityReport:
    """Check every library of *libraries* against *profile*.

    Args:
        libraries: names as :func:`check` takes them; a library named twice (even
            by two of its names) is reported once.
        profile: ``"process"`` or ``"thread"``.

    Returns:
        ``{"compatible": [...], "warnings": [{"library", "message"}, ...],
        "unknown": [...]}``, each in the order given; known libraries under
        their matrix name.

    Raises:
        UnknownProfile: *profile* is neither.

    .. versionadded:: 0.1
    """
    chosen = _profile(profile)
    report: CompatibilityReport = {"compatible": [], "warnings": [], "unknown": []}
    seen: set[str] = set()
    for library in libraries:
        result = check(library, chosen)
        if result.library in seen:
            continue
        seen.add(result.library)
        if result.status is Status.OK:
            report["compatible"].append(result.library)
        elif result.status is Status.WARNING:
            report["warnings"].append(
                {"library": result.library, "message": result.message}
            )
        else:
            report["unknown"].append(result.library)
    return report
