"""The peer suite: snakepit and every peer on the same tasks, in the same run.

``python -m benchmarks [--sections ...] [--quick] [--json PATH] [--contenders ...]``
(also ``snakepit bench ...`` from a source checkout). See ``_cli`` for the options,
each section module for what it measures (``smallcalls``: throughput and latency;
``batch``, ``startup``, ``memory``, ``payload``, ``cpu``, ``recycle``).

How it stays fair and robust:

- every job (one contender, one section, one configuration, one round) runs in a
  fresh interpreter, so each pool starts from the same clean parent; rounds are
  interleaved across contenders and each row keeps its best;
- every contender runs the same functions (``_tasks``; snakepit through
  ``benchmarks._adapters``), and every result is checked;
- a contender that is not installed is skipped, one that fails or hangs is
  reported failed (jobs are killed past their time limit) and the suite goes on;
- after each job, every process it started must be gone: the suite adopts
  orphans (Linux subreaper), reports them and kills them.

This package's ``__init__`` imports nothing: the peers' workers import
``benchmarks.suite._tasks`` through it, and must stay small.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Run the suite (see ``_cli.main``); returns the exit status."""
    from benchmarks.suite._cli import main as run

    return run(argv, prog=prog)
