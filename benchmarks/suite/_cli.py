"""``python -m benchmarks`` / ``snakepit bench``: parse, run the sections, print.

See the package docstring (``benchmarks/suite/__init__.py``) for what is measured
and how.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psutil

from benchmarks._common import format_machine_info, machine_info
from benchmarks.suite import _contenders, _runner
from benchmarks.suite._model import KIB, MIB, SECTIONS, Record, Settings
from benchmarks.suite._paths import compile_checkout
from benchmarks.suite._sections import all_modules

PACKAGES = (
    "snakepit",
    "anyio",
    "msgpack",
    "psutil",
    "numpy",
    "loky",
    "pebble",
    "billiard",
)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        values = ()
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(
            f"needs positive integers, e.g. 1,2,8 (not {text!r})"
        )
    return values


def _sizes(text: str) -> tuple[int, ...]:
    """``1k,64k,1m,16m`` (or plain bytes) as sizes in bytes."""
    units = {"k": KIB, "m": MIB}
    sizes = []
    for part in text.lower().replace("ib", "").split(","):
        part = part.strip()
        if not part:
            continue
        scale = units.get(part[-1], 1)
        try:
            sizes.append(int(part.rstrip("km")) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"sizes like 1k,64k,1m (not {text!r})"
            ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes like 1k,64k,1m (not {text!r})")
    return tuple(sorted(set(sizes)))


def _sections(text: str) -> set[str]:
    chosen = {s.strip() for s in text.split(",") if s.strip()}
    unknown = chosen - set(SECTIONS)
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(
            f"choose from {','.join(SECTIONS)} (not {text!r})"
        )
    return chosen


def _contender_names(text: str) -> list[str]:
    names = _contenders.split_names(text)
    known = set().union(*(c.names() for c in _contenders.all_contenders()))
    unknown = [n for n in names if n.lower() not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown contender {', '.join(unknown) or text!r}; see --list"
        )
    return names


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="snakepit and its peers on the same tasks, in the same run.",
    )
    p.add_argument(
        "--sections",
        type=_sections,
        default=set(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument(
        "--quick", action="store_true", help="a small, fast variant of everything"
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write every record here")
    p.add_argument(
        "--contenders",
        type=_contender_names,
        metavar="NAMES",
        help="comma-separated names or families (snakepit, ppe, raw-pipe, ...; "
        "see --list); default: all",
    )
    p.add_argument("--list", action="store_true", help="list the contenders and exit")
    p.add_argument(
        "--rounds", type=int, help="rounds per row, best kept (default 3; quick 1)"
    )
    p.add_argument(
        "--calls",
        type=int,
        help="timed calls per throughput/latency row, items per batch map "
        "(default 4000; quick 500)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        help="untimed calls (or batch items) before them (default 300)",
    )
    p.add_argument(
        "--workers",
        type=_int_list,
        help="throughput/latency/batch pool sizes (default 1,2,8; quick 1,2)",
    )
    p.add_argument(
        "--startup-workers",
        type=_int_list,
        help="startup pool sizes (default 2,8,32,100,250; quick 2,8)",
    )
    p.add_argument(
        "--spawn-cap",
        type=int,
        metavar="N",
        help="with numpy, stop interpreter-per-worker peers (PPE(spawn), loky, "
        "anyio.to_process, raw-pipe) at N startup workers (default 100; 0: no cap)",
    )
    p.add_argument(
        "--memory-workers", type=int, help="memory pool size (default 8; quick 2)"
    )
    p.add_argument(
        "--payload-sizes",
        type=_sizes,
        metavar="SIZES",
        help="echo payloads, e.g. 1k,64k (default 1k,64k,1m,16m; quick 1k,64k,1m)",
    )
    p.add_argument(
        "--recycle-calls", type=int, help="calls per recycle row (default 10000)"
    )
    p.add_argument("--no-numpy", action="store_true", help="skip every NumPy row")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    changes: dict[str, Any] = {}
    for option, field in (
        ("rounds", "rounds"),
        ("calls", "calls"),
        ("warmup", "warmup"),
        ("workers", "throughput_workers"),
        ("startup_workers", "startup_workers"),
        ("spawn_cap", "startup_spawn_cap"),
        ("memory_workers", "memory_workers"),
        ("payload_sizes", "payload_sizes"),
        ("recycle_calls", "recycle_calls"),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[field] = value
    if changes.get("startup_spawn_cap") == 0:
        changes["startup_spawn_cap"] = None
    changes["numpy"] = _contenders.numpy_available() and not args.no_numpy
    if args.quick:
        return Settings.quick_variant(**changes)
    return attrs.evolve(Settings(), **changes)


def _busy_s() -> float:
    t = psutil.cpu_times()
    return float(
        t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    )


def _ours_s() -> float:
    """CPU time of this process and every descendant it (or they) reaped."""
    t = psutil.Process().cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


class LoadMeter:
    """The CPUs other processes kept busy while a section ran (machine busy time
    minus this suite's whole process tree), averaged over the wall time."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.busy = _busy_s()
        self.ours = _ours_s()

    def other_cpus(self) -> tuple[float, float]:
        wall = time.perf_counter() - self.began
        others = (_busy_s() - self.busy) - (_ours_s() - self.ours)
        return max(0.0, others) / max(wall, 1e-9), wall


def list_contenders() -> str:
    lines = []
    for c in _contenders.all_contenders():
        why = c.unavailable()
        lines.append(
            f"{c.label:28} key={c.key:26} family={c.family}"
            + (f"  (unavailable: {why})" if why else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser(prog).parse_args(args_list)
    if args.list:
        print(list_contenders())
        return 0
    settings = settings_from(args)
    if (
        min(settings.rounds, settings.calls, settings.warmup, settings.memory_workers)
        < 1
    ):
        parser(prog).error(
            "--rounds, --calls, --warmup and --memory-workers must be positive"
        )
    selected: set[str] = args.sections

    compiled = compile_checkout()
    info = machine_info(PACKAGES)
    command = shlex.join([*prog.split(), *args_list])
    print(format_machine_info(info))
    print(f"command:  {command}")
    print(
        f"settings: {'quick' if settings.quick else 'full'}; best of {settings.rounds} "
        f"round(s); each job in a fresh subprocess; numpy rows "
        f"{'on' if settings.numpy else 'off (numpy missing or --no-numpy)'}; "
        "1 BLAS thread per worker"
        + (f"; {' and '.join(compiled)} byte-compiled first" if compiled else "")
    )
    sys.stdout.flush()
    subreaper = _runner.become_subreaper()
    if not subreaper:
        print(
            "note: not a subreaper here: only direct leftovers are checked",
            file=sys.stderr,
        )

    records: list[Record] = []
    overall = LoadMeter()
    loads: dict[str, float] = {}
    for module in all_modules():
        if not set(module.SECTIONS) & selected:
            continue
        jobs, skipped = module.plan(settings, selected, args.contenders)
        mine: list[Record] = list(skipped)
        meter = LoadMeter()
        for number, job in enumerate(jobs, 1):
            print(
                f"{_runner.describe(job)} [{number}/{len(jobs)}] ...",
                file=sys.stderr,
                end="",
                flush=True,
            )
            found, took = _runner.run_job(job, settings)
            status = (
                "ok"
                if all(r.ok for r in found)
                else (found[0].error if found else "no records")
            )
            print(f" {took:.1f} s: {status}", file=sys.stderr, flush=True)
            mine += found
        other, wall = meter.other_cpus()
        records += mine
        for section, text in module.report(mine, settings, selected):
            loads[section] = other
            print(f"\n## {section}\n")
            print(module.DESCRIPTIONS[section])
            print()
            print(text)
            print(
                f"(section took {wall:.0f} s; other processes kept {other:.2f} "
                "CPUs busy meanwhile)"
            )
            sys.stdout.flush()
    other, wall = overall.other_cpus()
    print(
        f"\n{wall:.0f} s in all; other processes kept {other:.2f} of "
        f"{info['cpus_usable']} CPUs busy on average"
    )
    if args.json is not None:
        run_record = Record(
            section="run",
            contender="suite",
            params={
                "command": command,
                "machine": info,
                "settings": settings.as_dict(),
                "sections": sorted(selected),
            },
            metrics={
                "total_s": wall,
                "other_load_cpus": other,
                "section_other_load_cpus": loads,
            },
        )
        write_json_list(args.json, [run_record, *records])
    return 0


def write_json_list(path: Path, records: Sequence[Record]) -> None:
    """The records as a JSON list (``write_json`` writes objects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps([r.as_dict() for r in records], indent=1) + "\n", encoding="utf-8"
    )
