"""Table cells and summary lines shared by the sections' reports."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks._common import format_table
from benchmarks.suite._model import FAILED, MIB, SKIPPED, Record


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.2f}"


def mib(value: float) -> str:
    return f"{value / MIB:.1f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def size_name(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def versus(label: str, ours: float, name: str, theirs: float, which: str = "") -> str:
    """A summary line: *label*'s req/s *ours* over *name*'s, *theirs* (*which*:
    what *name* stands for, e.g. the best peer's label and a comma)."""
    return f"  {label} vs {name}: {ours / theirs:.2f}x ({which}{rate(theirs)} req/s)"


def divide(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def status_cell(record: Record | None) -> str | None:
    """``failed``/``skipped`` for a row that has no numbers; None if it has."""
    if record is None:
        return "-"
    if record.status == FAILED:
        return "failed"
    if record.status == SKIPPED:
        return "skipped"
    return None


def notes(records: Sequence[Record]) -> list[str]:
    """One line per distinct contender that failed or was skipped, and why;
    and one per contender that left processes behind."""
    seen: dict[tuple[str, str], str] = {}
    for record in records:
        if record.status in (FAILED, SKIPPED):
            why = (record.error or "").strip().splitlines()
            text = why[0] if why else "no reason given"
            key = (record.contender, text)
            where = ", ".join(
                f"{k}={v}"
                for k, v in record.params.items()
                if k not in ("round", "inflights")
            )
            seen.setdefault(
                key, f"{record.status}: {record.contender} ({where}): {text}"
            )
        leaked = record.metrics.get("leaked_processes")
        if leaked:
            key = (record.contender, "leaked")
            seen.setdefault(
                key, f"warning: {record.contender} left {leaked} processes behind"
            )
    return list(seen.values())


def render(
    headers: Sequence[str], rows: Sequence[Sequence[str]], extra: Sequence[str] = ()
) -> str:
    """The table, then the notes (failures, skips) and *extra* lines."""
    lines = [format_table(headers, rows)] if rows else ["(no rows)"]
    lines += [f"  {line}" for line in extra]
    return "\n".join(lines)
