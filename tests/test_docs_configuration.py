"""docs/configuration.md: every python block runs, every TOML block loads, and the
key tables list every key."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import attrs
import pytest

from snakepit.config import Config, PoolConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
TEXT = DOC.read_text(encoding="utf-8")
FENCE = re.compile(r"^```(python|toml)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

#: TOML needs tomllib (3.11+) or tomli; without either, snakepit says to install it.
HAS_TOML = sys.version_info >= (3, 11) or importlib.util.find_spec("tomli") is not None


def fenced(language: str) -> list[tuple[int, str]]:
    """Return ``(line number, code)`` for each *language* block, in order."""
    return [
        (TEXT.count("\n", 0, match.start()) + 1, match.group(2))
        for match in FENCE.finditer(TEXT)
        if match.group(1) == language
    ]


PYTHON = fenced("python")
TOML = fenced("toml")


def test_the_guide_has_examples() -> None:
    assert len(PYTHON) >= 10
    assert len(TOML) >= 3
    # every fence is python or toml, so none escapes the checks below
    assert TEXT.count("\n```") == 2 * (len(PYTHON) + len(TOML))


@pytest.mark.parametrize(
    ("line", "code"), PYTHON, ids=[f"line{line}" for line, _ in PYTHON]
)
def test_python_block_runs(line: int, code: str) -> None:
    if "toml" in code.lower() and not HAS_TOML:
        pytest.skip("no TOML parser (Python 3.10 without tomli)")
    # pad so that tracebacks point at the right line of the guide
    compiled = compile("\n" * line + code, str(DOC), "exec")
    exec(compiled, {"__name__": "__docs__"})


@pytest.mark.skipif(not HAS_TOML, reason="no TOML parser (Python 3.10 without tomli)")
@pytest.mark.parametrize(
    ("line", "text"), TOML, ids=[f"line{line}" for line, _ in TOML]
)
def test_toml_block_loads(line: int, text: str, tmp_path: Path) -> None:
    name = "pyproject.toml" if "[tool.snakepit" in text else "snakepit.toml"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        # the guide's examples keep grpc_config, which only warns
        warnings.filterwarnings("ignore", "grpc_config has no effect", UserWarning)
        config = Config.from_toml(path)
    assert config.pools


def table_keys(heading: str) -> list[str]:
    """The backticked keys of the first column of the table after *heading*."""
    after = TEXT[TEXT.index(heading) :]
    rows = re.findall(r"^\| `(\w+)` \|", after.split("\n\n", 2)[1], re.MULTILINE)
    return rows


def test_key_tables_list_every_key() -> None:
    global_keys = table_keys("Global keys:")
    pool_keys = table_keys("Per-pool keys, allowed")
    assert global_keys == ["pooling_enabled", "pools", "pool_config", "grpc_config"]
    assert sorted(pool_keys) == sorted(f.name for f in attrs.fields(PoolConfig))
