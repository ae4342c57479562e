"""The worker's entry point and boot: process hygiene, then the adapter.

Boot order matters. The protocol fds stop being inheritable, SIGINT is ignored and
faulthandler is on before any user code runs; the parent-death signal is set
before checking that the parent is still the expected one; and ``Hello`` is sent
only after ``setup()`` succeeded, so a parent that got ``Hello`` has a worker
that can serve.
"""

from __future__ import annotations

import faulthandler
import functools
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from snakepit.adapter import Adapter

from ._dispatch import prepare_commands, prepare_method
from ._options import (
    USAGE,
    ExitCode,
    ThreadSafetyChecks,
    UsageError,
    WorkerOptions,
    parse_args,
)
from ._report import report
from ._runtime import Runtime
from ._safety import ThreadSafetyChecker


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker: ``python -m snakepit.worker --adapter M:C --fds R,W ...``.

    Args:
        argv: the flags; defaults to ``sys.argv[1:]``.

    Returns:
        The process exit status, an :class:`ExitCode`. End of file on the
        request channel, a broken reply channel and a parent already dead at
        boot end the process directly (``os._exit``) instead of returning.

    .. versionadded:: 0.1
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return ExitCode.OK
    try:
        options = parse_args(args)
        _prepare_process(options)
    except UsageError as exc:
        sys.stderr.write(f"{USAGE}snakepit worker: error: {exc}\n")
        return ExitCode.USAGE
    checks = options.thread_safety_checks is not ThreadSafetyChecks.OFF
    # What the worker itself loaded: the checker's libraries are the adapter's.
    baseline = frozenset(sys.modules) if checks else frozenset()
    loaded = _load_adapter(options)
    if not isinstance(loaded, Adapter):
        return loaded
    checker = None
    if checks:
        checker = ThreadSafetyChecker(loaded, options, baseline)
        problem = checker.start()
        if problem is not None:
            report(problem)
            try:
                loaded.teardown()
            except BaseException as exc:
                report("teardown() raised", exc)
            return ExitCode.ADAPTER_IMPORT
    return Runtime(loaded, options, checker).run()


def _prepare_process(options: WorkerOptions) -> None:
    """Make the process a well-behaved child; exit at once if orphaned already."""
    for fd in (options.request_fd, options.reply_fd):
        try:
            # Grandchildren spawned with close_fds=False must not hold our pipes
            # open, or the parent would never see end of file.
            os.set_inheritable(fd, False)
        except OSError as exc:
            raise UsageError(f"--fds: fd {fd} is not usable: {exc}") from exc
    guard_parent(options.parent_pid)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)  # stdout is a log pipe: lines, promptly


def guard_parent(parent_pid: int | None) -> None:
    """Be a child of *parent_pid* (the worker's, and the template's, first step):
    Ctrl-C is ignored (it belongs to the parent, which stops its children in
    order), faulthandler reports a crash on stderr, and the process dies with its
    parent; it exits at once if that parent is already gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.stderr is not None:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    if sys.platform.startswith("linux"):
        _set_parent_death_signal()
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(ExitCode.OK)  # the parent died before prctl took effect


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort)."""
    prctl = _prctl()
    if prctl is not None:  # else end of file on the request fd ends the worker
        prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 is PR_SET_PDEATHSIG


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once: a template's does for all its workers
    (a fork clears the parent-death signal, not the lookup)."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def prepare(spec: str) -> None:
    """Do now, once, what every worker of adapter *spec* would otherwise do on
    its own at boot: work out its commands' argument checks (and the runtime's).
    A template calls it, after importing the adapter's module, before it forks.
    Best effort: if *spec* does not name an adapter class, each worker says so."""
    try:
        target = _find(spec)
        if isinstance(target, type) and issubclass(target, Adapter):
            prepare_commands(target)
            prepare_method(Runtime, "_run_map")
    except Exception:
        pass  # each worker finds out for itself, and reports it


def _find(spec: str) -> object:
    """The object ``module:qualname`` names (importing the module)."""
    module_name, _, qualname = spec.partition(":")
    target: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _load_adapter(options: WorkerOptions) -> Adapter | ExitCode:
    """Import, build and set up the adapter; or report why not, and how to exit."""
    spec = options.adapter
    try:
        target = _find(spec)
    except BaseException as exc:
        report(f"cannot import adapter {spec!r}", exc)
        return ExitCode.ADAPTER_IMPORT
    if not (isinstance(target, type) and issubclass(target, Adapter)):
        report(f"adapter {spec!r} is {target!r}, not a snakepit.adapter.Adapter")
        return ExitCode.ADAPTER_IMPORT
    if options.threads > 1 and not target.__thread_safe__:
        report(
            f"adapter {spec!r} is not declared thread-safe, so it cannot run calls "
            f"on {options.threads} threads (--threads {options.threads}). To fix "
            "it: subclass snakepit.adapter.ThreadSafeAdapter or set "
            "__thread_safe__ = True, after making its commands safe to run "
            "concurrently; or use worker_profile='process'"
        )
        return ExitCode.ADAPTER_IMPORT
    try:
        adapter = target(**dict(options.adapter_args or {}))
        adapter.setup()
    except BaseException as exc:
        report(f"setup of adapter {spec!r} failed", exc)
        return ExitCode.ADAPTER_SETUP
    return adapter
