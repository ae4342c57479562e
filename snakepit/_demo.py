"""``snakepit demo``: a guided tour that needs no arguments and ends in seconds.

It starts two pools (the showcase adapter, and the chaos adapter to crash on
purpose), runs ping/add/echo, a session, a stream, a remote error and a crash the
pool survives, prints the telemetry events as they happen, then a stats table.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import anyio

from snakepit import telemetry
from snakepit._app import Snakepit, open_snakepit
from snakepit.exceptions import RemoteError, WorkerCrashed

__all__ = ("run_demo",)

_EVENTS = [
    ("snakepit", "worker", "started"),
    ("snakepit", "worker", "exited"),
    ("snakepit", "worker", "restarted"),
    ("snakepit", "request", "stop"),
    ("snakepit", "request", "exception"),
]

_SHOWN = {
    "started": ("worker_id", "pid"),
    "exited": ("worker_id", "reason", "exit_code", "signal"),
    "restarted": ("worker_id", "previous_worker_id"),
    "stop": ("command", "worker_id", "success"),
    "exception": ("command", "worker_id", "kind"),
}

DEMO_CONFIG = {
    "pools": [
        {"name": "default", "pool_size": 2, "startup_timeout": 30},
        {
            "name": "chaos",
            "pool_size": 1,
            "adapter_module": "snakepit.adapters.chaos:ChaosAdapter",
        },
    ]
}


def _print_event(
    event: tuple[str, ...],
    measurements: Mapping[str, float],
    metadata: Mapping[str, Any],
    config: object,
) -> None:
    keys = _SHOWN.get(event[-1], ())
    shown = " ".join(f"{k}={metadata[k]}" for k in keys if metadata.get(k) is not None)
    extra = ""
    if "duration" in measurements:
        extra = f" ({measurements['duration'] * 1000:.1f} ms)"
    print(f"    [telemetry] {'.'.join(event)} {shown}{extra}")


class _OneLine(logging.Formatter):
    """Log records on one line: the demo shows crashes, not their tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        saved, record.exc_info = record.exc_info, None
        record.exc_text = ""
        try:
            return super().format(record)
        finally:
            record.exc_info = saved


async def _tour(sp: Snakepit) -> None:
    print("\n1. Basic calls on the 'default' pool (process profile, 2 workers):")
    print(f"   ping -> {await sp.execute('ping')}")
    print(f"   add(5, 3) -> {await sp.execute('add', {'a': 5, 'b': 3})}")
    print(f"   echo -> {await sp.execute('echo', {'message': 'hello'})}")

    print("\n2. A session keeps state on the worker that served it last:")
    await sp.execute_in_session("demo-session", "set_counter", {"value": 10})
    for _ in range(2):
        value = await sp.execute_in_session("demo-session", "increment_counter")
        print(f"   increment_counter -> {value}")

    print("\n3. A stream of chunks (stream_fibonacci, n=8):")
    values = [c["value"] async for c in sp.execute_stream("stream_fibonacci", {"n": 8})]
    print(f"   chunks -> {values}")

    print("\n4. A remote error comes back as data:")
    try:
        await sp.execute("error_demo", {"error_type": "ValueError", "message": "bad"})
    except RemoteError as exc:
        print(f"   RemoteError: remote_type={exc.remote_type} message={exc.message!r}")

    print("\n5. A worker crashes mid-call (os._exit) and the pool survives it:")
    replaced = anyio.Event()

    def on_restart(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        if metadata["pool"] == "chaos":
            replaced.set()

    telemetry.attach(
        "snakepit-demo-restart", ("snakepit", "worker", "restarted"), on_restart
    )
    try:
        try:
            await sp.execute("exit", {"code": 3}, pool="chaos")
        except WorkerCrashed as exc:
            print(f"   WorkerCrashed: {exc}")
        with anyio.fail_after(30):
            await replaced.wait()
    finally:
        telemetry.detach("snakepit-demo-restart")
    reply = await sp.execute("echo", {"request_id": 1}, pool="chaos")
    print(f"   the replacement answers: request_id={reply['request_id']}")


def _stats_table(sp: Snakepit) -> None:
    names = [p.name for p in sp.config.get_pool_configs()]
    rows = {name: sp.get_stats(name) for name in names}
    keys = list(next(iter(rows.values())))
    print("\n6. Stats:")
    print("   " + "pool".ljust(10) + "".join(k.rjust(15) for k in keys))
    for name, stats in rows.items():
        print("   " + name.ljust(10) + "".join(str(stats[k]).rjust(15) for k in keys))


def run_demo() -> int:
    """Run the demo; return the exit status."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_OneLine("    [log] %(name)s: %(message)s"))
    root = logging.getLogger("snakepit")
    root.addHandler(handler)
    root.propagate = False
    root.setLevel(logging.ERROR)
    print("snakepit demo: supervised pools of Python worker processes")
    telemetry.attach_many("snakepit-demo", _EVENTS, _print_event)

    async def main() -> None:
        with anyio.fail_after(120):
            print("\nstarting pools 'default' (showcase adapter) and 'chaos'...")
            async with open_snakepit(DEMO_CONFIG) as sp:
                await _tour(sp)
                _stats_table(sp)
                print("\nstopping (in-flight calls finish, workers exit in order)...")

    try:
        anyio.run(main)
    finally:
        telemetry.detach("snakepit-demo")
        root.removeHandler(handler)
        root.propagate = True
        root.setLevel(logging.NOTSET)
    print("\ndone.")
    return 0
