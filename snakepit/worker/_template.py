"""The template: a process that has imported the adapter once and forks workers.

``python -m snakepit.worker --template --control-fd N --adapter M:C ...`` imports
:mod:`snakepit.worker` and the adapter's module, does what every worker would
do at boot before serving (:func:`snakepit.worker._boot.prepare`), freezes what it
has out of the garbage collector's reach (so the children share those pages
copy-on-write instead of each touching them), says ``ready`` and then serves one
parent over a ``SOCK_SEQPACKET`` Unix socket, one msgpack map per message:

=========================  ===================================================
parent -> template          template -> parent
=========================  ===================================================
``fork`` (workers: a list   ``forked`` (pids: [token, pid] per child forked,
of [token, argv, env], at   failed: [token, error] per fork that failed), once
most FORKS_PER_MESSAGE) +   the whole list is forked. Each worker's env holds
4 fds per worker (request   only the variables that differ from the template's
read, reply write, stdout,  own
stderr), in list order
``reap`` (pid)              ``exited`` (pid, status): a child ended (status as
                            ``Popen.returncode``: negative for a signal). It
                            stays a zombie until ``reap``, so the parent can
                            signal its process group without a reused pid
=========================  ===================================================

Forks come in lists because the template's own work between two forks is on
every later worker's critical path, and it is mostly page copies: after a fork,
each page the template writes is shared with the new child, so it is copied
again. Forking a list in a tight loop touches a few dozen pages per fork; a
message received, decoded and answered per fork touched over a hundred.

The template never starts a thread, so each fork is of a single-threaded process.
A child becomes what ``python -m snakepit.worker ARGV`` would be: its own process
group (in the template's session, which has no terminal), stdin on /dev/null,
stdout and stderr on its log pipes, the template's environment updated with the
variables it was sent, then :func:`snakepit.worker._boot.main`. Its parent is the
template, whose death (and so the application's) kills it: the template itself
dies with its parent (``PR_SET_PDEATHSIG``) or when the control socket reaches
end of file.

Standard library and msgpack only, like every worker-side module.
"""

from __future__ import annotations

import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import msgpack

from snakepit._flags import parse_flags

from ._options import ExitCode
from ._report import report

__all__ = ("FDS_PER_FORK", "FORKS_PER_MESSAGE", "template_main")

FDS_PER_FORK = 4
"""Descriptors sent per worker of a ``fork``: request read, reply write, stdout,
stderr."""

FORKS_PER_MESSAGE = 16
"""Most workers one ``fork`` message asks for: 64 descriptors (Linux passes at
most 253 per message), and the parent hears of the first of them soon enough."""

_MAX_MESSAGE = 1024 * 1024


def template_main(argv: Sequence[str]) -> int:
    """Run the template (the flags after ``--template``); return an exit status."""
    args = parse_flags(
        argv,
        {"control-fd": int, "adapter": str, "parent-pid": int, "run-id": str},
        prog="snakepit template",
        required=("control-fd", "adapter", "parent-pid"),
    )
    control = socket.socket(fileno=args["control-fd"])
    from . import _boot  # the worker's own code, imported once for every child

    _boot.guard_parent(args["parent-pid"])

    module = args["adapter"].partition(":")[0]
    try:
        importlib.import_module(module)
    except BaseException:
        _send(control, {"op": "failed", "error": traceback.format_exc()})
        return ExitCode.ADAPTER_IMPORT
    _boot.prepare(args["adapter"])
    # Children share these objects' pages instead of copying them. No collection
    # first: the imports leave a few hundred objects of cyclic garbage, and
    # collecting them (10 ms with numpy loaded) would delay every worker's start.
    gc.freeze()
    _send(control, {"op": "ready", "pid": os.getpid(), "threads": _threads()})
    return _Server(control, _boot.main).serve()


def _threads() -> int:
    """Native threads of this process (1 unless an import started some)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(msgpack.packb(message, use_bin_type=True))


class _Server:
    """The template's loop: fork requests in, exits out."""

    def __init__(self, control: socket.socket, boot: Any) -> None:
        self._control = control
        self._boot = boot
        self._children: set[int] = set()
        self._reported: set[int] = set()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        os.set_blocking(self._wake_read, False)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self._selector = selectors.DefaultSelector()

    def serve(self) -> int:
        self._selector.register(self._control, selectors.EVENT_READ, "control")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "child")
        while True:
            for key, _ in self._selector.select():
                if key.data == "child":
                    self._drain_wakeups()
                    self._report_exits()
                elif not self._on_control():
                    return ExitCode.OK  # end of file: the parent is done with us

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _report_exits(self) -> None:
        for pid in sorted(self._children - self._reported):
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
                self._children.discard(pid)
            if info is None:
                continue
            status = (
                info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
            )
            self._reported.add(pid)
            _send(self._control, {"op": "exited", "pid": pid, "status": status})

    def _on_control(self) -> bool:
        data, fds, _, _ = socket.recv_fds(
            self._control, _MAX_MESSAGE, FDS_PER_FORK * FORKS_PER_MESSAGE
        )
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        message = msgpack.unpackb(data, raw=False)
        op = message.get("op")
        if op == "fork":
            self._fork(message["workers"], fds)
            return True
        for fd in fds:
            os.close(fd)
        if op == "reap":
            pid = message["pid"]
            if pid in self._children:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                self._children.discard(pid)
                self._reported.discard(pid)
        else:
            report(f"snakepit template: unknown request {op!r}")
        return True

    def _fork(self, workers: list[list[Any]], fds: list[int]) -> None:
        """Fork each of *workers* ([token, argv, env]), each with its 4 of *fds*,
        then answer for all of them in one message."""
        if len(fds) != FDS_PER_FORK * len(workers):
            for fd in fds:
                os.close(fd)
            error = f"got {len(fds)} fds for {len(workers)} workers"
            refused = [[worker[0], error] for worker in workers]
            _send(self._control, {"op": "forked", "pids": [], "failed": refused})
            return
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        pids: list[list[int]] = []
        failed: list[list[Any]] = []
        for index, (token, argv, env) in enumerate(workers):
            start = index * FDS_PER_FORK
            mine = fds[start : start + FDS_PER_FORK]
            try:
                pid = os.fork()
            except OSError as exc:
                failed.append([token, str(exc)])
            else:
                if pid == 0:
                    # The later workers' descriptors are not this child's: one
                    # held here would hide their exit from the parent.
                    for fd in fds[start + FDS_PER_FORK :]:
                        os.close(fd)
                    self._become_worker(argv, env, mine)
                try:
                    # Its own process group at once (the child asks too): the
                    # parent may signal the group as soon as it hears "forked".
                    os.setpgid(pid, pid)
                except OSError:
                    pass  # it already did, or it is already dead
                self._children.add(pid)
                pids.append([token, pid])
            for fd in mine:
                os.close(fd)
        _send(self._control, {"op": "forked", "pids": pids, "failed": failed})

    def _become_worker(
        self, argv: list[str], env: dict[str, str], fds: list[int]
    ) -> NoReturn:
        """In the child: shed the template's state, then boot as a worker."""
        code: int = ExitCode.INTERNAL_ERROR
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self._selector.close()
            self._control.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
            os.setpgid(0, 0)  # the template's session has no terminal already
            request_fd, reply_fd, stdout_fd, stderr_fd = fds
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(stdout_fd, 1)
            os.dup2(stderr_fd, 2)
            for fd in (devnull, stdout_fd, stderr_fd):
                os.close(fd)
            # Over the template's own (what an interpreter wrapper added stays):
            # just the variables that differ from it, each set costs page copies.
            os.environ.update(env)
            argv = list(argv)
            argv[argv.index("--fds") + 1] = f"{request_fd},{reply_fd}"
            argv[argv.index("--parent-pid") + 1] = str(os.getppid())
            sys.argv[1:] = argv
            code = self._boot(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else ExitCode.INTERNAL_ERROR
        except BaseException as exc:
            report("a forked worker failed to boot", exc)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    if stream is not None:
                        stream.flush()
                except BaseException:
                    pass
            os._exit(code)
