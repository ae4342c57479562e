"""A run's reaper: ends the run's leftovers the moment its owner dies.

``python -m snakepit._reaper`` is started by a pool when its run begins (see
:mod:`snakepit._registry`), in a session of its own, with a pipe on its stdin whose
only writer is the pool's process. At an orderly end the pool writes :data:`BYE`
and closes the pipe; the reaper exits. If the pipe ends without ``BYE``, the owner
died (SIGKILL, a crash, ``os._exit``): the reaper waits until it has exited, then
runs the same orphan cleanup as the next start would (processes marked with a
dead run's id: the workers and whatever they spawned, such as grandchildren that
a worker's own parent-death signal cannot reach), and exits.

Only the standard library is imported until the owner has died, so that the
reaper costs one small interpreter per pool, not a copy of the parent's imports.
"""

from __future__ import annotations

import os
import select
import signal
import sys

from snakepit._flags import parse_flags

BYE = b"bye\n"
"""What the owner writes on the reaper's stdin at an orderly end."""

#: Seconds the reaper waits for its owner to finish exiting once the pipe ended.
OWNER_EXIT_TIMEOUT = 5.0


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for *pid*, opened while it is certainly our parent (so not a
    reused pid), or None where pidfds do not exist."""
    if os.getppid() != pid:
        return None
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_owner_exit(pidfd: int | None, owner: int) -> None:
    """Block until the owner has exited: its pidfd turns readable, or (without
    pidfds) we are reparented, which the kernel does after the owner's exit."""
    if pidfd is not None:
        select.select([pidfd], [], [], OWNER_EXIT_TIMEOUT)
        return
    for _ in range(int(OWNER_EXIT_TIMEOUT / 0.01)):
        if os.getppid() != owner:
            return
        select.select([], [], [], 0.01)


def _read_until_eof(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def main(argv: list[str] | None = None) -> int:
    """Wait for the owner's orderly end or death; after a death, clean up."""
    args = parse_flags(
        sys.argv[1:] if argv is None else argv,
        {"owner": int, "data-dir": str, "instance": str, "grace": float},
        prog="python -m snakepit._reaper",
        required=("owner", "data-dir", "instance"),
        defaults={"grace": 0.5},
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the owner's
    owner = args["owner"]
    pidfd = _open_pidfd(owner)
    if _read_until_eof(0) == BYE:
        return 0
    _wait_owner_exit(pidfd, owner)
    from snakepit._registry import cleanup  # only now: the owner is gone

    report = cleanup(args["data-dir"], [args["instance"]], grace=args["grace"])
    if report.killed or report.survivors:
        try:
            print(
                f"snakepit reaper: owner {owner} died; ended "
                f"{len(report.killed)} leftover process(es) of run(s) "
                f"{', '.join(report.dead_runs)}"
                + (f"; {len(report.survivors)} survived" if report.survivors else ""),
                file=sys.stderr,
            )
        except OSError:
            pass  # nobody is reading our stderr any more
    return 0


if __name__ == "__main__":
    sys.exit(main())
