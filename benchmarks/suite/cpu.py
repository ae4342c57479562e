"""Section ``cpu``: CPU-bound jobs per second, 2 workers, 8 in flight.

Two workloads: pure Python (``python_work``: the sum of i*i for i < 200,000,
which holds the GIL) and NumPy (``numpy_matmul``: ``a @ a.T`` for a 256 x 256
float64 matrix). ``snakepit(thread)`` is ONE worker process with 2 threads
(its profile sets 2 BLAS threads); every other contender is 2 processes with 1
BLAS thread each. The pools with NumPy workers are started with NumPy loaded
(snakepit's NumPy adapter, the peers' NumPy initializer). Warm-up: 2 jobs per
worker; then the timed jobs; best round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.suite import _report
from benchmarks.suite._contenders import (
    LOKY,
    MP_POOL,
    PPE_FORK,
    SNAKEPIT_PROCESS,
    SNAKEPIT_THREAD,
    Contender,
    from_dict,
)
from benchmarks.suite._model import Job, Record, Settings, best, find
from benchmarks.suite._plan import Config, interleaved
from benchmarks.suite._sessions import Task, opened
from benchmarks.suite._tasks import expected_matmul, expected_python_work

NAME = "cpu"
SECTIONS = ("cpu",)
DESCRIPTIONS = {
    "cpu": "CPU-bound jobs/s, in-flight 8, best round: python = sum of i*i for "
    "i < 200,000 (GIL-bound), numpy = 256 x 256 matmul. 2 worker processes "
    "(snakepit(thread): 1 process x 2 threads); snakepit/x = snakepit(process)'s "
    "jobs/s over the row's.",
}
CONTENDERS = (SNAKEPIT_PROCESS, SNAKEPIT_THREAD, PPE_FORK, MP_POOL, LOKY)
WORKLOADS = ("python", "numpy")


def _records(contender: Contender, config: Config) -> list[tuple[str, Config]]:
    return [("cpu", {"workload": config["workload"]})]


def plan(
    settings: Settings, selected: set[str], wanted: Sequence[str] | None
) -> tuple[list[Job], list[Record]]:
    configs = [{"workload": "python"}]
    if settings.numpy:
        configs.append({"workload": "numpy"})
    return interleaved(
        NAME,
        _records,
        CONTENDERS,
        wanted,
        configs,
        rounds=lambda contender, config: settings.rounds,
        timeout=lambda c: 300.0,
    )


def expected(job: Job) -> list[tuple[str, Config]]:
    return _records(from_dict(job.contender), job.params)


def task_for(workload: str, settings: Settings) -> tuple[Task, int]:
    if workload == "python":
        n = settings.python_n
        want = expected_python_work(n)
        return (
            Task("python_work", lambda i: (n,), lambda i, r: r == want),
            settings.python_jobs,
        )
    size = settings.matmul_n
    target = expected_matmul(size)
    return (
        Task(
            "numpy_matmul",
            lambda i: (size,),
            lambda i, r: abs(r - target) <= 1e-9 * abs(target),
        ),
        settings.matmul_jobs,
    )


def run_job(
    contender: Contender, params: dict[str, Any], settings: Settings
) -> list[Record]:
    workload = params["workload"]
    threads = int(contender.options.get("threads", 1))
    workers = max(1, settings.cpu_workers // threads)
    task, jobs = task_for(workload, settings)
    with opened(contender, workers, numpy=workload == "numpy") as session:
        session.closed_loop(task, 2 * settings.cpu_workers, settings.cpu_inflight)
        timing = session.closed_loop(task, jobs, settings.cpu_inflight, timeout=600.0)
    return [
        Record(
            section="cpu",
            contender=contender.label,
            params={
                "workload": workload,
                "workers": workers,
                "threads": threads,
                "inflight": settings.cpu_inflight,
                "round": params["round"],
            },
            metrics={**timing.metrics(), "jobs_per_s": timing.req_per_s},
        )
    ]


def report(
    records: Sequence[Record], settings: Settings, selected: set[str]
) -> list[tuple[str, str]]:
    mine = find(records, "cpu")
    headers = ["workload", "contender", "layout", "jobs/s", "p50 ms", "snakepit/x"]
    rows = []
    for workload in WORKLOADS:
        ours = best(
            find(mine, "cpu", SNAKEPIT_PROCESS.label, workload=workload), "jobs_per_s"
        )
        for contender in CONTENDERS:
            found = find(mine, "cpu", contender.label, workload=workload)
            if not found:
                continue
            threads = int(contender.options.get("threads", 1))
            layout = f"{max(1, settings.cpu_workers // threads)}x{threads}"
            top = best(found, "jobs_per_s")
            if top is None:
                rows.append(
                    [
                        workload,
                        contender.label,
                        layout,
                        _report.status_cell(found[0]) or "-",
                        "",
                        "",
                    ]
                )
                continue
            rate = top.metrics["jobs_per_s"]
            rows.append(
                [
                    workload,
                    contender.label,
                    layout,
                    _report.rate(rate),
                    _report.ms(top.metrics["p50_ms"]),
                    _report.ratio(
                        _report.divide(
                            ours.metrics["jobs_per_s"] if ours else None, rate
                        )
                    ),
                ]
            )
    return [("cpu", _report.render(headers, rows, _report.notes(mine)))]
