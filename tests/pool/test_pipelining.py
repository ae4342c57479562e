"""pipeline_depth: calls sent ahead to busy workers, and what happens to them."""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
import pytest

from snakepit.config import PoolConfig
from snakepit.exceptions import RequestTimeout, WorkerCrashed
from snakepit.pool import WorkerProcess, _ahead, open_pool
from snakepit.pool._ahead import CallTimes
from snakepit.pool._worker import Pending
from snakepit.telemetry import capture_events

pytestmark = pytest.mark.anyio

CHAOS = "snakepit.adapters.chaos:ChaosAdapter"
RESTARTED = ("snakepit", "worker", "restarted")


@pytest.fixture
def every_command_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls may be sent ahead behind any call: the tests of what happens to
    calls sent ahead use long commands, which the pool would not send ahead."""
    monkeypatch.setattr(CallTimes, "room_behind", lambda *args: math.inf)
    monkeypatch.setattr(CallTimes, "mean", lambda *args: 0.0)


@pytest.mark.usefixtures("every_command_short")
async def test_a_busy_worker_gets_its_next_calls_in_advance() -> None:
    with anyio.fail_after(30):
        for depth, queued in ((1, 2), (3, 0)):
            async with (
                open_pool(adapter=CHAOS, size=1, pipeline_depth=depth) as pool,
                anyio.create_task_group() as tg,
            ):
                for _ in range(3):
                    tg.start_soon(pool.execute, "sleep", {"seconds": 0.2})
                await anyio.wait_all_tasks_blocked()
                stats = pool.get_stats()
                assert (stats["load"], stats["queued"]) == (3 - queued, queued)
                assert pool.worker_stats()[0]["capacity"] == 1


@pytest.mark.usefixtures("every_command_short")
async def test_every_pipelined_call_gets_its_own_answer() -> None:
    results: dict[int, Any] = {}

    async def call(pool: Any, i: int) -> None:
        reply = await pool.execute("echo", {"request_id": i, "payload": [i] * i})
        results[i] = (reply["request_id"], reply["payload"])

    with anyio.fail_after(30):
        async with open_pool(adapter=CHAOS, size=2, pipeline_depth=4) as pool:
            async with anyio.create_task_group() as tg:
                for i in range(300):
                    tg.start_soon(call, pool, i)
            assert pool.get_stats()["load"] == 0
    assert results == {i: (i, [i] * i) for i in range(300)}


@pytest.mark.usefixtures("every_command_short")
async def test_calls_queued_behind_a_crash_never_ran_and_are_sent_again() -> None:
    outcomes: dict[str, Any] = {}

    async def call(name: str, pool: Any, command: str, args: Any = None) -> None:
        try:
            outcomes[name] = await pool.execute(command, args)
        except WorkerCrashed as exc:
            outcomes[name] = exc

    with anyio.fail_after(30), capture_events() as events:
        async with (
            open_pool(adapter=CHAOS, size=1, pipeline_depth=4) as pool,
            anyio.create_task_group() as tg,
        ):
            # first runs while the others wait in the worker's own queue;
            # crash takes the worker down before their turn comes
            tg.start_soon(call, "first", pool, "sleep", {"seconds": 0.3})
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "crash", pool, "exit", {"code": 3})
            await anyio.wait_all_tasks_blocked()
            for name in ("b", "c"):
                tg.start_soon(call, name, pool, "echo", {"request_id": name})
            await anyio.wait_all_tasks_blocked()
            assert pool.get_stats()["load"] == 4  # all four sent to it
    assert outcomes["first"]["slept"] == 0.3
    assert isinstance(outcomes["crash"], WorkerCrashed)
    assert outcomes["crash"].exit_code == 3
    # b and c never started (calls are taken in order): the replacement ran them
    assert {outcomes[n]["request_id"] for n in ("b", "c")} == {"b", "c"}
    assert len(events.named(RESTARTED)) == 1


@pytest.mark.parametrize("how", ["timeout", "cancelled"])
@pytest.mark.usefixtures("every_command_short")
async def test_giving_up_on_a_call_behind_a_long_one_spares_the_worker(
    how: str,
) -> None:
    """On the process profile, giving up on a running call kills the worker; a
    call still waiting behind it is skipped instead, and the long call ends."""
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1, pipeline_depth=2) as pool:
            pid = pool.worker_stats()[0]["pid"]
            async with anyio.create_task_group() as tg:
                long_result: list[Any] = []

                async def long_call() -> None:
                    long_result.append(await pool.execute("sleep", {"seconds": 0.5}))

                tg.start_soon(long_call)
                await anyio.wait_all_tasks_blocked()
                if how == "timeout":
                    with pytest.raises(RequestTimeout):
                        await pool.execute("hang", timeout=0.1)
                else:
                    with anyio.move_on_after(0.1):
                        await pool.execute("hang")
            assert [r["slept"] for r in long_result] == [0.5]
            # "hang" never ran: its place is free again and the worker serves on
            reply = await pool.execute("echo", {"request_id": 7})
            assert (reply["request_id"], reply["pid"]) == (7, pid)
            assert pool.get_stats()["load"] == 0
    assert events.named(RESTARTED) == []


async def test_a_queued_call_with_a_timeout_is_bounded_from_when_it_is_sent() -> None:
    # queue_timeout is long: if the call's own timeout were only checked once the
    # queue's ran out, fail_after would fire first
    with anyio.fail_after(10), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1, queue_timeout=60) as pool:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.execute, "sleep", {"seconds": 0.5})
                await anyio.wait_all_tasks_blocked()
                assert pool.get_stats()["load"] == 1
                with pytest.raises(RequestTimeout):
                    await pool.execute("hang", timeout=0.2)  # queued, then sent
            await events.wait_for(RESTARTED)  # the process worker was replaced
            assert (await pool.execute("echo", {"request_id": 3}))["request_id"] == 3


@pytest.mark.usefixtures("every_command_short")
async def test_a_call_sent_ahead_is_taken_back_for_a_worker_that_falls_idle() -> None:
    """A call waiting behind a long one on its worker does not wait for it: the
    other worker, once idle, takes it back (the long call keeps running)."""
    replies: dict[str, Any] = {}
    both_answered = anyio.Event()

    async def call(name: str, pool: Any, command: str, args: Any) -> None:
        replies[name] = await pool.execute(command, args)
        if {"a", "b"} <= replies.keys():
            both_answered.set()

    with anyio.fail_after(30):
        async with (
            open_pool(adapter=CHAOS, size=2, pipeline_depth=2) as pool,
            anyio.create_task_group() as tg,
        ):
            # one long and one short call, one on each worker ...
            tg.start_soon(call, "long", pool, "sleep", {"seconds": 60})
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "short", pool, "sleep", {"seconds": 0.2})
            await anyio.wait_all_tasks_blocked()
            # ... then one call sent ahead behind each of them
            for name in ("a", "b"):
                tg.start_soon(call, name, pool, "echo", {"request_id": name})
                await anyio.wait_all_tasks_blocked()
            assert [w["load"] for w in pool.worker_stats()] == [2, 2]
            with anyio.fail_after(10):  # far less than the long call's 60 s
                await both_answered.wait()
            assert "long" not in replies
            long_pid = next(w["pid"] for w in pool.worker_stats() if w["load"])
            tg.cancel_scope.cancel()  # the long call: its worker is replaced
    # both ran on the worker that was free, and each exactly once
    assert replies["a"]["pid"] == replies["b"]["pid"] != long_pid
    assert replies["short"]["slept"] == 0.2


@pytest.mark.usefixtures("every_command_short")
async def test_calls_of_mixed_lengths_sent_ahead_each_get_one_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls are taken back and sent again as workers fall idle, with answers
    racing the takebacks: every call still gets exactly its own answer."""
    results: dict[int, Any] = {}
    recalled = 0
    recall = WorkerProcess.recall

    def counted(self: WorkerProcess) -> bool:
        nonlocal recalled
        took = recall(self)
        recalled += took
        return took

    monkeypatch.setattr(WorkerProcess, "recall", counted)

    async def call(pool: Any, i: int) -> None:
        if i % 7 == 0:  # a longer call now and then
            reply = await pool.execute("sleep", {"seconds": 0.02})
            assert reply["slept"] == 0.02
        else:
            reply = await pool.execute("echo", {"request_id": i})
            assert reply["request_id"] == i
        assert i not in results
        results[i] = reply

    with anyio.fail_after(60):
        async with open_pool(adapter=CHAOS, size=3, pipeline_depth=3) as pool:
            for burst in range(10):
                async with anyio.create_task_group() as tg:
                    for i in range(burst * 40, burst * 40 + 40):
                        tg.start_soon(call, pool, i)
            assert pool.get_stats()["load"] == 0
            assert pool.get_stats()["errors"] == 0
    assert sorted(results) == list(range(400))
    assert recalled > 0  # the takebacks this test is about did happen


async def test_no_call_waits_behind_a_command_never_timed() -> None:
    with anyio.fail_after(30):
        async with (
            open_pool(adapter=CHAOS, size=1, pipeline_depth=4) as pool,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(pool.execute, "sleep", {"seconds": 0.3})
            await anyio.wait_all_tasks_blocked()
            for i in range(2):
                tg.start_soon(pool.execute, "echo", {"request_id": i})
            await anyio.wait_all_tasks_blocked()
            # "sleep" may be long: the echoes wait in the pool's queue
            assert (pool.get_stats()["load"], pool.get_stats()["queued"]) == (1, 2)


async def test_calls_go_ahead_behind_a_short_command_only_while_it_runs_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a generous "short", so that sleep(0) is short even on a loaded machine
    monkeypatch.setattr(_ahead, "SHORT_CALL", 1.0)
    with anyio.fail_after(30):
        async with (
            open_pool(adapter=CHAOS, size=1, pipeline_depth=4) as pool,
            anyio.create_task_group() as tg,
        ):
            for _ in range(3):  # sleep is timed: short on average
                await pool.execute("sleep", {"seconds": 0})
            tg.start_soon(pool.execute, "sleep", {"seconds": 0.5})
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(pool.execute, "echo", {"request_id": 1})
            await anyio.wait_all_tasks_blocked()
            assert (pool.get_stats()["load"], pool.get_stats()["queued"]) == (2, 0)
            # the running sleep has now run longer than "short": nothing more
            # is sent behind it, however short the command is on average
            worker = pool.worker(pool.list_workers()[0])
            running = next(iter(worker._pending.values()))
            assert running.command == "sleep" and running.sent_at is not None
            running.sent_at -= 10.0
            tg.start_soon(pool.execute, "echo", {"request_id": 2})
            await anyio.wait_all_tasks_blocked()
            assert (pool.get_stats()["load"], pool.get_stats()["queued"]) == (2, 1)


def test_a_unit_taken_for_a_call_not_sent_yet_counts_as_a_long_call() -> None:
    """A caller woken with a worker assigned sends its call a moment later; until
    then nothing is known of that call, so nothing is sent behind it."""
    worker = WorkerProcess(
        PoolConfig(name="p", adapter_module=CHAOS, pipeline_depth=4),
        "p-1",
        capacity=1,
        kill_on_abandon=True,
        on_ready=lambda w: None,
        on_gone=lambda w: None,
        on_release=lambda w, n: None,
    )
    times = worker.call_times = CallTimes()
    times.observe("echo", 0.0001)
    worker._pending[1] = Pending("echo", sent_at=time.monotonic())
    worker.load = 1
    assert worker.room_ahead() > 0  # one short call, just sent
    worker.load = 2  # a unit taken for a call its caller has not sent yet
    assert worker.room_ahead() <= 0
    worker._pending[2] = Pending("echo")
    assert worker.room_ahead() > 0  # sent: a short one
    worker._pending[3] = Pending("hang")
    worker.load = 3
    assert worker.room_ahead() <= 0  # never timed: may be long


async def test_a_freed_worker_takes_calls_ahead_only_until_a_long_one_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The queue is served in order, and the pool sends calls ahead behind the
    ones it just sent only while those are short: a call of a long command goes
    ahead, and the calls after it stay in the queue."""
    monkeypatch.setattr(_ahead, "SHORT_CALL", 0.2)  # echo short, sleep(0.3) long
    with anyio.fail_after(30):
        async with (
            open_pool(adapter=CHAOS, size=1, pipeline_depth=4) as pool,
            anyio.create_task_group() as tg,
        ):
            for i in range(3):
                await pool.execute("echo", {"request_id": i})
            await pool.execute("sleep", {"seconds": 0.3})  # timed: long
            answered: list[int] = []
            two_answered = anyio.Event()

            async def echo(i: int) -> None:
                await pool.execute("echo", {"request_id": i})
                answered.append(i)
                if len(answered) == 2:
                    two_answered.set()

            tg.start_soon(pool.execute, "sleep", {"seconds": 0.3})
            await anyio.wait_all_tasks_blocked()
            for start in (
                lambda: tg.start_soon(echo, 1),
                lambda: tg.start_soon(echo, 2),
                lambda: tg.start_soon(pool.execute, "sleep", {"seconds": 1.0}),
                lambda: tg.start_soon(echo, 3),
                lambda: tg.start_soon(echo, 4),
            ):
                start()
                await anyio.wait_all_tasks_blocked()
            assert (pool.get_stats()["load"], pool.get_stats()["queued"]) == (1, 5)
            # the first sleep ends: echo 1, then echo 2 and the long sleep ahead
            await two_answered.wait()
            assert sorted(answered) == [1, 2]  # woken together: any order
            assert (pool.get_stats()["load"], pool.get_stats()["queued"]) == (1, 2)


async def test_calls_go_ahead_only_while_those_on_the_worker_are_short_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each sleep(0.2) is short (under SHORT_CALL), but a third one behind two
    others would wait longer than SHORT_CALL: the worker is sent two ahead of
    the running one, however deep the pipeline, and the rest queue."""
    monkeypatch.setattr(_ahead, "SHORT_CALL", 0.5)
    with anyio.fail_after(30):
        async with (
            open_pool(adapter=CHAOS, size=1, pipeline_depth=16) as pool,
            anyio.create_task_group() as tg,
        ):
            await pool.execute("sleep", {"seconds": 0.2})  # timed: 0.167-0.25 s
            for _ in range(6):
                tg.start_soon(pool.execute, "sleep", {"seconds": 0.2})
            await anyio.wait_all_tasks_blocked()
            assert (pool.get_stats()["load"], pool.get_stats()["queued"]) == (3, 3)


async def test_a_free_worker_is_taken_before_any_busy_one_is_asked_for_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a worker has a free unit, a call goes to it, and no busy worker is
    asked how long its calls may take: with many workers, asking each busy one
    made every call cost a loop over the pool's calls in flight."""
    monkeypatch.setattr(_ahead, "SHORT_CALL", 10.0)  # every call here is short
    asked: list[str] = []
    room_ahead = WorkerProcess.room_ahead

    def spy(worker: WorkerProcess) -> float:
        asked.append(worker.id)
        return room_ahead(worker)

    monkeypatch.setattr(WorkerProcess, "room_ahead", spy)
    with anyio.fail_after(30):
        async with (
            open_pool(adapter=CHAOS, size=3, pipeline_depth=4) as pool,
            anyio.create_task_group() as tg,
        ):
            await pool.execute("sleep", {"seconds": 0})  # timed: short
            for _ in range(3):
                tg.start_soon(pool.execute, "sleep", {"seconds": 0.3})
                await anyio.wait_all_tasks_blocked()
            loads = [pool.worker(w).load for w in pool.list_workers()]
            assert loads == [1, 1, 1]  # one each: none was sent ahead
            assert asked == []
            tg.start_soon(pool.execute, "sleep", {"seconds": 0})
            await anyio.wait_all_tasks_blocked()
            # all busy: now the pool asks, and sends the short call ahead
            assert sorted(pool.worker(w).load for w in pool.list_workers()) == [
                1,
                1,
                2,
            ]
            assert asked  # only now
