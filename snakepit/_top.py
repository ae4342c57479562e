"""``snakepit stats`` and ``snakepit top``: a running application, seen from outside.

Both read the control socket that ``snakepit run`` serves (:mod:`snakepit._control`).
``stats`` prints one snapshot, as text tables or as JSON (``--json``); ``top``
redraws one every ``--interval`` seconds with ``rich`` (the optional extra
``snakepit[top]``) until Ctrl-C or until the application stops. Here too: the
progress of a large pool's startup in ``snakepit run`` (:class:`StartupProgress`).

Without ``--socket``, the socket is where ``snakepit run`` puts it for the same
configuration, working directory and environment
(:func:`snakepit._control.default_socket_path`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from snakepit import telemetry
from snakepit._control import (
    ControlError,
    ControlUnavailable,
    default_socket_path,
    query,
)

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, TaskID

__all__ = (
    "StartupProgress",
    "format_text",
    "render",
    "run_stats",
    "run_top",
)

#: What to install for ``snakepit top``.
INSTALL_HINT = "pip install 'snakepit[top]'"
#: Workers shown per pool in ``top`` (the rest are counted).
_TOP_WORKER_ROWS = 40
#: Lifecycle events shown in ``top`` and ``stats``.
_EVENT_ROWS = 10
_WORKER_HEADERS = ("WORKER", "PID", "STATE", "RSS", "REQUESTS", "UPTIME", "LOAD")
_EVENT_HEADERS = ("TIME", "EVENT", "POOL", "WORKER", "DETAIL")


# --- Formatting (shared by stats and top) ---


def _bytes(count: object) -> str:
    """``31.2 MiB`` and the like; ``-`` when unknown."""
    if not isinstance(count, (int, float)) or count <= 0:
        return "-"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover (the loop returns)


def _duration(seconds: object) -> str:
    """``2:03:04``, or ``1d 2:03:04`` past a day."""
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def _clock(stamp: object) -> str:
    """A Unix time as the local ``HH:MM:SS``."""
    if not isinstance(stamp, (int, float)):
        return "-"
    return datetime.datetime.fromtimestamp(stamp).strftime("%H:%M:%S")


def _headline(snap: dict[str, Any]) -> str:
    return (
        f"snakepit {snap.get('version', '?')} · pid {snap.get('pid', '?')} · up "
        f"{_duration(snap.get('uptime_seconds'))} · {_clock(snap.get('time'))}"
    )


def _pool_lines(pool: dict[str, Any]) -> tuple[str, str]:
    """The pool's name, workers and adapter; then its queue, load and counters."""
    stats = pool.get("stats") or {}
    first = (
        f"pool {pool.get('name')}: {stats.get('workers', 0)}/"
        f"{pool.get('pool_size', '?')} {pool.get('profile', '')} workers of "
        f"{pool.get('adapter', '?')}" + (" (closing)" if pool.get("closing") else "")
    )
    second = (
        f"queue {stats.get('queued', 0)} · load {stats.get('load', 0)}/"
        f"{stats.get('capacity', 0)} · requests {stats.get('requests', 0)} · "
        f"errors {stats.get('errors', 0)} · restarts {stats.get('restarts', 0)} · "
        f"recycles {stats.get('recycles', 0)}"
    )
    return first, second


def _worker_row(worker: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(worker.get("worker_id", "?")),
        str(worker.get("pid", "-")),
        str(worker.get("state", "?")),
        _bytes(worker.get("rss_bytes")),
        str(worker.get("requests", 0)),
        _duration(worker.get("uptime_seconds")),
        f"{worker.get('load', 0)}/{worker.get('capacity', 0)}",
    )


def _event_row(event: dict[str, Any]) -> tuple[str, ...]:
    return (
        _clock(event.get("time")),
        str(event.get("event", "?")),
        str(event.get("pool") or "-"),
        str(event.get("worker_id") or "-"),
        str(event.get("detail") or ""),
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """*rows* under *headers*, in columns as wide as their widest cell (the last
    column is not padded)."""
    widths = [
        max(len(cell) for cell in column)
        for column in zip(headers, *rows, strict=False)
    ]
    return [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in (headers, *rows)
    ]


def format_text(snap: dict[str, Any]) -> str:
    """A snapshot (see :func:`snakepit._control.snapshot`) as plain text tables,
    for ``snakepit stats``."""
    lines = [_headline(snap)]
    if snap.get("socket"):
        lines.append(f"socket {snap['socket']}")
    for pool in snap.get("pools", []):
        first, second = _pool_lines(pool)
        lines.extend(["", first, "  " + second])
        workers = pool.get("workers", [])
        if workers:
            lines.extend(
                "  " + line
                for line in _table(_WORKER_HEADERS, [_worker_row(w) for w in workers])
            )
        else:
            lines.append("  (no workers serving)")
    events = snap.get("events", [])[-_EVENT_ROWS:]
    lines.append("")
    lines.append("latest lifecycle events" if events else "no lifecycle events yet")
    if events:
        lines.extend(
            "  " + line
            for line in _table(_EVENT_HEADERS, [_event_row(e) for e in events])
        )
    return "\n".join(lines) + "\n"


def render(snap: dict[str, Any]) -> RenderableType:
    """One frame of ``snakepit top`` for a snapshot: a table per pool and one
    of the latest lifecycle events (needs ``rich``)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = [Text(_headline(snap), style="bold")]
    for pool in snap.get("pools", []):
        # The pool's lines stand above its table: as a title they would wrap to
        # the table's width.
        first, second = _pool_lines(pool)
        parts.append(Text(""))
        parts.append(Text(first, style="bold"))
        parts.append(Text(second))
        table = Table(expand=False, header_style="bold cyan")
        for header in _WORKER_HEADERS:
            right = header in ("PID", "RSS", "REQUESTS", "UPTIME", "LOAD")
            table.add_column(header, justify="right" if right else "left")
        workers = pool.get("workers", [])
        for worker in workers[:_TOP_WORKER_ROWS]:
            state = str(worker.get("state", "?"))
            style = {"busy": "yellow", "idle": "green"}.get(state, "")
            if state in ("exiting", "gone", "draining", "recycling"):
                style = "red"
            table.add_row(*_worker_row(worker), style=style or None)
        if len(workers) > _TOP_WORKER_ROWS:
            table.caption = f"... and {len(workers) - _TOP_WORKER_ROWS} more workers"
        parts.append(table)
    events = snap.get("events", [])[-_EVENT_ROWS:]
    parts.append(Text(""))
    parts.append(Text("latest lifecycle events", style="bold"))
    table = Table(header_style="bold cyan")
    for header in _EVENT_HEADERS:
        table.add_column(header)
    for event in events:
        table.add_row(*_event_row(event))
    parts.append(table)
    return Group(*parts)


# --- Finding the socket ---


def _socket_path(config: str | None, socket: str | None, prog: str) -> Path | None:
    """The socket to ask: *socket*, else the default of *config*; ``None`` (and
    a message) when the configuration cannot be read."""
    if socket is not None:
        return Path(socket).expanduser()
    from snakepit.config import Config
    from snakepit.exceptions import ConfigError

    try:
        return default_socket_path(Config.load(config))
    except (ConfigError, OSError) as exc:
        print(
            f"{prog}: cannot tell where the application's socket is: {exc}\n"
            "(pass the application's CONFIG, or its socket with --socket PATH)",
            file=sys.stderr,
        )
        return None


def _not_found(prog: str, exc: ControlUnavailable, err: TextIO) -> None:
    print(
        f"{prog}: no running application found: tried {exc.path} ({exc.reason}).\n"
        "Start one with `snakepit run CONFIG`, or run this command from the same "
        "folder, with the same CONFIG and environment (SNAKEPIT_DATA_DIR, "
        "SNAKEPIT_INSTANCE), or point at a socket with --socket PATH "
        "(`snakepit run` prints it as `control socket: PATH`).",
        file=err,
    )


# --- The commands ---


def run_stats(
    config: str | None,
    socket: str | None,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``snakepit stats``: print one snapshot; 0 on success, 1 if no running
    application answers."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    path = _socket_path(config, socket, "snakepit stats")
    if path is None:
        return 1
    try:
        snap = query(path, "stats")["stats"]
    except ControlUnavailable as exc:
        _not_found("snakepit stats", exc, err)
        return 1
    except ControlError as exc:
        print(f"snakepit stats: {exc}", file=err)
        return 1
    if as_json:
        json.dump(snap, out, indent=2)
        out.write("\n")
    else:
        out.write(format_text(snap))
    out.flush()
    return 0


def _ctrl_c_stops() -> None:
    """Make Ctrl-C stop ``snakepit top`` even if it was started with SIGINT
    ignored or blocked (both survive ``exec``: a background job of a script,
    a supervisor's child), since Ctrl-C is the only way it ends."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def run_top(config: str | None, socket: str | None, interval: float = 1.0) -> int:
    """``snakepit top``: redraw a snapshot every *interval* seconds until Ctrl-C
    (exit 0) or until the application stops (exit 0); 1 if none answers at the
    start, or ``rich`` is missing."""
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        print("snakepit top needs the rich library: " + INSTALL_HINT, file=sys.stderr)
        return 1
    _ctrl_c_stops()
    path = _socket_path(config, socket, "snakepit top")
    if path is None:
        return 1
    try:
        snap = query(path, "stats")["stats"]
    except ControlUnavailable as exc:
        _not_found("snakepit top", exc, sys.stderr)
        return 1
    except ControlError as exc:
        print(f"snakepit top: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    console = Console()
    stopped: str | None = None
    try:
        with Live(
            render(snap), console=console, auto_refresh=False, transient=False
        ) as live:
            while True:
                time.sleep(interval)
                try:
                    snap = query(path, "stats")["stats"]
                except ControlUnavailable:
                    stopped = f"the application stopped ({path} is gone)"
                    break
                except ControlError as exc:
                    stopped = f"the application does not answer: {exc}"
                    break
                live.update(render(snap), refresh=True)
    except KeyboardInterrupt:
        pass
    if stopped is not None:
        console.print(f"snakepit top: {stopped}")
    return 0


# --- snakepit run: the startup progress ---


class StartupProgress:
    """Workers started out of the configured total, while ``snakepit run``
    starts its pools; counted from the ``("snakepit", "worker", "started")``
    telemetry event. A ``rich`` progress bar (transient) when rich is
    installed, else a line per tenth of the way.

    Args:
        total: the workers to start (the pools' ``pool_size`` summed).
        out: where to show it (a terminal).
    """

    _EVENT = ("snakepit", "worker", "started")

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = max(total, 1)
        self.started = 0
        self._out = out
        self._handler_id = f"snakepit.top.progress.{id(self)}"
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._step = max(1, self.total // 10)
        self._running = False

    def start(self) -> None:
        """Attach to telemetry and show the bar (or the first line)."""
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            print(f"starting workers: 0/{self.total}", file=self._out, flush=True)
        else:
            self._progress = Progress(
                TextColumn("starting workers"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=self._out),
                transient=True,
            )
            self._task = self._progress.add_task("start", total=self.total)
            self._progress.start()
        self._running = True
        telemetry.attach(self._handler_id, self._EVENT, self._on_started)

    def _on_started(
        self,
        _event: telemetry.EventName,
        _measurements: telemetry.Measurements,
        _metadata: telemetry.Metadata,
        _config: None,
    ) -> None:
        self.started += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=min(self.started, self.total))
        elif self.started % self._step == 0 or self.started == self.total:
            print(
                f"starting workers: {min(self.started, self.total)}/{self.total}",
                file=self._out,
                flush=True,
            )

    def stop(self) -> None:
        """Detach and take the bar off the screen (idempotent)."""
        if not self._running:
            return
        self._running = False
        telemetry.detach(self._handler_id)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
