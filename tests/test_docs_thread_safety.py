"""Every ```python block of docs/thread-safety.md runs, and passes its own asserts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from snakepit.config import PoolConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "thread-safety.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
OTHER = re.compile(r"^```(text|json)\n.*?^```$", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[int, str]]:
    """Return ``(line number, code)`` for each python block, in order."""
    text = DOC.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in BLOCK.finditer(text)
    ]


def config_has_thread_safety_checks() -> bool:
    try:
        PoolConfig(thread_safety_checks=True)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        return False
    return True


BLOCKS = python_blocks()


def test_the_guide_has_examples() -> None:
    assert len(BLOCKS) >= 8
    # every fenced block is python, or the text/json shown as output and data
    text = DOC.read_text(encoding="utf-8")
    others = len(OTHER.findall(text))
    assert text.count("\n```") == 2 * (len(BLOCKS) + others)


@pytest.mark.parametrize(
    ("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS]
)
def test_block_runs(line: int, code: str) -> None:
    if "anyio.run(main)" in code:
        # async examples are bounded, so a broken one fails instead of hanging
        assert "anyio.fail_after(" in code
    if '"thread_safety_checks"' in code and not config_has_thread_safety_checks():
        pytest.skip("the pool config has no thread_safety_checks key yet")
    # pad so that tracebacks point at the right line of the guide
    compiled = compile("\n" * line + code, str(DOC), "exec")
    exec(compiled, {"__name__": "__docs__"})
