"""DynamicSupervisor through its public API, on both anyio backends."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from snakepit.exceptions import (
    ChildNotFound,
    ChildStartError,
    ConfigError,
    DuplicateChild,
    MaxChildrenReached,
    RestartIntensityExceeded,
    SupervisorNotRunning,
)
from snakepit.supervisor import (
    INFINITY,
    ChildSpec,
    ChildStatus,
    DynamicSupervisor,
    Restart,
)
from snakepit.telemetry import capture_events

from ._probe import FakeClock, Probe, running

pytestmark = pytest.mark.anyio

STARTED = ("snakepit", "supervisor", "child_started")
EXITED = ("snakepit", "supervisor", "child_exited")
RESTARTED = ("snakepit", "supervisor", "child_restarted")
MAX = ("snakepit", "supervisor", "max_intensity")


def ids(sup: DynamicSupervisor) -> list[Any]:
    return [c.id for c in sup.which_children()]


def refs(sup: DynamicSupervisor) -> dict[Any, object]:
    return {c.id: c.ref for c in sup.which_children()}


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


# --- Starting children ---


async def test_starts_empty_and_start_child_returns_refs() -> None:
    probe = Probe()
    sup = DynamicSupervisor(clock=FakeClock())
    with anyio.fail_after(5), capture_events() as events:
        async with running(sup):
            assert sup.which_children() == []
            assert await sup.start_child(probe.spec("a")) == ("a", 1)
            assert await sup.start_child(probe.spec("b")) == ("b", 1)
            assert refs(sup) == {"a": ("a", 1), "b": ("b", 1)}
            assert {c.status for c in sup.which_children()} == {ChildStatus.RUNNING}
            counts = sup.count_children()
            assert (counts.specs, counts.active, counts.workers) == (2, 2, 2)
            assert [e.metadata["child_id"] for e in events.named(STARTED)] == [
                "a",
                "b",
            ]
    assert set(probe.stops()) == {"a", "b"}  # concurrently: in any order
    assert len(probe.stops()) == 2
    assert not sup.running
    assert sup.which_children() == []


async def test_start_child_needs_a_running_supervisor() -> None:
    probe = Probe()
    sup = DynamicSupervisor()
    with anyio.fail_after(5), pytest.raises(SupervisorNotRunning):
        await sup.start_child(probe.spec("a"))
    assert probe.starts() == []


async def test_duplicate_id_is_refused() -> None:
    probe = Probe()
    sup = DynamicSupervisor()
    with anyio.fail_after(5):
        async with running(sup):
            await sup.start_child(probe.spec("a"))
            with pytest.raises(DuplicateChild, match="'a'"):
                await sup.start_child(probe.spec("a", Restart.TEMPORARY))
            assert refs(sup) == {"a": ("a", 1)}
            assert probe.starts() == ["a"]


async def test_failed_start_keeps_nothing() -> None:
    probe = Probe()
    probe.fail_next["a"] = 1
    sup = DynamicSupervisor(max_children=1)
    with anyio.fail_after(5):
        async with running(sup):
            with pytest.raises(ChildStartError, match="'a'") as info:
                await sup.start_child(probe.spec("a"))
            assert info.value.child_id == "a"
            assert isinstance(info.value.__cause__, RuntimeError)
            assert sup.which_children() == []
            # the failed start did not take the only slot
            assert await sup.start_child(probe.spec("a")) == ("a", 1)


# --- max_children ---


async def test_max_children_refuses_with_a_message_naming_the_child() -> None:
    probe = Probe()
    sup = DynamicSupervisor(max_children=2, name="dyn")
    with anyio.fail_after(5):
        async with running(sup):
            await sup.start_child(probe.spec("a"))
            await sup.start_child(probe.spec("b"))
            with pytest.raises(MaxChildrenReached) as info:
                await sup.start_child(probe.spec("c"))
            message = str(info.value)
            assert "'c'" in message
            assert "max_children (2)" in message
            assert "dyn" in message
            assert ids(sup) == ["a", "b"]
            assert probe.starts() == ["a", "b"]
            # terminating a child frees its slot
            await sup.terminate_child("a")
            assert await sup.start_child(probe.spec("c")) == ("c", 1)
            assert ids(sup) == ["b", "c"]


async def test_max_children_zero_refuses_everything() -> None:
    probe = Probe()
    sup = DynamicSupervisor(max_children=0)
    with anyio.fail_after(5):
        async with running(sup):
            with pytest.raises(MaxChildrenReached, match="'a'"):
                await sup.start_child(probe.spec("a"))
    assert probe.starts() == []


async def test_max_children_holds_under_concurrent_starts() -> None:
    # Two start_child calls that arrive while the supervisor is busy (here: with
    # a slow child's start) must not both get past the limit.
    probe = Probe()
    gate = anyio.Event()

    async def slow(*, task_status: Any) -> None:
        await gate.wait()
        task_status.started("slow")
        await anyio.sleep_forever()

    sup = DynamicSupervisor(max_children=2)
    outcomes: dict[str, object] = {}

    async def start(spec: ChildSpec) -> None:
        try:
            outcomes[str(spec.id)] = await sup.start_child(spec)
        except MaxChildrenReached as exc:
            outcomes[str(spec.id)] = exc

    with anyio.fail_after(5):
        async with running(sup), anyio.create_task_group() as tg:
            tg.start_soon(start, ChildSpec(id="slow", start=slow))
            await settle()
            tg.start_soon(start, probe.spec("x"))
            tg.start_soon(start, probe.spec("y"))
            await settle()
            gate.set()
            await settle()
            refused = [k for k, v in outcomes.items() if isinstance(v, Exception)]
            assert len(refused) == 1, outcomes
            assert sup.count_children().active == 2
            assert len(sup.which_children()) == 2


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_max_children_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_children"):
        DynamicSupervisor(max_children=bad)


async def test_bad_intensity_is_a_config_error_at_run() -> None:
    sup = DynamicSupervisor(intensity=-1)
    with anyio.fail_after(5), pytest.raises(ConfigError, match="intensity"):
        await sup.run()
    sup = DynamicSupervisor(period=0)
    with anyio.fail_after(5), pytest.raises(ConfigError, match="period"):
        await sup.run()


# --- terminate_child ---


async def test_terminate_child_forgets_it() -> None:
    probe = Probe()
    sup = DynamicSupervisor()
    with anyio.fail_after(5), capture_events() as events:
        async with running(sup):
            for i in "abc":
                await sup.start_child(probe.spec(i))
            await sup.terminate_child("b")
            assert ids(sup) == ["a", "c"]
            assert probe.stops() == ["b"]
            exited = events.named(EXITED)
            assert [(e.metadata["child_id"], e.metadata["reason"]) for e in exited] == [
                ("b", "shutdown")
            ]
            assert events.named(RESTARTED) == []
            for call in (sup.terminate_child, sup.restart_child, sup.delete_child):
                with pytest.raises(ChildNotFound, match="'b'"):
                    await call("b")
            # the id is free again
            assert await sup.start_child(probe.spec("b")) == ("b", 2)
            assert ids(sup) == ["a", "c", "b"]


# --- Exits and restarts ---


@pytest.mark.parametrize(
    ("restart", "reason", "restarted"),
    [
        (Restart.PERMANENT, "normal", True),
        (Restart.PERMANENT, "abnormal", True),
        (Restart.TRANSIENT, "normal", False),
        (Restart.TRANSIENT, "shutdown", False),
        (Restart.TRANSIENT, "abnormal", True),
        (Restart.TEMPORARY, "normal", False),
        (Restart.TEMPORARY, "abnormal", False),
    ],
)
async def test_exit_is_restarted_or_forgotten(
    restart: Restart, reason: str, restarted: bool
) -> None:
    probe = Probe()
    sup = DynamicSupervisor(clock=FakeClock())
    with anyio.fail_after(5), capture_events() as events:
        async with running(sup) as outcome:
            await sup.start_child(probe.spec("other"))
            assert await sup.start_child(probe.spec("a", restart)) == ("a", 1)
            probe.exit("a", reason)
            await events.wait_for(EXITED)
            await settle()
            if restarted:
                assert refs(sup) == {"other": ("other", 1), "a": ("a", 2)}
                assert [e.metadata["child_id"] for e in events.named(RESTARTED)] == [
                    "a"
                ]
            else:
                # not restarted: forgotten, whatever its restart type
                assert ids(sup) == ["other"]
                assert events.named(RESTARTED) == []
                with pytest.raises(ChildNotFound):
                    await sup.terminate_child("a")
            assert probe.stops() == []  # a sibling is never touched
            assert sup.running
            assert outcome.error is None


async def test_restart_intensity_applies() -> None:
    clock = FakeClock()
    probe = Probe()
    sup = DynamicSupervisor(intensity=2, period=5.0, clock=clock, name="dyn")
    with anyio.fail_after(5), capture_events() as events:
        async with running(sup) as outcome:
            await sup.start_child(probe.spec("a"))
            await sup.start_child(probe.spec("b"))
            # restarts spread wider than the window are survived
            for _ in range(4):
                clock.advance(5.1)
                probe.exit("a", "abnormal")
                await settle()
                assert sup.running
            assert refs(sup)["a"] == ("a", 5)
            # three within the window are not
            clock.advance(5.1)
            probe.log.clear()
            probe.exit("a", "abnormal")
            await settle()
            clock.advance(1.0)
            probe.exit("a", "abnormal")
            await settle()
            assert sup.running
            clock.advance(1.0)
            probe.exit("a", "abnormal")
            await outcome.done.wait()
        assert isinstance(outcome.error, RestartIntensityExceeded)
        assert "more than 2 restarts within 5.0s" in str(outcome.error)
        assert "dyn" in str(outcome.error)
        assert not sup.running
        assert sup.which_children() == []
        assert probe.stops() == ["b"]
        [maxed] = events.named(MAX)
        assert maxed.measurements == {"restarts": 3}
        assert maxed.metadata == {"supervisor": "dyn", "intensity": 2, "period": 5.0}


async def test_temporary_exits_do_not_use_intensity() -> None:
    probe = Probe()
    sup = DynamicSupervisor(intensity=0, clock=FakeClock())
    with anyio.fail_after(5):
        async with running(sup) as outcome:
            for i in range(5):
                await sup.start_child(probe.spec(i, Restart.TEMPORARY))
                probe.exit(i, "abnormal")
                await settle()
            assert sup.running
            assert sup.which_children() == []
    assert outcome.error is None


# --- Shutdown ---


class Rendezvous:
    """Children whose shielded cleanup waits until every one of them is in it.

    Stopped one at a time, the first child's cleanup would wait forever for the
    others: they are only cancelled after it has finished.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.entered: list[int] = []
        self.all_in = anyio.Event()
        self.left: list[int] = []

    def spec(self, index: int) -> ChildSpec:
        async def child(*, task_status: Any) -> None:
            task_status.started(index)
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    self.entered.append(index)
                    if len(self.entered) == self.count:
                        self.all_in.set()
                    await self.all_in.wait()
                    self.left.append(index)

        return ChildSpec(id=index, start=child, shutdown=INFINITY)


async def test_shutdown_stops_children_concurrently() -> None:
    count = 5
    children = Rendezvous(count)
    sup = DynamicSupervisor()
    stopped = anyio.Event()
    entered_when_idle: list[int] = []

    async def stop() -> None:
        await sup.stop()
        stopped.set()

    with anyio.fail_after(5), capture_events() as events:
        async with running(sup), anyio.create_task_group() as tg:
            for i in range(count):
                await sup.start_child(children.spec(i))
            tg.start_soon(stop)
            # Once nothing can make progress, look: stopped concurrently, every
            # child is in its cleanup and the stop is over; stopped one at a
            # time, only the first is, and the stop hangs.
            await settle()
            entered_when_idle.extend(children.entered)
            children.all_in.set()  # let a sequential stop unwind, then fail
            await stopped.wait()
        assert sorted(entered_when_idle) == list(range(count))
        assert sorted(children.left) == list(range(count))
        reasons = {
            e.metadata["child_id"]: e.metadata["reason"] for e in events.named(EXITED)
        }
        assert reasons == dict.fromkeys(range(count), "shutdown")
    assert not sup.running


async def test_stop_while_a_child_is_restarting() -> None:
    probe = Probe()
    sup = DynamicSupervisor(clock=FakeClock())
    with anyio.fail_after(5):
        async with running(sup) as outcome:
            await sup.start_child(probe.spec("a"))
            await sup.start_child(probe.spec("b"))
            probe.hang_next["a"] = 1
            probe.exit("a", "abnormal")
            await settle()
            assert {c.id: c.status for c in sup.which_children()} == {
                "a": ChildStatus.RESTARTING,
                "b": ChildStatus.RUNNING,
            }
            await sup.stop()
            assert not sup.running
    assert outcome.error is None
    assert probe.stops() == ["b"]
