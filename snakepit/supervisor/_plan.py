"""The restart decision, as pure functions over immutable inputs.

The async runtime (``_supervisor.py``) carries out the plans these functions return;
keeping the decision pure is what lets property tests check it against OTP.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import attrs

from ._spec import ExitReason, Restart, Strategy

__all__ = (
    "ChildView",
    "ExitPlan",
    "add_restart",
    "plan_exit",
    "plan_retry",
    "should_restart",
)


@attrs.frozen
class ChildView:
    """What the decision needs to know of one child, in start order."""

    id: Hashable
    restart: Restart
    running: bool


@attrs.frozen(kw_only=True)
class ExitPlan:
    """What to do after a child exited.

    Attributes:
        restart: whether a restart happens (and so counts against intensity).
        stop: running siblings to stop first, in the order to stop them
            (reverse start order).
        remove: children whose specs are dropped (the exited child if temporary,
            temporary bystanders of a group restart).
        start: children to (re)start, in start order.
        keep_stopped: children left stopped with their spec kept.
    """

    restart: bool
    stop: tuple[Hashable, ...] = ()
    remove: tuple[Hashable, ...] = ()
    start: tuple[Hashable, ...] = ()
    keep_stopped: tuple[Hashable, ...] = ()


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """Return whether a child of restart type *restart* exiting with *reason* is
    restarted (OTP: permanent always, transient on abnormal exit, temporary never).
    """
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return reason in (ExitReason.ABNORMAL, ExitReason.KILLED)
    return False


def plan_exit(
    strategy: Strategy,
    children: Sequence[ChildView],
    failed: Hashable,
    reason: ExitReason,
) -> ExitPlan:
    """Decide what happens when child *failed* exits with *reason*.

    Args:
        strategy: the supervisor's strategy.
        children: every child the supervisor holds, in start order; *failed* is
            among them (its ``running`` flag is ignored: it has exited).
        failed: the id of the child that exited.
        reason: how it exited.
    """
    ids = [c.id for c in children]
    index = ids.index(failed)
    me = children[index]
    if not should_restart(me.restart, reason):
        if me.restart is Restart.TEMPORARY:
            return ExitPlan(restart=False, remove=(failed,))
        return ExitPlan(restart=False, keep_stopped=(failed,))
    if strategy is Strategy.ONE_FOR_ONE:
        return ExitPlan(restart=True, start=(failed,))
    group = children if strategy is Strategy.ONE_FOR_ALL else children[index:]
    others = [c for c in group if c.id != failed]
    stop = tuple(c.id for c in reversed(others) if c.running)
    remove = tuple(c.id for c in others if c.restart is Restart.TEMPORARY)
    start = tuple(
        c.id for c in group if c.id == failed or c.restart is not Restart.TEMPORARY
    )
    return ExitPlan(restart=True, stop=stop, remove=remove, start=start)


def plan_retry(
    strategy: Strategy, group: Sequence[Hashable], failed_at: int
) -> tuple[tuple[Hashable, ...], tuple[Hashable, ...]]:
    """Decide how to retry a group restart whose child ``group[failed_at]`` failed.

    Returns ``(stop, retry)``: the children of the group already restarted that
    must be stopped again (reverse start order), and the children to restart on
    the next attempt (start order). one_for_all stops the restarted siblings and
    retries the whole group (OTP ``one_for_all_other_child_fails_restart``);
    one_for_one and rest_for_one retry from the child that failed, keeping the
    earlier ones running (OTP ``rest_for_one_other_child_fails_restart``).
    """
    if strategy is Strategy.ONE_FOR_ALL:
        return tuple(reversed(group[:failed_at])), tuple(group)
    return (), tuple(group[failed_at:])


def add_restart(
    restarts: tuple[float, ...], now: float, intensity: int, period: float
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at *now* in the sliding window (OTP's ``add_restart``).

    Keeps the restarts no older than *period* seconds (newest first) and returns
    them with whether the intensity is exceeded (more than *intensity* restarts in
    the window), in which case the supervisor gives up.
    """
    threshold = now - period
    kept = (now, *(t for t in restarts if t >= threshold))
    return kept, len(kept) > intensity
