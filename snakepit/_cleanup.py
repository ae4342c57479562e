"""``snakepit cleanup``: end what dead runs left behind, on demand.

It does what a starting pool does (see :mod:`snakepit._registry`) and prints what
it killed: pid, run id and worker id. By default it cleans the instances of the
configuration found in the working directory (the ones ``snakepit run`` here
would use); ``--instance`` names one, ``--all-instances`` takes every instance
in the data directory. Runs whose owner is alive are never touched. Exits 1 if
an orphan could not be killed, 2 if the instance could not be determined.

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from snakepit._registry import (
    CleanupReport,
    KilledProcess,
    cleanup,
    resolve_data_dir,
    resolve_instance,
    valid_instance,
)

__all__ = ("run_cleanup",)


def _targets(
    data_dir: str | None,
    instance: str | None,
    all_instances: bool,
    config: str | None,
    err: TextIO,
) -> dict[Path, set[str] | None] | None:
    """Which instances of which data directories to clean (``None``: all of
    them); ``None`` if the configuration needed for that could not be read."""
    from snakepit.config import Config
    from snakepit.exceptions import ConfigError

    if instance is not None and not valid_instance(instance):
        print(
            f"snakepit cleanup: {instance!r} is no instance name (1 to 100 letters, "
            "digits, '.', '_' or '-')",
            file=err,
        )
        return None
    need_config = (
        config is not None or data_dir is None or not (instance or all_instances)
    )
    pools = None
    if need_config:
        try:
            pools = Config.load(config).get_pool_configs()
        except ConfigError as exc:
            if config is not None or not (instance or all_instances):
                print(
                    f"snakepit cleanup: cannot tell this application's instance: "
                    f"{exc}\n(pass --instance NAME or --all-instances)",
                    file=err,
                )
                return None
    if data_dir is not None:
        dirs = [Path(data_dir).expanduser()]
    elif pools is not None:
        dirs = list(dict.fromkeys(resolve_data_dir(p.data_dir) for p in pools))
    else:
        dirs = [resolve_data_dir(None)]
    if all_instances:
        return dict.fromkeys(dirs)
    if instance:
        return {d: {instance} for d in dirs}
    assert pools is not None
    names = [p.name for p in pools]
    found: dict[Path, set[str] | None] = {}
    for pool in pools:
        where = (
            Path(data_dir) if data_dir is not None else resolve_data_dir(pool.data_dir)
        )
        chosen = found.setdefault(where, set())
        assert chosen is not None
        chosen.add(resolve_instance(pool.instance, names))
    return found


def _line(verb: str, killed: KilledProcess) -> str:
    who = (
        f"worker {killed.worker_id}"
        if killed.worker_id
        else f"{killed.reason.replace('_', ' ')} of a worker"
    )
    how = f" ({killed.signal})" if killed.signal else ""
    command = " ".join(killed.cmdline)
    if len(command) > 60:
        command = command[:57] + "..."
    return (
        f"{verb} pid {killed.pid}: run {killed.run_id}, {who}, instance "
        f"{killed.instance}{how}: {command}"
    )


def _summary(report: CleanupReport) -> str:
    dead = len(report.dead_runs)
    parts = [
        f"{len(report.killed)} {'to kill' if report.dry_run else 'killed'} in "
        f"{dead} dead run{'s' * (dead != 1)}",
        f"{len(report.live_runs)} live left alone",
    ]
    for label, runs in (
        ("stale (earlier boot)", report.stale_runs),
        ("of another host or PID namespace", report.foreign_runs),
        ("unreadable", report.unreadable),
    ):
        if runs:
            parts.append(f"{len(runs)} {label}")
    if report.survivors:
        parts.append(f"{len(report.survivors)} could not be killed")
    prefix = "dry run, nothing changed: " if report.dry_run else ""
    return f"{prefix}{'; '.join(parts)}"


def run_cleanup(
    *,
    data_dir: str | None = None,
    instance: str | None = None,
    all_instances: bool = False,
    config: str | None = None,
    dry_run: bool = False,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``snakepit cleanup``; return its exit status (0 ok, 1 survivors,
    2 no instance)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    targets = _targets(data_dir, instance, all_instances, config, err)
    if targets is None:
        return 2
    reports = [
        cleanup(folder, None if names is None else sorted(names), dry_run=dry_run)
        for folder, names in targets.items()
    ]
    if as_json:
        json.dump(
            {"dry_run": dry_run, "reports": [r.to_dict() for r in reports]},
            out,
            indent=2,
        )
        out.write("\n")
    else:
        for report in reports:
            shown = ", ".join(report.instances) or "none found"
            print(f"{report.data_dir} (instances: {shown})", file=out)
            verb = "would kill" if dry_run else "killed"
            for killed in report.killed:
                print("  " + _line(verb, killed), file=out)
            for survivor in report.survivors:
                print("  " + _line("could not kill", survivor), file=out)
            for path in report.unreadable:
                print(f"  unreadable, left alone: {path}", file=out)
            print("  " + _summary(report), file=out)
    return 1 if any(r.survivors for r in reports) else 0
