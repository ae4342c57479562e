"""``snakepit new-adapter NAME``: the skeleton it writes passes its own tests, and
it refuses bad names and existing files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

# Imported here so that in-process pytester runs (which drop the modules they
# import) share these modules with us instead of importing fresh copies.
import snakepit.pool
import snakepit.telemetry  # noqa: F401
from snakepit._new_adapter import adapter_class_name, write_adapter
from snakepit.cli import main
from tests._pytester import backends, plugin_args

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


def test_the_skeleton_passes_its_own_tests(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(ROOT)
    adapter, tests = write_adapter("greeter", pytester.path)
    assert (adapter.name, tests.name) == ("greeter.py", "test_greeter.py")
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", "-v")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=3 * backends())


def test_the_skeleton_is_documented(tmp_path: Path) -> None:
    """Every class and function of both files has a docstring, and the adapter
    has setup, a command, a streaming command and teardown."""
    adapter, tests = write_adapter("text_stats", tmp_path)
    for path in (adapter, tests):
        tree = ast.parse(path.read_text(), filename=str(path))
        assert ast.get_docstring(tree), path
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                assert ast.get_docstring(node), f"{path.name}: {node.name}"
    source = adapter.read_text()
    assert "class TextStatsAdapter(Adapter):" in source
    for expected in (
        "def setup(",
        "@command\n    def greet(",
        "yield",
        "def teardown(",
    ):
        assert expected in source, expected
    assert 'ADAPTER = "text_stats:TextStatsAdapter"' in tests.read_text()


def test_the_command_writes_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new" / "folder"  # created when missing
    assert main(["new-adapter", "greeter", "--dir", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == ["greeter.py", "test_greeter.py"]
    out = capsys.readouterr().out
    assert "GreeterAdapter" in out
    assert "greeter:GreeterAdapter" in out
    assert f"python -m pytest{' '.join(['', *plugin_args()])} {target}" in out


def test_the_working_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new-adapter", "my_adapter"]) == 0
    assert (tmp_path / "my_adapter.py").read_text().count("class MyAdapter(") == 1
    assert (tmp_path / "test_my_adapter.py").is_file()


@pytest.mark.parametrize("existing", ["greeter.py", "test_greeter.py"])
def test_existing_files_are_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: str
) -> None:
    (tmp_path / existing).write_text("# mine\n")
    assert main(["new-adapter", "greeter", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / existing} already exists; nothing was written" in err
    assert (
        "Remove or rename it, choose another NAME, or write elsewhere with --dir" in err
    )
    assert [p.name for p in tmp_path.iterdir()] == [existing]  # nothing written
    assert (tmp_path / existing).read_text() == "# mine\n"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("my-adapter", "is not a Python identifier"),
        ("2fast", "is not a Python identifier"),
        ("", "is not a Python identifier"),
        ("class", "is a Python keyword"),
        ("json", "would shadow the module 'json' of the standard library"),
        ("snakepit", "would shadow the module 'snakepit' of snakepit"),
        ("test_greeter", "would be collected by pytest as a test file"),
        ("conftest", "would be collected by pytest as a test file"),
        ("pytest", "a module named 'pytest' is importable already"),
    ],
)
def test_bad_names_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, reason: str
) -> None:
    assert main(["new-adapter", name, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snakepit new-adapter: error: ")
    assert reason in err
    assert "pick another NAME" in err
    assert list(tmp_path.iterdir()) == []


def test_a_dir_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("")
    assert main(["new-adapter", "greeter", "--dir", str(tmp_path / "f")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_help_lists_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "new-adapter" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("greeter", "GreeterAdapter"),
        ("text_stats", "TextStatsAdapter"),
        ("my_adapter", "MyAdapter"),
        ("adapter", "MyAdapter"),
        ("_", "MyAdapter"),
        ("Fancy", "FancyAdapter"),
    ],
)
def test_class_names(name: str, cls: str) -> None:
    assert adapter_class_name(name) == cls
