"""Properties of the pure restart decision: plan_exit, plan_retry, add_restart."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from hypothesis import assume, given
from hypothesis import strategies as st

from snakepit.supervisor import (
    ChildView,
    ExitPlan,
    ExitReason,
    Restart,
    Strategy,
    add_restart,
    plan_exit,
    plan_retry,
    should_restart,
)

strategies = st.sampled_from(Strategy)
restarts = st.sampled_from(Restart)
reasons = st.sampled_from(ExitReason)


@st.composite
def exits(
    draw: st.DrawFn,
) -> tuple[Strategy, list[ChildView], int, ExitReason]:
    """A strategy, children in start order, the index of the one that exited, and
    how it exited."""
    child_ids = draw(st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True))
    children = [ChildView(i, draw(restarts), draw(st.booleans())) for i in child_ids]
    index = draw(st.integers(0, len(children) - 1))
    return draw(strategies), children, index, draw(reasons)


def is_subsequence(part: Sequence[Hashable], whole: Sequence[Hashable]) -> bool:
    it = iter(whole)
    return all(x in it for x in part)


def touched(plan: ExitPlan) -> set[Hashable]:
    return {*plan.stop, *plan.remove, *plan.start, *plan.keep_stopped}


# --- should_restart ---


@given(restarts, reasons)
def test_should_restart_is_otps_table(restart: Restart, reason: ExitReason) -> None:
    expected = {
        Restart.PERMANENT: True,
        Restart.TRANSIENT: reason in (ExitReason.ABNORMAL, ExitReason.KILLED),
        Restart.TEMPORARY: False,
    }[restart]
    assert should_restart(restart, reason) is expected


# --- plan_exit ---


@given(exits())
def test_restart_iff_should_restart(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    strategy, children, index, reason = case
    me = children[index]
    plan = plan_exit(strategy, children, me.id, reason)
    assert plan.restart is should_restart(me.restart, reason)
    assert (me.id in plan.start) is plan.restart


@given(exits())
def test_no_restart_touches_only_the_exited_child(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    strategy, children, index, reason = case
    me = children[index]
    assume(not should_restart(me.restart, reason))
    plan = plan_exit(strategy, children, me.id, reason)
    assert plan.stop == plan.start == ()
    if me.restart is Restart.TEMPORARY:
        assert (plan.remove, plan.keep_stopped) == ((me.id,), ())
    else:
        assert (plan.remove, plan.keep_stopped) == ((), (me.id,))


@given(exits())
def test_stop_is_reverse_start_order_of_running_siblings(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    strategy, children, index, reason = case
    me = children[index]
    plan = plan_exit(strategy, children, me.id, reason)
    order = [c.id for c in children]
    running = {c.id for c in children if c.running}
    assert me.id not in plan.stop
    assert is_subsequence(plan.stop, order[::-1])
    assert set(plan.stop) <= running
    assert len(set(plan.stop)) == len(plan.stop)


@given(exits())
def test_start_is_start_order(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    strategy, children, index, reason = case
    me = children[index]
    plan = plan_exit(strategy, children, me.id, reason)
    assert is_subsequence(plan.start, [c.id for c in children])
    assert len(set(plan.start)) == len(plan.start)


@given(exits())
def test_temporary_bystanders_are_removed_never_started(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    strategy, children, index, reason = case
    me = children[index]
    plan = plan_exit(strategy, children, me.id, reason)
    temporary = {c.id for c in children if c.restart is Restart.TEMPORARY}
    assert not (set(plan.start) & temporary)
    assert set(plan.remove) <= temporary
    assert not (set(plan.remove) & set(plan.start))
    # a running temporary bystander that is stopped is also forgotten
    assert {i for i in plan.stop if i in temporary} <= set(plan.remove)


@given(exits())
def test_group_restart_covers_exactly_the_group(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    strategy, children, index, reason = case
    me = children[index]
    assume(should_restart(me.restart, reason))
    plan = plan_exit(strategy, children, me.id, reason)
    if strategy is Strategy.ONE_FOR_ONE:
        group = [me]
    elif strategy is Strategy.ONE_FOR_ALL:
        group = children
    else:
        group = children[index:]
    others = [c for c in group if c.id != me.id]
    assert plan.stop == tuple(c.id for c in reversed(others) if c.running)
    assert plan.start == tuple(
        c.id for c in group if c is me or c.restart is not Restart.TEMPORARY
    )
    assert plan.remove == tuple(c.id for c in others if c.restart is Restart.TEMPORARY)
    assert plan.keep_stopped == ()


@given(exits())
def test_one_for_one_never_touches_others(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    _, children, index, reason = case
    me = children[index]
    plan = plan_exit(Strategy.ONE_FOR_ONE, children, me.id, reason)
    assert plan.stop == ()
    assert touched(plan) <= {me.id}


@given(exits())
def test_rest_for_one_never_touches_earlier_children(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    _, children, index, reason = case
    me = children[index]
    plan = plan_exit(Strategy.REST_FOR_ONE, children, me.id, reason)
    earlier = {c.id for c in children[:index]}
    assert not (touched(plan) & earlier)


@given(exits())
def test_running_flag_of_the_exited_child_is_ignored(
    case: tuple[Strategy, list[ChildView], int, ExitReason],
) -> None:
    strategy, children, index, reason = case
    me = children[index]
    flipped = list(children)
    flipped[index] = ChildView(me.id, me.restart, not me.running)
    assert plan_exit(strategy, children, me.id, reason) == plan_exit(
        strategy, flipped, me.id, reason
    )


# --- plan_retry ---


@given(
    strategies,
    st.lists(st.integers(), min_size=1, max_size=8, unique=True),
    st.data(),
)
def test_plan_retry(strategy: Strategy, group: list[int], data: st.DataObject) -> None:
    failed_at = data.draw(st.integers(0, len(group) - 1))
    stop, retry = plan_retry(strategy, group, failed_at)
    failed = group[failed_at]
    # the failed child never runs, so it is never stopped; it is always retried
    assert failed not in stop
    assert failed in retry
    assert is_subsequence(stop, group[::-1])
    assert is_subsequence(retry, group)
    # children restarted before the failure are either stopped and retried, or
    # kept running and not retried
    for child in group[:failed_at]:
        assert (child in stop) is (child in retry)
    if strategy is Strategy.ONE_FOR_ALL:
        assert stop == tuple(reversed(group[:failed_at]))
        assert retry == tuple(group)
    else:
        assert stop == ()
        assert retry == tuple(group[failed_at:])


# --- add_restart ---

times = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
periods = st.floats(0.001, 1e4, allow_nan=False, allow_infinity=False)


@given(
    st.lists(times, max_size=10),
    st.floats(0, 100, allow_nan=False),
    st.integers(0, 10),
    periods,
)
def test_add_restart_window(
    earlier: list[float], gap: float, intensity: int, period: float
) -> None:
    history = tuple(sorted(earlier, reverse=True))  # newest first, as kept
    now = (history[0] if history else 0.0) + gap
    kept, exceeded = add_restart(history, now, intensity, period)
    assert kept[0] == now
    assert all(t >= now - period for t in kept)
    # nothing still inside the window is forgotten
    assert kept[1:] == tuple(t for t in history if t >= now - period)
    assert list(kept) == sorted(kept, reverse=True)
    assert exceeded is (len(kept) > intensity)


# Quarters add up exactly in binary floating point, so the window edges below
# mean the same thing to the oracle as to add_restart.
quarters = st.integers(0, 40).map(lambda n: n / 4)


@given(
    st.lists(quarters, min_size=1, max_size=40),
    st.integers(0, 6),
    st.integers(1, 200).map(lambda n: n / 4),
)
def test_sliding_window(gaps: list[float], intensity: int, period: float) -> None:
    """Feed restarts at monotonic times until the supervisor gives up."""
    now = 100.0
    kept: tuple[float, ...] = ()
    fed: list[float] = []
    exceeded = False
    for gap in gaps:
        now += gap
        fed.append(now)
        kept, exceeded = add_restart(kept, now, intensity, period)
        # an independent count: the restarts within the last period
        in_window = [t for t in fed if t >= now - period]
        assert exceeded is (len(in_window) > intensity)
        if exceeded:
            break
    # no window of length period holds more than intensity + 1 of the restarts
    # seen, and before the last one no window holds more than intensity
    for limit, seen in (
        (intensity + 1, fed),
        (intensity, fed[:-1] if exceeded else fed),
    ):
        for start in seen:
            assert sum(start <= t <= start + period for t in seen) <= limit
