"""Launching one worker process: pipes, environment, command line.

Fork+exec happens in C (``anyio.open_process``), from the event-loop thread, never
with a ``preexec_fn``. The protocol travels on two dedicated pipes passed with
``pass_fds``; stdin is /dev/null and stdout/stderr are log pipes made here (for a
spawned and a forked worker alike), so nothing user code prints can corrupt a
frame, and the parent reads them as it reads the replies. Each worker leads its
own session, so a terminal's Ctrl-C reaches only the parent, which shuts down in
order.
"""

from __future__ import annotations

import functools
import os
import site
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import attrs
from anyio.abc import Process

import snakepit
from snakepit.config import PoolConfig
from snakepit.profiles import profile_for
from snakepit.worker import (
    ThreadSafetyChecks,
    WorkerOptions,
    command_line,
    worker_flags,
)

from ._channel import enlarge_pipe
from ._template import Template, TemplateChild

__all__ = ("Spawned", "spawn_worker", "worker_env")


@attrs.define(eq=False)
class Spawned:
    """A freshly started worker process and the parent's ends of its pipes
    (all non-blocking, all the caller's to close)."""

    process: Process | TemplateChild
    #: Parent writes requests here.
    request_fd: int
    #: Parent reads replies here.
    reply_fd: int
    #: Parent reads the worker's stdout here.
    stdout_fd: int
    #: Parent reads the worker's stderr here.
    stderr_fd: int


@functools.cache
def _source_checkout_path() -> str | None:
    """The folder holding the parent's ``snakepit`` package, unless installed.

    A worker started from a source checkout must import the same snakepit as the
    parent; an installed snakepit is found by the worker's own interpreter.
    Computed once per process: it cannot change, and every spawn asks.
    """
    package_parent = Path(snakepit.__file__).resolve().parent.parent
    installed = {Path(p).resolve() for p in site.getsitepackages()}
    user_site = site.getusersitepackages()
    if user_site:
        installed.add(Path(user_site).resolve())
    return None if package_parent in installed else str(package_parent)


def import_path_env(env: dict[str, str]) -> dict[str, str]:
    """Put the source checkout holding this snakepit (if not installed) first on
    *env*'s ``PYTHONPATH``, so a child imports the same snakepit. Returns *env*."""
    checkout = _source_checkout_path()
    if checkout is not None:
        parts = [checkout, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def worker_env(
    config: PoolConfig,
    *,
    worker_id: str,
    run_id: str | None = None,
    instance: str | None = None,
) -> dict[str, str]:
    """The worker's environment: the parent's, then the profile's variables, then
    the pool's ``adapter_env`` (which wins), then the run's markers
    ``SNAKEPIT_RUN_ID`` and ``SNAKEPIT_INSTANCE`` (if given; see orphan cleanup)."""
    env = dict(os.environ)
    profile = profile_for(config.worker_profile)()
    env.update(profile.worker_env(config.threads_per_worker))
    env.setdefault("PYTHONUNBUFFERED", "1")
    import_path_env(env)
    env["SNAKEPIT_WORKER_ID"] = worker_id
    env["SNAKEPIT_POOL"] = config.name
    env.update(config.adapter_env)
    if run_id is not None:
        env["SNAKEPIT_RUN_ID"] = run_id
    if instance is not None:
        env["SNAKEPIT_INSTANCE"] = instance
    return env


async def spawn_worker(
    config: PoolConfig,
    *,
    worker_id: str,
    env: Mapping[str, str] | None = None,
    run_id: str | None = None,
    instance: str | None = None,
    template: Template | None = None,
) -> Spawned:
    """Start one worker process for *config*; it still has to send ``Hello``.

    *run_id* and *instance* mark the worker as its run's (``--run-id`` and the
    environment), so orphan cleanup can find it. With a *template*, the worker
    is forked from it instead of started from scratch.

    Raises:
        OSError: the process could not be started (bad ``python_executable``...).
        WorkerStartError: the template could not fork it.
    """
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    child_ends = (request_read, reply_write, out_write, err_write)
    if env is None:
        env = worker_env(config, worker_id=worker_id, run_id=run_id, instance=instance)
    try:
        options = WorkerOptions(
            adapter=config.adapter_module,
            request_fd=request_read,
            reply_fd=reply_write,
            threads=config.threads_per_worker,
            max_frame_bytes=config.max_frame_bytes,
            parent_pid=os.getpid(),
            adapter_args=dict(config.adapter_args) or None,
            worker_id=worker_id,
            run_id=run_id,
            thread_safety_checks=ThreadSafetyChecks(config.thread_safety_checks),
        )
        process: Process | TemplateChild
        if template is not None:
            process = await template.fork(worker_flags(options), env, child_ends)
        else:
            process = await anyio.open_process(
                command_line(
                    options, python=config.python_executable or sys.executable
                ),
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                env=dict(env),
                start_new_session=True,
                pass_fds=(request_read, reply_write),
            )
    except BaseException:
        for fd in (*child_ends, request_write, reply_read, out_read, err_read):
            os.close(fd)
        raise
    # The child's ends must close here, or a dead worker's EOF never arrives.
    for fd in child_ends:
        os.close(fd)
    for fd in (request_write, reply_read, out_read, err_read):
        os.set_blocking(fd, False)
    enlarge_pipe(request_write)  # big payloads cross in fewer system calls
    enlarge_pipe(reply_read)
    return Spawned(
        process=process,
        request_fd=request_write,
        reply_fd=reply_read,
        stdout_fd=out_read,
        stderr_fd=err_read,
    )
