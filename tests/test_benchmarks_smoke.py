"""The throughput benchmark runs end to end with tiny numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from benchmarks._common import percentile
from benchmarks.throughput import BenchmarkError, _Tally, closed_loop_async

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_throughput_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    out = tmp_path / "throughput.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.throughput",
            "--calls",
            "200",
            "--warmup",
            "20",
            "--concurrency",
            "1,8",
            "--rounds",
            "2",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    header = next(
        (line for line in proc.stdout.splitlines() if line.startswith("contender")),
        None,
    )
    assert header is not None, proc.stdout
    assert header.split() == [
        "contender",
        "inflight",
        "calls",
        "req/s",
        "p50",
        "ms",
        "p99",
        "ms",
        "snakepit/x",
    ]
    lines = proc.stdout.splitlines()
    for name in ("snakepit(process)", "ProcessPoolExecutor", "anyio.to_process"):
        rows = [line.split()[1] for line in lines if line.startswith(f"{name} ")]
        assert rows == ["1", "8"], proc.stdout
    assert "cpus:" in proc.stdout
    assert "python:" in proc.stdout

    report = json.loads(out.read_text())
    assert len(report["rows"]) == 6
    assert len(report["runs"]) == 12
    for row in report["rows"]:
        assert row["calls"] == 200
        assert row["req_per_s"] > 0
        assert row["snakepit_ratio"] > 0


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(map(float, range(101))), 99) == 99.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_a_wrong_or_missing_result_fails_the_run() -> None:
    async def right(a: int, b: int) -> int:
        return a + b

    async def off_by_one_sometimes(a: int, b: int) -> int:
        return a + b + (a == 7)

    row = anyio.run(closed_loop_async, "fake", right, 50, 4)
    assert (row.calls, row.inflight) == (50, 4)
    assert row.p50_ms <= row.p99_ms <= row.max_ms
    with pytest.raises(BenchmarkError, match=r"1 wrong results \(call 7 -> 16\)"):
        anyio.run(closed_loop_async, "fake", off_by_one_sometimes, 50, 4)

    tally = _Tally("fake", 3)
    tally.record(0, 1, 0.001)
    tally.record(1, 3, 0.001)
    with pytest.raises(BenchmarkError, match="2 of 3 results arrived"):
        tally.measurement(1, 0.01)
