"""``snakepit doctor``: the command (real subprocesses) and run_doctor itself."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snakepit._doctor import run_doctor
from snakepit.interpreter import clear_cache
from tests.interpreter import (
    env_with_checkout,
    patched_python,
    probe_answer,
    pyenv_pythons,
    shell_interpreter,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def doctor(*args: str) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "snakepit", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env_with_checkout(),
    )
    return done.returncode, done.stdout, done.stderr


def run(*args: str | None, **options: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_doctor(*args, out=out, err=err, **options)  # type: ignore[arg-type]
    return status, out.getvalue(), err.getvalue()


# --- The command ---


def test_doctor_passes_on_the_running_interpreter() -> None:
    status, out, err = doctor()
    assert status == 0, out + err
    version = "{}.{}.{}".format(*sys.version_info[:3])
    assert f"interpreter {sys.executable}" in out
    assert f"Python {version} (cpython)" in out
    assert "free-threaded build: no" in out
    assert "GIL enabled: yes" in out
    assert "recommended profile: process" in out
    assert "ok       msgpack" in out
    assert "checked for the thread profile" in out
    assert out.rstrip().endswith("ok: workers can start")
    assert err == ""


def test_doctor_fails_for_a_missing_interpreter() -> None:
    status, out, err = doctor("--python", "/nonexistent/python")
    assert status == 1
    assert (
        "snakepit doctor: Python interpreter /nonexistent/python does not exist" in err
    )
    assert "PROBLEM: Python interpreter /nonexistent/python does not exist" in out
    assert "FAILED" in out


def test_doctor_json() -> None:
    status, out, err = doctor("--json")
    assert status == 0, out + err
    document = json.loads(out)
    assert document["ok"] is True
    [result] = document["interpreters"]
    assert result["executable"] == sys.executable
    assert result["pool"] is None
    assert result["profile"] == "thread"
    assert result["python"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert result["python"]["has_msgpack"] is True
    assert result["recommendation"]["profile"] in ("process", "thread")
    assert result["problems"] == []
    assert "msgpack" in result["libraries"]["compatible"]


def test_doctor_json_for_a_missing_interpreter() -> None:
    status, out, _ = doctor("--json", "--python", "/nonexistent/python")
    assert status == 1
    document = json.loads(out)  # stdout stays one JSON document
    assert document["ok"] is False
    [result] = document["interpreters"]
    assert result["python"] is None
    assert "/nonexistent/python" in result["problems"][0]


def test_doctor_checks_every_pool_of_a_config(tmp_path: Path) -> None:
    config = tmp_path / "snakepit.toml"
    config.write_text(
        "[[pools]]\n"
        'name = "api"\n'
        "pool_size = 1\n"
        "\n"
        "[[pools]]\n"
        'name = "compute"\n'
        'worker_profile = "thread"\n'
        "pool_size = 1\n"
        "\n"
        "[[pools]]\n"
        'name = "legacy"\n'
        "pool_size = 1\n"
        'python_executable = "/nonexistent/python3.9"\n'
    )
    status, out, err = doctor("--config", str(config))
    assert status == 1
    assert f"pool 'api' (process profile): interpreter {sys.executable}" in out
    assert "checked for the process profile" in out
    assert "pool 'compute' (thread profile)" in out
    assert "pool 'compute' uses the thread profile" in out  # on a GIL build
    assert "pool 'legacy' (process profile): interpreter /nonexistent/python3.9" in out
    assert "/nonexistent/python3.9 does not exist" in err
    assert err.count("snakepit doctor:") == 1


def test_doctor_reports_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "snakepit.toml"
    config.write_text("pool_size = 0\n")
    status, _, err = doctor("--config", str(config))
    assert status == 1
    assert err.startswith("snakepit doctor: ")
    assert "pool_size" in err


PYENV_312 = pyenv_pythons("3.12.*")


@pytest.mark.skipif(not PYENV_312, reason="no pyenv 3.12 on this machine")
def test_doctor_fails_for_an_interpreter_without_msgpack() -> None:
    status, out, err = doctor("--python", PYENV_312[0])
    assert status == 1
    assert "msgpack is not installed" in err
    assert "msgpack: no" in out


def test_doctor_is_listed_in_the_help() -> None:
    status, out, _ = doctor("--help")
    assert status == 0
    for option in ("--python", "--config", "--json"):
        assert option in out


# --- run_doctor in-process, on stand-ins ---


def test_a_free_threaded_interpreter_is_recommended_the_thread_profile(
    tmp_path: Path,
) -> None:
    status, out, err = run(str(patched_python(tmp_path)), None)
    assert status == 0, out + err
    assert "Python 3.13.1 (cpython)" in out
    assert "free-threaded build: yes" in out
    assert "GIL enabled: no" in out
    assert "recommended profile: thread" in out


def test_warnings_do_not_fail_the_doctor(tmp_path: Path) -> None:
    python, _ = shell_interpreter(
        tmp_path,
        probe_answer(
            py_gil_disabled=False,
            gil_enabled=True,
            modules={"msgpack": "1.1.0", "snakepit": None, "pandas": "2.2.3"},
        ),
    )
    status, out, err = run(str(python), None)
    assert status == 0, out + err
    assert "warning: Python 3.13.1" in out  # a GIL build of 3.13
    assert "warning  pandas 2.2.3: not thread-safe" in out
    assert err == ""


def test_json_lists_problems_and_warnings_apart(tmp_path: Path) -> None:
    python, _ = shell_interpreter(
        tmp_path, probe_answer(version=[3, 9, 18], implementation="pypy", modules={})
    )
    status, out, err = run(str(python), None, as_json=True)
    assert status == 1
    [result] = json.loads(out)["interpreters"]
    assert len(result["problems"]) == 3  # too old, no msgpack, no snakepit
    assert any("too old" in p for p in result["problems"])
    assert any("pypy" in w for w in result["warnings"])
    assert result["libraries"] == {"compatible": [], "warnings": [], "unknown": []}
    assert err.count("snakepit doctor:") == 3


def test_python_overrides_every_pool(tmp_path: Path) -> None:
    config = tmp_path / "snakepit.toml"
    config.write_text(
        '[[pools]]\nname = "a"\npool_size = 1\n'
        'python_executable = "/nonexistent/python"\n'
    )
    status, out, err = run(sys.executable, str(config))
    assert status == 0, out + err
    assert f"pool 'a' (process profile): interpreter {sys.executable}" in out


def test_a_pool_adapter_env_reaches_the_probe(tmp_path: Path) -> None:
    python, log = shell_interpreter(tmp_path, probe_answer())
    config = tmp_path / "snakepit.toml"
    config.write_text(
        f'[[pools]]\nname = "a"\npool_size = 1\npython_executable = "{python}"\n'
        '[pools.adapter_env]\nSNAKEPIT_TEST_MARK = "PYTHON_GIL=0"\n'
    )
    status, out, err = run(None, str(config))
    assert status == 0, out + err
    assert "mark=PYTHON_GIL=0" in log.read_text()
