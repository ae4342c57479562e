"""The ``snakepit`` command (also ``python -m snakepit``).

- ``snakepit demo``: a guided run on the showcase adapter; no arguments needed.
- ``snakepit run CONFIG``: start the pools of a TOML file and serve until Ctrl-C or
  SIGTERM, printing readiness and stats; ``--metrics-port N`` serves Prometheus
  metrics (``snakepit.metrics``).
- ``snakepit doctor [--python EXE] [--config PATH] [--json]``: check worker
  interpreters (version, free-threading, GIL, installed libraries); exits 1 when
  workers could not start.
- ``snakepit cleanup [--data-dir DIR] [--instance NAME | --all-instances]
  [--config PATH] [--dry-run] [--json]``: kill what dead runs left behind (orphaned
  workers and their children) and report it; live runs are never touched.
- ``snakepit new-adapter NAME [--dir DIR]``: write a documented adapter skeleton
  ``NAME.py`` and its passing tests ``test_NAME.py``; never overwrites (exit 2).
- ``snakepit stats [CONFIG] [--socket PATH] [--json]`` and ``snakepit top [CONFIG]
  [--socket PATH] [--interval S]``: a running application's pools, workers and
  latest lifecycle events, once or live (``snakepit[top]``), read from the control
  socket ``snakepit run`` serves (``--control-socket PATH``,
  ``--no-control-socket``; see ``snakepit._control``).
- ``snakepit bench [ARGS...]``: the benchmark suite against peers (``python -m
  benchmarks ARGS...``); from a source checkout only, as ``benchmarks/`` does not
  ship in the wheel.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snakepit._version import __version__

__all__ = ("main",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snakepit",
        description="Supervised pools of Python worker processes.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo", help="a guided run on the showcase adapter (no arguments needed)"
    )
    run = commands.add_parser(
        "run", help="start the pools of a TOML config and serve until Ctrl-C"
    )
    run.add_argument(
        "config",
        nargs="?",
        help="snakepit.toml or pyproject.toml (default: look in the working dir)",
    )
    run.add_argument(
        "--stats-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="print stats this often (0: only at exit; default 10)",
    )
    run.add_argument(
        "--load",
        metavar="COMMAND",
        help="keep calling COMMAND on the default pool while serving (a smoke load)",
    )
    run.add_argument(
        "--load-args",
        default="{}",
        metavar="JSON",
        help="keyword arguments for --load, as a JSON object",
    )
    run.add_argument(
        "--load-concurrency",
        type=int,
        default=4,
        metavar="N",
        help="callers running --load at once (default 4)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, "
        "printed); needs snakepit[prometheus]",
    )
    run.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --metrics-port listens on (default 127.0.0.1)",
    )
    control = run.add_mutually_exclusive_group()
    control.add_argument(
        "--control-socket",
        metavar="PATH",
        help="serve snakepit stats/top on this Unix socket (default: "
        "<data_dir>/<instance>/control.sock; owner-only)",
    )
    control.add_argument(
        "--no-control-socket",
        action="store_true",
        help="serve no control socket (snakepit stats/top cannot see this run)",
    )
    doctor = commands.add_parser(
        "doctor",
        help="check worker interpreters: version, free-threading, GIL, libraries",
    )
    doctor.add_argument(
        "--python",
        metavar="EXE",
        help="the interpreter to check (default: this one, the workers' default)",
    )
    doctor.add_argument(
        "--config",
        metavar="PATH",
        help="check every pool's python_executable of this TOML config",
    )
    doctor.add_argument(
        "--json", action="store_true", help="print a JSON document instead of text"
    )
    clean = commands.add_parser(
        "cleanup",
        help="kill the orphaned workers of dead runs (live runs are left alone)",
    )
    clean.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the run records' folder (default: the config's data_dir, else "
        "$SNAKEPIT_DATA_DIR, else ~/.local/state/snakepit)",
    )
    which = clean.add_mutually_exclusive_group()
    which.add_argument(
        "--instance",
        metavar="NAME",
        help="clean this instance (default: the instance of the config found here)",
    )
    which.add_argument(
        "--all-instances",
        action="store_true",
        help="clean the dead runs of every instance in the data directory",
    )
    clean.add_argument(
        "--config",
        metavar="PATH",
        help="the TOML config whose instance to clean (default: look in the "
        "working dir)",
    )
    clean.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be killed; kill and remove nothing",
    )
    clean.add_argument(
        "--json", action="store_true", help="print a JSON document instead of text"
    )
    new_adapter = commands.add_parser(
        "new-adapter",
        help="write an adapter skeleton NAME.py and its tests test_NAME.py",
    )
    new_adapter.add_argument(
        "name", metavar="NAME", help="the adapter's module name (a Python identifier)"
    )
    new_adapter.add_argument(
        "--dir",
        metavar="DIR",
        help="where to write the files (default: the working directory)",
    )
    for name, what in (
        ("stats", "print a running application's pools, workers and events once"),
        ("top", "watch a running application live (needs snakepit[top])"),
    ):
        view = commands.add_parser(name, help=what)
        view.add_argument(
            "config",
            nargs="?",
            help="the application's TOML config, to find its control socket "
            "(default: look in the working dir)",
        )
        view.add_argument(
            "--socket",
            metavar="PATH",
            help="the control socket (as `snakepit run` prints it)",
        )
        if name == "stats":
            view.add_argument(
                "--json", action="store_true", help="print the snapshot as JSON"
            )
        else:
            view.add_argument(
                "--interval",
                type=float,
                default=1.0,
                metavar="S",
                help="seconds between refreshes (default 1)",
            )
    # Listed for --help only: main() hands everything after "bench" to the suite.
    commands.add_parser(
        "bench",
        add_help=False,
        help="benchmark snakepit against its peers (source checkout; "
        "snakepit bench --help)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``snakepit`` command line and return its exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        return _bench(arguments[1:])
    parser = _parser()
    args = parser.parse_args(arguments)
    if args.command == "demo":
        from snakepit._demo import run_demo

        return run_demo()
    if args.command == "run":
        try:
            load_args = json.loads(args.load_args)
        except json.JSONDecodeError as exc:
            parser.error(f"--load-args is not valid JSON: {exc}")
        if not isinstance(load_args, dict):
            parser.error("--load-args must be a JSON object")
        if args.metrics_port is not None:
            try:  # fail before any worker starts
                import snakepit.metrics  # noqa: F401
            except ImportError as exc:
                parser.error(f"--metrics-port: {exc}")
        return _run(
            args.config,
            args.stats_interval,
            args.load,
            load_args,
            args.load_concurrency,
            metrics=None
            if args.metrics_port is None
            else (args.metrics_host, args.metrics_port),
            control_socket=args.control_socket,
            control=not args.no_control_socket,
        )
    if args.command == "stats":
        from snakepit._top import run_stats

        return run_stats(args.config, args.socket, as_json=args.json)
    if args.command == "top":
        if not args.interval > 0:
            parser.error("--interval must be a positive number of seconds")
        from snakepit._top import run_top

        code = run_top(args.config, args.socket, args.interval)
        # A screen is all top leaves behind: end here, without the interpreter's
        # finalization, which was seen spinning (running, no signal handlers
        # left) for over a minute after a Ctrl-C in a terminal.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if args.command == "doctor":
        from snakepit._doctor import run_doctor

        return run_doctor(args.python, args.config, as_json=args.json)
    if args.command == "cleanup":
        from snakepit._cleanup import run_cleanup

        return run_cleanup(
            data_dir=args.data_dir,
            instance=args.instance,
            all_instances=args.all_instances,
            config=args.config,
            dry_run=args.dry_run,
            as_json=args.json,
        )
    if args.command == "new-adapter":
        from snakepit._new_adapter import run_new_adapter

        return run_new_adapter(args.name, args.dir)
    parser.print_help(sys.stderr)
    return 2


def _bench(arguments: list[str]) -> int:
    """Forward *arguments* to the benchmark suite's ``main``.

    The suite lives in ``benchmarks/`` next to ``snakepit/`` in a source checkout;
    it is imported by name (it is not part of the installed package).
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "benchmarks" / "suite").is_dir() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        suite = importlib.import_module("benchmarks.suite")
    except ImportError as exc:
        print(
            f"snakepit bench: the benchmark suite is not importable ({exc}); it "
            "ships with the source checkout only: run it from there",
            file=sys.stderr,
        )
        return 2
    return int(suite.main(arguments, prog="snakepit bench"))


def _run(
    config: str | None,
    stats_interval: float,
    load: str | None,
    load_args: dict[str, Any],
    concurrency: int,
    *,
    metrics: tuple[str, int] | None = None,
    control_socket: str | None = None,
    control: bool = True,
) -> int:
    import anyio

    from snakepit._app import open_snakepit
    from snakepit._control import open_control
    from snakepit.exceptions import SnakepitError

    async def serve() -> int:
        # Signals are caught from the start, so one that arrives while the pools
        # start still leads to an orderly shutdown.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            # The control session comes first: its event ring and startup
            # progress see the first workers start; its socket outlives the pools.
            # The metrics come before the pools too, so they count every start.
            async with (
                open_control(
                    config,
                    control_socket,
                    enabled=control,
                    progress=sys.stdout.isatty(),
                ) as session,
                _metrics(session.config, metrics) as late,
                open_snakepit(session.config) as sp,
            ):
                if late is not None:
                    late.app = sp  # the gauges read its stats from now on
                await session.started(sp)  # ends the progress; serves the socket
                for pool in sp.config.get_pool_configs():
                    print(
                        f"ready: pool {pool.name!r}: "
                        f"{len(sp.list_workers(pool.name))} "
                        f"{pool.worker_profile.value} workers of {pool.adapter_module}",
                        flush=True,
                    )
                print("serving; Ctrl-C or SIGTERM to stop", flush=True)
                async with anyio.create_task_group() as tg:

                    async def caller() -> None:
                        assert load is not None
                        while True:
                            try:
                                await sp.execute(load, load_args)
                            except SnakepitError as exc:
                                print(f"load: {type(exc).__name__}: {exc}", flush=True)
                                await anyio.sleep(0.1)

                    async def report() -> None:
                        while True:
                            await anyio.sleep(stats_interval)
                            _print_stats(sp)

                    if load is not None:
                        for _ in range(concurrency):
                            tg.start_soon(caller)
                    if stats_interval > 0:
                        tg.start_soon(report)
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        print(f"{name}: shutting down in order", flush=True)
                        break
                    tg.cancel_scope.cancel()
                _print_stats(sp)
        print("stopped: every worker has exited", flush=True)
        return 0

    from snakepit._sync import _backend_options

    try:  # on uvloop when it is installed, like the sync facade
        return anyio.run(serve, backend_options=_backend_options("asyncio", None))
    except SnakepitError as exc:
        print(f"snakepit: {exc}", file=sys.stderr)
        return 1


def _print_stats(sp: Any) -> None:
    for pool in sp.config.get_pool_configs():
        stats = sp.get_stats(pool.name)
        shown = " ".join(f"{k}={v}" for k, v in stats.items())
        print(f"stats: {pool.name}: {shown}", flush=True)


def _metrics(config: Any, metrics: tuple[str, int] | None) -> Any:
    """``--metrics-port``: an async context manager serving the Prometheus
    metrics of the application *config* describes at (host, port), from before
    its pools start (see ``snakepit.metrics``); it gives an object whose ``app``
    the caller sets once the application runs. A no-op giving None without the
    option, so prometheus-client stays optional."""
    if metrics is None:
        return contextlib.nullcontext()
    from snakepit.metrics import _cli_endpoint

    host, port = metrics
    return _cli_endpoint(config, host, port)
