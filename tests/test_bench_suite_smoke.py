"""The peer suite (``python -m benchmarks``) runs end to end with tiny numbers.

One subprocess runs a small selection with ``--quick``; its JSON must hold
positive measurements for snakepit and the raw-pipe baseline, a peer that is not
installed must be reported as skipped (CI has no loky), and nothing the suite
started may survive it. A second run does the same for the ``batch`` section (the
pools' maps). The suite's building blocks get a few direct tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks.suite._contenders import all_contenders, select, split_names
from benchmarks.suite._drivers import CheckFailed, closed_loop_sync
from benchmarks.suite._frames import FrameReader, encode, write_all
from benchmarks.suite.batch import ITEMS_PER_CALL

ROOT = Path(__file__).resolve().parents[1]


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


def _marked_env(marker: str) -> dict[str, str]:
    """The suite's environment: this checkout importable, and *marker* for
    :func:`_processes_marked`."""
    env = dict(os.environ, SNAKEPIT_BENCH_SMOKE=marker)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    return env


def _kill_marked(marker: str) -> list[psutil.Process]:
    """Kill what the suite left behind; return it (the test fails on it)."""
    left = _processes_marked(marker)
    for leftover in left:
        leftover.kill()
    psutil.wait_procs(left, timeout=5)
    return left


def test_quick_suite_measures_snakepit_and_the_raw_pipe(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    env = _marked_env(marker)
    out = tmp_path / "suite.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--sections",
            "throughput,latency,startup,memory,payload",
            "--contenders",
            "snakepit(process),raw-pipe,loky",
            "--workers",
            "1",
            "--calls",
            "100",
            "--warmup",
            "10",
            "--startup-workers",
            "2",
            "--memory-workers",
            "2",
            "--payload-sizes",
            "1k,64k",
            "--no-numpy",
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
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for heading in ("## throughput", "## latency", "## startup", "## memory"):
            assert heading in proc.stdout, proc.stdout
        assert "command:  python -m benchmarks --quick" in proc.stdout
        assert "cpus:" in proc.stdout

        records: list[dict[str, Any]] = json.loads(out.read_text())
        assert records[0]["section"] == "run"
        rows = records[1:]
        failed = [r for r in rows if r["status"] == "failed"]
        assert not failed, failed
        for row in rows:
            assert set(row) >= {"section", "contender", "params", "metrics"}
            assert not row["metrics"].get("leaked_processes"), row

        def ok(section: str, prefix: str) -> list[dict[str, Any]]:
            return [
                r
                for r in rows
                if r["section"] == section
                and r["contender"].startswith(prefix)
                and r["status"] == "ok"
            ]

        for section, metric in (
            ("throughput", "req_per_s"),
            ("latency", "p50_ms"),
            ("startup", "seconds"),
            ("memory", "uss_per_worker"),
            ("payload", "mb_per_s"),
        ):
            for prefix in ("snakepit(process", "raw-pipe"):
                found = ok(section, prefix)
                assert found, (section, prefix, rows)
                assert all(r["metrics"][metric] > 0 for r in found), found

        loky = [r for r in rows if r["contender"] == "loky"]
        assert loky
        try:
            import loky as _loky  # noqa: F401
        except ImportError:
            assert all(r["status"] == "skipped" for r in loky), loky
            assert all("not installed" in r["error"] for r in loky), loky
        else:
            assert all(r["status"] == "ok" for r in loky), loky
    finally:
        left = _kill_marked(marker)
    assert not left, [p.pid for p in left]


def test_quick_batch_section_measures_the_maps_and_the_raw_pipe(
    tmp_path: Path,
) -> None:
    """The batch section end to end at 2 workers, tiny: a positive, checked
    measurement for each map and the raw pipe, the summary lines, no survivor."""
    marker = uuid.uuid4().hex
    env = _marked_env(marker)
    labels = ["mp.Pool(map)", "raw-pipe(pipelined)", "snakepit(process,map)"]
    contenders = "mp-pool-map,raw-pipe,snakepit-process-map"
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
        for peer in ("best peer excluding raw-pipe", "raw-pipe(pipelined)"):
            assert f"snakepit(process,map) vs {peer}: " in proc.stdout, proc.stdout
    finally:
        left = _kill_marked(marker)
    assert not left, [p.pid for p in left]


def test_contender_names_split_outside_parentheses() -> None:
    assert split_names("snakepit(process,spawn), loky,,PPE(fork)") == [
        "snakepit(process,spawn)",
        "loky",
        "PPE(fork)",
    ]
    chosen = {c.label for c in select(all_contenders(), ["raw-pipe", "ppe-fork"])}
    assert chosen == {
        "raw-pipe(blocking)",
        "raw-pipe(pipelined)",
        "raw-pipe",
        "PPE(fork)",
    }


def test_frames_round_trip_small_and_large() -> None:
    read_fd, write_fd = os.pipe()
    big = bytes(range(256)) * 4096  # 1 MiB: read in place, over several reads
    sent = [["add", [1, 2]], b"", big, {"k": [1, 2.5, None]}]

    def writer() -> None:
        parts: list[bytes] = []
        for obj in sent:
            parts += encode(obj)
        write_all(write_fd, parts)
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    reader = FrameReader(read_fd)
    received: list[Any] = []
    try:
        while (found := reader.read()) is not None:
            received += found
    finally:
        thread.join(10)
        os.close(read_fd)
    assert received == sent


def test_a_wrong_result_fails_the_closed_loop() -> None:
    def submit(i: int, done: Any) -> None:
        done(i + (i == 3), None)  # call 3 answers wrongly

    with pytest.raises(CheckFailed, match="call 3 returned a wrong result: 4"):
        closed_loop_sync(submit, lambda i, r: r == i, calls=10, inflight=2, timeout=10)
    timing = closed_loop_sync(
        lambda i, done: done(i, None), lambda i, r: r == i, 10, 2, 10
    )
    assert (timing.calls, timing.inflight) == (10, 2)
    assert timing.p50_ms <= timing.p99_ms <= timing.max_ms


def test_a_row_too_fast_for_its_calls_is_timed_again_over_the_minimum_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """4,000 calls of the raw pipe take 22 ms: a window one hiccup halves. The
    first timing then only calibrates a second one that fills min_window_s."""
    import contextlib

    from benchmarks.suite import smallcalls
    from benchmarks.suite._contenders import RAW_PIPELINED, SNAKEPIT_PROCESS
    from benchmarks.suite._drivers import Timing
    from benchmarks.suite._model import Settings

    timed: list[int] = []

    class FastSession:
        startup_s = 0.1

        def closed_loop(self, task: object, calls: int, inflight: int) -> Timing:
            timed.append(calls)
            seconds = calls / 200_000  # as fast as the raw pipe
            return Timing.of([seconds / calls] * calls, seconds, inflight=inflight)

    monkeypatch.setattr(
        smallcalls, "opened", lambda c, w: contextlib.nullcontext(FastSession())
    )
    settings = Settings(calls=4_000, warmup=300, min_window_s=0.5)
    params = {"workers": 2, "inflights": [64], "round": 1}
    [record] = smallcalls.run_job(RAW_PIPELINED, params, settings)
    assert timed == [300, 4_000, 100_000]  # warm-up, calibration, the window
    assert record.metrics["calls"] == 100_000
    timed.clear()
    quick = Settings.quick_variant()  # no minimum window: one timing per row
    smallcalls.run_job(SNAKEPIT_PROCESS, {**params, "inflights": [1]}, quick)
    assert timed == [quick.warmup, quick.calls]
