"""``snakepit doctor``: is this interpreter (or every pool's) ready for workers?

For each interpreter checked it prints the facts (version, free-threaded build,
GIL), the recommended profile and the compatibility report of the matrix's
libraries installed there, and exits 1 when workers could not start on one
(missing interpreter, too old, msgpack or snakepit not importable).

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Mapping
from typing import Any, TextIO

import attrs

from snakepit._version import __version__
from snakepit.exceptions import ConfigError, InterpreterNotFound
from snakepit.interpreter import check_installed, get_library_info, probe
from snakepit.interpreter._detect import _issues, _recommend
from snakepit.profiles import Profile

__all__ = ("run_doctor",)

_WIDTH = 88


@attrs.frozen
class _Target:
    """One interpreter to check: ``executable`` ``None`` is the workers' default."""

    pool: str | None
    executable: str | None
    profile: Profile
    env: Mapping[str, str] = attrs.field(factory=dict)


def _examine(target: _Target) -> dict[str, Any]:
    """Check *target*; the result is plain data, as ``--json`` prints it."""
    result: dict[str, Any] = {
        "pool": target.pool,
        "executable": target.executable or sys.executable,
        "profile": target.profile.value,
        "ok": False,
        "python": None,
        "recommendation": None,
        "problems": [],
        "warnings": [],
        "libraries": None,
    }
    try:
        info = probe(target.executable, env=target.env or None)
    except InterpreterNotFound as exc:
        result["problems"].append(str(exc))
        return result
    result["executable"] = info.executable
    result["python"] = {
        "version": info.version_string,
        "implementation": info.implementation,
        "free_threaded": info.free_threaded,
        "gil_enabled": info.gil_enabled,
        "msgpack": info.modules.get("msgpack") if info.has_msgpack else None,
        "has_msgpack": info.has_msgpack,
        "has_snakepit": info.has_snakepit,
        "modules": dict(info.modules),
    }
    advice = _recommend(info)
    result["recommendation"] = {
        "profile": advice.profile.value,
        "reason": advice.reason,
    }
    for issue in _issues(info):
        result["problems" if issue.blocking else "warnings"].append(issue.message)
    if (
        target.pool is not None
        and target.profile is Profile.THREAD
        and advice.profile is not Profile.THREAD
    ):
        result["warnings"].append(
            f"pool {target.pool!r} uses the thread profile: {advice.reason}"
        )
    env = target.env or None
    result["libraries"] = check_installed(target.executable, target.profile, env=env)
    result["ok"] = not result["problems"]
    return result


# --- Text output ---


def _wrapped(text: str, first: str, rest: str) -> str:
    return textwrap.fill(text, _WIDTH, initial_indent=first, subsequent_indent=rest)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _print_text(result: Mapping[str, Any], out: TextIO) -> None:
    where = f"interpreter {result['executable']}"
    if result["pool"] is not None:
        where = f"pool {result['pool']!r} ({result['profile']} profile): {where}"
    print(where, file=out)
    python = result["python"]
    if python is not None:
        print(f"  Python {python['version']} ({python['implementation']})", file=out)
        print(f"  free-threaded build: {_yes(python['free_threaded'])}", file=out)
        print(f"  GIL enabled: {_yes(python['gil_enabled'])}", file=out)
        msgpack = "no" if not python["has_msgpack"] else python["msgpack"] or "yes"
        print(f"  msgpack: {msgpack}", file=out)
        print(f"  snakepit importable: {_yes(python['has_snakepit'])}", file=out)
        advice = result["recommendation"]
        print(f"  recommended profile: {advice['profile']}", file=out)
        print(_wrapped(advice["reason"], "    ", "    "), file=out)
    for problem in result["problems"]:
        print(_wrapped(problem, "  PROBLEM: ", "    "), file=out)
    for warning in result["warnings"]:
        print(_wrapped(warning, "  warning: ", "    "), file=out)
    libraries = result["libraries"]
    if libraries is not None:
        modules = python["modules"] if python is not None else {}

        def named(library: str) -> str:
            info = get_library_info(library)
            version = modules.get(info.import_name) if info is not None else None
            return f"{library} {version}" if version else library

        total = len(libraries["compatible"]) + len(libraries["warnings"])
        print(
            f"  libraries from the matrix installed here: {total} "
            f"(checked for the {result['profile']} profile)",
            file=out,
        )
        for library in libraries["compatible"]:
            print(f"    ok       {named(library)}", file=out)
        for warning in libraries["warnings"]:
            line = f"{named(warning['library'])}: {warning['message']}"
            print(_wrapped(line, "    warning  ", "             "), file=out)


# --- Entry point ---


def _targets(python: str | None, config: str | None) -> list[_Target]:
    if config is None:
        return [_Target(pool=None, executable=python, profile=Profile.THREAD)]
    from snakepit.config import Config

    loaded = Config.load(config)
    return [
        _Target(
            pool=pool.name,
            executable=python or pool.python_executable,
            profile=pool.worker_profile,
            env=dict(pool.adapter_env),
        )
        for pool in loaded.get_pool_configs()
    ]


def run_doctor(
    python: str | None = None,
    config: str | None = None,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Check worker interpreters, print what was found, return the exit status.

    Args:
        python: the interpreter to check (default: this one, the workers'
            default); with *config*, it replaces every pool's.
        config: a TOML configuration: check every pool's ``python_executable``
            (with its ``adapter_env``) for its ``worker_profile``.
        as_json: print one JSON document instead of text.
        out: where the report goes (default: stdout).
        err: where blocking problems are also written (default: stderr).

    Returns:
        0 when workers can start on every interpreter checked, else 1.

    .. versionadded:: 0.1
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        targets = _targets(python, config)
    except ConfigError as exc:
        print(f"snakepit doctor: {exc}", file=err)
        return 1
    results = [_examine(target) for target in targets]
    ok = all(result["ok"] for result in results)
    if as_json:
        document = {"snakepit": __version__, "ok": ok, "interpreters": results}
        print(json.dumps(document, indent=2), file=out)
    else:
        print(f"snakepit doctor ({__version__})", file=out)
        for result in results:
            print(file=out)
            _print_text(result, out)
        print(file=out)
        print(
            "ok: workers can start" if ok else "FAILED: workers cannot start",
            file=out,
        )
    for result in results:
        for problem in result["problems"]:
            print(f"snakepit doctor: {problem}", file=err)
    return 0 if ok else 1
