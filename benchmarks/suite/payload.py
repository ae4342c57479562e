"""Section ``payload``: echo a bytes payload, 1 worker, one call at a time.

Sizes 1 KiB, 64 KiB, 1 MiB and 16 MiB. A call sends the payload and gets it back
(compared whole with what was sent). **MB/s counts the payload once per
direction**: ``2 x size x calls / seconds``, in 10^6 bytes. Calls per size:
``--payload budget / size`` within bounds, after 2 warm-up calls; best round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.suite import _report
from benchmarks.suite._contenders import (
    MP_POOL,
    PPE_FORK,
    RAW_BLOCKING,
    SNAKEPIT_PROCESS,
    Contender,
    from_dict,
)
from benchmarks.suite._model import Job, Record, Settings, best, find
from benchmarks.suite._plan import Config, interleaved
from benchmarks.suite._report import size_name
from benchmarks.suite._sessions import Task, opened

NAME = "payload"
SECTIONS = ("payload",)
DESCRIPTIONS = {
    "payload": "Echo of a bytes payload, 1 worker, in-flight 1: MB/s with the "
    "payload counted once each way (2 x size per call, 10^6 bytes), best round; "
    "snakepit/x = snakepit's MB/s over the row's.",
}
CONTENDERS = (SNAKEPIT_PROCESS, PPE_FORK, MP_POOL, RAW_BLOCKING)


def _records(contender: Contender, config: Config) -> list[tuple[str, Config]]:
    return [("payload", {"size": size, "workers": 1}) for size in config["sizes"]]


def calls_for(size: int, settings: Settings) -> int:
    calls = settings.payload_budget // size
    return max(settings.payload_min_calls, min(settings.payload_max_calls, calls))


def plan(
    settings: Settings, selected: set[str], wanted: Sequence[str] | None
) -> tuple[list[Job], list[Record]]:
    sizes = list(settings.payload_sizes)
    moved = sum(2 * s * calls_for(s, settings) for s in sizes)
    return interleaved(
        NAME,
        _records,
        CONTENDERS,
        wanted,
        [{"sizes": sizes}],
        rounds=lambda contender, config: settings.rounds,
        timeout=lambda c: 120.0 + moved / 20e6,  # 20 MB/s would be very slow
    )


def expected(job: Job) -> list[tuple[str, Config]]:
    return _records(from_dict(job.contender), job.params)


def payload(size: int) -> bytes:
    """*size* bytes of a repeating pattern (content does not matter: neither
    msgpack nor pickle compresses)."""
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def echo_task(data: bytes) -> Task:
    """Echo *data*; the reply must equal it, byte for byte."""
    return Task("echo", lambda i: (data,), lambda i, result: result == data)


def run_job(
    contender: Contender, params: dict[str, Any], settings: Settings
) -> list[Record]:
    found = []
    with opened(contender, 1) as session:
        for size in params["sizes"]:
            data = payload(size)
            task = echo_task(data)
            calls = calls_for(size, settings)
            session.closed_loop(task, 2, 1)
            timing = session.closed_loop(task, calls, 1)
            found.append(
                Record(
                    section="payload",
                    contender=contender.label,
                    params={"size": size, "workers": 1, "round": params["round"]},
                    metrics={
                        **timing.metrics(),
                        "mb_per_s": 2 * size * calls / timing.elapsed_s / 1e6,
                    },
                )
            )
    return found


def _mbps(records: Sequence[Record], label: str, size: int) -> float | None:
    top = best(find(records, "payload", label, size=size), "mb_per_s")
    return float(top.metrics["mb_per_s"]) if top else None


def report(
    records: Sequence[Record], settings: Settings, selected: set[str]
) -> list[tuple[str, str]]:
    sizes = settings.payload_sizes
    mine = find(records, "payload")
    headers = ["contender", *(f"{size_name(s)} MB/s" for s in sizes)]
    headers += [f"snakepit/x {size_name(s)}" for s in sizes]
    rows = []
    ours = SNAKEPIT_PROCESS.label
    for contender in CONTENDERS:
        if not find(mine, "payload", contender.label):
            continue
        row = [contender.label]
        for size in sizes:
            value = _mbps(mine, contender.label, size)
            if value is None:
                some = find(mine, "payload", contender.label, size=size)
                row.append(_report.status_cell(some[0] if some else None) or "-")
            else:
                row.append(_report.rate(value))
        row += [
            _report.ratio(
                _report.divide(
                    _mbps(mine, ours, size), _mbps(mine, contender.label, size)
                )
            )
            for size in sizes
        ]
        rows.append(row)
    extra = []
    largest = sizes[-1]
    ratio = _report.divide(
        _mbps(mine, ours, largest), _mbps(mine, RAW_BLOCKING.label, largest)
    )
    if ratio is not None:
        extra.append(f"snakepit / raw-pipe at {size_name(largest)}: {ratio:.2f}")
    return [("payload", _report.render(headers, rows, [*_report.notes(mine), *extra]))]
