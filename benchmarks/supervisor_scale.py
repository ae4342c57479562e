"""How DynamicSupervisor's start and stop costs grow with the number of children.

For each N: start a DynamicSupervisor, start N trivial children one after another
with ``start_child``, then stop the supervisor; the two phases are timed apart.
Per-child cost that stays flat as N grows means linear scaling; a cost that grows
with N means something is quadratic::

    python -m benchmarks.supervisor_scale [--counts 1000,2000,5000,10000]
        [--backend asyncio|trio] [--json PATH] [--profile]

``--profile`` runs the largest N once more under cProfile and prints the top of
the profile, sorted by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import platform
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from snakepit.supervisor import ChildSpec, DynamicSupervisor


async def trivial(*, task_status: TaskStatus[Any]) -> None:
    task_status.started()
    await anyio.sleep_forever()


async def measure(count: int) -> dict[str, float]:
    """Start *count* children under a fresh supervisor, stop it; time both."""
    sup = DynamicSupervisor(name=f"bench-{count}")
    specs = [ChildSpec(id=i, start=trivial) for i in range(count)]
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        began = time.perf_counter()
        for spec in specs:
            await sup.start_child(spec)
        started = time.perf_counter()
        assert sup.count_children().active == count
        await sup.stop()
        stopped = time.perf_counter()
    return {
        "n": count,
        "start_s": started - began,
        "stop_s": stopped - started,
        "start_us_per_child": (started - began) / count * 1e6,
        "stop_us_per_child": (stopped - started) / count * 1e6,
    }


def run_one(count: int, backend: str) -> dict[str, float]:
    gc.collect()
    result: dict[str, float] = anyio.run(measure, count, backend=backend)
    return result


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        f"{'N':>7}  {'start s':>9}  {'stop s':>9}  {'µs/start':>9}  {'µs/stop':>9}",
    ]
    lines += [
        f"{r['n']:>7}  {r['start_s']:>9.3f}  {r['stop_s']:>9.3f}  "
        f"{r['start_us_per_child']:>9.1f}  {r['stop_us_per_child']:>9.1f}"
        for r in rows
    ]
    return "\n".join(lines)


def ratios(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-child cost at the largest N over that at the smallest N."""
    small = min(rows, key=lambda r: r["n"])
    large = max(rows, key=lambda r: r["n"])
    return {
        "start": large["start_us_per_child"] / small["start_us_per_child"],
        "stop": large["stop_us_per_child"] / small["stop_us_per_child"],
    }


def profile(count: int, backend: str) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run_one(count, backend)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--counts",
        default="1000,2000,5000,10000",
        help="comma-separated numbers of children (default: %(default)s)",
    )
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile", action="store_true", help="profile the largest N with cProfile"
    )
    args = parser.parse_args(argv)
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    if not counts or counts[0] < 1:
        parser.error("--counts needs positive integers")

    run_one(counts[0], args.backend)  # warm-up: imports, caches, allocator
    rows = [run_one(count, args.backend) for count in counts]
    print(
        f"DynamicSupervisor scale ({args.backend}, Python {platform.python_version()})"
    )
    print(table(rows))
    growth = ratios(rows)
    print(
        f"per-child cost at N={counts[-1]} / N={counts[0]}: "
        f"start x{growth['start']:.2f}, stop x{growth['stop']:.2f} "
        "(about 1 means linear; growing with N means quadratic)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "supervisor_scale",
                    "backend": args.backend,
                    "python": platform.python_version(),
                    "rows": rows,
                    "ratio": growth,
                },
                indent=2,
            )
            + "\n"
        )
    if args.profile:
        profile(counts[-1], args.backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
