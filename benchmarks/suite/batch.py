"""Section ``batch``: one caller maps ``add(i, i + 1)`` over ``--calls`` x 25 items.

Where ``throughput`` keeps 64 separate calls in flight, here the caller hands the
pool the whole batch in one call and waits for the list of results, in input
order: what each pool's own map does with it (chunking, batching the frames)
is what is measured. Each contender runs with the ``--workers`` pool sizes (the
summary is at 2 workers). A job starts the pool, waits until every worker has
answered, maps ``--warmup`` items untimed, then times one map of ``--calls`` x
``ITEMS_PER_CALL`` items (100,000 by default); a row keeps its best round
(highest items/s). The arguments are built before the clock starts and every
result is checked after it stops.

- ``snakepit(process,map)``: ``Pool.map("add", [{"a": i, "b": i + 1}, ...])``
  with ``chunksize=None`` (snakepit picks its chunks), on the portal's loop like
  the other snakepit rows;
- ``mp.Pool(map)``, ``billiard(map)``: ``starmap(add, [(i, i + 1), ...])`` with
  the pool's default chunksize (about four chunks per worker);
- ``PPE(fork,map)``: ``ProcessPoolExecutor.map(add, xs, ys, chunksize=C)`` with
  C = mp.Pool's default, ``ceil(items / (4 * workers))``: PPE's own default of 1
  sends every item as its own work item, which is ``throughput``'s measurement,
  not a batch's;
- ``raw-pipe(pipelined)``: the limit, measured exactly as ``throughput`` does
  (``--calls`` calls kept 64 in flight over the children); it has no map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.suite import _report
from benchmarks.suite._contenders import (
    BILLIARD_MAP,
    MP_POOL_MAP,
    PPE_FORK_MAP,
    RAW,
    RAW_PIPELINED,
    SNAKEPIT,
    SNAKEPIT_PROCESS_MAP,
    Contender,
    from_dict,
)
from benchmarks.suite._model import Job, Record, Settings, best, best_metric, find
from benchmarks.suite._plan import Config, interleaved
from benchmarks.suite._sessions import mp_pool_chunksize, opened
from benchmarks.suite.smallcalls import ADD, HIGH_INFLIGHT, focus_workers, is_peer

NAME = "batch"
SECTIONS = ("batch",)
CONTENDERS = (
    SNAKEPIT_PROCESS_MAP,
    MP_POOL_MAP,
    PPE_FORK_MAP,
    BILLIARD_MAP,
    RAW_PIPELINED,
)
DESCRIPTIONS = {
    "batch": "Batch throughput: one caller maps add(i, i + 1) over all the items "
    "in one call and waits for the results in order; items/s (req/s), best round; "
    "ms = the whole map. snakepit: Pool.map, chunksize=None (its own choice); "
    "mp.Pool, billiard: starmap, their default chunksize; PPE(fork,map): "
    "Executor.map with mp.Pool's default chunksize, ceil(items / (4 x workers)), "
    "since PPE's default of 1 is one work item per call (the throughput "
    "section's case). raw-pipe(pipelined): the limit, 64 calls in flight as in "
    "throughput. snakepit/x = snakepit(process,map)'s req/s over the row's.",
}
REFERENCE = SNAKEPIT_PROCESS_MAP.label


#: A map times ``--calls`` x this many items: one map of ``--calls`` (4,000) small
#: items takes a few milliseconds, too short to time steadily.
ITEMS_PER_CALL = 25


def _chunksize(contender: Contender, items: int, workers: int) -> int | None:
    """The chunksize each contender's map is given: mp.Pool's default for PPE
    (see the module docstring), None (the pool's own choice) for the others."""
    if contender.key == PPE_FORK_MAP.key:
        return mp_pool_chunksize(items, workers)
    return None


def _records(contender: Contender, config: Config) -> list[tuple[str, Config]]:
    params: Config = {"workers": config["workers"]}
    if contender.kind == RAW:
        params["inflight"] = HIGH_INFLIGHT
    return [("batch", params)]


def _missing_map(contender: Contender, config: Config) -> str | None:
    """Why *contender* cannot map here (snakepit before ``Pool.map``), or None."""
    if contender.kind != SNAKEPIT:
        return None
    from snakepit.pool import Pool

    return None if hasattr(Pool, "map") else "snakepit.pool.Pool has no map()"


def plan(
    settings: Settings, selected: set[str], wanted: Sequence[str] | None
) -> tuple[list[Job], list[Record]]:
    if "batch" not in selected:
        return [], []
    per_job = settings.calls * ITEMS_PER_CALL + settings.warmup
    return interleaved(
        NAME,
        _records,
        CONTENDERS,
        wanted,
        [{"workers": w} for w in settings.throughput_workers],
        rounds=lambda contender, config: settings.rounds,
        # as throughput's: generous for the slowest peer
        timeout=lambda config: 120.0 + per_job / 200,
        skip=_missing_map,
    )


def expected(job: Job) -> list[tuple[str, Config]]:
    return _records(from_dict(job.contender), job.params)


def run_job(
    contender: Contender, params: dict[str, Any], settings: Settings
) -> list[Record]:
    workers = params["workers"]
    with opened(contender, workers) as session:
        if contender.kind == RAW:
            # ready() had every worker answer; the same loop as throughput's
            session.closed_loop(ADD, settings.warmup, HIGH_INFLIGHT)
            metrics: dict[str, Any] = session.closed_loop(
                ADD, settings.calls, HIGH_INFLIGHT
            ).metrics()
        else:
            warmup = _chunksize(contender, settings.warmup, workers)
            session.map(ADD, settings.warmup, warmup)
            items = settings.calls * ITEMS_PER_CALL
            chunksize = _chunksize(contender, items, workers)
            metrics = session.map(ADD, items, chunksize).metrics()
    record_params = dict(_records(contender, params)[0][1])
    return [
        Record(
            section="batch",
            contender=contender.label,
            params={**record_params, "round": params["round"]},
            metrics={**metrics, "start_s": session.startup_s},
        )
    ]


# --- report ---


def _chunk_cell(contender: Contender, record: Record, workers: int) -> str:
    """The chunksize a row's map used: ``auto`` where snakepit chose, the
    computed default (marked) where mp.Pool or billiard did."""
    if contender.kind == RAW:
        return f"- (in-flight {record.params.get('inflight', HIGH_INFLIGHT)})"
    chunksize = record.metrics.get("chunksize")
    if chunksize is not None:
        return str(chunksize)
    if contender.kind == SNAKEPIT:
        return "auto"
    items = int(record.metrics.get("items", 0))
    return f"{mp_pool_chunksize(items, workers)} (default)"


def table(records: Sequence[Record], settings: Settings) -> str:
    headers = (
        "contender",
        "workers",
        "chunksize",
        "items",
        "req/s",
        "ms",
        "snakepit/x",
    )
    rows = []
    for workers in settings.throughput_workers:
        ours = best(find(records, "batch", REFERENCE, workers=workers), "req_per_s")
        mine = ours.metrics["req_per_s"] if ours else None
        for contender in CONTENDERS:
            found = find(records, "batch", contender.label, workers=workers)
            if not found:
                continue
            record = best(found, "req_per_s") or found[0]
            status = _report.status_cell(record)
            if status is not None:
                rows.append((contender.label, str(workers), "", "", status, "", ""))
                continue
            m = record.metrics
            rows.append(
                (
                    contender.label,
                    str(workers),
                    _chunk_cell(contender, record, workers),
                    f"{int(m.get('items', m.get('calls', 0))):,}",
                    _report.rate(m["req_per_s"]),
                    _report.ms(m["elapsed_s"] * 1e3),
                    _report.ratio(_report.divide(mine, m["req_per_s"])),
                )
            )
    return _report.render(headers, rows, _report.notes(find(records, "batch")))


def summary(records: Sequence[Record], settings: Settings) -> list[str]:
    """snakepit's map against PPE(fork,map), the best peer's map and
    raw-pipe(pipelined), at 2 workers (ratios of req/s: above 1, snakepit is
    faster)."""
    workers = focus_workers(settings)
    rows = [r for r in find(records, "batch", workers=workers) if r.ok]
    ours = best_metric(rows, REFERENCE)
    if ours is None:
        return [f"(no {REFERENCE} row at workers={workers})"]
    top = best([r for r in rows if is_peer(r.contender, CONTENDERS)], "req_per_s")
    others = [
        (PPE_FORK_MAP.label, best_metric(rows, PPE_FORK_MAP.label), ""),
        (
            "best peer excluding raw-pipe",
            top.metrics["req_per_s"] if top else None,
            f"{top.contender}, " if top else "",
        ),
        (RAW_PIPELINED.label, best_metric(rows, RAW_PIPELINED.label), ""),
    ]
    lines = [
        f"at workers={workers}, {settings.calls * ITEMS_PER_CALL:,} items: {REFERENCE} "
        f"{_report.rate(ours)} req/s"
    ]
    for name, rate, which in others:
        if rate is not None:
            lines.append(_report.versus(REFERENCE, ours, name, rate, which))
    return lines


def report(
    records: Sequence[Record], settings: Settings, selected: set[str]
) -> list[tuple[str, str]]:
    if "batch" not in selected:
        return []
    text = table(records, settings)
    return [("batch", text + "\n" + "\n".join(summary(records, settings)))]
