"""Section ``recycle``: small-call throughput with and without worker recycling.

``add(i, i + 1)``, 2 workers, 64 in flight, ``--recycle-calls`` calls, with each
worker replaced every 200 calls (snakepit ``worker_max_requests``,
``multiprocessing.Pool(maxtasksperchild=)``, ``ProcessPoolExecutor(
max_tasks_per_child=)`` which needs a non-fork context so forkserver, pebble
``max_tasks``, billiard ``maxtasksperchild``) and without. Overhead = req/s
without / req/s with (above 1: recycling costs that factor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.suite import _report
from benchmarks.suite._contenders import (
    BILLIARD,
    MP_POOL,
    PEBBLE,
    SNAKEPIT_PROCESS,
    Contender,
    from_dict,
    ppe_recycling,
)
from benchmarks.suite._model import Job, Record, Settings, best, find
from benchmarks.suite._plan import Config, interleaved
from benchmarks.suite._sessions import Task, opened

NAME = "recycle"
SECTIONS = ("recycle",)
DESCRIPTIONS = {
    "recycle": "Small calls, 2 workers, in-flight 64, with every worker replaced "
    "after 200 calls and without, best round; overhead = req/s without / req/s "
    "with.",
}
ADD = Task("add", lambda i: (i, i + 1), lambda i, result: result == 2 * i + 1)


def contenders() -> list[Contender]:
    return [SNAKEPIT_PROCESS, MP_POOL, ppe_recycling(), PEBBLE, BILLIARD]


def _records(contender: Contender, config: Config) -> list[tuple[str, Config]]:
    return [("recycle", {"every": config["every"]})]


def plan(
    settings: Settings, selected: set[str], wanted: Sequence[str] | None
) -> tuple[list[Job], list[Record]]:
    return interleaved(
        NAME,
        _records,
        contenders(),
        wanted,
        [{"every": None}, {"every": settings.recycle_every}],
        rounds=lambda contender, config: settings.rounds,
        timeout=lambda c: 120.0 + settings.recycle_calls / 50,
    )


def expected(job: Job) -> list[tuple[str, Config]]:
    return _records(from_dict(job.contender), job.params)


def run_job(
    contender: Contender, params: dict[str, Any], settings: Settings
) -> list[Record]:
    every = params["every"]
    workers = settings.recycle_workers
    with opened(contender, workers, max_tasks=every) as session:
        timing = session.closed_loop(
            ADD, settings.recycle_calls, settings.recycle_inflight, timeout=600.0
        )
    return [
        Record(
            section="recycle",
            contender=contender.label,
            params={
                "every": every,
                "workers": workers,
                "inflight": settings.recycle_inflight,
                "round": params["round"],
            },
            metrics=timing.metrics(),
        )
    ]


def report(
    records: Sequence[Record], settings: Settings, selected: set[str]
) -> list[tuple[str, str]]:
    mine = find(records, "recycle")
    headers = [
        "contender",
        "req/s without",
        "req/s with",
        "overhead",
        "p99 ms with",
        "max ms with",
    ]
    rows = []
    for contender in contenders():
        if not find(mine, "recycle", contender.label):
            continue
        without = best(find(mine, "recycle", contender.label, every=None), "req_per_s")
        with_ = best(
            find(mine, "recycle", contender.label, every=settings.recycle_every),
            "req_per_s",
        )

        def cell(
            record: Record | None,
            contender: Contender = contender,
            every: int | None = None,
        ) -> str:
            if record is not None:
                return _report.rate(record.metrics["req_per_s"])
            some = find(mine, "recycle", contender.label, every=every)
            return _report.status_cell(some[0] if some else None) or "-"

        rows.append(
            [
                contender.label,
                cell(without, every=None),
                cell(with_, every=settings.recycle_every),
                _report.ratio(
                    _report.divide(
                        without.metrics["req_per_s"] if without else None,
                        with_.metrics["req_per_s"] if with_ else None,
                    )
                ),
                _report.ms(with_.metrics["p99_ms"]) if with_ else "",
                _report.ms(with_.metrics["max_ms"]) if with_ else "",
            ]
        )
    return [("recycle", _report.render(headers, rows, _report.notes(mine)))]
