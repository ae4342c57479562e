"""Questions about an interpreter: version, free-threading, profile, problems.

Each answer comes from :func:`~snakepit.interpreter.probe` (cached), so asking
several questions about one interpreter runs it once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import final

import attrs

from snakepit.profiles import Profile

from ._compat import CompatibilityReport, _libraries, generate_report
from ._probe import InterpreterInfo, probe

__all__ = (
    "MIN_WORKER_VERSION",
    "Recommendation",
    "check_installed",
    "detect",
    "gil_enabled",
    "is_free_threaded",
    "recommend_profile",
    "supports_free_threading",
    "validate",
)

#: The oldest Python a worker runs on (``snakepit.worker`` needs 3.10).
MIN_WORKER_VERSION = (3, 10)
#: The first Python with free-threaded builds (PEP 703).
_FREE_THREADING_VERSION = (3, 13)


@final
@attrs.frozen(kw_only=True)
class Recommendation:
    """What :func:`recommend_profile` advises, and why.

    Attributes:
        profile: :attr:`Profile.THREAD` only where the GIL is really off.
        reason: a sentence saying why.

    .. versionadded:: 0.1
    """

    profile: Profile
    reason: str


# --- Questions ---


def detect(executable: str | os.PathLike[str] | None = None) -> tuple[int, int, int]:
    """Return the ``(major, minor, micro)`` version of *executable*.

    Args:
        executable: as for :func:`probe` (default: the workers' default).

    Raises:
        InterpreterNotFound: as for :func:`probe`.

    .. versionadded:: 0.1
    """
    return probe(executable).version


def is_free_threaded(executable: str | os.PathLike[str] | None = None) -> bool:
    """Whether *executable* is a free-threaded build (``Py_GIL_DISABLED``).

    A free-threaded build may still run with the GIL on: see :func:`gil_enabled`.

    Raises:
        InterpreterNotFound: as for :func:`probe`.

    .. versionadded:: 0.1
    """
    return probe(executable).free_threaded


def gil_enabled(executable: str | os.PathLike[str] | None = None) -> bool:
    """Whether the GIL of *executable* is on at run time, as a worker would see it.

    ``sys._is_gil_enabled()`` where it exists (3.13+), read after importing
    msgpack: ``PYTHON_GIL=1``, ``-X gil=1`` or an extension module without
    free-threading support turn it back on. Always true before 3.13.

    Raises:
        InterpreterNotFound: as for :func:`probe`.

    .. versionadded:: 0.1
    """
    return probe(executable).gil_enabled


def supports_free_threading(version: Sequence[int]) -> bool:
    """Whether Python *version* can come as a free-threaded build (3.13 or later).

    The version rule only: whether a given interpreter really is free-threaded
    takes :func:`is_free_threaded`, and whether its GIL is off, :func:`gil_enabled`.

    Args:
        version: ``(major, minor[, micro...])``, such as :func:`detect` returns.

    .. versionadded:: 0.1
    """
    return tuple(version[:2]) >= _FREE_THREADING_VERSION


def recommend_profile(
    executable: str | os.PathLike[str] | None = None,
) -> Recommendation:
    """Advise a profile for workers on *executable*.

    ``thread`` only for a free-threaded build whose GIL is off at run time, where
    the calls of one worker run Python code in parallel; ``process`` otherwise,
    with the reason. The thread profile still pays off on a GIL build for code that
    releases the GIL (numpy, torch...): choose it per pool.

    Raises:
        InterpreterNotFound: as for :func:`probe`.

    .. versionadded:: 0.1
    """
    return _recommend(probe(executable))


def _recommend(info: InterpreterInfo) -> Recommendation:
    python = f"Python {info.version_string}"
    if info.free_threaded and not info.gil_enabled:
        return Recommendation(
            profile=Profile.THREAD,
            reason=f"{python} is a free-threaded build with the GIL off: the calls "
            "of a thread-profile worker run Python code in parallel",
        )
    if info.free_threaded:
        return Recommendation(
            profile=Profile.PROCESS,
            reason=f"{python} is a free-threaded build, but its GIL is on at run "
            "time (PYTHON_GIL=1, -X gil=1, or an extension module without "
            "free-threading support re-enabled it): threads would take turns",
        )
    build = (
        "a standard build"
        if supports_free_threading(info.version)
        else "free-threading needs a free-threaded build of 3.13 or later"
    )
    return Recommendation(
        profile=Profile.PROCESS,
        reason=f"{python} has a GIL ({build}): threads take turns, except in "
        "code that releases the GIL (numpy, torch...), where the thread profile "
        "still helps",
    )


@attrs.frozen
class _Issue:
    """A problem :func:`validate` reports; *blocking* ones stop workers starting."""

    blocking: bool
    message: str


def _issues(info: InterpreterInfo) -> list[_Issue]:
    exe, python = info.executable, f"Python {info.version_string}"
    issues: list[_Issue] = []
    if info.version[:2] < MIN_WORKER_VERSION:
        minimum = ".".join(map(str, MIN_WORKER_VERSION))
        issues.append(
            _Issue(
                True,
                f"{python} ({exe}) is too old for a snakepit worker: "
                f"{minimum} or later is needed",
            )
        )
    if not info.has_msgpack:
        issues.append(
            _Issue(
                True,
                f"msgpack is not installed for {exe}: workers cannot "
                f"start (install it: {exe} -m pip install msgpack)",
            )
        )
    if not info.has_snakepit:
        issues.append(
            _Issue(
                True,
                f"snakepit cannot be imported by {exe}: workers cannot "
                "start (install snakepit for that interpreter)",
            )
        )
    if info.implementation != "cpython":
        issues.append(
            _Issue(
                False,
                f"{exe} is {info.implementation}, not CPython: snakepit "
                "workers are tested on CPython only",
            )
        )
    if supports_free_threading(info.version) and not info.free_threaded:
        issues.append(
            _Issue(
                False,
                f"{python} ({exe}) is a standard build with the GIL: "
                "threads run only GIL-releasing code in parallel; a "
                "free-threaded build (python3.13t) runs Python code in parallel",
            )
        )
    if info.free_threaded and info.gil_enabled:
        issues.append(_Issue(False, _recommend(info).reason))
    return issues


def validate(executable: str | os.PathLike[str] | None = None) -> list[str]:
    """Check *executable* as a worker interpreter and list what is wrong.

    Reported: a version older than :data:`MIN_WORKER_VERSION`, msgpack or
    snakepit not importable (workers cannot start), an implementation other than
    CPython, a GIL build of 3.13+, a free-threaded build whose GIL is on.

    Returns:
        One message per problem; empty when all is well.

    Raises:
        InterpreterNotFound: as for :func:`probe`.

    .. versionadded:: 0.1
    """
    return [issue.message for issue in _issues(probe(executable))]


def _older(installed: str, minimum: str) -> bool:
    """Whether release *installed* precedes *minimum* (leading numbers compared)."""

    def release(text: str) -> tuple[int, ...]:
        parts = []
        for piece in text.split("."):
            digits = ""
            for char in piece:
                if not char.isdigit():
                    break
                digits += char
            if not digits:
                break
            parts.append(int(digits))
            if len(digits) < len(piece):
                break
        return tuple(parts)

    have, need = release(installed), release(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


def check_installed(
    executable: str | os.PathLike[str] | None = None,
    profile: Profile | str = Profile.THREAD,
    *,
    env: Mapping[str, str] | None = None,
) -> CompatibilityReport:
    """Report on the matrix's libraries that *executable* can import.

    The report of :func:`generate_report` over the installed libraries, in matrix
    order. In the thread profile a library older than the entry's ``min_version``
    is a warning even when thread-safe (the entry may not describe it).

    Args:
        executable: as for :func:`probe` (default: the workers' default).
        profile: ``"thread"`` (default) or ``"process"``.
        env: as for :func:`probe`.

    Raises:
        InterpreterNotFound: as for :func:`probe`.
        UnknownProfile: *profile* is neither.

    .. versionadded:: 0.1
    """
    info = probe(executable, env=env)
    installed = [e for e in _libraries() if e.import_name in info.modules]
    report = generate_report([e.name for e in installed], profile)
    if Profile(profile) is Profile.THREAD:
        for entry in installed:
            version = info.modules[entry.import_name]
            if entry.min_version is None or version is None:
                continue
            if not _older(version, entry.min_version):
                continue
            note = (
                f"{entry.name} {version} is older than {entry.min_version}, the "
                "oldest release the matrix describes"
            )
            if entry.name in report["compatible"]:
                report["compatible"].remove(entry.name)
                report["warnings"].append({"library": entry.name, "message": note})
            else:
                for warning in report["warnings"]:
                    if warning["library"] == entry.name:
                        warning["message"] = f"{note}; {warning['message']}"
    return report
