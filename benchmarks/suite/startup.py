"""Section ``startup``: from nothing to N ready workers.

"Ready" means the same for every contender: **every worker has answered one
call**. The clock starts just before the pool is created (imports and event loop
are already there) and stops when the N-th distinct worker pid comes back from a
``pid`` call. N ``pid`` calls are kept in flight until then; each holds its
worker 10 ms, so calls queued meanwhile go to workers still starting rather than
all to the first one up (this adds about 10 ms to every contender). So a pool
that starts its processes lazily (``ProcessPoolExecutor`` with spawn or
forkserver, ``anyio.to_process``) is timed starting *and* warming all N, like
one that starts them eagerly.

"With numpy": every worker imports NumPy before it answers: snakepit's adapter
module imports it (``NumpyBenchAdapter``), the peers' initializer does (from
``_tasks_numpy``), the raw-pipe children import it first. The reference
``PPE(fork,numpy preloaded)`` forks from a job process that imported NumPy
before the clock started: what forking a preloaded parent buys. Each job runs
in a fresh process, so nobody else's parent has NumPy.

Rounds: the best of ``--rounds`` below 32 workers, one round from 32 up (a start
takes seconds there), except for the reference ratio with numpy: snakepit's
template and ``PPE(fork,numpy preloaded)`` are best of ``--rounds`` at every
size (each starts 100 workers in under a second, and one such round moves by a
third on a small machine). With numpy, the peers that start every worker as a new
interpreter (PPE(spawn), loky, anyio.to_process, raw-pipe) stop at 100 workers
(``--spawn-cap``): 250 of them take about a minute each on 2 cores.

After each pool closes, every worker must be gone (checked with psutil).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.suite import _report
from benchmarks.suite._contenders import (
    ANYIO_TO_PROCESS,
    BILLIARD,
    LOKY,
    MP_POOL,
    PEBBLE,
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
from benchmarks.suite._model import Job, Record, Settings, best, find
from benchmarks.suite._plan import Config, interleaved
from benchmarks.suite._sessions import opened

NAME = "startup"
SECTIONS = ("startup",)
DESCRIPTIONS = {
    "startup": "Seconds from nothing to N ready workers (each has answered one "
    "call), best round (one round from 32 workers up, but for the template and "
    "the preloaded fork with numpy); x/snakepit = the row's "
    "time over snakepit's (above 1: snakepit is ready sooner). With numpy: every "
    "worker imports numpy first; PPE(fork,numpy preloaded) forks a parent that "
    "already has it. Interpreter-per-worker peers with numpy stop at --spawn-cap "
    "(100) workers.",
}
#: The rows of the section's reference ratio with numpy (a template against a
#: parent that preloaded numpy): best of ``--rounds`` at every size, since both
#: start even 250 workers in a second or two, and one round of that moves by a
#: third on a small machine.
ALWAYS_BEST_OF = {
    *(
        c.key
        for c in snakepit_by_start_method()
        if c.options.get("start_method") == "template"
    ),
    PPE_FORK_PRELOADED.key,
}
#: Peers that start every worker as a new interpreter: what ``--spawn-cap`` caps.
FRESH_INTERPRETERS = {PPE_SPAWN.key, LOKY.key, ANYIO_TO_PROCESS.key, RAW_PIPE.key}


def contenders() -> list[Contender]:
    return [
        *snakepit_by_start_method(),
        PPE_FORK,
        PPE_SPAWN,
        PPE_FORKSERVER,
        MP_POOL,
        LOKY,
        PEBBLE,
        BILLIARD,
        ANYIO_TO_PROCESS,
        RAW_PIPE,
        PPE_FORK_PRELOADED,
    ]


def _records(contender: Contender, config: Config) -> list[tuple[str, Config]]:
    return [("startup", {"workers": config["workers"], "numpy": config["numpy"]})]


def _skip(settings: Settings) -> Any:
    def why(contender: Contender, config: Config) -> str | None:
        if contender.options.get("preload_numpy") and not config["numpy"]:
            return "only with numpy"  # the same as PPE(fork) without
        cap = settings.startup_spawn_cap
        if (
            config["numpy"]
            and cap is not None
            and config["workers"] > cap
            and contender.key in FRESH_INTERPRETERS
        ):
            return f"capped at {cap} workers with numpy (--spawn-cap)"
        return None

    return why


def plan(
    settings: Settings, selected: set[str], wanted: Sequence[str] | None
) -> tuple[list[Job], list[Record]]:
    variants = [False, True] if settings.numpy else [False]
    configs = [
        {"workers": n, "numpy": numpy}
        for numpy in variants
        for n in settings.startup_workers
    ]
    jobs, skipped = interleaved(
        NAME,
        _records,
        contenders(),
        wanted,
        configs,
        rounds=lambda contender, c: (
            settings.rounds
            if c["workers"] < settings.startup_single_round_from
            or (c["numpy"] and contender.key in ALWAYS_BEST_OF)
            else 1
        ),
        timeout=lambda c: 120.0 + 3.0 * c["workers"],
        skip=_skip(settings),
    )
    # "only with numpy" is not worth a row
    skipped = [r for r in skipped if r.error != "only with numpy"]
    return jobs, skipped


def expected(job: Job) -> list[tuple[str, Config]]:
    return _records(from_dict(job.contender), job.params)


def run_job(
    contender: Contender, params: dict[str, Any], settings: Settings
) -> list[Record]:
    workers, numpy = params["workers"], params["numpy"]
    with opened(
        contender, workers, numpy=numpy, timeout=60.0 + 2.0 * workers
    ) as session:
        pass
    return [
        Record(
            section="startup",
            contender=contender.label,
            params={"workers": workers, "numpy": numpy, "round": params["round"]},
            metrics={
                "seconds": session.startup_s,
                "workers_seen": len(session.pids),
                "close_s": session.close_s,
            },
        )
    ]


def _seconds(
    records: Sequence[Record], label: str, numpy: bool, workers: int
) -> float | None:
    top = best(
        find(records, "startup", label, numpy=numpy, workers=workers),
        "seconds",
        lowest=True,
    )
    return float(top.metrics["seconds"]) if top else None


def _shown(records: Sequence[Record], numpy: bool) -> list[Contender]:
    return [c for c in contenders() if find(records, "startup", c.label, numpy=numpy)]


def seconds_table(records: Sequence[Record], settings: Settings, numpy: bool) -> str:
    sizes = settings.startup_workers
    headers = ["contender", *(f"N={n} s" for n in sizes)]
    rows = []
    for contender in _shown(records, numpy):
        row = [contender.label]
        for n in sizes:
            value = _seconds(records, contender.label, numpy, n)
            if value is None:
                mine = find(records, "startup", contender.label, numpy=numpy, workers=n)
                row.append(_report.status_cell(mine[0] if mine else None) or "-")
            else:
                row.append(_report.seconds(value))
        rows.append(row)
    mine = [r for r in find(records, "startup") if r.params.get("numpy") == numpy]
    return _report.render(headers, rows, _report.notes(mine))


def ratio_table(
    records: Sequence[Record], settings: Settings, numpy: bool, reference: Contender
) -> str:
    """Each row's time over *reference*'s, at every N."""
    sizes = settings.startup_workers
    headers = [f"x/{reference.label}", *(f"N={n}" for n in sizes)]
    rows = []
    for contender in _shown(records, numpy):
        if contender.label == reference.label:
            continue
        rows.append(
            [
                contender.label,
                *(
                    _report.ratio(
                        _report.divide(
                            _seconds(records, contender.label, numpy, n),
                            _seconds(records, reference.label, numpy, n),
                        )
                    )
                    for n in sizes
                ),
            ]
        )
    return _report.render(headers, rows)


def report(
    records: Sequence[Record], settings: Settings, selected: set[str]
) -> list[tuple[str, str]]:
    parts = []
    for numpy in [False, True] if settings.numpy else [False]:
        title = "with numpy" if numpy else "without numpy"
        parts.append(f"{title}:\n" + seconds_table(records, settings, numpy))
        parts += [
            ratio_table(records, settings, numpy, reference)
            for reference in _shown(records, numpy)
            if reference.kind == SNAKEPIT
        ]
    return [("startup", "\n\n".join(parts))]
