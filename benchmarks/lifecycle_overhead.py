"""The parent's CPU time spent in lifecycle checks (the seed: "<0.001 % CPU").

Runs a pool of N idle workers for a while with TTL and memory checks and health
checks enabled, and measures the event-loop thread's CPU time spent inside the
checks (``time.thread_time`` around each one), as a fraction of wall time.

    python -m benchmarks.lifecycle_overhead [--seconds 60] [--workers 8]
        [--lifecycle-interval 60] [--health-interval 300] [--json PATH]

Run it twice: with the defaults (60 s / 300 s), and with short intervals
(e.g. 1 s / 5 s) to see the cost per check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import anyio

import snakepit.lifecycle._manager as manager
from snakepit.pool import open_pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--lifecycle-interval", type=float, default=60.0)
    parser.add_argument("--health-interval", type=float, default=300.0)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    spent = {"limits": 0.0, "health": 0.0}
    counts = {"limits": 0, "health": 0}
    original_limits = manager._check_limits
    original_health = manager._check_health

    async def timed_limits(pool):  # type: ignore[no-untyped-def]
        begin = time.thread_time()
        await original_limits(pool)
        spent["limits"] += time.thread_time() - begin
        counts["limits"] += 1

    async def timed_health(pool):  # type: ignore[no-untyped-def]
        # pings run concurrently; thread time covers the whole round, including
        # the event loop serving other tasks meanwhile (an upper bound).
        begin = time.thread_time()
        await original_health(pool)
        spent["health"] += time.thread_time() - begin
        counts["health"] += 1

    manager._check_limits = timed_limits  # type: ignore[assignment]
    manager._check_health = timed_health  # type: ignore[assignment]

    async def run() -> dict[str, float]:
        async with open_pool(
            size=args.workers,
            worker_ttl=24 * 3600,
            memory_threshold_mb=4096,
            lifecycle_check_interval=args.lifecycle_interval,
            health_check_interval=args.health_interval,
        ):
            cpu0, wall0 = time.process_time(), time.monotonic()
            await anyio.sleep(args.seconds)
            return {
                "parent_cpu": time.process_time() - cpu0,
                "wall": time.monotonic() - wall0,
            }

    totals = anyio.run(run)
    wall = totals["wall"]
    in_checks = spent["limits"] + spent["health"]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "seconds": wall,
        "lifecycle_interval": args.lifecycle_interval,
        "health_interval": args.health_interval,
        "limit_checks": counts["limits"],
        "health_checks": counts["health"],
        "cpu_in_checks_s": in_checks,
        "cpu_in_checks_percent_of_wall": 100 * in_checks / wall,
        "parent_cpu_total_s": totals["parent_cpu"],
        "per_limit_check_ms": 1000 * spent["limits"] / max(counts["limits"], 1),
        "per_health_round_ms": 1000 * spent["health"] / max(counts["health"], 1),
    }
    width = max(map(len, result))
    for key, value in result.items():
        shown = f"{value:.6f}" if isinstance(value, float) else str(value)
        print(f"{key.ljust(width)}  {shown}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
