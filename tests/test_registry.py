"""Orphan cleanup: the run registry, the cleanup itself, and ``snakepit cleanup``.

Real processes throughout. Every test keeps its run records in a temporary data
directory (``SNAKEPIT_DATA_DIR``), and kills whatever it started in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import anyio
import attrs
import psutil
import pytest

from snakepit._app import open_snakepit
from snakepit._registry import (
    DATA_DIR_ENV,
    INSTANCE_ENV,
    RUN_ID_ENV,
    OwnerRecord,
    RunRecord,
    WorkerRecord,
    _here,
    cleanup,
    cleanup_async,
    default_data_dir,
    derive_instance,
    process_stamp,
    read_record,
    resolve_data_dir,
    resolve_instance,
    valid_instance,
    write_record,
)
from snakepit.config import Config, PoolConfig
from snakepit.exceptions import ConfigError
from snakepit.pool import open_pool
from snakepit.telemetry import capture_events

ROOT = Path(__file__).resolve().parents[1]
ORPHANS = ("snakepit", "cleanup", "orphans_killed")
RESTARTED = ("snakepit", "worker", "restarted")


# --- Helpers ---


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory for this test, for every pool it starts."""
    folder = tmp_path / "state"
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    monkeypatch.delenv(INSTANCE_ENV, raising=False)
    return folder


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def dead_owner() -> OwnerRecord:
    """The owner record of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        stamp = process_stamp(proc.pid)
        assert stamp is not None
    finally:
        proc.kill()
        proc.wait()
    here = _here()
    return OwnerRecord(
        pid=proc.pid,
        stamp=stamp,
        create_time=None,
        host=here.host,
        boot_id=here.boot_id,
        pid_ns=here.pid_ns,
    )


def write_run(
    data_dir: Path,
    instance: str,
    *,
    run_id: str | None = None,
    workers: Iterable[WorkerRecord] = (),
    owner: OwnerRecord | None = None,
) -> str:
    """Write a run record (by default of a dead owner); return its run id."""
    run_id = run_id or uuid.uuid4().hex
    folder = data_dir / instance
    folder.mkdir(parents=True, exist_ok=True)
    record = RunRecord(
        run_id=run_id,
        instance=instance,
        pools=("default",),
        owner=owner or dead_owner(),
        started_at=time.time(),
        updated_at=time.time(),
        workers=tuple(workers),
    )
    write_record(folder / f"{run_id}.json", record)
    return run_id


def worker_record(pid: int, worker_id: str = "default-1") -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        pool="default",
        pid=pid,
        pgid=os.getpgid(pid),
        stamp=process_stamp(pid),
    )


def fake_worker(
    run_id: str, *, code: str = "import time; time.sleep(60)", worker_id: str = "w-1"
) -> subprocess.Popen[bytes]:
    """A process whose command line reads like a worker of *run_id* (a survivor
    whose parent-death handling did not fire), leading its own session."""
    return subprocess.Popen(
        [
            *(sys.executable, "-c", code, "snakepit.worker"),
            *("--worker-id", worker_id, "--run-id", run_id),
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def marked(run_id: str) -> list[psutil.Process]:
    """Live processes carrying *run_id* on their command line or environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = proc.cmdline()
            env = proc.environ() if cmdline else {}
        except psutil.Error:
            continue
        if run_id in cmdline or env.get(RUN_ID_ENV) == run_id:
            found.append(proc)
    return found


def reap(*procs: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> None:
    for proc in procs:
        if proc is None:
            continue
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def wait_for_children(pid: int, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while True:
        children = psutil.Process(pid).children()
        if len(children) >= count:
            return children
        assert time.monotonic() < deadline, f"{pid} did not start {count} children"
        time.sleep(0.01)


def name_of(proc: psutil.Process) -> str | None:
    try:
        return proc.name()
    except psutil.Error:
        return None


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakepit", "cleanup", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=child_env(),
    )


# --- Instance, data directory, configuration ---


def test_the_instance_token_is_stable_and_scoped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INSTANCE_ENV, raising=False)
    token = derive_instance(["b", "a"], cwd="/srv/my app")
    assert token == derive_instance(["a", "b", "a"], cwd="/srv/my app")
    assert token.startswith("my_app-")
    assert valid_instance(token)
    assert derive_instance(["a"], cwd="/srv/my app") != token
    assert derive_instance(["a", "b"], cwd="/srv/other") != token
    monkeypatch.chdir(tmp_path)
    assert resolve_instance(None, ["x"]) == derive_instance(["x"], cwd=os.getcwd())
    monkeypatch.setenv(INSTANCE_ENV, "from-env")
    assert resolve_instance(None, ["x"]) == "from-env"
    assert resolve_instance("explicit", ["x"]) == "explicit"
    monkeypatch.setenv(INSTANCE_ENV, "../../etc")
    unsafe = resolve_instance(None, ["x"])
    assert valid_instance(unsafe)
    assert "/" not in unsafe
    assert unsafe == resolve_instance(None, ["y"])  # the variable wins over names


def test_the_data_dir_is_config_then_env_then_xdg_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "snakepit"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "state" / "snakepit"
    assert resolve_data_dir(None) == default_data_dir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"


def test_instance_and_data_dir_are_pool_keys(tmp_path: Path) -> None:
    pool = PoolConfig(instance="my-app.1", data_dir=tmp_path)
    assert (pool.instance, pool.data_dir) == ("my-app.1", str(tmp_path))
    assert (PoolConfig().instance, PoolConfig().data_dir) == (None, None)
    with pytest.raises(ConfigError, match="instance"):
        PoolConfig(instance="a/b")
    with pytest.raises(ConfigError, match="data_dir"):
        PoolConfig(data_dir="")
    config = Config(instance="shared", pools=[{"name": "a"}, {"name": "b"}])
    assert [p.instance for p in config.pools] == ["shared", "shared"]


# --- The record ---


def test_run_files_are_replaced_atomically(tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex
    path = tmp_path / f"{run_id}.json"
    owner = dead_owner()

    def record(n: int) -> RunRecord:
        workers = [
            WorkerRecord(
                worker_id=f"w-{i}", pool="p", pid=i + 1, pgid=i + 1, stamp=None
            )
            for i in range(n)
        ]
        return RunRecord(
            run_id=run_id,
            instance="atomic",
            pools=("p",),
            owner=owner,
            started_at=0.0,
            updated_at=time.time(),
            workers=tuple(workers),
        )

    write_record(path, record(0))
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(len(read_record(path).workers))
            except (OSError, ValueError) as exc:
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 51):
            write_record(path, record(n))
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert seen == sorted(seen)  # only whole files, in order
    assert read_record(path) == attrs.evolve(
        record(50), updated_at=read_record(path).updated_at
    )
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    # A crash between writing the temp file and the rename leaves the old file whole.
    (tmp_path / f".{run_id}.tmp").write_text('{"format": "snakepit-run/1", "run_')
    assert len(read_record(path).workers) == 50
    # A failed write raises and leaves nothing behind.
    with pytest.raises(OSError):
        write_record(tmp_path / "missing" / f"{run_id}.json", record(1))


# --- Cleanup ---


def test_a_reused_pid_is_never_killed(data_dir: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])  # no marker, in our own group
    unrelated = fake_worker(uuid.uuid4().hex)  # a worker of a run nobody recorded
    try:
        run_id = write_run(
            data_dir,
            "reuse",
            workers=[
                # The recorded pid and start time match, but it is no worker of the run.
                worker_record(stranger.pid),
                # The pid is recorded with another start time: it was reused.
                attrs.evolve(worker_record(stranger.pid, "default-2"), stamp="ticks:1"),
                attrs.evolve(
                    worker_record(unrelated.pid, "default-3"), stamp="ticks:1"
                ),
            ],
        )
        report = cleanup(data_dir, ["reuse"], grace=0.5)
        assert report.dead_runs == [run_id]
        assert report.killed == []
        assert stranger.poll() is None
        assert unrelated.poll() is None
        assert not (data_dir / "reuse" / f"{run_id}.json").exists()
    finally:
        reap(stranger, unrelated)


@pytest.mark.anyio
async def test_cleanup_kills_a_dead_runs_worker_its_group_and_its_descendants(
    data_dir: Path,
) -> None:
    run_id = uuid.uuid4().hex
    # A worker that outlived its parent, with a grandchild in its process group
    # that dropped the environment...
    worker = fake_worker(
        run_id,
        code=(
            "import subprocess, time; subprocess.Popen(['sleep', '60'], env={}); "
            "time.sleep(60)"
        ),
    )
    # ... and a descendant that left the group but kept the environment.
    descendant = subprocess.Popen(
        ["sleep", "60"], start_new_session=True, env={**os.environ, RUN_ID_ENV: run_id}
    )
    try:
        (grandchild,) = wait_for_children(worker.pid, 1)
        write_run(data_dir, "kill", run_id=run_id, workers=[worker_record(worker.pid)])
        with capture_events() as events:
            report = await cleanup_async(data_dir, ["kill"], grace=2.0)
        killed = {k.pid: k for k in report.killed}
        assert set(killed) == {worker.pid, descendant.pid, grandchild.pid}
        assert (killed[worker.pid].reason, killed[worker.pid].worker_id) == (
            "worker",
            "w-1",
        )
        assert killed[descendant.pid].reason == "descendant"
        assert killed[grandchild.pid].reason == "process_group"
        assert {k.signal for k in report.killed} == {"SIGTERM"}
        assert worker.wait(timeout=5) == -signal.SIGTERM
        assert descendant.wait(timeout=5) == -signal.SIGTERM
        assert gone(grandchild)
        assert report.survivors == []
        assert list((data_dir / "kill").glob("*.json")) == []
        (event,) = events.named(ORPHANS)
        assert event.measurements == {"count": 3, "runs": 1}
        assert event.metadata["run_ids"] == [run_id]
        assert sorted(event.metadata["pids"]) == sorted(killed)  # type: ignore[arg-type]
    finally:
        reap(worker, descendant)


def test_records_of_other_boots_hosts_instances_and_garbage(data_dir: Path) -> None:
    owner = dead_owner()
    stale = write_run(data_dir, "misc", owner=attrs.evolve(owner, boot_id="earlier"))
    foreign = write_run(data_dir, "misc", owner=attrs.evolve(owner, host="elsewhere"))
    other_ns = write_run(data_dir, "misc", owner=attrs.evolve(owner, pid_ns="pid:[1]"))
    dead = write_run(data_dir, "misc", owner=owner)
    # This very process, before an exec: same pid and start, but no such run open.
    me = attrs.evolve(owner, pid=os.getpid(), stamp=process_stamp(os.getpid()))
    before_exec = write_run(data_dir, "misc", owner=me)
    elsewhere = write_run(data_dir, "other", owner=owner)  # another instance
    folder = data_dir / "misc"
    (folder / f".{dead}.tmp").write_text("{")  # a torn temp file of the dead run
    garbage = folder / f"{uuid.uuid4().hex}.json"
    garbage.write_text("{not json")
    old_garbage = folder / f"{uuid.uuid4().hex}.json"
    old_garbage.write_text("{not json")
    os.utime(old_garbage, (1, 1))  # written before this boot
    report = cleanup(data_dir, ["misc"])
    assert report.dead_runs == sorted([dead, before_exec])
    assert sorted(report.stale_runs) == sorted([stale, old_garbage.stem])
    assert sorted(report.foreign_runs) == sorted([foreign, other_ns])
    assert report.unreadable == [str(garbage)]
    assert report.killed == []
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(
        [".lock", f"{foreign}.json", f"{other_ns}.json", garbage.name]
    )
    assert (data_dir / "other" / f"{elsewhere}.json").exists()


def test_the_cleanup_command_lists_then_kills(data_dir: Path, tmp_path: Path) -> None:
    # No --instance: the instance of the configuration found in the working dir
    # (none here, so the one 'default' pool).
    here = tmp_path / "app"
    here.mkdir()
    instance = derive_instance(["default"], cwd=os.path.realpath(here))
    run_id = uuid.uuid4().hex
    worker = fake_worker(run_id)
    try:
        write_run(
            data_dir, instance, run_id=run_id, workers=[worker_record(worker.pid)]
        )
        dry = run_cli("--dry-run", "--json", cwd=here)
        assert dry.returncode == 0, dry.stderr
        (report,) = json.loads(dry.stdout)["reports"]
        assert report["instances"] == [instance]
        assert [(k["pid"], k["run_id"], k["worker_id"]) for k in report["killed"]] == [
            (worker.pid, run_id, "w-1")
        ]
        assert worker.poll() is None
        assert (data_dir / instance / f"{run_id}.json").exists()

        real = run_cli(cwd=here)
        assert real.returncode == 0, real.stderr
        assert f"killed pid {worker.pid}: run {run_id}, worker w-1" in real.stdout
        assert "1 killed in 1 dead run" in real.stdout
        assert worker.wait(timeout=5) == -signal.SIGTERM
        assert not (data_dir / instance / f"{run_id}.json").exists()

        again = run_cli("--all-instances", cwd=here)
        assert again.returncode == 0
        assert "0 killed in 0 dead runs" in again.stdout
    finally:
        reap(worker)


def test_the_cleanup_command_cleans_the_configured_instance(
    data_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "snakepit.toml").write_text('instance = "tomly"\npool_size = 1\n')
    listed = run_cli("--dry-run", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["reports"][0]["instances"] == ["tomly"]
    (tmp_path / "snakepit.toml").write_text("pool_sise = 1\n")
    broken = run_cli(cwd=tmp_path)
    assert broken.returncode == 2
    assert "pass --instance NAME or --all-instances" in broken.stderr
    assert run_cli("--instance", "tomly", cwd=tmp_path).returncode == 0
    assert run_cli("--instance", "../etc", cwd=tmp_path).returncode == 2


# --- Pools and applications ---


@pytest.mark.anyio
async def test_a_pool_records_its_workers_and_removes_the_record(
    data_dir: Path,
) -> None:
    async with open_pool(
        adapter="tests.workers.envinfo:EnvAdapter", size=2, instance="rec"
    ) as pool:
        (path,) = (data_dir / "rec").glob("*.json")
        record = read_record(path)
        assert record.owner.pid == os.getpid()
        assert record.owner.stamp == process_stamp(os.getpid())
        pids = {pool.worker(w).pid for w in pool.list_workers()}
        assert {w.pid for w in record.workers} == pids
        for worker in record.workers:
            assert worker.pgid == worker.pid
            assert worker.stamp == process_stamp(worker.pid)
        seen = await pool.execute("env", {"names": [RUN_ID_ENV, INSTANCE_ENV]})
        assert seen == {RUN_ID_ENV: record.run_id, INSTANCE_ENV: "rec"}
        argv = (await pool.execute("interpreter"))["argv"]
        assert argv[argv.index("--run-id") + 1] == record.run_id
        # A replaced worker: the record follows.
        victim = next(iter(pids))
        with capture_events() as events:
            os.kill(victim, signal.SIGKILL)
            with anyio.fail_after(30):
                await events.wait_for(RESTARTED)
        assert pool._registry is not None
        await pool._registry.flush()  # else written within WRITE_SPACING
        now = {w.pid for w in read_record(path).workers}
        assert victim not in now
        assert now == {pool.worker(w).pid for w in pool.list_workers()}
    assert not path.exists()


@pytest.mark.anyio
async def test_an_unusable_data_dir_does_not_stop_a_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(DATA_DIR_ENV, str(blocker / "state"))
    async with open_pool(size=1) as pool:
        assert (await pool.execute("add", {"a": 1, "b": 2})) == 3
    assert "cannot keep the run record" in caplog.text


@pytest.mark.anyio
async def test_an_application_is_one_instance_across_its_pools(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    instance = derive_instance(["a", "b"], cwd=os.getcwd())
    config = {"pools": [{"name": "a", "pool_size": 1}, {"name": "b", "pool_size": 1}]}
    async with open_snakepit(config):
        records = [read_record(p) for p in (data_dir / instance).glob("*.json")]
        assert sorted(r.pools for r in records) == [("a",), ("b",)]
        assert {r.instance for r in records} == {instance}
    assert list((data_dir / instance).glob("*.json")) == []


LIVE_POOL = """
import sys, anyio
from snakepit.pool import open_pool

async def main():
    async with open_pool(size=2, instance="alpha") as pool:
        print(" ".join(str(pool.worker(w).pid) for w in pool.list_workers()), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)

anyio.run(main)
"""


@pytest.mark.anyio
async def test_live_runs_are_never_touched(data_dir: Path) -> None:
    """Another live instance, and a live owner of the same instance: their
    workers survive every cleanup; only the dead run's survivor is killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", LIVE_POOL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )
    survivor = None
    try:
        assert child.stdout is not None
        with anyio.fail_after(60):
            line = await anyio.to_thread.run_sync(child.stdout.readline)
        live = {int(pid): process_stamp(int(pid)) for pid in line.split()}
        assert len(live) == 2
        (alpha_path,) = (data_dir / "alpha").glob("*.json")
        dead_id = uuid.uuid4().hex
        survivor = fake_worker(dead_id)
        write_run(
            data_dir, "alpha", run_id=dead_id, workers=[worker_record(survivor.pid)]
        )

        # Another instance starts: nothing of alpha is looked at.
        async with open_pool(size=1, instance="beta"):
            pass
        assert survivor.poll() is None

        # The same instance starts: the dead run's survivor goes, the live run stays.
        with capture_events() as events:
            async with open_pool(size=1, instance="alpha"):
                pass
        assert survivor.wait(timeout=5) == -signal.SIGTERM
        (event,) = events.named(ORPHANS)
        assert event.metadata["run_ids"] == [dead_id]

        # Every instance, on demand: still nothing of the live run.
        report = cleanup(data_dir, None)
        assert alpha_path.stem in report.live_runs
        assert report.killed == []
        assert {pid: process_stamp(pid) for pid in live} == live
        assert alpha_path.exists()

        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait(timeout=30) == 0
        assert not alpha_path.exists()  # an orderly end removes the record
    finally:
        reap(child, survivor)


CRASH_MID_STARTUP = """
import os, signal, sys, anyio, psutil
from snakepit import telemetry
from snakepit.config import PoolConfig
from snakepit.pool import open_pool

started = 0

def on_started(event, measurements, metadata, config):
    global started
    started += 1
    if started == 4:
        if sys.argv[1] == "without-reaper":  # as if it had died too
            for child in psutil.Process().children():
                if "snakepit._reaper" in child.cmdline():
                    child.kill()
                    child.wait()
        os.kill(os.getpid(), signal.SIGKILL)

telemetry.attach("kill-at-4", ("snakepit", "worker", "started"), on_started)

async def main():
    config = PoolConfig(
        pool_size=16,
        startup_batch_size=4,
        adapter_module="tests.workers.orphaner:OrphanerAdapter",
    )
    async with open_pool(config):
        raise SystemExit("all 16 started: the parent was not killed mid-startup")

anyio.run(main)
"""


def crash_mid_startup(variant: str) -> subprocess.CompletedProcess[str]:
    """Run CRASH_MID_STARTUP; return once its output pipes closed (the reaper
    holds stderr until it is done)."""
    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH_MID_STARTUP), variant],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=child_env(),
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    return crashed


#: The crashed runs' instance, one per test process: under xdist, the same test
#: on another backend may crash a run at the same moment.
CRASHY = f"crashy-{os.getpid()}"


@pytest.mark.anyio
async def test_a_sigkill_mid_startup_leaves_nothing_behind(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent is SIGKILLed after 4 of 16 workers are ready. Its workers die
    with it (parent-death signal); the grandchildren each started in ``setup()``
    are ended by the run's reaper, which then removes the record."""
    monkeypatch.setenv(INSTANCE_ENV, CRASHY)
    crashed = await anyio.to_thread.run_sync(crash_mid_startup, "with-reaper")
    assert "ended" in crashed.stderr and "leftover process(es)" in crashed.stderr
    assert list((data_dir / CRASHY).glob("*.json")) == []
    assert [p for p in marked_by_instance(CRASHY) if not gone(p)] == []


def marked_by_instance(instance: str) -> list[psutil.Process]:
    """Live processes whose environment names *instance*."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(INSTANCE_ENV) == instance:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.anyio
async def test_a_start_after_a_sigkill_mid_startup_removes_every_survivor(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the reaper died with the parent: the grandchildren live on,
    and the next start of the same instance must end them."""
    monkeypatch.setenv(INSTANCE_ENV, CRASHY)
    await anyio.to_thread.run_sync(crash_mid_startup, "without-reaper")
    (path,) = (data_dir / CRASHY).glob("*.json")
    old = read_record(path)
    try:
        # Workers are written in the background, at most once per
        # WRITE_SPACING: the record may name fewer than the 4 that started, or
        # none. The rest are found by the run id on their command line and in
        # their environment, which the cleanup must use.
        assert len(old.workers) < 16  # it died mid-startup
        # The workers die of their parent-death signal (some may still be
        # dying); their grandchildren cannot die on their own.
        survivors = [p for p in marked(old.run_id) if name_of(p) == "sleep"]
        assert len(survivors) >= 4  # one grandchild per ready worker, at least
        with capture_events() as events:
            async with open_pool(size=1) as pool:
                assert marked(old.run_id) == []
                assert len(pool.list_workers()) == 1
        assert all(gone(p) for p in survivors)
        assert not path.exists()
        (event,) = events.named(ORPHANS)
        assert event.metadata["run_ids"] == [old.run_id]
        assert {p.pid for p in survivors} <= set(event.metadata["pids"])  # type: ignore[arg-type]
    finally:
        for proc in marked(old.run_id):
            proc.kill()


# --- The reaper ---

OWNER_SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    reaper = subprocess.Popen(
        [sys.executable, "-m", "snakepit._reaper", "--owner", str(os.getpid()),
         "--data-dir", sys.argv[2], "--instance", "reap"],
        stdin=subprocess.PIPE, start_new_session=True,
    )
    print(reaper.pid, flush=True)
    if sys.argv[1] == "orderly":
        reaper.stdin.write(b"bye\\n")
        reaper.stdin.close()
        sys.exit(reaper.wait())
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("end", ["orderly", "sigkill"])
def test_the_reaper_cleans_up_at_once_only_when_its_owner_dies(
    data_dir: Path, end: str
) -> None:
    run_id = uuid.uuid4().hex
    worker = fake_worker(run_id)
    try:
        write_run(data_dir, "reap", run_id=run_id, workers=[worker_record(worker.pid)])
        owner = subprocess.run(
            [sys.executable, "-c", OWNER_SCRIPT, end, str(data_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(),
        )
        reaper = int(owner.stdout)
        if end == "orderly":
            assert owner.returncode == 0, owner.stderr
            assert not psutil.pid_exists(reaper) or gone(psutil.Process(reaper))
            assert worker.poll() is None  # an orderly end kills nothing
            assert list((data_dir / "reap").glob("*.json")) != []
        else:
            assert owner.returncode == -signal.SIGKILL
            # the reaper (now init's child) ended the dead run's worker by itself;
            # run() returned once the reaper closed the stderr it inherited
            assert worker.wait(timeout=10) == -signal.SIGTERM
            assert "ended 1 leftover process(es)" in owner.stderr
            assert list((data_dir / "reap").glob("*.json")) == []
    finally:
        reap(worker)


@pytest.mark.anyio
async def test_a_pool_has_one_reaper_that_leaves_with_it(data_dir: Path) -> None:
    with anyio.fail_after(30):
        async with open_pool(size=1, instance="reaped"):
            reapers = [
                p
                for p in psutil.Process().children()
                if "snakepit._reaper" in p.cmdline()
            ]
            assert len(reapers) == 1
            assert RUN_ID_ENV not in reapers[0].environ()  # not a target itself
        assert gone(reapers[0])
