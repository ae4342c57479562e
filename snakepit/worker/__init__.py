"""The worker side: the process ``python -m snakepit.worker`` runs.

Standard library and msgpack only, so a worker starts fast under any interpreter.
The parent builds the command line with :func:`command_line` and reads the exit
status as an :class:`ExitCode`.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._boot import main as main
from ._options import MIN_FRAME_BYTES as MIN_FRAME_BYTES
from ._options import ExitCode as ExitCode
from ._options import ThreadSafetyChecks as ThreadSafetyChecks
from ._options import WorkerOptions as WorkerOptions
from ._options import command_line as command_line
from ._options import worker_flags as worker_flags
from ._safety import THREAD_SAFETY_REPORT_COMMAND as THREAD_SAFETY_REPORT_COMMAND

__all__ = (
    "main",
    "command_line",
    "worker_flags",
    "WorkerOptions",
    "ExitCode",
    "ThreadSafetyChecks",
    "THREAD_SAFETY_REPORT_COMMAND",
    "MIN_FRAME_BYTES",
)
