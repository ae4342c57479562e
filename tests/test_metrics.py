"""snakepit.metrics: telemetry events and live stats as Prometheus metrics.

The mapping is checked event by event against a fresh registry; then a real
application is scraped over HTTP during load (with recycles), in process and
through ``snakepit run --metrics-port``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import snakepit
from snakepit import telemetry
from snakepit.exceptions import PoolNotFound
from snakepit.metrics import SnakepitMetrics, serve_metrics
from snakepit.pool import open_pool

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
RECYCLED = ("snakepit", "worker", "recycled")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample *name* with exactly *labels*; 0 when absent (never counted)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples *name* whose labels include *labels*."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def scrape_registry(registry: CollectorRegistry) -> Samples:
    return parse(generate_latest(registry).decode())


class FakeApp:
    """What the metrics read of an application: its pool names and stats."""

    def __init__(self, *names: str) -> None:
        self.stats: dict[str, dict[str, int] | Exception] = {}
        self.reads = 0

        class Config:
            def get_pool_configs(self) -> list[Any]:
                return [type("P", (), {"name": n})() for n in names]

        self.config = Config()

    def get_stats(self, pool: str | None = None) -> dict[str, int]:
        self.reads += 1
        stats = self.stats.get(str(pool))
        if stats is None:
            raise PoolNotFound(f"no pool {pool!r}")
        if isinstance(stats, Exception):
            raise stats
        return stats


def stats(**values: int) -> dict[str, int]:
    base = dict.fromkeys(("queued", "available", "busy", "capacity", "load"), 0)
    return {**base, **values}


# --- Events to metrics ---


def emit_all(pool: str) -> None:
    """One of every event the metrics count, in the catalogue's shapes."""
    request = {"pool": pool, "command": "add"}
    end = {"duration": 0.02, "monotonic_time": 1.0}
    telemetry.execute(
        ("snakepit", "request", "start"), {"monotonic_time": 0.0}, request
    )
    telemetry.execute(
        ("snakepit", "request", "stop"),
        end,
        {**request, "worker_id": "w-1", "success": True},
    )
    for kind in ("RemoteError", "CancelledError", "Cancelled"):
        telemetry.execute(
            ("snakepit", "request", "exception"),
            {"duration": 2.0, "monotonic_time": 3.0},
            {**request, "kind": kind, "error": None},
        )
    telemetry.execute(
        ("snakepit", "pool", "queue_timeout"),
        {"count": 1, "waited_seconds": 1.0},
        {"pool": pool, "command": "add"},
    )
    telemetry.execute(
        ("snakepit", "pool", "saturated"),
        {"count": 1, "queued": 4},
        {"pool": pool, "max_queue_size": 4},
    )
    telemetry.execute(
        ("snakepit", "pool", "capacity_reached"),
        {"count": 1, "capacity": 1},
        {"pool": pool, "worker_id": "w-1"},
    )
    telemetry.execute(
        ("snakepit", "worker", "started"),
        {"count": 1, "startup_seconds": 0.3},
        {"worker_id": "w-2", "pool": pool, "pid": 10},
    )
    telemetry.execute(
        ("snakepit", "worker", "exited"),
        {"count": 1, "uptime_seconds": 5.0},
        {
            "worker_id": "w-1",
            "pool": pool,
            "pid": 9,
            "reason": "exited",
            "exit_code": 1,
            "signal": None,
            "in_flight": 0,
        },
    )
    telemetry.execute(
        ("snakepit", "worker", "restarted"),
        {"count": 1},
        {"worker_id": "w-2", "previous_worker_id": "w-1", "pool": pool, "pid": 10},
    )
    for reason in ("max_requests", "max_requests", "ttl_expired"):
        telemetry.execute(
            RECYCLED,
            {"count": 1},
            {
                "worker_id": "w-2",
                "pool": pool,
                "reason": reason,
                "uptime_seconds": 1.0,
                "request_count": 3,
            },
        )
    telemetry.execute(
        ("snakepit", "worker", "recycle_failed"),
        {"count": 1},
        {
            "worker_id": "w-2",
            "pool": pool,
            "reason": "ttl_expired",
            "error": RuntimeError(),
        },
    )
    telemetry.execute(
        ("snakepit", "worker", "health_check_failed"),
        {"count": 1},
        {"worker_id": "w-2", "pool": pool, "reason": "timeout"},
    )


def test_every_event_maps_to_its_metric() -> None:
    registry = CollectorRegistry()
    with telemetry.capture_events(("snakepit",)), SnakepitMetrics(None, registry):
        emit_all("p")  # capture_events checks the events against the catalogue
        s = scrape_registry(registry)
    requests = "snakepit_requests_total"
    assert value(s, requests, pool="p", command="add", outcome="ok") == 1
    assert value(s, requests, pool="p", command="add", outcome="RemoteError") == 1
    assert value(s, requests, pool="p", command="add", outcome="cancelled") == 2
    duration = "snakepit_request_duration_seconds"
    assert value(s, f"{duration}_count", pool="p", command="add") == 4
    assert value(s, f"{duration}_sum", pool="p", command="add") == pytest.approx(6.02)
    assert value(s, f"{duration}_bucket", pool="p", command="add", le="0.025") == 1
    assert value(s, "snakepit_queue_timeouts_total", pool="p") == 1
    assert value(s, "snakepit_saturated_total", pool="p") == 1
    assert value(s, "snakepit_capacity_reached_total", pool="p") == 1
    assert value(s, "snakepit_worker_starts_total", pool="p") == 1
    assert value(s, "snakepit_worker_startup_seconds_count", pool="p") == 1
    assert value(s, "snakepit_worker_exits_total", pool="p", reason="exited") == 1
    assert value(s, "snakepit_worker_restarts_total", pool="p") == 1
    recycles = "snakepit_worker_recycles_total"
    assert value(s, recycles, pool="p", reason="max_requests") == 2
    assert value(s, recycles, pool="p", reason="ttl_expired") == 1
    failures = "snakepit_worker_recycle_failures_total"
    assert value(s, failures, pool="p", reason="ttl_expired") == 1
    checks = "snakepit_health_check_failures_total"
    assert value(s, checks, pool="p", reason="timeout") == 1
    # Without a target there are no live gauges.
    assert not [k for k in s if k[0] == "snakepit_queue_depth"]


def test_only_the_targets_pools_are_counted() -> None:
    registry = CollectorRegistry()
    with SnakepitMetrics(FakeApp("mine"), registry):
        emit_all("mine")
        emit_all("theirs")
        s = scrape_registry(registry)
    assert total(s, "snakepit_requests_total", pool="mine") == 4
    assert total(s, "snakepit_requests_total", pool="theirs") == 0


def test_gauges_are_read_at_scrape_time() -> None:
    app = FakeApp("a", "b", "not-started")
    app.stats["a"] = stats(queued=3, available=1, busy=2, capacity=3, load=2)
    app.stats["b"] = stats(available=4, capacity=8, load=4)
    registry = CollectorRegistry()
    with SnakepitMetrics(app, registry):
        assert app.reads == 0  # registering does not read
        s = scrape_registry(registry)
        assert value(s, "snakepit_queue_depth", pool="a") == 3
        assert value(s, "snakepit_workers", pool="a", state="available") == 1
        assert value(s, "snakepit_workers", pool="a", state="busy") == 2
        assert value(s, "snakepit_capacity", pool="b") == 8
        assert value(s, "snakepit_load", pool="b") == 4
        assert ("snakepit_load", frozenset({("pool", "not-started")})) not in s
        app.stats["a"] = stats(queued=0, available=3, capacity=3)
        s = scrape_registry(registry)
        assert value(s, "snakepit_queue_depth", pool="a") == 0
        assert value(s, "snakepit_workers", pool="a", state="available") == 3


def test_a_read_that_races_the_event_loop_is_retried_then_left_out() -> None:
    app = FakeApp("a")
    app.stats["a"] = RuntimeError("deque mutated during iteration")
    registry = CollectorRegistry()
    with SnakepitMetrics(app, registry):
        s = scrape_registry(registry)  # the scrape itself never fails
        assert not [k for k in s if k[0] == "snakepit_queue_depth" and k[1]]
        assert app.reads > 1


def test_attach_and_detach_mount_and_unmount_everything() -> None:
    registry = CollectorRegistry()
    metrics = SnakepitMetrics(FakeApp("a"), registry)
    assert not metrics.attached
    metrics.attach()
    with pytest.raises(RuntimeError, match="already attached"):
        metrics.attach()
    with pytest.raises(ValueError, match="Duplicated"):
        SnakepitMetrics(None, registry).attach()  # the names are taken
    assert any(
        h.function == metrics._handle for h in telemetry.list_handlers(("snakepit",))
    )
    metrics.detach()
    metrics.detach()  # a no-op
    assert not metrics.attached
    assert generate_latest(registry) == b""
    assert not [
        h
        for h in telemetry.list_handlers(("snakepit",))
        if h.function == metrics._handle
    ]
    # Mounting a second set in the freed registry works.
    with SnakepitMetrics(None, registry) as other:
        assert other.attached


def test_what_it_measures_must_be_an_app_or_a_pool() -> None:
    with pytest.raises(TypeError, match="SnakepitMetrics needs"):
        SnakepitMetrics(object(), CollectorRegistry())


# --- A real application, scraped over HTTP ---


def fetch(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return parse(response.read().decode())


@pytest.mark.anyio
async def test_scraping_an_application_under_load_with_recycles() -> None:
    config = {
        "pools": [
            {"name": "web", "pool_size": 2, "worker_max_requests": 3},
            {"name": "batch", "pool_size": 1},
        ]
    }
    registry = CollectorRegistry()
    with anyio.fail_after(30), telemetry.capture_events(RECYCLED) as events:
        async with snakepit.open_snakepit(config) as sp:
            with serve_metrics(sp, port=0, registry=registry) as server:
                assert server.host == "127.0.0.1" and server.port > 0
                # Two calls: no worker reaches its 3 requests, nothing recycles.
                for i in range(2):
                    assert (
                        await sp.execute("add", {"a": i, "b": 1}, pool="web") == i + 1
                    )
                await sp.execute("add", {"a": 1, "b": 1}, pool="batch")
                first = await anyio.to_thread.run_sync(fetch, server.url)

                async def caller() -> None:
                    for i in range(5):
                        assert (
                            await sp.execute("add", {"a": i, "b": 2}, pool="web")
                            == i + 2
                        )

                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(caller)
                    await events.wait_for(RECYCLED, count=2)
                    second = await anyio.to_thread.run_sync(fetch, server.url)
                last = await anyio.to_thread.run_sync(fetch, server.url)
            # Closed: the port no longer answers, the registry is empty again.
            with pytest.raises(OSError):
                await anyio.to_thread.run_sync(fetch, server.url)
            assert generate_latest(registry) == b""

    requests = "snakepit_requests_total"
    recycles = "snakepit_worker_recycles_total"
    assert value(first, requests, pool="web", command="add", outcome="ok") == 2
    assert value(first, requests, pool="batch", command="add", outcome="ok") == 1
    assert total(first, recycles, pool="web") == 0
    assert value(second, requests, pool="web", command="add", outcome="ok") > 2
    assert value(second, recycles, pool="web", reason="max_requests") >= 2
    assert value(last, requests, pool="web", command="add", outcome="ok") == 22
    assert (
        value(
            last, "snakepit_request_duration_seconds_count", pool="web", command="add"
        )
        == 22
    )
    assert value(last, "snakepit_worker_starts_total", pool="web") >= 2  # replacements
    for samples in (first, second, last):
        assert total(samples, "snakepit_workers", pool="web") >= 2
        assert value(samples, "snakepit_capacity", pool="web") >= 2
        assert value(samples, "snakepit_queue_depth", pool="batch") == 0
    assert value(last, "snakepit_load", pool="web") == 0


def test_the_blocking_api_is_a_target() -> None:
    registry = CollectorRegistry()
    with (
        snakepit.start({"pools": [{"name": "sync", "pool_size": 1}]}) as sp,
        SnakepitMetrics(sp, registry),
    ):
        assert sp.execute("add", {"a": 1, "b": 2}) == 3
        # The gauges go through the application's portal, from this thread.
        s = scrape_registry(registry)
    assert (
        value(s, "snakepit_requests_total", pool="sync", command="add", outcome="ok")
        == 1
    )
    assert value(s, "snakepit_workers", pool="sync", state="available") == 1


@pytest.mark.anyio
async def test_a_pool_is_a_target() -> None:
    registry = CollectorRegistry()
    with anyio.fail_after(30):
        async with open_pool(name="solo", size=1) as pool:
            with SnakepitMetrics(pool, registry):
                await pool.execute("add", {"a": 1, "b": 2})
                s = scrape_registry(registry)
    assert (
        value(s, "snakepit_requests_total", pool="solo", command="add", outcome="ok")
        == 1
    )
    assert value(s, "snakepit_capacity", pool="solo") == 1


# --- snakepit run --metrics-port ---


class Lines:
    """The lines of a pipe, read by a thread, awaited with a deadline."""

    def __init__(self, stream: Iterable[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def until(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The next line that satisfies *predicate*."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no such line within {timeout} s: {self.seen}"
                ) from None
            if line is None:
                raise AssertionError(f"the output ended: {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self) -> list[str]:
        self._thread.join(timeout=30)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.seen.append(line)
        return self.seen


def stat(line: str, key: str) -> int:
    return int(line.split(f" {key}=")[1].split()[0])


def test_snakepit_run_serves_metrics(tmp_path: Path) -> None:
    config = tmp_path / "snakepit.toml"
    config.write_text(
        '[[pools]]\nname = "web"\npool_size = 2\nworker_max_requests = 5\n'
    )
    err = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakepit",
            "run",
            str(config),
            "--metrics-port",
            "0",
            "--stats-interval",
            "0.1",
            "--load",
            "add",
            "--load-args",
            '{"a": 1, "b": 2}',
            "--load-concurrency",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        url = lines.until(lambda line: line.startswith("metrics: ")).split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        lines.until(lambda line: line.startswith("serving"))
        first = fetch(url)
        requests = total(first, "snakepit_requests_total", pool="web")
        recycles = total(first, "snakepit_worker_recycles_total", pool="web")
        # The stats lines count from the same start: wait for one past both.
        lines.until(
            lambda line: (
                line.startswith("stats: web:")
                and stat(line, "requests") > requests
                and stat(line, "recycles") > recycles
            )
        )
        second = fetch(url)
        assert total(second, "snakepit_requests_total", pool="web") > requests
        assert total(second, "snakepit_worker_recycles_total", pool="web") > recycles
        assert total(second, "snakepit_workers", pool="web") >= 2
        assert "process_cpu_seconds_total" in {name for name, _ in second}  # REGISTRY
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output = "".join(lines.rest())
        proc.stdout.close()
        err.seek(0)
        stderr = err.read()
        err.close()
    assert "stopped: every worker has exited" in output, stderr


def test_snakepit_run_counts_the_first_workers_starts(tmp_path: Path) -> None:
    """The metrics are attached before the pools start: the first workers'
    starts are counted (they were missed when attached after)."""
    config = tmp_path / "snakepit.toml"
    config.write_text('[[pools]]\nname = "web"\npool_size = 2\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakepit", "run", str(config), "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        url = lines.until(lambda line: line.startswith("metrics: ")).split()[1]
        lines.until(lambda line: line.startswith("serving"))
        samples = fetch(url)
        assert total(samples, "snakepit_worker_starts_total", pool="web") == 2
        assert total(samples, "snakepit_workers", pool="web") >= 2  # the gauges too
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lines.rest()
        proc.stdout.close()


def test_snakepit_run_exits_when_the_metrics_port_is_taken(tmp_path: Path) -> None:
    config = tmp_path / "snakepit.toml"
    config.write_text('[[pools]]\nname = "web"\npool_size = 1\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakepit",
                "run",
                str(config),
                "--metrics-port",
                str(port),
                "--stats-interval",
                "0",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=ENV,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in proc.stderr


# --- docs/metrics.md ---

DOC = ROOT / "docs" / "metrics.md"


@pytest.mark.parametrize(
    "code", re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
)
def test_the_guides_python_blocks_run(code: str) -> None:
    exec(compile(code, "<docs/metrics.md>", "exec"), {"__name__": "__doc__"})


def test_the_guides_table_lists_every_metric_with_its_type_and_labels() -> None:
    table = DOC.read_text().split("<!-- metrics:start")[1].split("<!-- metrics:end")[0]
    documented = {
        name: (kind, set(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in re.findall(
            r"^\| `(snakepit_\w+)` \| (\w+) \| ([^|]+) \|", table, re.MULTILINE
        )
    }
    app = FakeApp("p")
    app.stats["p"] = stats()
    registry = CollectorRegistry()
    with SnakepitMetrics(app, registry):
        emit_all("p")
        families = list(registry.collect())
    exposed = {
        family.name + ("_total" if family.type == "counter" else ""): (
            family.type,
            {label for s in family.samples for label in s.labels} - {"le"},
        )
        for family in families
    }
    assert documented == exposed
