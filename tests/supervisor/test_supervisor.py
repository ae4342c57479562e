"""Explicit OTP cases (RELIABILITY.md rows 41-50) against the public API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from snakepit.exceptions import (
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    ChildStartError,
    ConfigError,
    DuplicateChild,
    RestartIntensityExceeded,
    SupervisorNotRunning,
)
from snakepit.supervisor import (
    BRUTAL_KILL,
    AutoShutdown,
    ChildSpec,
    ChildStatus,
    ChildType,
    Restart,
    Strategy,
    Supervisor,
)
from snakepit.telemetry import capture_events

from ._probe import FakeClock, Probe, running, supervisor_spec

pytestmark = pytest.mark.anyio

EXITED = ("snakepit", "supervisor", "child_exited")
RESTARTED = ("snakepit", "supervisor", "child_restarted")
MAX = ("snakepit", "supervisor", "max_intensity")


def make_sup(
    specs: Sequence[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: int = 3,
    period: float = 5.0,
    auto: AutoShutdown = AutoShutdown.NEVER,
    clock: FakeClock | None = None,
    name: str | None = None,
) -> Supervisor:
    class Sup(Supervisor):
        def init(self) -> Sequence[ChildSpec]:
            return list(specs)

    Sup.strategy = strategy  # type: ignore[misc]
    Sup.intensity = intensity
    Sup.period = period
    Sup.auto_shutdown = auto  # type: ignore[misc]
    return Sup(clock=clock or FakeClock(), name=name)


def ids(sup: Supervisor) -> list[Any]:
    return [c.id for c in sup.which_children()]


def statuses(sup: Supervisor) -> dict[Any, ChildStatus]:
    return {c.id: c.status for c in sup.which_children()}


def refs(sup: Supervisor) -> dict[Any, object]:
    return {c.id: c.ref for c in sup.which_children()}


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


# --- Start and stop ---


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    probe = Probe()
    sup = make_sup([probe.spec(i) for i in "abc"])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            assert await tg.start(sup.run) is sup
            assert ids(sup) == ["a", "b", "c"]
            assert refs(sup) == {"a": ("a", 1), "b": ("b", 1), "c": ("c", 1)}
            assert set(statuses(sup).values()) == {ChildStatus.RUNNING}
            await sup.stop()
    assert probe.starts() == ["a", "b", "c"]
    assert probe.stops() == ["c", "b", "a"]
    assert not sup.running
    assert sup.which_children() == []


async def test_run_returns_none_after_stop() -> None:
    probe = Probe()
    sup = make_sup([probe.spec("a")])
    result: list[object] = []

    async def runner(*, task_status: Any) -> None:
        result.append(await sup.run(task_status=task_status))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(runner)
            await sup.stop()
    assert result == [None]


async def test_failed_start_stops_started_children_in_reverse() -> None:
    probe = Probe()
    probe.fail_next["c"] = 1
    sup = make_sup([probe.spec(i) for i in "abcd"])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            with pytest.raises(ChildStartError) as info:
                await tg.start(sup.run)
    assert info.value.child_id == "c"
    assert "'c'" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert probe.starts() == ["a", "b"]
    assert probe.stops() == ["b", "a"]


async def test_init_is_called_afresh_on_each_run() -> None:
    calls = []
    probe = Probe()

    class Sup(Supervisor):
        def init(self) -> list[ChildSpec]:
            calls.append(1)
            return [probe.spec(f"c{len(calls)}")]

    sup = Sup()
    with anyio.fail_after(5):
        for expected in (["c1"], ["c2"]):
            async with anyio.create_task_group() as tg:
                await tg.start(sup.run)
                assert ids(sup) == expected
                await sup.stop()


async def test_bad_specs_are_rejected_before_anything_starts() -> None:
    probe = Probe()
    sup = make_sup([probe.spec("a"), probe.spec("a")])
    with (
        anyio.fail_after(5),
        pytest.raises(ConfigError, match="two children with id 'a'"),
    ):
        await sup.run()
    assert probe.starts() == []
    with pytest.raises(ConfigError, match="permanent child cannot be significant"):
        probe.spec("x", Restart.PERMANENT, significant=True)
    with pytest.raises(ConfigError, match="shutdown must be"):
        probe.spec("x", shutdown=-1)
    with pytest.raises(ConfigError, match="intensity must be"):
        await make_sup([], intensity=-1).run()


# --- Exit reason x restart type (row 46) ---


@pytest.mark.parametrize(
    ("restart", "reason", "restarted"),
    [
        (Restart.PERMANENT, "normal", True),
        (Restart.PERMANENT, "shutdown", True),
        (Restart.PERMANENT, "abnormal", True),
        (Restart.TRANSIENT, "normal", False),
        (Restart.TRANSIENT, "shutdown", False),
        (Restart.TRANSIENT, "abnormal", True),
        (Restart.TEMPORARY, "normal", False),
        (Restart.TEMPORARY, "shutdown", False),
        (Restart.TEMPORARY, "abnormal", False),
    ],
)
async def test_exit_reason_times_restart_type(
    restart: Restart, reason: str, restarted: bool
) -> None:
    probe = Probe()
    sup = make_sup([probe.spec("a", restart)])
    with anyio.fail_after(5), capture_events() as events:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.exit("a", reason)
            await settle()
            exited = events.named(EXITED)
            assert [e.metadata["reason"] for e in exited] == [reason]
            if restarted:
                assert refs(sup) == {"a": ("a", 2)}
                assert len(events.named(RESTARTED)) == 1
            elif restart is Restart.TEMPORARY:
                assert sup.which_children() == []
            else:
                assert statuses(sup) == {"a": ChildStatus.STOPPED}
            await sup.stop()


# --- Strategies ---


async def test_one_for_all_stops_others_in_reverse_and_restarts_in_order() -> None:
    probe = Probe()
    sup = make_sup([probe.spec(i) for i in "abcd"], Strategy.ONE_FOR_ALL)
    with anyio.fail_after(5), capture_events() as events:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.log.clear()
            probe.exit("b", "abnormal")
            await settle()
            assert probe.stops() == ["d", "c", "a"]
            assert probe.starts() == ["a", "b", "c", "d"]
            assert refs(sup) == {i: (i, 2) for i in "abcd"}
            assert [e.metadata["child_id"] for e in events.named(RESTARTED)] == list(
                "abcd"
            )
            await sup.stop()


async def test_rest_for_one_keeps_earlier_children() -> None:
    probe = Probe()
    sup = make_sup([probe.spec(i) for i in "abcd"], Strategy.REST_FOR_ONE)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.log.clear()
            probe.exit("b", "abnormal")
            await settle()
            assert probe.stops() == ["d", "c"]
            assert probe.starts() == ["b", "c", "d"]
            assert refs(sup) == {
                "a": ("a", 1),
                "b": ("b", 2),
                "c": ("c", 2),
                "d": ("d", 2),
            }
            await sup.stop()


async def test_temporary_bystander_is_removed_not_restarted() -> None:
    # OTP temporary_bystander: a group restart kills the temporary child and
    # forgets it, and the one restart does not exhaust intensity 1.
    probe = Probe()
    sup = make_sup(
        [probe.spec("perm"), probe.spec("temp", Restart.TEMPORARY)],
        Strategy.ONE_FOR_ALL,
        intensity=1,
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.exit("perm", "abnormal")
            await settle()
            assert ids(sup) == ["perm"]
            assert probe.stops() == ["temp"]
            assert sup.running
            await sup.stop()


async def test_one_for_all_sibling_fails_restart() -> None:
    # OTP one_for_all_other_child_fails_restart: "b" fails to restart, so the
    # restarted "a" is stopped again and the whole group is retried.
    probe = Probe()
    sup = make_sup([probe.spec("a"), probe.spec("b")], Strategy.ONE_FOR_ALL)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.log.clear()
            probe.fail_next["b"] = 1
            probe.exit("a", "abnormal")
            await settle()
            assert probe.log == [
                ("exit", "a", 1, "abnormal"),
                ("stop", "b", 1),
                ("start", "a", 2),
                ("stop", "a", 2),
                ("start", "a", 3),
                ("start", "b", 2),
            ]
            assert statuses(sup) == {"a": ChildStatus.RUNNING, "b": ChildStatus.RUNNING}
            await sup.stop()


async def test_rest_for_one_sibling_fails_restart() -> None:
    # OTP rest_for_one_other_child_fails_restart: only the later siblings retry.
    probe = Probe()
    sup = make_sup([probe.spec(i) for i in "abc"], Strategy.REST_FOR_ONE)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.log.clear()
            probe.fail_next["b"] = 1
            probe.exit("a", "abnormal")
            await settle()
            assert probe.starts() == ["a", "b", "c"]
            assert probe.stops() == ["c", "b"]
            assert refs(sup) == {"a": ("a", 2), "b": ("b", 2), "c": ("c", 2)}
            await sup.stop()


# --- Intensity (row 43) ---


async def test_restarts_spread_out_are_survived_but_not_bunched() -> None:
    clock = FakeClock()
    probe = Probe()
    sup = make_sup(
        [probe.spec("a"), probe.spec("b")], intensity=1, period=1.0, clock=clock
    )
    with anyio.fail_after(5), capture_events() as events:
        async with running(sup) as outcome:
            for _ in range(4):
                clock.advance(2.1)
                probe.exit("a", "abnormal")
                await settle()
                assert sup.running
            clock.advance(2.1)
            probe.log.clear()
            probe.exit("a", "abnormal")
            await settle()
            assert sup.running
            clock.advance(0.5)
            probe.exit("a", "abnormal")
            await outcome.done.wait()
        assert isinstance(outcome.error, RestartIntensityExceeded)
        assert "more than 1 restarts" in str(outcome.error)
        assert not sup.running
        assert probe.stops() == ["b"]  # "a" was dead; all others in reverse
        assert len(events.named(MAX)) == 1
        assert events.named(MAX)[0].metadata["intensity"] == 1


async def test_a_group_restart_counts_once() -> None:
    probe = Probe()
    sup = make_sup([probe.spec(i) for i in "abc"], Strategy.ONE_FOR_ALL, intensity=1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.exit("b", "abnormal")
            await settle()
            assert sup.running
            assert refs(sup) == {i: (i, 2) for i in "abc"}
            await sup.stop()


async def test_intensity_zero_gives_up_at_the_first_restart() -> None:
    probe = Probe()
    sup = make_sup([probe.spec("a")], intensity=0)
    with anyio.fail_after(5):
        async with running(sup) as outcome:
            probe.exit("a", "normal")
            await outcome.done.wait()
    assert isinstance(outcome.error, RestartIntensityExceeded)


async def test_failed_restarts_count_against_intensity() -> None:
    # OTP sup_start_restart_child_returns_error: a child that cannot restart uses
    # up intensity instead of looping.
    probe = Probe()
    sup = make_sup([probe.spec("a")], intensity=2)
    with anyio.fail_after(5):
        async with running(sup) as outcome:
            probe.fail_next["a"] = 100
            probe.exit("a", "abnormal")
            await outcome.done.wait()
    assert isinstance(outcome.error, RestartIntensityExceeded)
    assert probe.fail_next["a"] == 98  # two failed attempts, then it gave up


# --- Escalation ---


async def test_escalation_through_three_levels() -> None:
    clock = FakeClock()
    crashes = []

    async def always_crashes(*, task_status: Any) -> None:
        task_status.started()
        await anyio.lowlevel.checkpoint()
        crashes.append(1)
        raise RuntimeError("leaf crash")

    class Leaf(Supervisor):
        intensity = 2

        def init(self) -> list[ChildSpec]:
            return [ChildSpec(id="worker", start=always_crashes)]

    class Middle(Supervisor):
        intensity = 1

        def init(self) -> list[ChildSpec]:
            leaf = Leaf(clock=clock, name="leaf")
            return [supervisor_spec("leaf", leaf.run)]

    class Root(Supervisor):
        intensity = 1

        def init(self) -> list[ChildSpec]:
            middle = Middle(clock=clock, name="middle")
            return [supervisor_spec("middle", middle.run)]

    root = Root(clock=clock, name="root")
    with anyio.fail_after(5), capture_events() as events:
        async with running(root) as outcome:
            await outcome.done.wait()
    assert isinstance(outcome.error, RestartIntensityExceeded)
    assert "supervisor root" in str(outcome.error)
    maxed = [e.metadata["supervisor"] for e in events.named(MAX)]
    # leaf gives up 2 * 2 times (middle restarts it once, root restarts middle
    # once), middle gives up twice, root once.
    assert maxed.count("leaf") == 4
    assert maxed.count("middle") == 2
    assert maxed.count("root") == 1
    assert maxed[-1] == "root"
    assert len(crashes) == 4 * 3


# --- Runtime API ---


async def test_runtime_api() -> None:
    probe = Probe()
    sup = make_sup([probe.spec("a")])
    with anyio.fail_after(5), capture_events() as events:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            assert await sup.start_child(probe.spec("b", Restart.TRANSIENT)) == ("b", 1)
            assert await sup.start_child(probe.spec("t", Restart.TEMPORARY)) == ("t", 1)
            assert ids(sup) == ["a", "b", "t"]
            with pytest.raises(DuplicateChild, match="'a'"):
                await sup.start_child(probe.spec("a"))
            counts = sup.count_children()
            assert (
                counts.specs,
                counts.active,
                counts.workers,
                counts.supervisors,
            ) == (
                3,
                3,
                3,
                0,
            )
            with pytest.raises(ChildRunning, match="'b'"):
                await sup.restart_child("b")
            with pytest.raises(ChildRunning, match="'b'"):
                await sup.delete_child("b")
            await sup.terminate_child("b")
            await sup.terminate_child("b")  # again: a no-op
            assert statuses(sup)["b"] is ChildStatus.STOPPED
            assert sup.count_children().active == 2
            restarts_before = len(events.named(RESTARTED))
            assert await sup.restart_child("b") == ("b", 2)
            assert len(events.named(RESTARTED)) == restarts_before  # API, not a restart
            await sup.terminate_child("b")
            await sup.delete_child("b")
            await sup.terminate_child("t")
            assert ids(sup) == ["a"]  # temporary forgotten on terminate
            for call in (sup.terminate_child, sup.restart_child, sup.delete_child):
                with pytest.raises(ChildNotFound, match="'nope'"):
                    await call("nope")
            probe.fail_next["c"] = 1
            with pytest.raises(ChildStartError, match="'c'"):
                await sup.start_child(probe.spec("c"))
            assert ids(sup) == ["a"]
            await sup.stop()
    with pytest.raises(SupervisorNotRunning):
        await sup.start_child(probe.spec("z"))


async def test_restart_and_delete_refused_while_restarting() -> None:
    probe = Probe()
    sup = make_sup([probe.spec("a"), probe.spec("b")])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.hang_next["a"] = 1
            probe.exit("a", "abnormal")
            await settle()
            assert statuses(sup)["a"] is ChildStatus.RESTARTING
            # the supervisor is stuck in a's start; stop still gets through (row 42)
            await sup.stop()
    assert probe.stops() == ["b"]


async def test_restarting_status_is_reported_between_retries() -> None:
    probe = Probe()
    sup = make_sup([probe.spec("a")], intensity=10)
    seen: list[ChildStatus] = []

    def handler(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen.append(statuses(sup)["a"])

    from snakepit import telemetry

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.fail_next["a"] = 2
            telemetry.attach("t-restarting", EXITED, handler)
            try:
                probe.exit("a", "abnormal")
                await settle()
            finally:
                telemetry.detach("t-restarting")
            assert seen == [ChildStatus.STOPPED]
            with pytest.raises((ChildRestarting, ChildRunning)):
                await sup.delete_child("a")
            assert refs(sup) == {"a": ("a", 2)}
            await sup.stop()


# --- Shutdown ---


class SlowToStop:
    """A child whose shielded cleanup waits until kill() is called."""

    def __init__(self) -> None:
        self.killed = anyio.Event()

    async def kill(self) -> None:
        self.killed.set()

    async def run(self, *, task_status: Any) -> None:
        task_status.started(self)
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.killed.wait()


async def test_shutdown_timeout_kills_and_reports() -> None:
    slow = SlowToStop()
    probe = Probe()
    sup = make_sup(
        [probe.spec("a"), ChildSpec(id="slow", start=slow.run, shutdown=0.05)]
    )
    with anyio.fail_after(5), capture_events() as events:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await sup.stop()
    assert slow.killed.is_set()
    reasons = {
        e.metadata["child_id"]: e.metadata["reason"] for e in events.named(EXITED)
    }
    assert reasons == {"slow": "killed", "a": "shutdown"}


async def test_brutal_kill_does_not_wait() -> None:
    slow = SlowToStop()
    sup = make_sup([ChildSpec(id="slow", start=slow.run, shutdown=BRUTAL_KILL)])
    with anyio.fail_after(5), capture_events() as events:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await sup.stop()
    assert slow.killed.is_set()
    assert [e.metadata["reason"] for e in events.named(EXITED)] == ["killed"]


async def test_stop_races_children_exiting() -> None:
    # OTP sup_stop_race: children exit on their own while the supervisor stops.
    probe = Probe()
    names = [f"c{i}" for i in range(12)]
    restarts = [Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY]
    sup = make_sup([probe.spec(n, restarts[i % 3]) for i, n in enumerate(names)])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            for i, n in enumerate(names):
                probe.exit(n, ["normal", "shutdown", "abnormal"][i % 3])
            await sup.stop()
    assert not sup.running


async def test_auto_shutdown_any_significant() -> None:
    probe = Probe()
    sup = make_sup(
        [probe.spec("a"), probe.spec("sig", Restart.TRANSIENT, significant=True)],
        auto=AutoShutdown.ANY_SIGNIFICANT,
    )
    with anyio.fail_after(5):
        async with running(sup) as outcome:
            probe.exit("sig", "normal")
            await outcome.done.wait()
    assert outcome.error is None
    assert not sup.running
    assert probe.stops() == ["a"]


async def test_auto_shutdown_all_significant_waits_for_the_last() -> None:
    probe = Probe()
    sup = make_sup(
        [
            probe.spec("s1", Restart.TEMPORARY, significant=True),
            probe.spec("s2", Restart.TRANSIENT, significant=True),
        ],
        auto=AutoShutdown.ALL_SIGNIFICANT,
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            probe.exit("s1", "normal")
            await settle()
            assert sup.running
            probe.exit("s2", "shutdown")
            await settle()
            assert not sup.running


async def test_nested_supervisor_is_stopped_with_its_parent() -> None:
    probe = Probe()
    inner = make_sup([probe.spec("x"), probe.spec("y")], name="inner")
    outer = make_sup(
        [probe.spec("a"), supervisor_spec("inner", inner.run), probe.spec("b")],
        name="outer",
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(outer.run)
            info = {c.id: c for c in outer.which_children()}
            assert info["inner"].ref is inner
            assert info["inner"].type is ChildType.SUPERVISOR
            assert outer.count_children().supervisors == 1
            await outer.stop()
    assert probe.stops() == ["b", "y", "x", "a"]
