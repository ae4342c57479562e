"""Interpreter tools: detect a worker interpreter, advise a profile, check libraries.

The Elixir library's ``Snakepit.PythonVersion`` (:func:`detect`,
:func:`supports_free_threading`, :func:`recommend_profile`, :func:`validate`) and
``Snakepit.Compatibility`` (:func:`check`, :func:`get_library_info`,
:func:`list_all`, :func:`generate_report`), plus :func:`probe` and
:func:`check_installed`, which ask the interpreter itself. ``snakepit doctor``
prints all of it. See ``docs/interpreters.md``.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._compat import CheckResult as CheckResult
from ._compat import CompatibilityReport as CompatibilityReport
from ._compat import LibraryInfo as LibraryInfo
from ._compat import ReportWarning as ReportWarning
from ._compat import Status as Status
from ._compat import ThreadSafety as ThreadSafety
from ._compat import check as check
from ._compat import generate_report as generate_report
from ._compat import get_library_info as get_library_info
from ._compat import list_all as list_all
from ._detect import MIN_WORKER_VERSION as MIN_WORKER_VERSION
from ._detect import Recommendation as Recommendation
from ._detect import check_installed as check_installed
from ._detect import detect as detect
from ._detect import gil_enabled as gil_enabled
from ._detect import is_free_threaded as is_free_threaded
from ._detect import recommend_profile as recommend_profile
from ._detect import supports_free_threading as supports_free_threading
from ._detect import validate as validate
from ._probe import DEFAULT_PROBE_TIMEOUT as DEFAULT_PROBE_TIMEOUT
from ._probe import PROBE as PROBE
from ._probe import InterpreterInfo as InterpreterInfo
from ._probe import clear_cache as clear_cache
from ._probe import probe as probe
from ._probe import probe_async as probe_async

__all__ = (
    # detection (Snakepit.PythonVersion)
    "probe",
    "probe_async",
    "detect",
    "is_free_threaded",
    "gil_enabled",
    "supports_free_threading",
    "recommend_profile",
    "validate",
    "clear_cache",
    "InterpreterInfo",
    "Recommendation",
    "MIN_WORKER_VERSION",
    "DEFAULT_PROBE_TIMEOUT",
    "PROBE",
    # the compatibility matrix (Snakepit.Compatibility)
    "check",
    "get_library_info",
    "list_all",
    "generate_report",
    "check_installed",
    "ThreadSafety",
    "Status",
    "LibraryInfo",
    "CheckResult",
    "CompatibilityReport",
    "ReportWarning",
)
