"""start_method="template": workers forked from a preloaded template process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

from snakepit.exceptions import ConfigError, PoolUnavailable, WorkerCrashed
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from snakepit.config import PoolConfig
    from snakepit.pool._template import Template

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]

CHAOS = "snakepit.adapters.chaos:ChaosAdapter"
ENV = "tests.workers.envinfo:EnvAdapter"
EXITED = ("snakepit", "worker", "exited")
RESTARTED = ("snakepit", "worker", "restarted")


def template_of(pool: object) -> psutil.Process:
    """The pool's template: the parent of its workers, a child of ours."""
    pid = pool.worker_stats()[0]["pid"]  # type: ignore[attr-defined]
    template = psutil.Process(pid).parent()
    assert template is not None
    assert template.ppid() == os.getpid()
    assert "--template" in template.cmdline()
    return template


def _on_forked(
    monkeypatch: pytest.MonkeyPatch, seen: Callable[[list[int]], None]
) -> None:
    """Call *seen* with the pids of each ``forked`` answer of the template, just
    before the pool hears it."""
    from snakepit.pool._template import Template

    on_message = Template._on_message

    def hooked(self: Template, instance: object, message: dict) -> None:
        if message.get("op") == "forked":
            seen([pid for _, pid in message["pids"]])
        on_message(self, instance, message)  # type: ignore[arg-type]

    monkeypatch.setattr(Template, "_on_message", hooked)


@contextlib.asynccontextmanager
async def _template_alone(
    config: PoolConfig,
) -> AsyncIterator[tuple[Template, TaskGroup]]:
    """A pool's template with no pool around it, and the task group it runs
    in; closed (and waited for) on exit."""
    from snakepit.pool._spawn import worker_env
    from snakepit.pool._template import Template

    async with anyio.create_task_group() as tg:
        template = await tg.start(
            Template(config, worker_env(config, worker_id="w-1"), None).run
        )
        try:
            yield template, tg
        finally:
            template.close()  # its run() is shielded until then


async def test_workers_are_forked_from_one_template_that_imported_the_adapter() -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=ENV, size=3, start_method="template") as pool:
            template = template_of(pool)
            parents = {psutil.Process(w["pid"]).ppid() for w in pool.worker_stats()}
            assert parents == {template.pid}
            info = await pool.execute("interpreter")
            # a worker's own argv and environment, not the template's
            assert info["argv"][info["argv"].index("--worker-id") + 1] in (
                pool.list_workers()
            )
            seen = await pool.execute("env", {"names": ["SNAKEPIT_WORKER_ID"]})
            assert seen["SNAKEPIT_WORKER_ID"] in pool.list_workers()
        assert not template.is_running()


async def test_a_forked_worker_has_the_environment_of_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fork carries only what differs from the template's environment: a
    variable changed since the template started still reaches the next worker."""
    names = {"names": ["SNAKEPIT_TEST_MARK", "SNAKEPIT_WORKER_ID"]}
    monkeypatch.setenv("SNAKEPIT_TEST_MARK", "before")
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=ENV, size=1, start_method="template") as pool:
            assert await pool.execute("env", names) == {
                "SNAKEPIT_TEST_MARK": "before",
                "SNAKEPIT_WORKER_ID": "default-1",
            }
            monkeypatch.setenv("SNAKEPIT_TEST_MARK", "after")
            os.kill(pool.worker_stats()[0]["pid"], signal.SIGKILL)
            await events.wait_for(RESTARTED)
            assert await pool.execute("env", names) == {
                "SNAKEPIT_TEST_MARK": "after",
                "SNAKEPIT_WORKER_ID": "default-2",
            }


async def test_a_crashed_forked_worker_is_replaced_with_its_exit_status() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1, start_method="template") as pool:
            with pytest.raises(WorkerCrashed) as info:
                await pool.execute("exit", {"code": 7})
            assert info.value.exit_code == 7
            with pytest.raises(WorkerCrashed) as info:
                await pool.execute("sigkill_self")
            assert info.value.signal == signal.SIGKILL
            await events.wait_for(RESTARTED, count=2)
            assert (await pool.execute("echo", {"request_id": 1}))["request_id"] == 1


async def test_a_dead_template_takes_its_workers_and_is_started_again() -> None:
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=2, start_method="template") as pool:
            first = template_of(pool)
            first.kill()
            await events.wait_for(RESTARTED, count=2)
            second = template_of(pool)
            assert second.pid != first.pid
            for i in range(4):
                assert (await pool.execute("echo", {"request_id": i}))["pid"] in {
                    w["pid"] for w in pool.worker_stats()
                }
    reasons = [e.metadata["signal"] for e in events.named(EXITED)]
    assert reasons.count(signal.SIGKILL) >= 2  # their parent-death signal


async def test_an_adapter_that_cannot_be_imported_fails_fast_with_the_reason() -> None:
    with anyio.fail_after(60), pytest.raises(PoolUnavailable) as info:
        async with open_pool(
            adapter="no_such_module_here:Adapter", size=2, start_method="template"
        ):
            pass
    message = str(info.value)
    assert "could not import the adapter" in message
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in message


async def test_a_template_that_dies_while_importing_fails_the_start() -> None:
    with anyio.fail_after(60), pytest.raises(PoolUnavailable) as info:
        async with open_pool(
            adapter="tests.workers.dies_on_import:Adapter",
            size=1,
            start_method="template",
        ):
            pass
    assert "the template exited before it could fork a worker" in str(info.value)


async def test_a_forked_worker_logs_its_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="snakepit.worker")
    with anyio.fail_after(30), capture_events() as events:
        async with open_pool(adapter=CHAOS, size=1, start_method="template") as pool:
            await pool.execute("print_flood", {"n_bytes": 2000})
            await pool.execute("print_flood", {"n_bytes": 300, "stream": "stderr"})
    assert len(events.named(EXITED)) == 1  # the logs were drained before the exit
    assert any("[default-1 stdout]" in r.getMessage() for r in caplog.records)
    assert any("[default-1 stderr]" in r.getMessage() for r in caplog.records)


def test_the_template_is_linux_only_and_named_in_config_errors() -> None:
    from snakepit.config import PoolConfig

    with pytest.raises(ConfigError, match="start_method must be 'spawn' or"):
        PoolConfig(start_method="forkserver")


async def test_a_fork_answered_as_its_start_is_given_up_is_killed_and_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start cancelled in the same loop turn as the template's "forked" answer
    arrives (the cancel first): the child must be killed and reaped, and its
    output pipes closed; they were left open until the pool ended."""
    from snakepit.config import PoolConfig
    from snakepit.pool._spawn import spawn_worker

    config = PoolConfig(adapter_module=CHAOS, start_method="template")
    starting = anyio.CancelScope()
    forked: list[int] = []

    def cancel_when_forked(pids: list[int]) -> None:
        forked.extend(pids)
        starting.cancel()  # the start gives up just before the answer

    _on_forked(monkeypatch, cancel_when_forked)
    fds = len(os.listdir("/proc/self/fd"))
    with anyio.fail_after(30):
        async with _template_alone(config) as (template, _):
            with starting:
                await spawn_worker(config, worker_id="w-1", template=template)
            assert starting.cancelled_caught
            assert len(forked) == 1
            # killed, and reaped by the template (a zombie would still exist)
            child = psutil.Process(forked[0])
            await anyio.to_thread.run_sync(child.wait, 10)
    assert len(os.listdir("/proc/self/fd")) == fds  # the child's pipes are closed


def _pipes(pid: int) -> set[str]:
    """The pipes (``pipe:[inode]``) process *pid* holds open."""
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("pipe:"):
            held.add(target)
    return held


async def test_forks_asked_together_go_out_in_few_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pool's start asks for its forks in the same loop turn: they reach the
    template FORKS_PER_MESSAGE at a time, and it answers once per message."""
    from snakepit.worker._template import FORKS_PER_MESSAGE

    answers: list[int] = []
    _on_forked(monkeypatch, lambda pids: answers.append(len(pids)))
    size = FORKS_PER_MESSAGE + 3
    with anyio.fail_after(60):
        async with open_pool(
            adapter=CHAOS, size=size, startup_batch_size=size, start_method="template"
        ) as pool:
            assert len(pool.list_workers()) == size
    assert answers == [FORKS_PER_MESSAGE, 3]


async def test_workers_forked_together_hold_only_their_own_pipes() -> None:
    """The template holds every worker's pipe ends of a message while it forks
    them; a child keeping another's would hide that worker's exit from the
    parent (its reply pipe would never reach end of file)."""
    with anyio.fail_after(30):
        async with open_pool(
            adapter=CHAOS, size=4, startup_batch_size=4, start_method="template"
        ) as pool:
            held = [_pipes(w["pid"]) for w in pool.worker_stats()]
            for i, mine in enumerate(held):
                # request, reply, stdout, stderr: the stdout and stderr ends may
                # be the same pipe in a worker that dup'ed them, never fewer than 2
                assert len(mine) >= 2
                for other in held[i + 1 :]:
                    assert not mine & other


async def test_a_start_given_up_before_its_fork_is_sent_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start cancelled while its fork waits to be sent takes it back: the
    template never forks it and every descriptor of it is closed."""
    from snakepit.config import PoolConfig
    from snakepit.pool._spawn import spawn_worker
    from snakepit.pool._template import Template

    config = PoolConfig(adapter_module=CHAOS, start_method="template")
    release = anyio.Event()
    queued = anyio.Event()
    send_forks = Template._send_forks

    async def held_back(self: Template, instance: object) -> None:
        await release.wait()
        await send_forks(self, instance)  # type: ignore[arg-type]

    forked: list[int] = []
    monkeypatch.setattr(Template, "_send_forks", held_back)
    _on_forked(monkeypatch, forked.extend)
    fds = len(os.listdir("/proc/self/fd"))
    with anyio.fail_after(30):
        async with _template_alone(config) as (template, tg):
            with anyio.CancelScope() as starting:

                async def give_up_once_queued() -> None:
                    while not template._current or not template._current.outbox:
                        await anyio.lowlevel.checkpoint()
                    queued.set()
                    starting.cancel()

                tg.start_soon(give_up_once_queued)
                await spawn_worker(config, worker_id="w-1", template=template)
            assert queued.is_set() and starting.cancelled_caught
            assert template._current is not None
            assert template._current.outbox == []
            release.set()
            # the template still forks what is asked next, and only that
            child = await spawn_worker(config, worker_id="w-2", template=template)
            assert forked == [child.process.pid]
            os.killpg(child.process.pid, signal.SIGKILL)
            await child.process.aclose()
            for fd in (
                child.request_fd,
                child.reply_fd,
                child.stdout_fd,
                child.stderr_fd,
            ):
                os.close(fd)
    assert len(os.listdir("/proc/self/fd")) == fds
