"""The suite's ``batch`` section runs end to end with tiny numbers.

One subprocess runs ``--sections batch --quick`` at 2 workers for mp.Pool's map,
the raw-pipe baseline and, once ``snakepit.pool.Pool`` has ``map``, snakepit's:
its JSON must hold a positive, checked measurement for each, its report the
summary lines against the best peer and raw-pipe, and nothing it started may
survive it. Kept apart from ``test_bench_suite_smoke`` so that one stays short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil

from benchmarks.suite.batch import ITEMS_PER_CALL
from snakepit.pool import Pool

ROOT = Path(__file__).resolve().parents[1]
#: snakepit's contender runs once the batch API exists (skipped by the suite
#: before then; this test then leaves it out).
HAS_MAP = hasattr(Pool, "map")


def _processes_marked(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries *marker* (every descendant of the
    suite inherits it, whoever re-parented them)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.environ().get("SNAKEPIT_BENCH_SMOKE") == marker
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_quick_batch_section_measures_the_maps_and_the_raw_pipe(
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    env = dict(os.environ, SNAKEPIT_BENCH_SMOKE=marker)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    labels = ["mp.Pool(map)", "raw-pipe(pipelined)"]
    contenders = "mp-pool-map,raw-pipe"
    if HAS_MAP:
        labels.append("snakepit(process,map)")
        contenders += ",snakepit-process-map"
    out = tmp_path / "batch.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--sections",
            "batch",
            "--quick",
            "--contenders",
            contenders,
            "--workers",
            "2",
            "--calls",
            "200",
            "--warmup",
            "20",
            "--no-numpy",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "## batch" in proc.stdout, proc.stdout
        records: list[dict[str, Any]] = json.loads(out.read_text())
        assert records[0]["section"] == "run"
        rows = records[1:]
        assert {r["contender"] for r in rows} == set(labels), rows
        for row in rows:
            assert row["section"] == "batch", row
            assert row["status"] == "ok", row
            assert row["params"]["workers"] == 2, row
            assert row["metrics"]["req_per_s"] > 0, row
            assert not row["metrics"].get("leaked_processes"), row
        mapped = [r for r in rows if r["contender"] != "raw-pipe(pipelined)"]
        assert all(r["metrics"]["items"] == 200 * ITEMS_PER_CALL for r in mapped), (
            mapped
        )
        if HAS_MAP:
            for peer in ("best peer excluding raw-pipe", "raw-pipe(pipelined)"):
                assert f"snakepit(process,map) vs {peer}: " in proc.stdout, proc.stdout
    finally:
        left = _processes_marked(marker)
        for leftover in left:
            leftover.kill()
        psutil.wait_procs(left, timeout=5)
    assert not left, [p.pid for p in left]
