"""Process-table helpers shared by the tests."""

from __future__ import annotations

import psutil


def worker_children(pid: int) -> list[psutil.Process]:
    """The worker processes of the pools of process *pid*: its children running
    ``snakepit.worker``, or, with ``start_method="template"``, the children of its
    templates (not the run's reaper, not the templates themselves)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            cmdline = child.cmdline()
            if "snakepit.worker" not in cmdline:
                continue
            if "--template" in cmdline:
                found.extend(child.children())
            else:
                found.append(child)
        except psutil.Error:
            continue
    return found
