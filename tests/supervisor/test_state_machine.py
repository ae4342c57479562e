"""A hypothesis state machine checks the supervisor against an OTP model.

The model below is written from OTP's documented semantics, independently of
``snakepit.supervisor._plan``. After every step the supervisor's children, their
refs, its liveness and the exact order in which children were stopped and started
must match the model (RELIABILITY.md §3 invariants).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import anyio
import attrs
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from snakepit.exceptions import ChildRunning, ChildStartError, RestartIntensityExceeded
from snakepit.supervisor import (
    ChildSpec,
    ChildStatus,
    Restart,
    Strategy,
    Supervisor,
)

from ._probe import FakeClock, Probe

REASONS = ("normal", "shutdown", "abnormal")
STEPS = int(os.environ.get("SNAKEPIT_STATEFUL_STEPS", "25"))
EXAMPLES = int(os.environ.get("SNAKEPIT_STATEFUL_EXAMPLES", "40"))


@attrs.define
class ModelChild:
    id: str
    restart: Restart
    status: str = "running"  # running | stopped
    gen: int = 1


@attrs.define
class Model:
    """OTP supervisor semantics, step by step, producing the expected probe log."""

    strategy: Strategy
    intensity: int
    period: float
    now: float
    children: list[ModelChild] = attrs.Factory(list)
    restarts: list[float] = attrs.Factory(list)
    alive: bool = True
    fail_next: dict[str, int] = attrs.Factory(dict)
    log: list[tuple[Any, ...]] = attrs.Factory(list)

    def find(self, child_id: str) -> ModelChild:
        return next(c for c in self.children if c.id == child_id)

    def stop(self, child: ModelChild) -> None:
        self.log.append(("stop", child.id, child.gen))
        child.status = "stopped"

    def try_start(self, child: ModelChild) -> bool:
        if self.fail_next.get(child.id, 0) > 0:
            self.fail_next[child.id] -= 1
            return False
        child.gen += 1
        child.status = "running"
        self.log.append(("start", child.id, child.gen))
        return True

    def add_restart(self) -> bool:
        """OTP add_restart: False (and the supervisor dies) past intensity."""
        self.restarts = [self.now] + [
            t for t in self.restarts if t >= self.now - self.period
        ]
        if len(self.restarts) > self.intensity:
            for c in reversed(self.children):
                if c.status == "running":
                    self.stop(c)
            self.children = []
            self.alive = False
            return False
        return True

    def crash(self, child_id: str, reason: str) -> None:
        me = self.find(child_id)
        self.log.append(("exit", me.id, me.gen, reason))
        me.status = "stopped"
        restart = me.restart is Restart.PERMANENT or (
            me.restart is Restart.TRANSIENT and reason == "abnormal"
        )
        if not restart:
            if me.restart is Restart.TEMPORARY:
                self.children.remove(me)
            return
        if not self.add_restart():
            return
        index = self.children.index(me)
        if self.strategy is Strategy.ONE_FOR_ONE:
            group = [me]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            group = list(self.children)
        else:
            group = self.children[index:]
        for c in reversed(group):
            if c is not me and c.status == "running":
                self.stop(c)
        for c in group:
            if c is not me and c.restart is Restart.TEMPORARY:
                self.children.remove(c)
        self.restart_group([c for c in group if c in self.children])

    def restart_group(self, group: list[ModelChild]) -> None:
        while True:
            i = 0
            for i, c in enumerate(group):  # noqa: B007  (i is used after the loop)
                if not self.try_start(c):
                    break
            else:
                return
            if self.strategy is Strategy.ONE_FOR_ALL:
                for c in reversed(group[:i]):
                    self.stop(c)
            else:
                group = group[i:]
            if not self.add_restart():
                return


def make_supervisor(
    strategy: Strategy,
    intensity: int,
    period: float,
    specs: Sequence[ChildSpec],
    clock: FakeClock,
) -> Supervisor:
    class Sup(Supervisor):
        def init(self) -> list[ChildSpec]:
            return list(specs)

    Sup.strategy = strategy  # type: ignore[misc]
    Sup.intensity = intensity
    Sup.period = period
    return Sup(clock=clock, name="machine")


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        self.probe = Probe()
        self.clock = FakeClock()
        self.counter = 0
        self.sup: Supervisor | None = None
        self.future: Any = None
        self.model: Model | None = None

    def call(self, fn: Any, *args: Any) -> Any:
        async def bounded() -> Any:
            with anyio.fail_after(5):
                try:
                    return await fn(*args)
                finally:
                    await anyio.wait_all_tasks_blocked()

        return self.portal.call(bounded)

    def new_id(self) -> str:
        self.counter += 1
        return f"c{self.counter}"

    def check_log(self) -> None:
        assert self.model is not None
        assert self.probe.log == self.model.log
        self.probe.log.clear()
        self.model.log.clear()

    @initialize(
        strategy=st.sampled_from(Strategy),
        intensity=st.integers(0, 3),
        period=st.sampled_from([1.0, 5.0]),
        restarts=st.lists(st.sampled_from(Restart), max_size=4),
    )
    def start(
        self, strategy: Strategy, intensity: int, period: float, restarts: list[Restart]
    ) -> None:
        ids = [self.new_id() for _ in restarts]
        specs = [self.probe.spec(i, r) for i, r in zip(ids, restarts, strict=True)]
        self.model = Model(strategy, intensity, period, self.clock.now)
        self.model.children = [
            ModelChild(i, r) for i, r in zip(ids, restarts, strict=True)
        ]
        self.model.log = [("start", i, 1) for i in ids]
        self.sup = make_supervisor(strategy, intensity, period, specs, self.clock)
        self.future, _ = self.portal.start_task(self.sup.run)
        self.check_log()

    # --- Rules ---

    def alive(self) -> bool:
        return self.model is not None and self.model.alive

    def pick(self, data: st.DataObject, status: str | None = None) -> str | None:
        assert self.model is not None
        choices = [
            c.id for c in self.model.children if status is None or c.status == status
        ]
        return data.draw(st.sampled_from(choices)) if choices else None

    @precondition(lambda self: self.alive())
    @rule(restart=st.sampled_from(Restart), fails=st.booleans())
    def start_child(self, restart: Restart, fails: bool) -> None:
        assert self.model is not None and self.sup is not None
        child_id = self.new_id()
        if fails:
            self.probe.fail_next[child_id] = 1
            with pytest.raises(ChildStartError):
                self.call(self.sup.start_child, self.probe.spec(child_id, restart))
        else:
            ref = self.call(self.sup.start_child, self.probe.spec(child_id, restart))
            assert ref == (child_id, 1)
            self.model.children.append(ModelChild(child_id, restart))
            self.model.log.append(("start", child_id, 1))
        self.check_log()

    @precondition(lambda self: self.alive())
    @rule(data=st.data(), reason=st.sampled_from(REASONS))
    def crash(self, data: st.DataObject, reason: str) -> None:
        assert self.model is not None
        child_id = self.pick(data, "running")
        if child_id is None:
            return
        self.model.now = self.clock.now
        self.model.crash(child_id, reason)

        async def exit_and_settle() -> None:
            self.probe.exit(child_id, reason)

        self.call(exit_and_settle)
        self.check_log()

    @precondition(lambda self: self.alive())
    @rule(data=st.data(), times=st.integers(1, 2))
    def make_start_fail(self, data: st.DataObject, times: int) -> None:
        assert self.model is not None
        child_id = self.pick(data)
        if child_id is None:
            return
        self.probe.fail_next[child_id] += times
        self.model.fail_next[child_id] = self.model.fail_next.get(child_id, 0) + times

    @precondition(lambda self: self.alive())
    @rule(data=st.data())
    def terminate(self, data: st.DataObject) -> None:
        assert self.model is not None and self.sup is not None
        child_id = self.pick(data)
        if child_id is None:
            return
        child = self.model.find(child_id)
        if child.status == "running":
            self.model.stop(child)
        if child.restart is Restart.TEMPORARY:
            self.model.children.remove(child)
        self.call(self.sup.terminate_child, child_id)
        self.check_log()

    @precondition(lambda self: self.alive())
    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        assert self.model is not None and self.sup is not None
        child_id = self.pick(data)
        if child_id is None:
            return
        child = self.model.find(child_id)
        if child.status == "running":
            with pytest.raises(ChildRunning):
                self.call(self.sup.restart_child, child_id)
        elif self.model.try_start(child):
            assert self.call(self.sup.restart_child, child_id) == (child_id, child.gen)
        else:
            with pytest.raises(ChildStartError):
                self.call(self.sup.restart_child, child_id)
        self.check_log()

    @precondition(lambda self: self.alive())
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        assert self.model is not None and self.sup is not None
        child_id = self.pick(data)
        if child_id is None:
            return
        child = self.model.find(child_id)
        if child.status == "running":
            with pytest.raises(ChildRunning):
                self.call(self.sup.delete_child, child_id)
        else:
            self.call(self.sup.delete_child, child_id)
            self.model.children.remove(child)

    @rule(dt=st.sampled_from([0.0, 0.4, 0.99, 1.0, 1.01, 2.5, 5.0, 6.0]))
    def advance_clock(self, dt: float) -> None:
        self.clock.advance(dt)

    # --- Invariants ---

    @invariant()
    def matches_model(self) -> None:
        if self.model is None or self.sup is None:
            return
        assert self.sup.running == self.model.alive
        if not self.model.alive:
            assert self.future.done()
            with pytest.raises(RestartIntensityExceeded):
                self.future.result()
            return
        expected = [
            (
                c.id,
                ChildStatus.RUNNING if c.status == "running" else ChildStatus.STOPPED,
            )
            for c in self.model.children
        ]
        infos = self.sup.which_children()
        assert [(i.id, i.status) for i in infos] == expected
        for info, child in zip(infos, self.model.children, strict=True):
            assert info.ref == (
                (child.id, child.gen) if child.status == "running" else None
            )
        counts = self.sup.count_children()
        assert counts.specs == len(expected)
        assert counts.active == sum(
            1 for c in self.model.children if c.status == "running"
        )

    @invariant()
    def temporary_children_never_return(self) -> None:
        for child_id, gen in self.probe.gens.items():
            if self.model is not None and any(
                c.id == child_id and c.restart is Restart.TEMPORARY
                for c in self.model.children
            ):
                assert gen == 1

    def teardown(self) -> None:
        try:
            if self.sup is not None and self.model is not None:
                if self.model.alive:
                    self.call(self.sup.stop)
                    assert self.future.result() is None
                    expected = [
                        ("stop", c.id, c.gen)
                        for c in reversed(self.model.children)
                        if c.status == "running"
                    ]
                    assert self.probe.log == expected
                assert not self.sup.running
        finally:
            self._portal_cm.__exit__(None, None, None)


SupervisorMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisorMachine = SupervisorMachine.TestCase
