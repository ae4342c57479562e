"""``snakepit demo``: a guided tour that needs no arguments and ends in seconds."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus

from snakepit import telemetry
from snakepit.supervisor import ChildSpec, Restart, Strategy, Supervisor

__all__ = ("run_demo",)


def _print_event(
    event: tuple[str, ...],
    measurements: Mapping[str, float],
    metadata: Mapping[str, Any],
    config: object,
) -> None:
    shown = {k: v for k, v in metadata.items() if k != "error" and v is not None}
    print(f"  [telemetry] {'.'.join(event)} {shown}")


class _Flaky:
    """A child that crashes once after it starts, to show a restart."""

    def __init__(self) -> None:
        self.crashed = False
        self.restarted = anyio.Event()

    async def run(self, *, task_status: TaskStatus[Any]) -> None:
        task_status.started("flaky")
        if not self.crashed:
            self.crashed = True
            await anyio.lowlevel.checkpoint()
            raise RuntimeError("a crash the supervisor survives")
        self.restarted.set()
        await anyio.sleep_forever()


async def _steady(*, task_status: TaskStatus[Any]) -> None:
    task_status.started("steady")
    await anyio.sleep_forever()


async def _tree_demo() -> None:
    flaky = _Flaky()

    class Tree(Supervisor):
        strategy = Strategy.REST_FOR_ONE

        def init(self) -> list[ChildSpec]:
            return [
                ChildSpec(id="steady", start=_steady),
                ChildSpec(id="flaky", start=flaky.run, restart=Restart.PERMANENT),
            ]

    print("1. A supervision tree (rest_for_one) whose second child crashes once:")
    tree = Tree(name="demo-tree")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(tree.run)
            await flaky.restarted.wait()
            for info in tree.which_children():
                print(f"  child {info.id!r}: {info.status.value}, ref={info.ref!r}")
            await tree.stop()


class _OneLine(logging.Formatter):
    """Log records on one line: the demo shows crashes, not their tracebacks."""

    def formatException(self, ei: Any) -> str:
        return ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = ""
        saved, record.exc_info = record.exc_info, None
        try:
            return super().format(record)
        finally:
            record.exc_info = saved


def run_demo() -> int:
    """Run the demo; return the exit status."""
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine("  [log] %(name)s: %(message)s"))
    root = logging.getLogger("snakepit")
    root.addHandler(handler)
    root.propagate = False
    print("snakepit demo\n")
    telemetry.attach_many(
        "snakepit-demo",
        [
            ("snakepit", "supervisor", "child_started"),
            ("snakepit", "supervisor", "child_exited"),
            ("snakepit", "supervisor", "child_restarted"),
        ],
        _print_event,
    )
    try:
        anyio.run(_tree_demo)
    finally:
        telemetry.detach("snakepit-demo")
        root.removeHandler(handler)
        root.propagate = True
    print("\ndone.")
    return 0
