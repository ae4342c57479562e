"""Stand-in interpreters for the snakepit.interpreter and doctor tests.

A stand-in is an executable script that answers the probe the way a given build
would: either a shell script printing the probe's JSON line, or a Python wrapper
that runs the real probe with ``sysconfig`` and ``sys`` patched.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

#: Where the lead builds a real free-threaded CPython (may not exist yet).
FREE_THREADED_PYTHON = Path.home() / ".cache/snakepit/cpython-3.13t/bin/python3.13t"
#: A venv of that build, for workers (msgpack installed).
FREE_THREADED_VENV = Path.home() / ".cache/snakepit/venv-3.13t/bin/python"


def pyenv_pythons(pattern: str) -> list[str]:
    """The pyenv interpreters matching ``/root/.pyenv/versions/<pattern>``."""
    return sorted(glob.glob(f"/root/.pyenv/versions/{pattern}/bin/python3")) or sorted(
        glob.glob(f"/root/.pyenv/versions/{pattern}/bin/python")
    )


def executable_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def probe_answer(**changes: Any) -> dict[str, Any]:
    """The probe's JSON for a healthy free-threaded 3.13.1 with msgpack, changed."""
    answer: dict[str, Any] = {
        "probe": 1,
        "executable": "/opt/fake/bin/python3.13t",
        "version": [3, 13, 1],
        "implementation": "cpython",
        "py_gil_disabled": True,
        "gil_enabled": False,
        "modules": {"msgpack": "1.1.0", "snakepit": None, "sqlite3": None},
    }
    answer.update(changes)
    return answer


def shell_interpreter(
    directory: Path, answer: dict[str, Any], *, name: str = "python-fake"
) -> tuple[Path, Path]:
    """A ``#!/bin/sh`` stand-in printing *answer*; each run appends a line (the
    value of ``$SNAKEPIT_TEST_MARK`` and ``$PYTHONPATH``) to the returned log."""
    log = directory / f"{name}.runs"
    script = executable_script(
        directory / name,
        "#!/bin/sh\n"
        f'echo "mark=$SNAKEPIT_TEST_MARK path=$PYTHONPATH" >> "{log}"\n'
        f"cat <<'EOF'\n{json.dumps(answer)}\nEOF\n",
    )
    return script, log


def counting_wrapper(
    directory: Path, target: str = sys.executable
) -> tuple[Path, Path]:
    """A ``#!/bin/sh`` wrapper around the real *target* that logs each run."""
    log = directory / "wrapper.runs"
    script = executable_script(
        directory / "python-wrapper",
        f'#!/bin/sh\necho run >> "{log}"\nexec "{target}" "$@"\n',
    )
    return script, log


def patched_python(
    directory: Path,
    *,
    gil_disabled_build: bool = True,
    gil_enabled: bool = False,
    version: tuple[int, int, int] = (3, 13, 1),
    name: str = "python3.13t-fake",
) -> Path:
    """A Python wrapper around this interpreter that runs the real probe as a
    free-threaded build would answer it: ``Py_GIL_DISABLED``,
    ``sys._is_gil_enabled()`` and the version are patched, nothing else."""
    return executable_script(
        directory / name,
        f"#!{sys.executable}\n"
        "import sys, sysconfig\n"
        "_real = sysconfig.get_config_var\n"
        "sysconfig.get_config_var = lambda name: "
        f"{int(gil_disabled_build)} if name == 'Py_GIL_DISABLED' else _real(name)\n"
        f"sys._is_gil_enabled = lambda: {gil_enabled}\n"
        f"sys.version_info = {(*version, 'final', 0)!r}\n"
        "assert sys.argv[1] == '-c', sys.argv\n"
        "code = sys.argv[2]\n"
        "sys.argv = ['-c', *sys.argv[3:]]\n"
        "exec(compile(code, '<string>', 'exec'), {'__name__': '__main__'})\n",
    )


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def env_with_checkout() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root}
