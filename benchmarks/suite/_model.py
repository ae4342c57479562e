"""The suite's data: settings, jobs and the records they produce.

A **record** is one measurement: ``{section, contender, params, metrics}``, plus
``status`` (``ok``, ``failed`` or ``skipped``) and ``error`` (why not ok). The JSON
output is the list of every record; tables are made from them.

A **job** is the unit that runs in its own subprocess: one contender, one section,
a few parameters (for example: throughput, ``PPE(fork)``, 2 workers, round 3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

KIB = 1024
MIB = 1024 * 1024

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"

#: Every section, in the order they run.
SECTIONS = (
    "throughput",
    "latency",
    "batch",
    "startup",
    "memory",
    "payload",
    "cpu",
    "recycle",
)


@attrs.frozen(kw_only=True)
class Settings:
    """How much of everything to run (``--quick`` picks the small variant)."""

    quick: bool = False
    rounds: int = 3
    numpy: bool = True
    # throughput, latency and batch: add(a, b)
    throughput_workers: tuple[int, ...] = (1, 2, 8)
    calls: int = 4_000
    warmup: int = 300
    #: A throughput or latency row times at least this long: where --calls take
    #: less, as many more as fill it (at 180,000 req/s, 4,000 calls are 22 ms,
    #: a window one scheduling hiccup of the shared VM can halve).
    min_window_s: float = 0.5
    # startup
    startup_workers: tuple[int, ...] = (2, 8, 32, 100, 250)
    #: From this many workers up, one round only (a start takes seconds there).
    startup_single_round_from: int = 32
    #: With NumPy, the peers that start each worker as a new interpreter
    #: (PPE(spawn), loky, anyio.to_process, raw-pipe) stop at this many workers
    #: (None: no cap): 250 of them take about a minute each on 2 cores, and
    #: snakepit and PPE(fork) still go to 250.
    startup_spawn_cap: int | None = 100
    # memory
    memory_workers: int = 8
    # payload
    payload_sizes: tuple[int, ...] = (1 * KIB, 64 * KIB, 1 * MIB, 16 * MIB)
    #: Bytes each way per size and round; calls = budget / size, within bounds.
    payload_budget: int = 128 * MIB
    payload_max_calls: int = 2_000
    payload_min_calls: int = 10
    # cpu
    cpu_workers: int = 2
    cpu_inflight: int = 8
    python_n: int = 200_000
    python_jobs: int = 300
    matmul_n: int = 256
    matmul_jobs: int = 1_000
    # recycle
    recycle_workers: int = 2
    recycle_inflight: int = 64
    recycle_calls: int = 10_000
    recycle_every: int = 200

    @classmethod
    def quick_variant(cls, **changes: Any) -> Settings:
        """A small run: one round, few calls, small pools and payloads."""
        base = cls(
            quick=True,
            rounds=1,
            throughput_workers=(1, 2),
            calls=500,
            warmup=50,
            min_window_s=0.0,
            startup_workers=(2, 8),
            memory_workers=2,
            payload_sizes=(1 * KIB, 64 * KIB, 1 * MIB),
            payload_budget=8 * MIB,
            payload_max_calls=300,
            payload_min_calls=5,
            python_jobs=40,
            matmul_jobs=100,
            recycle_calls=1_000,
        )
        return attrs.evolve(base, **changes)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(kw_only=True)
class Record:
    """One measurement (or why there is none)."""

    section: str
    contender: str
    params: dict[str, Any] = attrs.field(factory=dict)
    metrics: dict[str, Any] = attrs.field(factory=dict)
    status: str = OK
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        return cls(**data)


@attrs.frozen(kw_only=True)
class Job:
    """One subprocess's work: *section*'s measurement of *contender* (a dict,
    see ``_contenders.to_dict``) with *params*, killed after *timeout_s*."""

    section: str
    contender: dict[str, Any]
    params: dict[str, Any]
    timeout_s: float

    @property
    def label(self) -> str:
        return str(self.contender["label"])

    def as_dict(self, settings: Settings) -> dict[str, Any]:
        return {
            "section": self.section,
            "contender": self.contender,
            "params": self.params,
            "timeout_s": self.timeout_s,
            "settings": settings.as_dict(),
        }


def settings_from_dict(data: dict[str, Any]) -> Settings:
    fields = attrs.fields_dict(Settings)
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in data.items()
        if k in fields
    }
    return Settings(**values)


def find(
    records: Iterable[Record], section: str, contender: str | None = None, **params: Any
) -> list[Record]:
    """The records of *section* (and *contender*) whose params include *params*."""
    return [
        r
        for r in records
        if r.section == section
        and (contender is None or r.contender == contender)
        and all(r.params.get(k) == v for k, v in params.items())
    ]


def best(
    records: Sequence[Record], metric: str, *, lowest: bool = False
) -> Record | None:
    """The ok record with the highest (or *lowest*) *metric*; None if none."""
    ok = [r for r in records if r.ok and metric in r.metrics]
    if not ok:
        return None
    pick = min if lowest else max
    return pick(ok, key=lambda r: float(r.metrics[metric]))


def best_metric(
    records: Sequence[Record], contender: str, metric: str = "req_per_s"
) -> float | None:
    """*metric* of *contender*'s best round (highest req/s) in *records*; None if
    it has no ok round there."""
    found = best([r for r in records if r.contender == contender], "req_per_s")
    return float(found.metrics[metric]) if found else None
