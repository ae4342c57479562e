"""DynamicSupervisor: children added at run time, independent of each other."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, final

import anyio

from snakepit.exceptions import ConfigError, MaxChildrenReached

from ._spec import ChildSpec, ChildStatus, Strategy
from ._supervisor import Supervisor, _Child

__all__ = ("DynamicSupervisor",)


@final
class DynamicSupervisor(Supervisor):
    """A supervisor that starts with no children and takes them at run time.

    Children are independent (``ONE_FOR_ONE``): a child that exits and is not
    restarted is forgotten, :meth:`terminate_child` forgets it too, and on shutdown
    all children are stopped concurrently (OTP's ``simple_one_for_one``, Elixir's
    ``DynamicSupervisor``).

    Args:
        max_children: refuse :meth:`start_child` once this many run (``None``: no
            limit).
        intensity: restarts allowed within *period*.
        period: the window in seconds.
        name: used in telemetry and logs.
        clock: monotonic clock for the intensity window.

    .. versionadded:: 0.1
    """

    strategy: ClassVar[Strategy] = Strategy.ONE_FOR_ONE

    def __init__(
        self,
        *,
        max_children: int | None = None,
        intensity: int = 3,
        period: float = 5.0,
        name: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name=name, clock=clock)
        if max_children is not None and (
            isinstance(max_children, bool)
            or not isinstance(max_children, int)
            or max_children < 0
        ):
            raise ConfigError(
                f"max_children must be None or an integer >= 0, not {max_children!r}"
            )
        self.max_children = max_children
        self.intensity = intensity
        self.period = period

    def init(self) -> Sequence[ChildSpec]:
        """A dynamic supervisor starts empty."""
        return []

    async def start_child(self, spec: ChildSpec) -> object:
        """Start *spec* and return its ref.

        Raises:
            MaxChildrenReached: ``max_children`` children already run.
            DuplicateChild: a child with this id is present.
            ChildStartError: the child failed to start.
        """
        return await super().start_child(spec)

    def _check_new(self, spec: ChildSpec) -> None:
        # Runs under the supervisor's lock, so concurrent starts cannot overshoot.
        super()._check_new(spec)
        if self.max_children is not None and len(self._children) >= self.max_children:
            raise MaxChildrenReached(
                f"{self.name}: max_children ({self.max_children}) reached; "
                f"cannot start child {spec.id!r}"
            )

    def _drops_on_terminate(self, child: _Child) -> bool:
        return True

    def _keeps_stopped(self) -> bool:
        return False

    async def _shutdown_children(self) -> None:
        children = [
            c for c in self._children.values() if c.status is ChildStatus.RUNNING
        ]
        async with anyio.create_task_group() as tg:
            for child in children:
                tg.start_soon(self._terminate, child)
        self._children.clear()
