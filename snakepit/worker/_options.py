"""The worker's command line: its flags, their parsing, and the exit codes.

Both sides use this module: the worker parses with :func:`parse_args`, the parent
builds the same flags with :func:`command_line`, so the two cannot drift. The
parser is hand-written (not argparse) because a worker must start fast.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from snakepit.protocol import DEFAULT_MAX_FRAME_BYTES

MIN_FRAME_BYTES = 1024
"""The smallest ``--max-frame-bytes`` a worker accepts: room for an error frame.

.. versionadded:: 0.1
"""

_MAX_FRAME_BYTES = 2**32 - 1

USAGE = """\
usage: python -m snakepit.worker --adapter MODULE:CLASS --fds REQ_READ_FD,REPLY_WRITE_FD
                                 [--threads N] [--max-frame-bytes N]
                                 [--parent-pid PID] [--adapter-args JSON]
                                 [--worker-id ID] [--run-id ID]
                                 [--thread-safety-checks {off,warn,strict}]
"""


class ExitCode(enum.IntEnum):
    """How a worker process ends, by exit status.

    A worker killed by a signal has none of these (its status is the signal).

    .. versionadded:: 0.1
    """

    OK = 0
    """Orderly exit after ``Shutdown`` and ``Bye``; or the request channel reached
    end of file (the parent is gone or closed it), or the parent had already died
    at startup."""
    INTERNAL_ERROR = 1
    """A bug in the worker itself (not in the adapter); the traceback is on
    stderr. (Also Python's status for an uncaught exception.)"""
    USAGE = 2
    """The command line was invalid; the reason is on stderr."""
    ADAPTER_IMPORT = 3
    """The adapter could not be loaded: import failed, it is not an ``Adapter``
    subclass, or ``--threads`` is above 1 and it is not thread-safe (or, with
    ``--thread-safety-checks strict``, its import or ``setup()`` loaded a library
    the compatibility matrix lists as not thread-safe). Before ``Hello``; the
    reason and traceback are on stderr."""
    ADAPTER_SETUP = 4
    """Building the adapter or its ``setup()`` raised (or ``Hello`` could not be
    sent). Before ``Hello``; the traceback is on stderr."""
    PROTOCOL_ERROR = 5
    """The request channel carried an invalid frame, or could not be read."""
    TEARDOWN_FAILED = 6
    """``teardown()`` raised during an orderly shutdown (``Bye`` was still sent)."""


class ThreadSafetyChecks(enum.Enum):
    """What the worker's thread-safety checker does (``--thread-safety-checks``).

    See ``docs/thread-safety.md`` for what is checked.

    .. versionadded:: 0.1
    """

    OFF = "off"
    """No checker: calls run unwrapped, and the report command says checks are
    off. The default."""
    WARN = "warn"
    """Record concurrency per command and warn (on stderr) about unsafe libraries
    and overlapping ``__unsafe_commands__``."""
    STRICT = "strict"
    """As ``warn``, and fail the offending call (or startup) with
    ``ThreadSafetyError``."""


class UsageError(Exception):
    """Raised by :func:`parse_args` for an invalid command line."""


class WorkerOptions(NamedTuple):
    """The parsed command line of a worker.

    .. versionadded:: 0.1
    """

    adapter: str
    """``"package.module:ClassName"`` (the part after the colon may be dotted)."""
    request_fd: int
    """The fd the worker reads requests from."""
    reply_fd: int
    """The fd the worker writes replies to."""
    threads: int = 1
    """How many calls run at once (the worker's capacity)."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """The largest frame body read or written."""
    parent_pid: int | None = None
    """If set, the worker exits at once when its parent is not this process."""
    adapter_args: Mapping[str, object] | None = None
    """Keyword arguments for the adapter's constructor (a JSON object on the
    command line)."""
    worker_id: str | None = None
    """An identifier shown in the process's command line (for ``ps``)."""
    run_id: str | None = None
    """An identifier of the parent's run, so leftovers can be found."""
    thread_safety_checks: ThreadSafetyChecks = ThreadSafetyChecks.OFF
    """Whether and how the worker checks thread safety at run time."""


_FLAGS = frozenset(
    (
        "--adapter",
        "--fds",
        "--threads",
        "--max-frame-bytes",
        "--parent-pid",
        "--adapter-args",
        "--worker-id",
        "--run-id",
        "--thread-safety-checks",
    )
)


def command_line(options: WorkerOptions, *, python: str | None = None) -> list[str]:
    """Return the argv that starts a worker with *options*.

    Args:
        options: what the worker should do; its fds must be passed to the child
            (``pass_fds``).
        python: the interpreter to run; defaults to :data:`sys.executable`.

    .. versionadded:: 0.1
    """
    return [python or sys.executable, "-m", "snakepit.worker", *worker_flags(options)]


def worker_flags(options: WorkerOptions) -> list[str]:
    """The flags of :func:`command_line` alone: what a worker forked from a
    template is given in place of its own command line."""
    argv = [
        "--adapter",
        options.adapter,
        "--fds",
        f"{options.request_fd},{options.reply_fd}",
        "--threads",
        str(options.threads),
        "--max-frame-bytes",
        str(options.max_frame_bytes),
    ]
    if options.parent_pid is not None:
        argv += ["--parent-pid", str(options.parent_pid)]
    if options.adapter_args:
        import json

        argv += ["--adapter-args", json.dumps(dict(options.adapter_args))]
    if options.worker_id is not None:
        argv += ["--worker-id", options.worker_id]
    if options.run_id is not None:
        argv += ["--run-id", options.run_id]
    if options.thread_safety_checks is not ThreadSafetyChecks.OFF:
        argv += ["--thread-safety-checks", options.thread_safety_checks.value]
    return argv


def parse_args(argv: Sequence[str]) -> WorkerOptions:
    """Parse the worker's flags (``sys.argv[1:]``).

    Raises:
        UsageError: a flag is unknown, repeated, missing its value or invalid, or
            ``--adapter`` or ``--fds`` is missing.

    .. versionadded:: 0.1
    """
    values: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag not in _FLAGS:
            raise UsageError(f"unrecognized argument {arg!r}")
        if not eq:
            following = next(args, None)
            if following is None:
                raise UsageError(f"{flag} expects a value")
            value = following
        if flag in values:
            raise UsageError(f"{flag} given twice")
        values[flag] = value
    for required in ("--adapter", "--fds"):
        if required not in values:
            raise UsageError(f"{required} is required")
    adapter = values["--adapter"]
    module, colon, attr = adapter.partition(":")
    if not (module and colon and attr):
        raise UsageError(f"--adapter must be MODULE:CLASS, got {adapter!r}")
    fds = values["--fds"].split(",")
    if len(fds) != 2:
        raise UsageError(
            f"--fds must be REQ_READ_FD,REPLY_WRITE_FD, got {values['--fds']!r}"
        )
    request_fd = _int("--fds", fds[0], low=3)
    reply_fd = _int("--fds", fds[1], low=3)
    if request_fd == reply_fd:
        raise UsageError("--fds needs two different fds")
    options = WorkerOptions(
        adapter=adapter,
        request_fd=request_fd,
        reply_fd=reply_fd,
        threads=_int("--threads", values.get("--threads", "1"), low=1),
        max_frame_bytes=_int(
            "--max-frame-bytes",
            values.get("--max-frame-bytes", str(DEFAULT_MAX_FRAME_BYTES)),
            low=MIN_FRAME_BYTES,
            high=_MAX_FRAME_BYTES,
        ),
        worker_id=values.get("--worker-id"),
        run_id=values.get("--run-id"),
    )
    if "--parent-pid" in values:
        options = options._replace(
            parent_pid=_int("--parent-pid", values["--parent-pid"], low=1)
        )
    if "--adapter-args" in values:
        options = options._replace(adapter_args=_json_object(values["--adapter-args"]))
    if "--thread-safety-checks" in values:
        options = options._replace(
            thread_safety_checks=_checks(values["--thread-safety-checks"])
        )
    return options


def _checks(text: str) -> ThreadSafetyChecks:
    try:
        return ThreadSafetyChecks(text)
    except ValueError:
        choices = ", ".join(mode.value for mode in ThreadSafetyChecks)
        raise UsageError(
            f"--thread-safety-checks must be one of {choices}, got {text!r}"
        ) from None


def _int(flag: str, text: str, *, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: not an integer: {text!r}") from exc
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UsageError(f"{flag}: {value} is out of range (must be {bound})")
    return value


def _json_object(text: str) -> dict[str, object]:
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--adapter-args: invalid JSON: {exc}") from exc
    if type(value) is not dict:
        raise UsageError("--adapter-args must be a JSON object")
    return value
