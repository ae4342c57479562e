"""docs/interpreters.md: every python block runs, and its compatibility matrix is the
one in ``snakepit/interpreter/compatibility.json``.

The matrix section is generated: after changing the data, rewrite it with
``python tests/test_docs_interpreters.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # run as a script: import this checkout
    sys.path.insert(0, str(ROOT))

from snakepit.interpreter import check  # noqa: E402
from snakepit.interpreter._compat import LibraryInfo, _libraries  # noqa: E402

DOC = ROOT / "docs" / "interpreters.md"
BEGIN = (
    "<!-- BEGIN compatibility matrix: generated from "
    "snakepit/interpreter/compatibility.json by tests/test_docs_interpreters.py -->"
)
END = "<!-- END compatibility matrix -->"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def render(entries: tuple[LibraryInfo, ...]) -> str:
    """The generated section: a summary table, then each library's details."""
    lines = [
        "| Library | Import | Thread safety | Thread profile | Described from |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in entries:
        verdict = check(entry.name, "thread").status.value
        since = entry.min_version or "standard library"
        lines.append(
            f"| [{entry.name}](#{entry.name}) | `{entry.import_name}` | "
            f"{entry.thread_safety.value} | {verdict} | {since} |"
        )
    for entry in entries:
        also = ", ".join(f"`{alias}`" for alias in entry.aliases)
        lines += [
            "",
            f"### {entry.name}",
            "",
            f"- **Thread safety:** {entry.thread_safety.value}"
            + (f" (also found as {also})" if also else ""),
            f"- **GIL:** {entry.gil}",
            f"- **Notes:** {entry.notes}",
            f"- **Workaround:** {entry.workaround}",
        ]
    return "\n".join(lines)


def generated_section(text: str) -> str:
    start = text.index(BEGIN) + len(BEGIN)
    return text[start : text.index(END)].strip("\n")


def rewrite() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END)
    DOC.write_text(
        f"{text[:start]}\n{render(_libraries())}\n{text[end:]}", encoding="utf-8"
    )


TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = [
    (TEXT.count("\n", 0, match.start()) + 1, match.group(1))
    for match in FENCE.finditer(TEXT)
]


def test_the_matrix_in_the_doc_is_the_data() -> None:
    assert generated_section(TEXT) == render(_libraries()), (
        "docs/interpreters.md is out of date: run python tests/test_docs_interpreters.py"
    )


def test_the_guide_has_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize(
    ("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS]
)
def test_python_block_runs(line: int, code: str) -> None:
    from snakepit.interpreter import clear_cache

    clear_cache()
    # pad so that tracebacks point at the right line of the guide
    compiled = compile("\n" * line + code, str(DOC), "exec")
    exec(compiled, {"__name__": "__docs__"})


if __name__ == "__main__":
    rewrite()
    print(f"rewrote the compatibility matrix of {DOC}")
