"""Sections ``throughput`` and ``latency``: small calls, ``add(i, i + 1)``.

Each contender runs with 1, 2 and 8 workers; ``latency`` times in-flight 1
(submit, wait, repeat) and ``throughput`` in-flight 64. A job starts the pool,
waits until every worker has answered, runs ``--warmup`` untimed calls at the
highest in-flight, then times ``--calls`` calls at each in-flight; if they took
less than ``min_window_s`` (0.5 s; none in a quick run), it times again as many
calls as fill that (the fast contenders' 4,000 calls take 20-60 ms, a window one
hiccup of a shared machine can halve). A row keeps its best round (highest
req/s, with that round's latencies).

``snakepit(thread)`` runs N worker processes x 2 threads. ``raw-pipe(blocking)``
is the in-flight 1 baseline (one call outstanding, round-robin over the
children); ``raw-pipe(pipelined)`` the in-flight 64 one (64 outstanding, spread
over the children).
"""

from __future__ import annotations

import math
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
    PPE_FORKSERVER,
    PPE_SPAWN,
    RAW,
    RAW_BLOCKING,
    RAW_PIPELINED,
    SNAKEPIT,
    SNAKEPIT_PROCESS,
    SNAKEPIT_THREAD,
    SNAKEPIT_UNPIPELINED,
    Contender,
)
from benchmarks.suite._model import Job, Record, Settings, best, best_metric, find
from benchmarks.suite._plan import Config, interleaved
from benchmarks.suite._sessions import Task, opened

NAME = "smallcalls"
SECTIONS = ("throughput", "latency")
HIGH_INFLIGHT = 64
CONTENDERS = (
    SNAKEPIT_PROCESS,
    SNAKEPIT_UNPIPELINED,
    SNAKEPIT_THREAD,
    PPE_FORK,
    PPE_SPAWN,
    PPE_FORKSERVER,
    MP_POOL,
    LOKY,
    PEBBLE,
    BILLIARD,
    ANYIO_TO_PROCESS,
    RAW_BLOCKING,
    RAW_PIPELINED,
)
DESCRIPTIONS = {
    "throughput": "Small calls, add(i, i + 1), 64 in flight: req/s and latency, best "
    "round; snakepit/x = snakepit(process)'s req/s over the row's (same workers; "
    "above 1: snakepit is faster). snakepit(process): the defaults (calls sent "
    "ahead behind short ones, pipeline_depth=16); snakepit(process,depth 1): never "
    "sent ahead. "
    "snakepit(thread): N processes x 2 threads.",
    "latency": "Small calls, add(i, i + 1), 1 in flight (submit, wait, repeat): "
    "latency and req/s, best round; snakepit/x as above.",
}
ADD = Task("add", lambda i: (i, i + 1), lambda i, result: result == 2 * i + 1)
REFERENCE = SNAKEPIT_PROCESS.label


def _section(inflight: int) -> str:
    return "latency" if inflight == 1 else "throughput"


def _inflights(contender: Contender, config: Config) -> list[int]:
    mode = contender.options.get("mode") if contender.kind == RAW else None
    return [
        n
        for n in config["inflights"]
        if mode is None or (mode == "blocking") == (n == 1)
    ]


def _threads(contender: Contender) -> int:
    return int(contender.options.get("threads", 1))


def _records(contender: Contender, config: Config) -> list[tuple[str, Config]]:
    return [
        (
            _section(n),
            {
                "workers": config["workers"],
                "threads": _threads(contender),
                "inflight": n,
            },
        )
        for n in _inflights(contender, config)
    ]


def plan(
    settings: Settings, selected: set[str], wanted: Sequence[str] | None
) -> tuple[list[Job], list[Record]]:
    inflights = [
        n for n, s in ((1, "latency"), (HIGH_INFLIGHT, "throughput")) if s in selected
    ]
    if not inflights:
        return [], []
    configs = [
        {"workers": w, "inflights": inflights} for w in settings.throughput_workers
    ]
    per_call = settings.calls * len(inflights) + settings.warmup
    return interleaved(
        NAME,
        _records,
        CONTENDERS,
        wanted,
        configs,
        rounds=lambda contender, config: settings.rounds,
        # generous: the slowest peer at in-flight 1 does ~1,000 calls/s here
        timeout=lambda config: 120.0 + per_call / 200,
        skip=lambda c, config: None if _inflights(c, config) else "not this in-flight",
    )


def expected(job: Job) -> list[tuple[str, Config]]:
    from benchmarks.suite._contenders import from_dict

    return _records(from_dict(job.contender), job.params)


def run_job(
    contender: Contender, params: dict[str, Any], settings: Settings
) -> list[Record]:
    workers = params["workers"]
    inflights = _inflights(contender, params)
    found = []
    with opened(contender, workers) as session:
        # ready() had every worker answer; the warm-up runs at the highest in-flight
        session.closed_loop(ADD, settings.warmup, max(inflights))
        for inflight in inflights:
            timing = session.closed_loop(ADD, settings.calls, inflight)
            if timing.elapsed_s < settings.min_window_s:
                # that was a calibration: time a window long enough
                calls = math.ceil(
                    settings.calls * settings.min_window_s / timing.elapsed_s
                )
                timing = session.closed_loop(ADD, calls, inflight)
            found.append(
                Record(
                    section=_section(inflight),
                    contender=contender.label,
                    params={
                        "workers": workers,
                        "threads": _threads(contender),
                        "inflight": inflight,
                        "round": params["round"],
                    },
                    metrics={**timing.metrics(), "start_s": session.startup_s},
                )
            )
    return found


# --- report ---


def _best_rows(
    records: Sequence[Record], section: str, workers: int
) -> list[tuple[Contender, Record | None]]:
    rows: list[tuple[Contender, Record | None]] = []
    for contender in CONTENDERS:
        mine = find(records, section, contender.label, workers=workers)
        if not mine:
            continue
        rows.append((contender, best(mine, "req_per_s") or mine[0]))
    return rows


def _workers_cell(contender: Contender, workers: int) -> str:
    threads = _threads(contender)
    return f"{workers}x{threads}" if threads > 1 else str(workers)


def table(records: Sequence[Record], section: str, settings: Settings) -> str:
    headers = (
        "contender",
        "workers",
        "inflight",
        "req/s",
        "p50 ms",
        "p99 ms",
        "snakepit/x",
    )
    rows = []
    for workers in settings.throughput_workers:
        ours = best(find(records, section, REFERENCE, workers=workers), "req_per_s")
        for contender, record in _best_rows(records, section, workers):
            inflight = record.params.get("inflight", "") if record else ""
            status = _report.status_cell(record)
            if status is not None or record is None:
                rows.append(
                    (
                        contender.label,
                        _workers_cell(contender, workers),
                        str(inflight),
                        status or "-",
                        "",
                        "",
                        "",
                    )
                )
                continue
            m = record.metrics
            mine = ours.metrics["req_per_s"] if ours else None
            rows.append(
                (
                    contender.label,
                    _workers_cell(contender, workers),
                    str(inflight),
                    _report.rate(m["req_per_s"]),
                    _report.ms(m["p50_ms"]),
                    _report.ms(m["p99_ms"]),
                    _report.ratio(_report.divide(mine, m["req_per_s"])),
                )
            )
    return _report.render(headers, rows, _report.notes(find(records, section)))


def focus_workers(settings: Settings) -> int:
    """The pool size the summaries compare at: 2 workers, if measured."""
    return 2 if 2 in settings.throughput_workers else settings.throughput_workers[-1]


def is_peer(label: str, contenders: Sequence[Contender] = CONTENDERS) -> bool:
    """Whether the row *label* is a peer's (not snakepit's, not the raw pipe)."""
    contender = next((c for c in contenders if c.label == label), None)
    return contender is not None and contender.kind not in (SNAKEPIT, RAW)


def throughput_summary(records: Sequence[Record], settings: Settings) -> list[str]:
    """snakepit against PPE(fork), the best peer and raw-pipe(pipelined), at 2
    workers and in-flight 64 (ratios of req/s: above 1, snakepit is faster)."""
    workers = focus_workers(settings)
    rows = [r for r in find(records, "throughput", workers=workers) if r.ok]

    where = f"workers={workers}, in-flight {HIGH_INFLIGHT}"
    top = best([r for r in rows if is_peer(r.contender)], "req_per_s")
    others = [
        ("ProcessPoolExecutor(fork)", best_metric(rows, PPE_FORK.label)),
        (
            f"best peer excluding raw-pipe, {top.contender}" if top else "best peer",
            top.metrics["req_per_s"] if top else None,
        ),
        (RAW_PIPELINED.label, best_metric(rows, RAW_PIPELINED.label)),
    ]
    lines = []
    for label in (REFERENCE, SNAKEPIT_UNPIPELINED.label):
        ours = best_metric(rows, label)
        if ours is None:
            lines.append(f"(no {label} row at workers={workers})")
            continue
        lines.append(f"at {where}: {label} {_report.rate(ours)} req/s")
        for name, rate in others:
            if rate is not None:
                lines.append(_report.versus(label, ours, name, rate))
    return lines


def latency_summary(records: Sequence[Record], settings: Settings) -> list[str]:
    """snakepit's p50 at in-flight 1 against the best peer's and raw-pipe's
    (ratios of p50: below 1, snakepit answers sooner)."""
    workers = focus_workers(settings)
    rows = [r for r in find(records, "latency", workers=workers) if r.ok]

    def p50_of(label: str) -> float | None:
        return best_metric(rows, label, "p50_ms")

    ours = p50_of(REFERENCE)
    if ours is None:
        return [f"(no {REFERENCE} row at workers={workers})"]
    lines = [
        f"p50 at workers={workers}, in-flight 1: {REFERENCE} {_report.ms(ours)} ms"
    ]
    peers = {r.contender: p50_of(r.contender) for r in rows if is_peer(r.contender)}
    known = {k: v for k, v in peers.items() if v is not None}
    others = []
    if known:
        label = min(known, key=lambda k: known[k])
        others.append((f"best peer p50 ({label})", known[label]))
    raw = p50_of(RAW_BLOCKING.label)
    if raw is not None:
        others.append((f"{RAW_BLOCKING.label} p50", raw))
    for name, p50 in others:
        lines.append(
            f"{name}: {_report.ms(p50)} ms; snakepit's p50 is {ours / p50:.2f}x that"
        )
    return lines


def report(
    records: Sequence[Record], settings: Settings, selected: set[str]
) -> list[tuple[str, str]]:
    found = []
    if "throughput" in selected:
        text = table(records, "throughput", settings)
        found.append(
            (
                "throughput",
                text + "\n" + "\n".join(throughput_summary(records, settings)),
            )
        )
    if "latency" in selected:
        text = table(records, "latency", settings)
        found.append(
            ("latency", text + "\n" + "\n".join(latency_summary(records, settings)))
        )
    return found
