"""The ``snakepit`` command: demo and run (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests._processes import worker_children

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_demo_runs_and_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "snakepit", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for expected in (
        "add(5, 3) -> 8",
        "increment_counter -> 12",
        "chunks -> [0, 1, 1, 2, 3, 5, 8, 13]",
        "RemoteError: remote_type=ValueError",
        "WorkerCrashed",
        "snakepit.worker.restarted",
        "the replacement answers: request_id=1",
        "Stats:",
        "done.",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"


def test_help_lists_the_commands() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "snakepit", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=ENV,
    )
    assert proc.returncode == 0
    assert "demo" in proc.stdout
    assert "run" in proc.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_in_order_on_a_signal_mid_load(tmp_path: Path, signum: int) -> None:
    config = tmp_path / "snakepit.toml"
    config.write_text('[[pools]]\nname = "default"\npool_size = 2\n')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakepit",
            "run",
            str(config),
            "--load",
            "sleep",
            "--load-args",
            '{"seconds": 0.05}',
            "--stats-interval",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving"):
                break
        workers = worker_children(proc.pid)
        assert len(workers) == 2, lines
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    assert "shutting down in order" in out
    assert "stopped: every worker has exited" in out
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []
    assert "requests=" in out
