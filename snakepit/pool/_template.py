"""``start_method = "template"``: workers forked from a process that preloaded them.

:class:`Template` runs one ``python -m snakepit.worker --template`` per pool (see
:mod:`snakepit.worker._template` for what it does and its protocol). A worker then
starts in milliseconds, without importing anything, and shares the template's
imported pages copy-on-write. The template is started with the pool (its imports
overlap the rest of the pool's start) and started again on the next fork if it
died; its death also ends its children (they have it as their parent, with a
parent-death signal), which the pool replaces like any crashed worker.

:class:`TemplateChild` stands for a forked worker where the pool expects anyio's
``Process``: its pid, its exit status (reported by the template, which keeps the
child unreaped until the pool is done with it, so its process group cannot be
reused under the pool's signals).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import attrs
import msgpack
from anyio.abc import Process, TaskGroup, TaskStatus

from snakepit.config import PoolConfig
from snakepit.exceptions import WorkerStartError, WorkerStartTimeout
from snakepit.worker._template import FORKS_PER_MESSAGE

__all__ = ("Template", "TemplateChild")

logger = logging.getLogger("snakepit.pool")

#: Seconds the template has to exit once its socket is closed, before SIGKILL.
_EXIT_GRACE = 2.0
#: stderr lines of the template kept to explain a failed start.
_TAIL_LINES = 40


class TemplateChild:
    """A worker forked by the template (the part of ``Process`` the pool uses)."""

    def __init__(self, template: Template, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._template = template
        self._exited = anyio.Event()

    def set_exited(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
            self._exited.set()

    async def wait(self) -> int:
        """Wait until the template reports the child's exit; return its status."""
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def aclose(self) -> None:
        """Wait for the exit, then let the template reap the child."""
        await self.wait()
        self._template.reap(self.pid)


@attrs.define(eq=False)
class _Fork:
    """A fork asked of the template: what to send, and its answer."""

    token: int
    #: [token, argv, env] as the template's ``fork`` lists a worker.
    request: list[Any]
    #: The child's four descriptors (its starter's: they stay open until sent).
    fds: Sequence[int]
    done: anyio.Event = attrs.Factory(anyio.Event)
    child: TemplateChild | None = None
    error: str | None = None


@attrs.define(eq=False)
class _Instance:
    """One template process and what the pool knows of it."""

    process: Process
    sock: socket.socket
    ready: anyio.Event = attrs.Factory(anyio.Event)
    failure: str | None = None
    dead: bool = False
    stderr_tail: list[str] = attrs.Factory(list)
    #: Whether a fork has waited for it to be ready (and found it so).
    checked: bool = False
    forks: dict[int, _Fork] = attrs.Factory(dict)
    #: Forks not sent yet, in order (see ``Template._send_forks``).
    outbox: list[_Fork] = attrs.Factory(list)
    #: Set when a fork joins the outbox, or the template dies.
    outbox_filled: anyio.Event = attrs.Factory(anyio.Event)
    children: dict[int, TemplateChild] = attrs.Factory(dict)
    #: Children forked for a start that was given up on (see ``_disown``).
    disowned: set[int] = attrs.Factory(set)


class Template:
    """The pool's template process, started on demand.

    Args:
        config: the pool's configuration (adapter, interpreter, timeouts).
        env: the template's environment: the workers', so that what the adapter's
            import reads (BLAS thread counts...) is what a spawned worker sees.
        run_id: the run's id, on the template's command line for orphan cleanup.
    """

    def __init__(
        self, config: PoolConfig, env: Mapping[str, str], run_id: str | None
    ) -> None:
        self._config = config
        self._env = dict(env)
        self._run_id = run_id
        self._lock = anyio.Lock()
        self._tokens = itertools.count(1)
        self._current: _Instance | None = None
        self._tg: TaskGroup | None = None
        self._closing = False
        self._done = anyio.Event()

    async def run(self, *, task_status: TaskStatus[Template]) -> None:
        """Host the template's tasks until :meth:`close`, then stop the template.

        Shielded: the template must outlive the workers it forked, which a
        cancelled pool still stops one by one; the pool calls :meth:`close` once
        they are all gone.
        """
        with anyio.CancelScope(shield=True):
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    task_status.started(self)
                    tg.start_soon(self._start_early)
                    await self._done.wait()
                    self._closing = True
                    tg.cancel_scope.cancel()
            finally:
                self._tg = None
                self._current = None  # its reader task ended it

    def close(self) -> None:
        """Let :meth:`run` stop the template (every worker has exited)."""
        self._closing = True
        self._done.set()

    async def fork(
        self, argv: Sequence[str], env: Mapping[str, str], fds: Sequence[int]
    ) -> TemplateChild:
        """Fork a worker running ``python -m snakepit.worker ARGV`` with *env*.

        Only the variables where *env* differs from the environment the template
        was started with are sent; the child sets them over the template's own
        (so what an interpreter wrapper added or changed there stays, as in a
        spawned worker).

        *fds* are the child's request read, reply write, stdout and stderr ends;
        the caller keeps (and closes) them.

        Raises:
            WorkerStartError: the template could not be started or could not fork.
        """
        instance = await self._ensure()
        token = next(self._tokens)
        # Only what differs from the template's own environment (the worker's
        # id, mostly): setting each variable again would cost every child
        # about a millisecond, in writes to pages it shares with the template.
        changed = {k: v for k, v in env.items() if self._env.get(k) != v}
        pending = _Fork(token=token, request=[token, list(argv), changed], fds=fds)
        instance.forks[token] = pending
        instance.outbox.append(pending)
        instance.outbox_filled.set()
        try:
            with anyio.move_on_after(self._config.startup_timeout):
                await pending.done.wait()
        except BaseException:
            instance.forks.pop(token, None)
            if pending in instance.outbox:  # never sent: its fds are closed next
                instance.outbox.remove(pending)
            if pending.child is not None:  # forked just as we gave up: end it
                self._abandon(instance, pending.child)
            raise
        if pending.child is not None:
            return pending.child
        instance.forks.pop(token, None)
        if pending in instance.outbox:
            instance.outbox.remove(pending)
        raise WorkerStartError(
            f"pool {self._config.name!r}: the template could not fork a worker: "
            f"{pending.error or 'no answer within startup_timeout'}",
            stderr_tail="\n".join(instance.stderr_tail),
        )

    def reap(self, pid: int) -> None:
        """Let the template reap *pid*, whose exit the pool has dealt with."""
        instance = self._current
        if instance is None or instance.dead:
            return
        if instance.children.pop(pid, None) is not None:
            _send_reap(instance, pid)

    # --- The template process ---

    async def _start_early(self) -> None:
        """Start the template as the pool starts, so that its imports overlap
        the rest of the pool's start; the first fork waits until it is ready. If
        it cannot even be started, the first fork tries again and says why."""
        async with self._lock:
            if self._current is None:
                with contextlib.suppress(WorkerStartError):
                    await self._spawn()

    async def _ensure(self) -> _Instance:
        """The template to fork from, ready: started (again) if there is none
        or it died. Concurrent starts wait for the same one, and all wake up
        together when it is ready, so their forks go out in few messages."""
        async with self._lock:
            instance = self._current
            if instance is None or (instance.checked and instance.dead):
                instance = await self._spawn()
        if not instance.checked:
            await self._until_ready(instance)
        return instance

    async def _spawn(self) -> _Instance:
        """Start a template process; it is ready once it has imported the adapter."""
        if self._tg is None:
            raise WorkerStartError(f"pool {self._config.name!r} is not running")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [
            self._config.python_executable or sys.executable,
            "-m",
            "snakepit.worker",
            "--template",
            "--control-fd",
            str(child.fileno()),
            "--adapter",
            self._config.adapter_module,
            "--parent-pid",
            str(os.getpid()),
        ]
        if self._run_id is not None:
            argv += ["--run-id", self._run_id]
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=self._env,
                start_new_session=True,
                pass_fds=(child.fileno(),),
            )
        except BaseException as exc:
            parent.close()
            if isinstance(exc, OSError):
                raise WorkerStartError(
                    f"pool {self._config.name!r}: could not start the template "
                    f"({argv[0]}): {exc}"
                ) from exc
            raise
        finally:
            child.close()
        parent.setblocking(False)
        # From here on its reader task owns it: it reaps it whatever happens.
        instance = self._current = _Instance(process=process, sock=parent)
        self._tg.start_soon(self._read, instance)
        self._tg.start_soon(self._drain_stderr, instance)
        self._tg.start_soon(self._send_forks, instance)
        return instance

    async def _send_forks(self, instance: _Instance) -> None:
        """Send the forks waiting in the outbox, up to FORKS_PER_MESSAGE per
        message, until the template dies. Forks asked for in the same loop turn
        (a pool's start) go out together, and the template forks them in one
        loop (see :mod:`snakepit.worker._template`).

        A fork leaves the outbox only as it is sent, and a send never waits: a
        starter that gives up meanwhile takes its fork out and closes its
        descriptors, which are then never sent."""
        outbox = instance.outbox
        while not instance.dead:
            if not outbox:
                instance.outbox_filled = anyio.Event()
                await instance.outbox_filled.wait()
                continue
            batch = outbox[:FORKS_PER_MESSAGE]
            message = msgpack.packb(
                {"op": "fork", "workers": [fork.request for fork in batch]},
                use_bin_type=True,
            )
            try:
                socket.send_fds(
                    instance.sock, [message], [fd for fork in batch for fd in fork.fds]
                )
            except BlockingIOError:
                try:
                    await anyio.wait_writable(instance.sock)
                except (anyio.ClosedResourceError, OSError):
                    return  # it died: _on_death failed the forks
                continue
            except OSError as exc:
                for fork in batch:
                    fork.error = f"could not reach the template ({exc})"
                    fork.done.set()
            del outbox[: len(batch)]

    async def _until_ready(self, instance: _Instance) -> None:
        """Wait until *instance* is ready; if it fails to be, kill it, forget it
        (the next fork starts another) and raise."""
        with anyio.move_on_after(self._config.startup_timeout):
            await instance.ready.wait()
        if instance.ready.is_set() and instance.failure is None and not instance.dead:
            instance.checked = True
            return
        self._kill(instance)
        if self._current is instance:
            self._current = None
        if not instance.ready.is_set():
            raise WorkerStartTimeout(
                f"pool {self._config.name!r}: the template was not ready within "
                f"startup_timeout={self._config.startup_timeout}s",
                stderr_tail="\n".join(instance.stderr_tail),
            )
        if instance.failure is None:  # it died without a word: a crash
            raise WorkerStartError(
                f"pool {self._config.name!r}: the template exited before it could "
                "fork a worker",
                stderr_tail="\n".join(instance.stderr_tail),
            )
        raise WorkerStartError(
            f"pool {self._config.name!r}: the template could not import the "
            f"adapter {self._config.adapter_module!r}",
            stderr_tail=(instance.failure or "").rstrip(),
        )

    async def _read(self, instance: _Instance) -> None:
        sock = instance.sock
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    await anyio.wait_readable(sock)
                    continue
                except OSError:
                    break
                if not data:
                    break
                self._on_message(instance, msgpack.unpackb(data, raw=False))
        finally:
            self._on_death(instance)  # closes the socket: the template exits
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(_EXIT_GRACE):
                    await instance.process.wait()
                self._kill(instance)
                await instance.process.wait()
                await instance.process.aclose()

    def _on_message(self, instance: _Instance, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "exited":
            pid = message["pid"]
            child = instance.children.get(pid)
            if child is not None:
                child.set_exited(message["status"])
            elif pid in instance.disowned:
                instance.disowned.discard(pid)
                _send_reap(instance, pid)
        elif op == "forked":
            for token, pid in message["pids"]:
                pending = instance.forks.pop(token, None)
                if pending is None:  # its starter gave up (cancelled): end it
                    self._disown(instance, pid)
                    continue
                pending.child = TemplateChild(self, pid)
                instance.children[pid] = pending.child
                pending.done.set()
            for token, error in message["failed"]:
                pending = instance.forks.pop(token, None)
                if pending is not None:
                    pending.error = error or "fork failed"
                    pending.done.set()
        elif op == "ready":
            threads = message.get("threads", 1)
            if threads > 1:
                logger.warning(
                    "pool %r: importing %s started %d threads in the template; "
                    "forking a process with threads is unsafe (use start_method "
                    "'spawn' if workers misbehave)",
                    self._config.name,
                    self._config.adapter_module,
                    threads - 1,
                )
            instance.ready.set()
        elif op == "failed":
            instance.failure = str(message.get("error", ""))
            instance.ready.set()

    def _abandon(self, instance: _Instance, child: TemplateChild) -> None:
        """End a child handed to a start that was then given up on: kill it (or,
        if it has exited already, reap it)."""
        if instance.children.pop(child.pid, None) is None:
            return  # the template died, and the child with it
        if child.returncode is None:
            self._disown(instance, child.pid)
        else:
            _send_reap(instance, child.pid)

    def _disown(self, instance: _Instance, pid: int) -> None:
        """Kill a child nobody waits for; the template reaps it once it exits.
        (Unreaped until then, so its process group id cannot be reused.)"""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        instance.disowned.add(pid)

    def _on_death(self, instance: _Instance) -> None:
        """The template is gone: so are its children (their parent-death signal)."""
        if instance.dead:
            return
        instance.dead = True
        instance.ready.set()
        instance.outbox.clear()  # their starters close their descriptors
        instance.outbox_filled.set()  # _send_forks ends
        anyio.notify_closing(instance.sock)
        instance.sock.close()
        for child in instance.children.values():
            child.set_exited(-signal.SIGKILL)
        instance.children.clear()
        for pending in instance.forks.values():
            pending.error = "the template exited"
            pending.done.set()
        if not self._closing and instance.failure is None:
            logger.warning(
                "pool %r: the template (pid %s) exited; it is started again on the "
                "next worker start",
                self._config.name,
                instance.process.pid,
            )

    async def _drain_stderr(self, instance: _Instance) -> None:
        stream = instance.process.stderr
        assert stream is not None
        buffer = b""
        try:
            async for data in stream:
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    instance.stderr_tail.append(line)
                    del instance.stderr_tail[:-_TAIL_LINES]
                    logger.warning("[%s template] %s", self._config.name, line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    def _kill(self, instance: _Instance) -> None:
        if instance.process.returncode is None:
            try:
                os.killpg(instance.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _send_reap(instance: _Instance, pid: int) -> None:
    try:
        instance.sock.send(msgpack.packb({"op": "reap", "pid": pid}))
    except OSError:
        pass  # it is going away: its zombies go to init with it
