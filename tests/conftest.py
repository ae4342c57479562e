"""Shared fixtures: the anyio backend and the child-process leak check."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import settings

from snakepit.testing import _end_leftovers, _identity
from tests.chaos._ledger import ChaosHeadline

# Examples are bounded by their own work, not by the clock: on a loaded 2-core CI
# machine a 200 ms deadline fails correct code.
settings.register_profile("snakepit", deadline=None)
settings.load_profile("snakepit")


def pytest_configure(config: pytest.Config) -> None:
    # the chaos suite's headline, summed over every test (and xdist worker)
    config.pluginmanager.register(ChaosHeadline(), "snakepit-chaos-headline")


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run records go to a temporary data directory, never the user's own.

    Subprocesses started by tests inherit it through the environment.
    """
    patch = pytest.MonkeyPatch()
    patch.setenv("SNAKEPIT_DATA_DIR", str(tmp_path_factory.mktemp("snakepit-data")))
    yield
    patch.undo()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_child_left_behind() -> Iterator[None]:
    """Fail a test that leaves a child process of the test process alive: the
    pytest plugin's own check (``snakepit_no_leaks``), on every test.

    Processes that are already exiting get a bounded wait on their exit (not a
    sleep); whatever is still alive then is killed and reported.
    """
    me = psutil.Process(os.getpid())
    before = {_identity(p) for p in me.children(recursive=True)}
    yield
    leaked = _end_leftovers(me, before, timeout=3.0)
    if leaked:
        pytest.fail(f"test left child processes behind: {', '.join(leaked)}")
