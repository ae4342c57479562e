"""Every public error snakepit raises, under one root: :class:`SnakepitError`.

Each docstring says who raises the error and when. Errors that cross the process
boundary are data (type name, message, traceback text), never pickled objects.

This module is imported by the worker side too, so it uses only the standard library.

.. versionadded:: 0.1
"""

from __future__ import annotations

import signal as _signal

__all__ = (
    "SnakepitError",
    "ConfigError",
    "Shutdown",
    "SupervisorError",
    "ChildStartError",
    "RestartIntensityExceeded",
    "DuplicateChild",
    "ChildNotFound",
    "ChildRunning",
    "ChildRestarting",
    "MaxChildrenReached",
    "SupervisorNotRunning",
    "ProtocolError",
    "ProtocolVersionMismatch",
    "FrameTooLarge",
    "SerializationError",
    "WorkerError",
    "WorkerCrashed",
    "WorkerStartError",
    "WorkerStartTimeout",
    "RemoteError",
    "CommandNotFound",
    "InvalidArguments",
    "ResultEncodingError",
    "RequestTimeout",
    "PoolError",
    "PoolClosed",
    "PoolSaturated",
    "QueueTimeout",
    "PoolNotFound",
    "PoolUnavailable",
    "InterpreterNotFound",
    "HandlerAlreadyAttached",
    "NotStarted",
    "AlreadyStarted",
    "WorkerNotFound",
    "InterpreterProbeFailed",
    "UnknownCategory",
    "UnknownProfile",
)


class SnakepitError(Exception):
    """The root of every error snakepit raises on purpose."""


class ConfigError(SnakepitError, ValueError):
    """Raised when configuration or a spec is invalid, before anything starts.

    The message lists every problem found, each naming what is at fault.
    """


class Shutdown(SnakepitError):
    """Raise inside a supervised child to exit with reason ``shutdown``.

    A ``transient`` child that raises it is not restarted (OTP's ``{shutdown, R}``).

    Args:
        reason: optional detail, kept on :attr:`reason`.
    """

    def __init__(self, reason: object = None) -> None:
        super().__init__(reason)
        self.reason = reason


# --- Supervision ---


class SupervisorError(SnakepitError):
    """Base of errors raised by :mod:`snakepit.supervisor`."""


class ChildStartError(SupervisorError):
    """Raised when a child fails to start; chained to the child's own error.

    Raised by ``Supervisor.run`` at startup (after stopping the children already
    started, in reverse order), by ``start_child`` and by ``restart_child``.
    """

    def __init__(self, child_id: object, message: str | None = None) -> None:
        self.child_id = child_id
        super().__init__(message or f"child {child_id!r} failed to start")


class RestartIntensityExceeded(SupervisorError):
    """Raised by ``Supervisor.run`` when more than ``intensity`` restarts happened
    within ``period`` seconds. All children were stopped in reverse start order first.

    A parent supervisor treats it as that child's abnormal exit (escalation).
    """


class DuplicateChild(SupervisorError, ValueError):
    """Raised by ``start_child`` when a child with the same id is already present."""


class ChildNotFound(SupervisorError, LookupError):
    """Raised by the runtime API when no child has the given id."""


class ChildRunning(SupervisorError):
    """Raised by ``restart_child`` or ``delete_child`` when the child is running."""


class ChildRestarting(SupervisorError):
    """Raised by ``restart_child`` or ``delete_child`` while the supervisor is
    retrying the child's restart."""


class MaxChildrenReached(SupervisorError):
    """Raised by ``DynamicSupervisor.start_child`` when ``max_children`` run."""


class SupervisorNotRunning(SupervisorError):
    """Raised by the runtime API of a supervisor that is not running."""


# --- Wire protocol ---


class ProtocolError(SnakepitError):
    """Raised when a worker's channel carries something that is not a valid frame.

    The channel is poisoned: the worker is replaced, and every call in flight on it
    fails with this error.

    Attributes:
        decoded: when raised by a frame decoder, the messages it completed
            before the bad frame, in order: they were good, and are the caller's
            to act on (a reply that came just before garbage is still a reply).
    """

    decoded: tuple[object, ...] = ()


class ProtocolVersionMismatch(ProtocolError):
    """Raised at handshake when the worker speaks another ``PROTOCOL_VERSION``."""


class FrameTooLarge(ProtocolError):
    """Raised when a frame's announced length exceeds ``max_frame_bytes``; checked
    before the body is read, so nothing is allocated for it."""


class SerializationError(SnakepitError, TypeError):
    """Raised before dispatch when a call's arguments cannot be msgpack-encoded
    (or exceed ``max_frame_bytes``). No worker was used."""


# --- Workers ---


class WorkerError(SnakepitError):
    """Base of errors about a worker process or the work it ran."""


_SIGNAL_HINTS: dict[int, str] = {_signal.SIGKILL: " (killed: out of memory?)"}


class WorkerCrashed(WorkerError):
    """Raised for each call in flight on a worker that died or became unreachable.

    The outcome of the call is unknown: its side effects may have happened.

    Attributes:
        exit_code: the process exit code, or ``None`` if a signal ended it.
        signal: the signal number that ended it, or ``None``.
        reason: why snakepit considers it crashed (``"exited"``, ``"timeout"``,
            ``"protocol_error"``, ``"health_check_failed"``, ``"channel_closed"``...).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        worker_id: str | None = None,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: str = "exited",
    ) -> None:
        self.worker_id = worker_id
        self.exit_code = exit_code
        self.signal = signal
        self.reason = reason
        if message is None:
            message = f"worker {worker_id} crashed ({reason}"
            if signal is not None:
                try:
                    name = _signal.Signals(signal).name
                except ValueError:
                    name = str(signal)
                message += f", signal {name}{_SIGNAL_HINTS.get(signal, '')}"
            elif exit_code is not None:
                message += f", exit code {exit_code}"
            message += ")"
        super().__init__(message)


class WorkerStartError(WorkerError):
    """Raised when a worker process could not be started: spawn failed, the adapter
    did not import, ``setup()`` raised, or the handshake was wrong.

    Attributes:
        stderr_tail: the last lines the worker wrote to stderr, to say why.
    """

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        self.stderr_tail = stderr_tail
        if stderr_tail:
            message = f"{message}\n--- worker stderr (tail) ---\n{stderr_tail}"
        super().__init__(message)


class WorkerStartTimeout(WorkerStartError):
    """Raised when a worker sent no handshake within ``startup_timeout``."""


class RemoteError(WorkerError):
    """An exception raised by adapter code inside a worker, carried back as data.

    Attributes:
        remote_type: the exception's class name, e.g. ``"ZeroDivisionError"``.
        message: ``str()`` of the remote exception.
        remote_traceback: the formatted remote traceback.
    """

    def __init__(
        self, remote_type: str, message: str, remote_traceback: str = ""
    ) -> None:
        self.remote_type = remote_type
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{remote_type}: {message}")


class CommandNotFound(RemoteError):
    """Raised when a call names a command the adapter does not expose. The message
    names it and lists the adapter's commands."""


class InvalidArguments(RemoteError):
    """Raised when a call's arguments do not fit the command's signature (missing or
    unexpected parameter). The message names the command and the parameter."""


class ResultEncodingError(RemoteError):
    """Raised when a command's result cannot be msgpack-encoded. Only that call
    fails; the worker stays alive."""


class RequestTimeout(SnakepitError, TimeoutError):
    """Raised when a call ran past its ``timeout``. In the process profile the worker
    cannot be interrupted, so it is killed and replaced."""


# --- Pools ---


class PoolError(SnakepitError):
    """Base of errors about a pool as a whole."""


class PoolClosed(PoolError):
    """Raised for calls made to, or still queued in, a pool that is shutting down."""


class PoolSaturated(PoolError):
    """Raised at once when the pool's queue already holds ``max_queue_size`` calls."""


class QueueTimeout(PoolError, TimeoutError):
    """Raised when a call waited ``queue_timeout`` seconds for a free worker. It was
    never dispatched."""


class PoolNotFound(PoolError, LookupError):
    """Raised when a pool name is not configured."""


class PoolUnavailable(PoolError):
    """Raised when a pool's workers cannot be started (past its restart intensity)."""


# --- Interpreters ---


class InterpreterNotFound(SnakepitError, FileNotFoundError):
    """Raised when a configured ``python_executable`` does not exist or will not run."""


# --- Telemetry ---


class HandlerAlreadyAttached(SnakepitError, ValueError):
    """Raised by ``telemetry.attach`` when the handler id is already attached."""


# --- The application ---


class NotStarted(SnakepitError, RuntimeError):
    """Raised by the module-level sync API (``snakepit.execute``...) when no
    application was started with ``snakepit.start()``."""


class AlreadyStarted(SnakepitError, RuntimeError):
    """Raised by ``snakepit.start()`` when an application is already started;
    call ``snakepit.stop()`` first."""


class WorkerNotFound(PoolError, LookupError):
    """Raised by ``recycle_worker`` when no worker with that id serves in the pool."""


# --- Interpreter tools ---


class InterpreterProbeFailed(InterpreterNotFound):
    """Raised by ``snakepit.interpreter.probe`` (and what builds on it) when an
    interpreter started but did not answer the probe: it exited with an error,
    printed something else, or took longer than the timeout."""


class UnknownCategory(SnakepitError, ValueError):
    """Raised by ``snakepit.interpreter.list_all`` for a category other than
    ``thread_safe``, ``conditional`` or ``not_thread_safe``."""


class UnknownProfile(SnakepitError, ValueError):
    """Raised by ``snakepit.interpreter.check`` and ``generate_report`` for a
    profile other than ``process`` or ``thread``."""
