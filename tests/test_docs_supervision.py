"""Every ```python block of docs/supervision.md runs, and passes its own asserts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "supervision.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[int, str]]:
    """Return ``(line number, code)`` for each python block, in order."""
    text = DOC.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in BLOCK.finditer(text)
    ]


BLOCKS = python_blocks()


def test_the_guide_has_examples() -> None:
    assert len(BLOCKS) >= 10
    # every fenced block is a python one (or a table), so none escapes the run
    fences = DOC.read_text(encoding="utf-8").count("\n```")
    assert fences == 2 * len(BLOCKS)


@pytest.mark.parametrize(
    ("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS]
)
def test_block_runs(line: int, code: str) -> None:
    if "anyio.run(main)" in code:
        # async examples are bounded, so a broken one fails instead of hanging
        assert "anyio.fail_after(" in code
    # pad so that tracebacks point at the right line of the guide
    compiled = compile("\n" * line + code, str(DOC), "exec")
    exec(compiled, {"__name__": "__docs__"})
