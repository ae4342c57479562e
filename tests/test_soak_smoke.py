"""The soak, short: a few seconds of load under chaos, every request accounted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_short_soak_loses_nothing() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.soak",
            "--seconds",
            "8",
            "--chaos-interval",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    headline = next(
        (line for line in proc.stdout.splitlines() if line.startswith("soak:")), ""
    )
    print(headline)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = dict(re.findall(r"(\w+)=(-?\d+)", headline))
    assert int(counts["injected"]) > 0
    assert int(counts["ok"]) > 0
    for bad in (
        "wrong_error",
        "lost",
        "hung",
        "misrouted",
        "orphans",
        "zombies",
        "fd_delta",
    ):
        assert counts[bad] == "0", headline
