"""Probing an interpreter: run the probe script in it, or answer in-process.

Another interpreter is asked by running :data:`PROBE` in it
(``[exe, "-c", PROBE, modules_json]``) with a timeout, in the environment a
worker would get; the script prints one line of JSON (see :data:`PROBE`), so a
stand-in that prints that line can play any interpreter. The running interpreter
answers in-process. Answers are cached per executable path, its target's
modification time and the extra environment; :func:`clear_cache` forgets them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, final

import anyio.to_thread
import attrs

from snakepit.exceptions import InterpreterNotFound, InterpreterProbeFailed

from ._compat import _libraries

__all__ = (
    "DEFAULT_PROBE_TIMEOUT",
    "PROBE",
    "InterpreterInfo",
    "clear_cache",
    "probe",
    "probe_async",
)

#: Seconds an interpreter has to answer the probe.
DEFAULT_PROBE_TIMEOUT = 20.0

#: The script run as ``[exe, "-c", PROBE, modules_json]``, where *modules_json* is
#: a JSON list of ``[import_name, distribution_name]`` pairs. It prints one line:
#: ``{"probe": 1, "executable": str, "version": [major, minor, micro],
#: "implementation": str, "py_gil_disabled": bool, "gil_enabled": bool,
#: "modules": {import_name: version or null}}``, where ``modules`` holds the
#: importable modules among those asked, and ``gil_enabled`` is read after
#: importing msgpack (as a worker does), which may re-enable the GIL of a
#: free-threaded build. Written for any Python from 2.7 on, so that a too-old
#: interpreter is reported as such.
PROBE = r"""
import json
import sys
import sysconfig


def snakepit_probe(modules):
    try:
        from importlib.util import find_spec
    except ImportError:
        find_spec = None
    try:
        from importlib import metadata
    except ImportError:
        metadata = None
    owners = {}
    if metadata is not None and hasattr(metadata, "packages_distributions"):
        try:
            owners = metadata.packages_distributions()
        except Exception:
            owners = {}
    found = {}
    for name, distribution in modules:
        if find_spec is not None:
            try:
                present = find_spec(name) is not None
            except (ImportError, ValueError):
                present = False
        else:
            import imp
            try:
                imp.find_module(name)
                present = True
            except ImportError:
                present = False
        if not present:
            continue
        version = None
        if metadata is not None:
            for candidate in list(owners.get(name, [])) + [distribution]:
                try:
                    version = metadata.version(candidate)
                    break
                except Exception:
                    pass
        found[name] = version
    if "msgpack" in found:
        try:
            import msgpack
        except Exception:
            del found["msgpack"]
    if hasattr(sys, "implementation"):
        implementation = sys.implementation.name
    else:
        import platform
        implementation = platform.python_implementation().lower()
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return {
        "probe": 1,
        "executable": sys.executable,
        "version": list(sys.version_info[:3]),
        "implementation": implementation,
        "py_gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": True if is_gil_enabled is None else bool(is_gil_enabled()),
        "modules": found,
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(snakepit_probe(json.loads(sys.argv[1]))) + "\n")
"""


def _freeze(modules: Mapping[str, str | None]) -> Mapping[str, str | None]:
    return MappingProxyType(dict(modules))


@final
@attrs.frozen(kw_only=True)
class InterpreterInfo:
    """What a probe found out about one interpreter.

    Attributes:
        executable: the interpreter's path, as probed.
        version: ``(major, minor, micro)``.
        implementation: ``sys.implementation.name`` (``"cpython"``, ``"pypy"``...).
        free_threaded: whether it is a free-threaded build (``Py_GIL_DISABLED``).
        gil_enabled: whether the GIL is on at run time, once msgpack is imported
            as in a worker (``sys._is_gil_enabled()``; always true before 3.13).
        has_msgpack: whether it can import msgpack (workers need it).
        has_snakepit: whether it can import snakepit, with the ``PYTHONPATH`` a
            worker would get.
        modules: the importable modules among those probed (the matrix's import
            names, msgpack, snakepit), each with its installed version or ``None``.

    .. versionadded:: 0.1
    """

    executable: str
    version: tuple[int, int, int]
    implementation: str
    free_threaded: bool
    gil_enabled: bool
    has_msgpack: bool
    has_snakepit: bool
    modules: Mapping[str, str | None] = attrs.field(
        factory=dict, converter=_freeze, hash=False
    )

    @property
    def version_string(self) -> str:
        """The version as ``"3.13.0"``."""
        return ".".join(map(str, self.version))


# --- Probing ---

_cache: dict[tuple[object, ...], InterpreterInfo] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached probe (after installing packages into an interpreter).

    .. versionadded:: 0.1
    """
    with _cache_lock:
        _cache.clear()


def _probed_modules() -> list[list[str]]:
    """``[import_name, distribution]`` for the matrix, msgpack and snakepit."""
    pairs = {entry.import_name: entry.name for entry in _libraries()}
    pairs.setdefault("msgpack", "msgpack")
    pairs.setdefault("snakepit", "snakepit")
    return [[name, distribution] for name, distribution in pairs.items()]


def _resolve(executable: str | os.PathLike[str]) -> str:
    """The absolute path of *executable* (a bare name is looked up on ``PATH``).

    The last symlink is not resolved: a venv's ``python`` links to its base
    interpreter but sees other packages.
    """
    text = os.fspath(executable)
    if not text:
        raise InterpreterNotFound("the Python interpreter path is empty")
    if os.sep not in text and not (os.altsep and os.altsep in text):
        found = shutil.which(text)
        if found is None:
            raise InterpreterNotFound(f"Python interpreter {text!r} is not on PATH")
        text = found
    path = os.path.abspath(text)
    if not os.path.exists(path):
        raise InterpreterNotFound(f"Python interpreter {path} does not exist")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise InterpreterNotFound(f"Python interpreter {path} is not an executable")
    return path


def _is_current(path: str) -> bool:
    return bool(sys.executable) and path == os.path.abspath(sys.executable)


def _probe_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment a worker would get, as far as imports and the GIL go."""
    from snakepit.pool._spawn import _source_checkout_path

    env = dict(os.environ)
    checkout = _source_checkout_path()
    if checkout is not None:
        parts = [checkout, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env.update(extra)
    return env


def _info(path: str, data: object) -> InterpreterInfo:
    """Build an :class:`InterpreterInfo` from the probe's JSON, checking its shape."""
    if not isinstance(data, dict) or data.get("probe") != 1:
        raise InterpreterProbeFailed(f"{path} answered the probe with {data!r}")
    version = data.get("version")
    modules = data.get("modules")
    implementation = data.get("implementation")
    if not (
        isinstance(version, list)
        and len(version) == 3
        and all(isinstance(part, int) for part in version)
        and isinstance(modules, dict)
        and all(v is None or isinstance(v, str) for v in modules.values())
        and isinstance(implementation, str)
        and isinstance(data.get("py_gil_disabled"), bool)
        and isinstance(data.get("gil_enabled"), bool)
    ):
        raise InterpreterProbeFailed(
            f"{path} answered the probe with unexpected data: {data!r}"
        )
    return InterpreterInfo(
        executable=path,
        version=(version[0], version[1], version[2]),
        implementation=implementation,
        free_threaded=data["py_gil_disabled"],
        gil_enabled=data["gil_enabled"],
        has_msgpack="msgpack" in modules,
        has_snakepit="snakepit" in modules,
        modules=modules,
    )


def _run_probe(path: str, env: Mapping[str, str], timeout: float) -> InterpreterInfo:
    argv = [path, "-c", PROBE, json.dumps(_probed_modules())]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_probe_env(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InterpreterProbeFailed(
            f"{path} did not answer the interpreter probe within {timeout:g} s"
        ) from exc
    except OSError as exc:
        raise InterpreterNotFound(
            f"Python interpreter {path} will not run: {exc}"
        ) from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise InterpreterProbeFailed(
            f"{path} failed the interpreter probe (exit status {done.returncode}); "
            f"is it a Python interpreter?\n{tail}".rstrip()
        )
    try:
        data = json.loads(lines[-1])
    except ValueError as exc:
        raise InterpreterProbeFailed(
            f"{path} answered the interpreter probe with {lines[-1]!r}, not JSON"
        ) from exc
    return _info(path, data)


def _probe_here() -> InterpreterInfo:
    namespace: dict[str, Any] = {"__name__": "snakepit_probe"}
    exec(compile(PROBE, "<snakepit probe>", "exec"), namespace)
    data = namespace["snakepit_probe"](_probed_modules())
    return _info(sys.executable, data)


def probe(
    executable: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_PROBE_TIMEOUT,
) -> InterpreterInfo:
    """Find out what *executable* is: version, build, GIL, installed modules.

    Blocks while another interpreter runs the probe: in async code use
    :func:`probe_async`.

    Args:
        executable: the interpreter (a path, or a name looked up on ``PATH``);
            ``None`` for the workers' default, :data:`sys.executable`, which
            answers in-process.
        env: variables added to the probe's environment, as a pool's
            ``adapter_env`` is to its workers' (``PYTHON_GIL``...); given, even
            the running interpreter is probed in a subprocess.
        timeout: seconds the interpreter has to answer.

    Raises:
        InterpreterNotFound: *executable* does not exist, is not executable or
            will not start; the message names the path.
        InterpreterProbeFailed: it started but did not answer the probe (not a
            Python interpreter, crashed, or too slow).

    .. versionadded:: 0.1
    """
    extra = dict(env or {})
    if executable is None and not extra:
        path = sys.executable
    else:
        path = _resolve(sys.executable if executable is None else executable)
    here = not extra and (executable is None or _is_current(path))
    if here:
        key: tuple[object, ...] = ("<running interpreter>",)
    else:
        target = os.path.realpath(path)
        key = (path, target, os.stat(target).st_mtime_ns, tuple(sorted(extra.items())))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    info = _probe_here() if here else _run_probe(path, extra, timeout)
    with _cache_lock:
        return _cache.setdefault(key, info)


async def probe_async(
    executable: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_PROBE_TIMEOUT,
) -> InterpreterInfo:
    """:func:`probe` in a worker thread, so the event loop keeps running.

    Takes and raises the same as :func:`probe`.

    .. versionadded:: 0.1
    """
    call = functools.partial(probe, executable, env=env, timeout=timeout)
    return await anyio.to_thread.run_sync(call)
