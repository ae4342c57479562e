"""The chaos suite's accounting: a ledger per test, process hygiene checks after
it, and the session headline.

Each test gets a :class:`~tests.chaos._ledger.Ledger` (autouse fixture ``ledger``).
After the test (its pools are closed inside it) the fixture counts:

- ``fd_delta``: the test process's open fds after the test minus before;
- ``zombies``: ``<defunct>`` children of the test process;
- ``orphans``: live processes the test started that outlived it: the workers
  seen in ``("snakepit", "worker", "started")``, the pids the test tracked, and
  any process whose environment carries the test's token (every worker,
  grandchild and ``snakepit run`` inherits it).

A test with a bad counter fails at teardown, naming each bad request. The session
ends with one headline line (``pytest_terminal_summary``), and a non-zero bad
counter also makes the session's exit status a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from snakepit import telemetry
from tests.chaos._ledger import (
    BAD,
    ENV_KEY,
    REPORT_KEY,
    Ledger,
    find_orphans,
    open_fds,
    reap_zombies,
)

_STARTED = ("snakepit", "worker", "started")
_tokens = itertools.count(1)


@pytest.fixture(params=["process", "thread"])
def profile(request: pytest.FixtureRequest) -> str:
    """The worker profile a scenario runs on, where the two differ."""
    return str(request.param)


@pytest.fixture(scope="session")
def _data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("snakepit-state")


@pytest.fixture(autouse=True)
def ledger(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _data_dir: Path
) -> Iterator[Ledger]:
    """The test's ledger; after the test, its process hygiene is counted."""
    token = f"{os.getpid()}-{next(_tokens)}"
    monkeypatch.setenv(ENV_KEY, token)
    # Each test is its own instance, with its own run records: orphan cleanup at
    # a pool's start (snakepit._registry) never acts on another test's leftovers,
    # nor on those of snakepit runs outside this session, so each test is
    # accounted for what it left itself.
    monkeypatch.setenv("SNAKEPIT_INSTANCE", f"chaos-{token}")
    monkeypatch.setenv("SNAKEPIT_DATA_DIR", str(_data_dir))
    book = Ledger(request.node.nodeid)
    workers: dict[int, psutil.Process] = {}

    def on_started(
        event: Any, measurements: Any, metadata: Any, config: object
    ) -> None:
        pid = metadata.get("pid")
        if isinstance(pid, int):
            try:
                workers[pid] = psutil.Process(pid)
            except psutil.Error:
                pass

    handler_id = f"chaos-ledger-{token}"
    telemetry.attach(handler_id, _STARTED, on_started)
    before = open_fds()
    try:
        yield book
    finally:
        telemetry.detach(handler_id)
    book.close()
    after = open_fds()
    delta = len(after) - len(before)
    if delta:
        book.hygiene["fd_delta"] = abs(delta)
        new = {fd: to for fd, to in after.items() if before.get(fd) != to}
        gone = {fd: to for fd, to in before.items() if after.get(fd) != to}
        book.hygiene_notes.append(f"fd delta {delta:+d}: new {new}, gone {gone}")
    zombies = reap_zombies()
    if zombies:
        book.hygiene["zombies"] = len(zombies)
        book.hygiene_notes.append(f"zombie children: {zombies}")
    tracked = list(workers.values())
    for pid in book.pids:
        try:
            tracked.append(psutil.Process(pid))
        except psutil.Error:
            pass
    orphans = find_orphans(token, tracked)
    if orphans:
        book.hygiene["orphans"] = len(orphans)
        book.hygiene_notes.append("orphans (killed now): " + "; ".join(orphans))
    known = request.node.get_closest_marker("xfail") is not None
    counts = book.counts()
    # The headline sums the test reports (ChaosHeadline, registered by the root
    # conftest), so it covers every xdist worker's tests.
    request.node.user_properties.append(
        (REPORT_KEY, {"counts": counts, "known": known})
    )
    if not known and any(counts[k] for k in BAD):
        pytest.fail(
            "chaos accounting: "
            + " ".join(f"{k}={counts[k]}" for k in BAD if counts[k])
            + "\n  "
            + "\n  ".join(book.problems()),
            pytrace=False,
        )
