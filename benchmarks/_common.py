"""Helpers shared by the benchmarks: the work function, latency summaries,
machine information, table printing and JSON output.

``add`` lives here, not in a benchmark script, because process-pool peers pickle
it by reference: it must import from a plain module in the worker, not from the
``__main__`` of ``python -m benchmarks.<name>``.
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs


def add(a: int, b: int) -> int:
    """The work: as small as a call gets, so the harness is what is measured."""
    return a + b


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100) of values sorted ascending, interpolated
    linearly between the closest ranks (numpy's default method)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q!r}")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@attrs.frozen(kw_only=True)
class Measurement:
    """One timed closed-loop run: *calls* calls, at most *inflight* at once."""

    contender: str
    inflight: int
    calls: int
    elapsed_s: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_latencies(
        cls,
        contender: str,
        inflight: int,
        elapsed_s: float,
        latencies_s: Sequence[float],
    ) -> Measurement:
        """Summarise per-call latencies (seconds) and the run's wall time."""
        ordered = sorted(latencies_s)
        return cls(
            contender=contender,
            inflight=inflight,
            calls=len(ordered),
            elapsed_s=elapsed_s,
            req_per_s=len(ordered) / elapsed_s,
            p50_ms=percentile(ordered, 50) * 1e3,
            p99_ms=percentile(ordered, 99) * 1e3,
            max_ms=ordered[-1] * 1e3,
        )


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    try:  # a source checkout on PYTHONPATH has no distribution metadata
        version = getattr(importlib.import_module(name), "__version__", None)
    except ImportError:
        return "not installed"
    return f"{version} (source)" if version else "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(packages: Sequence[str] = ()) -> dict[str, Any]:
    """What the numbers depend on: CPUs, interpreter, OS, date, library versions."""
    usable = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count()
    )
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "platform": platform.platform(),
        "load_average": (
            [round(x, 2) for x in os.getloadavg()]
            if hasattr(os, "getloadavg")
            else None
        ),
        "packages": {name: _package_version(name) for name in packages},
    }


def format_machine_info(info: dict[str, Any]) -> str:
    """*info* from :func:`machine_info` as a few readable lines."""
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    lines = [
        f"date:     {info['date']}",
        f"cpus:     {info['cpu_count']} ({info['cpus_usable']} usable), "
        f"{info['cpu_model']}",
        f"python:   {info['python']} ({info['executable']})",
        f"platform: {info['platform']}",
    ]
    if info["load_average"] is not None:
        load = " ".join(f"{x:.2f}" for x in info["load_average"])
        lines.append(f"load:     {load} (1, 5, 15 min; other work skews the numbers)")
    if packages:
        lines.append(f"packages: {packages}")
    return "\n".join(lines)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-align the first column and right-align the others, each as wide
    as its widest cell."""
    widths = [
        max(len(str(cell)) for cell in column)
        for column in zip(headers, *rows, strict=True)
    ]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [str(first).ljust(widths[0])]
        parts += [
            str(cell).rjust(width) for cell, width in zip(rest, widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write *payload* as indented JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
