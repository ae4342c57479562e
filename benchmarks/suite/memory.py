"""Section ``memory``: the private memory of an idle worker.

A pool of 8 workers (``--memory-workers``) starts, every worker answers one
``pid`` call (so each is fully up and has run the same code once), then each
worker's ``memory_full_info()`` is read: **USS** (pages only it holds: what
killing it frees) and **PSS** (its pages, shared ones split among the processes
sharing them). Reported as the mean per worker, in MiB.

Helpers are counted apart: processes of the job other than the workers (the
forkserver, multiprocessing's resource tracker, a snakepit template process...),
with their total USS, so a design that moves memory into a helper is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.suite import _report
from benchmarks.suite._contenders import (
    LOKY,
    MP_POOL,
    PPE_FORK,
    PPE_FORK_PRELOADED,
    PPE_FORKSERVER,
    PPE_SPAWN,
    RAW_PIPE,
    SNAKEPIT,
    Contender,
    from_dict,
    snakepit_by_start_method,
)
from benchmarks.suite._model import Job, Record, Settings, find
from benchmarks.suite._plan import Config, interleaved
from benchmarks.suite._sessions import opened

NAME = "memory"
SECTIONS = ("memory",)
DESCRIPTIONS = {
    "memory": "Private memory per idle worker (mean over the pool's workers, MiB): "
    "USS = pages only that worker holds, PSS = its pages with shared ones split; "
    "helpers = the job's other processes (forkserver, resource tracker, "
    "template...), with their total USS; x/snakepit = the row's USS over "
    "snakepit's.",
}


def contenders() -> list[Contender]:
    return [
        *snakepit_by_start_method(),
        PPE_SPAWN,
        PPE_FORK,
        PPE_FORKSERVER,
        MP_POOL,
        LOKY,
        RAW_PIPE,
        PPE_FORK_PRELOADED,
    ]


def _records(contender: Contender, config: Config) -> list[tuple[str, Config]]:
    return [("memory", {"workers": config["workers"], "numpy": config["numpy"]})]


def plan(
    settings: Settings, selected: set[str], wanted: Sequence[str] | None
) -> tuple[list[Job], list[Record]]:
    variants = [False, True] if settings.numpy else [False]
    configs = [{"workers": settings.memory_workers, "numpy": v} for v in variants]
    jobs, skipped = interleaved(
        NAME,
        _records,
        contenders(),
        wanted,
        configs,
        rounds=lambda contender, config: 1,
        timeout=lambda c: 180.0 + 3.0 * c["workers"],
        skip=lambda c, config: (
            "only with numpy"
            if c.options.get("preload_numpy") and not config["numpy"]
            else None
        ),
    )
    return jobs, [r for r in skipped if r.error != "only with numpy"]


def expected(job: Job) -> list[tuple[str, Config]]:
    return _records(from_dict(job.contender), job.params)


def _memory(pids: Sequence[int]) -> dict[str, float]:
    """Sum of USS, PSS and RSS over *pids*, in bytes."""
    import psutil

    total = {"uss": 0.0, "pss": 0.0, "rss": 0.0}
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        total["uss"] += info.uss
        total["pss"] += getattr(info, "pss", 0.0)
        total["rss"] += info.rss
    return total


def _helpers(workers: set[int]) -> list[int]:
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid not in workers and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def run_job(
    contender: Contender, params: dict[str, Any], settings: Settings
) -> list[Record]:
    workers, numpy = params["workers"], params["numpy"]
    with opened(contender, workers, numpy=numpy) as session:
        pids = sorted(session.pids)
        measured = _memory(pids)
        helpers = _helpers(session.pids)
        helper_memory = _memory(helpers)
    return [
        Record(
            section="memory",
            contender=contender.label,
            params={"workers": workers, "numpy": numpy, "round": params["round"]},
            metrics={
                "uss_per_worker": measured["uss"] / len(pids),
                "pss_per_worker": measured["pss"] / len(pids),
                "rss_per_worker": measured["rss"] / len(pids),
                "workers_measured": len(pids),
                "helpers": len(helpers),
                "helpers_uss": helper_memory["uss"],
            },
        )
    ]


def table(records: Sequence[Record], numpy: bool) -> str:
    mine = [r for r in find(records, "memory") if r.params.get("numpy") == numpy]
    references = [
        r
        for c in contenders()
        if c.kind == SNAKEPIT
        for r in mine
        if r.contender == c.label and r.ok
    ]
    reference = references[0] if references else None
    headers = [
        "contender",
        "workers",
        "USS/worker",
        "PSS/worker",
        "RSS/worker",
        "helpers",
        "helpers USS",
        "x/snakepit USS",
    ]
    rows = []
    for contender in contenders():
        for record in [r for r in mine if r.contender == contender.label]:
            status = _report.status_cell(record)
            if status is not None:
                rows.append(
                    [
                        contender.label,
                        str(record.params["workers"]),
                        status,
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
                continue
            m = record.metrics
            rows.append(
                [
                    contender.label,
                    str(record.params["workers"]),
                    _report.mib(m["uss_per_worker"]),
                    _report.mib(m["pss_per_worker"]),
                    _report.mib(m["rss_per_worker"]),
                    str(m["helpers"]),
                    _report.mib(m["helpers_uss"]),
                    _report.ratio(
                        _report.divide(
                            m["uss_per_worker"],
                            reference.metrics["uss_per_worker"] if reference else None,
                        )
                    ),
                ]
            )
    return _report.render(headers, rows, _report.notes(mine))


def report(
    records: Sequence[Record], settings: Settings, selected: set[str]
) -> list[tuple[str, str]]:
    parts = [
        f"{'with' if numpy else 'without'} numpy (MiB):\n" + table(records, numpy)
        for numpy in ([False, True] if settings.numpy else [False])
    ]
    return [("memory", "\n\n".join(parts))]
