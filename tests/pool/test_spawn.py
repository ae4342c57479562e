"""How workers are launched: environment, interpreter, session, startup; the same
for both start methods (spawned, or forked from the pool's template)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from snakepit.exceptions import PoolUnavailable
from snakepit.pool import open_pool
from snakepit.profiles import BLAS_THREAD_VARIABLES

pytestmark = pytest.mark.anyio

ENV = "tests.workers.envinfo:EnvAdapter"


@pytest.fixture(params=["spawn", "template"])
def start_method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_process_profile_limits_blas_threads_unless_overridden(
    monkeypatch: pytest.MonkeyPatch, start_method: str
) -> None:
    monkeypatch.setenv("SNAKEPIT_TEST_INHERITED", "from-parent")
    names = [*BLAS_THREAD_VARIABLES, "SNAKEPIT_TEST_INHERITED", "EXTRA"]
    with anyio.fail_after(30):
        async with open_pool(
            adapter=ENV,
            size=1,
            adapter_env={"OMP_NUM_THREADS": "3", "EXTRA": "x"},
            start_method=start_method,
        ) as pool:
            seen = await pool.execute("env", {"names": names})
    expected = dict.fromkeys(BLAS_THREAD_VARIABLES, "1")
    expected.update(
        OMP_NUM_THREADS="3", SNAKEPIT_TEST_INHERITED="from-parent", EXTRA="x"
    )
    assert seen == expected


async def test_worker_leads_its_own_group_with_stdin_devnull(start_method: str) -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=ENV, size=1, start_method=start_method) as pool:
            info = await pool.execute("interpreter")
            worker = pool.worker(pool.list_workers()[0])
    assert info["pid"] == info["pgid"] == worker.pid
    # A spawned worker leads its own session; a forked one is in its template's,
    # which has no terminal either.
    assert info["sid"] == (worker.pid if start_method == "spawn" else info["ppid"])
    assert info["stdin"] == "/dev/null"
    # the worker id is visible in the process's command line (for ps)
    assert worker.id in info["argv"]


async def test_python_executable_selects_the_interpreter(
    tmp_path: Path, start_method: str
) -> None:
    # A wrapper interpreter that marks its environment, then execs Python.
    alias = tmp_path / "python-alias"
    alias.write_text(f'#!/bin/sh\nSNAKEPIT_VIA_ALIAS=yes exec {sys.executable} "$@"\n')
    alias.chmod(0o755)
    with anyio.fail_after(30):
        async with open_pool(
            adapter=ENV,
            size=1,
            python_executable=str(alias),
            start_method=start_method,
        ) as pool:
            seen = await pool.execute("env", {"names": ["SNAKEPIT_VIA_ALIAS"]})
    assert seen == {"SNAKEPIT_VIA_ALIAS": "yes"}


async def test_missing_interpreter_fails_fast(start_method: str) -> None:
    with anyio.fail_after(30), pytest.raises(PoolUnavailable) as info:
        async with open_pool(
            adapter=ENV,
            size=1,
            python_executable="/nonexistent/python3",
            start_method=start_method,
        ):
            pass
    assert "/nonexistent/python3" in str(info.value)


async def test_startup_is_bounded_and_concurrent(start_method: str) -> None:
    # 6 workers, at most 2 starting at once: all come up.
    with anyio.fail_after(60):
        async with open_pool(
            adapter=ENV, size=6, startup_batch_size=2, start_method=start_method
        ) as pool:
            assert len(pool.list_workers()) == 6
            pids = {pool.worker(w).pid for w in pool.list_workers()}
            assert len(pids) == 6
            assert os.getpid() not in pids
