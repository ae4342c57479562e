"""Process-table helpers shared by the tests."""

from __future__ import annotations

import psutil


def worker_children(pid: int) -> list[psutil.Process]:
    """The worker processes among *pid*'s children (not its run's reaper)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if "snakepit.worker" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found
