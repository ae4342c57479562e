"""Child specifications and the closed vocabularies of supervision (OTP's terms)."""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol, final, runtime_checkable

import attrs

from snakepit.exceptions import ConfigError

__all__ = (
    "AutoShutdown",
    "BRUTAL_KILL",
    "INFINITY",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildStatus",
    "ChildType",
    "ExitReason",
    "Killable",
    "Restart",
    "ShutdownPolicy",
    "Strategy",
)


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them exits.

    .. versionadded:: 0.1
    """

    #: Restart only the child that exited.
    ONE_FOR_ONE = "one_for_one"
    #: Stop every other child (reverse start order), then restart all in start order.
    ONE_FOR_ALL = "one_for_all"
    #: Stop the children started after the one that exited, then restart it and them.
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.Enum):
    """When a child is restarted after it exits.

    .. versionadded:: 0.1
    """

    #: Always restarted.
    PERMANENT = "permanent"
    #: Restarted only after an abnormal exit (not on return or ``Shutdown``).
    TRANSIENT = "transient"
    #: Never restarted; its spec is dropped when it exits.
    TEMPORARY = "temporary"


class ChildType(enum.Enum):
    """Whether a child is a worker or a supervisor (which changes its defaults).

    .. versionadded:: 0.1
    """

    WORKER = "worker"
    SUPERVISOR = "supervisor"


class ChildStatus(enum.Enum):
    """A child's state, as :meth:`Supervisor.which_children` reports it.

    .. versionadded:: 0.1
    """

    #: Started and not exited.
    RUNNING = "running"
    #: Its restart failed; the supervisor retries it.
    RESTARTING = "restarting"
    #: Exited or terminated and not restarted (OTP's ``undefined``); spec kept.
    STOPPED = "stopped"


class ExitReason(enum.Enum):
    """Why a child exited (OTP's exit reasons).

    .. versionadded:: 0.1
    """

    #: The child returned.
    NORMAL = "normal"
    #: The child raised :class:`snakepit.exceptions.Shutdown`, or was stopped.
    SHUTDOWN = "shutdown"
    #: The child raised any other exception.
    ABNORMAL = "abnormal"
    #: The child outlived its shutdown timeout and was given up on (or killed).
    KILLED = "killed"


class ShutdownPolicy(enum.Enum):
    """The two non-numeric values a child's ``shutdown`` may take.

    .. versionadded:: 0.1
    """

    #: Stop at once: no graceful wait (an OS process is killed outright).
    BRUTAL_KILL = "brutal_kill"
    #: Wait as long as the child needs (the default for supervisors).
    INFINITY = "infinity"


class AutoShutdown(enum.Enum):
    """Whether the exit of *significant* children stops the supervisor (OTP 24).

    .. versionadded:: 0.1
    """

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


#: ``shutdown`` value: stop the child at once, without a graceful wait.
BRUTAL_KILL = ShutdownPolicy.BRUTAL_KILL
#: ``shutdown`` value: wait for the child however long it takes.
INFINITY = ShutdownPolicy.INFINITY


@runtime_checkable
class Killable(Protocol):
    """A child ref that can be forced to exit (a pool worker owning an OS process).

    When such a child outlives its ``shutdown`` timeout (or at once for
    :data:`BRUTAL_KILL`), the supervisor awaits ``ref.kill()``, which must end the
    child promptly (for a process: SIGTERM, then SIGKILL after a short grace).

    .. versionadded:: 0.1
    """

    async def kill(self) -> None:
        """End the child now."""


StartFunction = Callable[..., Awaitable[Any]]


def _default_shutdown(spec: ChildSpec) -> float | ShutdownPolicy:
    return 5.0 if spec.type is ChildType.WORKER else INFINITY


def _check_shutdown(_: object, __: attrs.Attribute[object], value: object) -> None:
    if isinstance(value, ShutdownPolicy):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"shutdown must be a number of seconds, BRUTAL_KILL or INFINITY, "
            f"not {value!r}"
        )
    if not value >= 0:
        raise ConfigError(f"shutdown must be >= 0 seconds, not {value!r}")


@final
@attrs.frozen(kw_only=True)
class ChildSpec:
    """How to start, restart and stop one child. Validated at construction.

    Args:
        id: unique among its supervisor's children (any hashable value).
        start: an async callable following anyio's start protocol: it takes the
            keyword ``task_status`` and calls ``task_status.started(value)`` once it
            is initialised; *value* becomes the child's ref. ``Supervisor.run`` is one.
        restart: when to restart it (:class:`Restart`).
        shutdown: seconds its cleanup may take once stopped, or :data:`BRUTAL_KILL`,
            or :data:`INFINITY`. Default: 5.0 for workers, :data:`INFINITY` for
            supervisors.
        type: :class:`ChildType`.
        significant: with the supervisor's ``auto_shutdown``, whether this child's
            exit stops the supervisor. Not allowed for permanent children.

    .. versionadded:: 0.1
    """

    id: Hashable
    start: StartFunction
    restart: Restart = attrs.field(
        default=Restart.PERMANENT, validator=attrs.validators.instance_of(Restart)
    )
    type: ChildType = attrs.field(
        default=ChildType.WORKER, validator=attrs.validators.instance_of(ChildType)
    )
    shutdown: float | ShutdownPolicy = attrs.field(
        default=attrs.Factory(_default_shutdown, takes_self=True),
        validator=_check_shutdown,
    )
    significant: bool = False

    def __attrs_post_init__(self) -> None:
        if not callable(self.start):
            raise ConfigError(
                f"child {self.id!r}: start must be an async callable, "
                f"not {self.start!r}"
            )
        if self.significant and self.restart is Restart.PERMANENT:
            raise ConfigError(
                f"child {self.id!r}: a permanent child cannot be significant "
                f"(use Restart.TRANSIENT or Restart.TEMPORARY)"
            )

    @property
    def shutdown_timeout(self) -> float:
        """The shutdown budget in seconds (0 for BRUTAL_KILL, inf for INFINITY)."""
        if self.shutdown is BRUTAL_KILL:
            return 0.0
        if self.shutdown is INFINITY:
            return math.inf
        assert isinstance(self.shutdown, (int, float))
        return float(self.shutdown)


@final
@attrs.frozen(kw_only=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`.

    .. versionadded:: 0.1
    """

    id: Hashable
    #: What the child passed to ``task_status.started()``; ``None`` unless running.
    ref: object
    type: ChildType
    status: ChildStatus


@final
@attrs.frozen(kw_only=True)
class ChildCounts:
    """What :meth:`Supervisor.count_children` returns (OTP's ``count_children``).

    Attributes:
        specs: every child spec the supervisor holds, running or not.
        active: children currently running.
        supervisors: specs of type supervisor.
        workers: specs of type worker.

    .. versionadded:: 0.1
    """

    specs: int
    active: int
    supervisors: int
    workers: int
