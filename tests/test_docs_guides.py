"""Every python block of the README and of the execute and troubleshooting guides
runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = [
    "README.md",
    "docs/execute.md",
    "docs/troubleshooting.md",
    "docs/lifecycle.md",
]


def blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), re.DOTALL)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(code, id=f"{name}-{i}")
        for name in GUIDES
        for i, code in enumerate(blocks(name))
    ],
)
def test_guide_block_runs(code: str) -> None:
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc__"})


def test_the_guides_have_code() -> None:
    for name in GUIDES:
        assert blocks(name), name
