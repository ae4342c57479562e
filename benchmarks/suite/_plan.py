"""Turning a section's contenders and configurations into jobs.

Rounds are interleaved: round 1 runs every contender once, then round 2 (in the
reverse order), and so on, so that a burst of load from elsewhere on a shared
machine hurts one round of everybody rather than every round of one contender;
each row then keeps its best round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.suite._contenders import Contender, select, to_dict
from benchmarks.suite._model import SKIPPED, Job, Record

Config = dict[str, Any]


def interleaved(
    job_section: str,
    record_sections: Callable[[Contender, Config], Sequence[tuple[str, Config]]],
    contenders: Sequence[Contender],
    wanted: Sequence[str] | None,
    configs: Sequence[Config],
    rounds: Callable[[Contender, Config], int],
    timeout: Callable[[Config], float],
    skip: Callable[[Contender, Config], str | None] = lambda c, config: None,
) -> tuple[list[Job], list[Record]]:
    """Jobs for every selected contender and configuration, round by round, and a
    skipped record (per record section) for each one that cannot run.

    *record_sections* says which records a job makes (section, params): the
    skipped (and, should the job fail, the failed) records take their place.
    """
    jobs: list[Job] = []
    skipped: list[Record] = []
    chosen = select(contenders, wanted)
    runnable: list[tuple[Contender, Config]] = []
    for contender in chosen:
        for config in configs:
            why = contender.unavailable() or skip(contender, config)
            if why is None:
                runnable.append((contender, config))
                continue
            for section, params in record_sections(contender, config):
                skipped.append(
                    Record(
                        section=section,
                        contender=contender.label,
                        params=params,
                        status=SKIPPED,
                        error=why,
                    )
                )
    most = max((rounds(c, config) for c, config in runnable), default=0)
    for round_ in range(1, most + 1):
        order = runnable if round_ % 2 else runnable[::-1]
        for contender, config in order:
            if round_ <= rounds(contender, config):
                jobs.append(
                    Job(
                        section=job_section,
                        contender=to_dict(contender),
                        params={**config, "round": round_},
                        timeout_s=timeout(config),
                    )
                )
    return jobs, skipped
