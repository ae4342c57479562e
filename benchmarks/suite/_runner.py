"""Running jobs from the suite's main process, each in a bounded subprocess.

The main process makes itself a *child subreaper* (Linux), so a process a job
leaves behind is re-parented to it instead of to init: after each job, every
descendant still alive (past a short grace period for helpers that exit when the
job does, like multiprocessing's resource tracker) is a leak; it is reported on
the job's records and killed. A job that outlives its timeout is killed with its
whole process group. With ``SNAKEPIT_BENCH_DEBUG=1`` in the environment, a failed
job's traceback is printed (the report keeps its first line).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.suite._model import FAILED, Job, Record, Settings
from benchmarks.suite._paths import ROOT, job_env
from benchmarks.suite._sections import module_for

_PR_SET_CHILD_SUBREAPER = 36
#: Time a job's helpers get to exit after the job did.
GRACE_S = 5.0


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux ``prctl``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_leftovers(grace: float = GRACE_S) -> list[str]:
    """Wait up to *grace* for this process's descendants to exit; kill the rest.
    Returns a description of each one killed."""
    me = psutil.Process()
    children = me.children(recursive=True)
    if not children:
        return []
    _, alive = psutil.wait_procs(children, timeout=grace)
    described = []
    for proc in alive:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5.0)
    return described


def _failed(job: Job, error: str) -> list[Record]:
    module = module_for(job.section)
    return [
        Record(
            section=section,
            contender=job.label,
            params={**params, "round": job.params.get("round")},
            status=FAILED,
            error=error,
        )
        for section, params in module.expected(job)
    ]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_job(job: Job, settings: Settings) -> tuple[list[Record], float]:
    """Run *job* in a fresh subprocess; its records (failed ones if it failed or
    timed out) and its wall time."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="snakepit-bench-") as tmp:
        spec_path, out_path, log_path = (
            Path(tmp, "spec.json"),
            Path(tmp, "out.json"),
            Path(tmp, "log.txt"),
        )
        spec_path.write_text(json.dumps(job.as_dict(settings)), encoding="utf-8")
        error: str | None = None
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.suite._job",
                    str(spec_path),
                    str(out_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=job_env(),
                start_new_session=True,
            )
            try:
                proc.wait(job.timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                error = (
                    f"TimeoutError: the job ran past its {job.timeout_s:.0f} s limit"
                )
        leaked = reap_leftovers()
        result: dict[str, Any] | None = None
        if error is None:
            try:
                result = json.loads(out_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                error = f"the job exited with status {proc.returncode} and no result"
                tail = _tail(log_path)
                if tail:
                    error += f": {tail}"
        if result is not None and result.get("error"):
            error = result["error"]
            if os.environ.get("SNAKEPIT_BENCH_DEBUG") and result.get("traceback"):
                print(result["traceback"], file=sys.stderr)
        records = (
            [Record.from_dict(r) for r in result["records"]]
            if result is not None and error is None
            else _failed(job, error or "unknown error")
        )
    if leaked:
        print(
            f"  warning: {job.label} left {len(leaked)} processes (killed): "
            + "; ".join(leaked[:3]),
            file=sys.stderr,
        )
        for record in records:
            record.metrics["leaked_processes"] = len(leaked)
    return records, time.perf_counter() - began


def describe(job: Job) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in job.params.items() if k != "inflights")
    return f"[{job.section}] {job.label} ({shown})"
