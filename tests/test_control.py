"""The control socket, ``snakepit stats`` and ``snakepit top``.

One real ``snakepit run`` (a subprocess) is asked with ``snakepit stats`` (text and
JSON) and watched with ``snakepit top`` through a real pseudo-terminal; the rest
(protocol, socket safety, the event ring, a frame of ``top``, the startup
progress) runs in-process. Waits are on process output and socket answers, each
with a deadline; nothing sleeps.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from snakepit import telemetry
from snakepit._control import (
    PROTOCOL_VERSION,
    ControlError,
    ControlServer,
    ControlSocketError,
    LifecycleEvents,
    open_control,
    query,
    secure_folder,
)
from snakepit._registry import derive_instance
from snakepit._top import StartupProgress, format_text, render, run_stats, run_top

ROOT = Path(__file__).resolve().parents[1]
SNAKEPIT = [sys.executable, "-m", "snakepit"]
ANSI = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][A-Z0-9]|[=>])")
#: Makes its stdin (a pty slave) the controlling terminal of a new session, then
#: execs the rest of its argv: so Ctrl-C typed on the master is a real SIGINT.
CTTY_EXEC = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


# --- Helpers ---


def env(**extra: str) -> dict[str, str]:
    """The subprocesses' environment, read now: the session's private
    ``SNAKEPIT_DATA_DIR`` is set by a fixture, after this module is imported."""
    found = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR"):
        found.pop(name, None)
    return found


def read_until(fd: int, buffer: bytearray, done: Any, deadline: float) -> bool:
    """Read *fd* into *buffer* until ``done(buffer)``, end of file, or the
    deadline (a monotonic time); return whether ``done`` held."""
    while not done(buffer):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the pty's other side is closed
            return bool(done(buffer))
        if not chunk:
            return bool(done(buffer))
        buffer += chunk
    return True


def _process_state(pid: int) -> str:
    """Why a process may not have ended: its state, signal masks and wait
    channel, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = [
                line.strip()
                for line in status
                if line.startswith(("State", "SigBlk", "SigIgn", "SigCgt", "Threads"))
            ]
        with open(f"/proc/{pid}/wchan") as wchan:
            lines.append(f"wchan: {wchan.read()}")
    except OSError as exc:
        return f"pid {pid}: {exc}"
    return f"pid {pid} still running: " + "; ".join(lines)


def snakepit_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNAKEPIT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env(),
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill *proc* if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


# --- A live application ---


def test_stats_and_top_show_a_running_application(tmp_path: Path) -> None:
    (tmp_path / "snakepit.toml").write_text('[[pools]]\nname = "ctl"\npool_size = 2\n')
    run = subprocess.Popen(
        [*SNAKEPIT, "run", "--stats-interval", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env(),
    )
    top: subprocess.Popen[bytes] | None = None
    master = -1
    try:
        assert run.stdout is not None
        out = bytearray()
        ready = read_until(
            run.stdout.fileno(),
            out,
            lambda b: b"serving" in b,
            time.monotonic() + 60,
        )
        assert ready, out.decode() + (run.stderr.read().decode() if run.poll() else "")

        # The socket: where stats finds it with the same folder and environment,
        # owner-only (0600, in a 0700 folder of ours).
        found = re.search(rb"control socket: (\S+)", out)
        assert found, out.decode()
        path = Path(found.group(1).decode())
        expected = (
            Path(os.environ["SNAKEPIT_DATA_DIR"])
            / derive_instance(["ctl"], cwd=os.path.realpath(tmp_path))
            / "control.sock"
        )
        assert path == expected
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        folder = os.lstat(path.parent)
        assert stat.S_ISDIR(folder.st_mode)
        assert stat.S_IMODE(folder.st_mode) == 0o700
        assert folder.st_uid == os.geteuid()

        # snakepit stats --json: the pool, its 2 workers, their pids (children of
        # the run).
        proc = snakepit_cmd("stats", "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        snap = json.loads(proc.stdout)
        assert snap["format"] == "snakepit-stats/1"
        assert snap["pid"] == run.pid
        [pool] = snap["pools"]
        assert pool["name"] == "ctl"
        assert pool["stats"]["workers"] == 2
        assert pool["stats"]["queued"] == 0
        pids = sorted(w["pid"] for w in pool["workers"])
        assert len(pids) == 2
        descendants = {p.pid for p in psutil.Process(run.pid).children(recursive=True)}
        assert set(pids) <= descendants
        for worker in pool["workers"]:
            assert worker["state"] == "idle"
            assert worker["rss_bytes"] > 0
            assert worker["capacity"] >= 1
        started = [e for e in snap["events"] if e["event"] == "worker.started"]
        assert sorted(e["pid"] for e in started) == pids

        # snakepit stats: a text table naming the pool and the pids.
        proc = snakepit_cmd("stats", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "pool ctl: 2/2" in proc.stdout
        for pid in pids:
            assert re.search(rf"\b{pid}\b", proc.stdout), proc.stdout
        assert "worker.started" in proc.stdout

        # snakepit top in a real terminal: the table with the pids, then Ctrl-C.
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        top = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CTTY_EXEC,
                *SNAKEPIT,
                "top",
                "--interval",
                "0.2",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=tmp_path,
            env=env(TERM="xterm-256color"),
            start_new_session=True,
        )
        os.close(slave)
        screen = bytearray()

        def shows_table(raw: bytearray) -> bool:
            text = ANSI.sub(b"", bytes(raw)).decode(errors="replace")
            return "pool ctl" in text and all(str(pid) in text for pid in pids)

        shown = read_until(master, screen, shows_table, time.monotonic() + 30)
        assert shown, ANSI.sub(b"", bytes(screen)).decode(errors="replace")
        assert top.poll() is None
        os.write(master, b"\x03")  # Ctrl-C, through the terminal
        read_until(
            master, screen, lambda _: top.poll() is not None, time.monotonic() + 30
        )
        assert top.poll() is not None, _process_state(top.pid)
        assert top.wait(timeout=30) == 0, ANSI.sub(b"", bytes(screen)).decode()
        assert b"Traceback" not in screen

        # SIGTERM: an orderly stop removes the socket; stats then says so.
        run.send_signal(signal.SIGTERM)
        rest, err = run.communicate(timeout=60)
        assert run.returncode == 0, (out + rest).decode() + err.decode()
        assert not path.exists()
        proc = snakepit_cmd("stats", cwd=tmp_path)
        assert proc.returncode == 1
        assert str(path) in proc.stderr
        assert "--socket" in proc.stderr
    finally:
        if top is not None:
            stop(top)
        if master >= 0:
            os.close(master)
        stop(run)


def test_run_refuses_a_control_socket_others_could_reach(tmp_path: Path) -> None:
    (tmp_path / "snakepit.toml").write_text('[[pools]]\nname = "ctl"\npool_size = 1\n')
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    proc = snakepit_cmd("run", "--control-socket", str(shared / "c.sock"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "0755" in proc.stderr
    assert "ready" not in proc.stdout  # refused before any worker started


# --- The clients, without an application ---


def test_stats_without_an_application_says_where_it_looked(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    missing = tmp_path / "nothing.sock"
    assert run_stats(None, str(missing), out=out, err=err) == 1
    assert str(missing) in err.getvalue()
    assert "--socket" in err.getvalue()
    assert out.getvalue() == ""


def test_top_without_rich_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("rich", "rich.console", "rich.live"):
        monkeypatch.setitem(sys.modules, name, None)
    assert run_top(None, "/nonexistent/control.sock") == 1
    assert "pip install 'snakepit[top]'" in capsys.readouterr().err


# --- The protocol and the socket's safety ---


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_server_answers_the_protocol_and_guards_its_socket(
    tmp_path: Path, anyio_backend: str
) -> None:
    folder = tmp_path / "ctl"
    path = folder / "control.sock"
    asked: list[int] = []

    async def snapshotter(count: int) -> dict[str, Any]:
        asked.append(count)
        return {"format": "snakepit-stats/1", "pools": []}

    async def ask(op: str, **params: Any) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(lambda: query(path, op, **params))

    with anyio.fail_after(20):
        # A stale socket of a dead run is replaced.
        folder.mkdir(mode=0o700)
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(str(path))
        assert path.exists()
        async with ControlServer(path, snapshotter).serve():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert (await ask("ping"))["pid"] == os.getpid()
            assert (await ask("stats"))["stats"]["pools"] == []
            assert (await ask("stats", events=3))["v"] == PROTOCOL_VERSION
            assert asked == [20, 3]
            with pytest.raises(ControlError, match="unknown op"):
                await ask("nope")
            with pytest.raises(ControlError, match="version"):
                await ask("stats", v=99)
            with pytest.raises(ControlError, match="non-negative"):
                await ask("stats", events=-1)
            # A live socket is never taken over: snakepit run --control-socket
            # refuses before any worker starts, a second server before binding.
            with pytest.raises(ControlSocketError, match="another running"):
                async with open_control({"pools": [{"name": "x"}]}, path):
                    pass
            with pytest.raises(ControlSocketError, match="another running"):
                async with ControlServer(path, snapshotter).serve():
                    pass
            assert (await ask("ping"))["ok"] is True
        assert not path.exists()  # removed at the end


@pytest.mark.anyio
async def test_server_reaches_a_socket_path_too_long_for_sun_path(
    tmp_path: Path,
) -> None:
    folder = tmp_path / ("x" * 100)
    path = folder / "control.sock"
    assert len(os.fsencode(path)) > 108

    async def snapshotter(count: int) -> dict[str, Any]:
        return {"events": count}

    with anyio.fail_after(20):
        async with ControlServer(path, snapshotter).serve():
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            answer = await anyio.to_thread.run_sync(lambda: query(path, "stats"))
            assert answer["stats"] == {"events": 20}
        assert not path.exists()


def test_secure_folder_refuses_what_others_could_enter(tmp_path: Path) -> None:
    secure_folder(tmp_path / "new" / "ctl")
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "ctl").st_mode) == 0o700
    opened = tmp_path / "open"
    opened.mkdir()
    opened.chmod(0o750)
    with pytest.raises(ControlSocketError, match="0750"):
        secure_folder(opened)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "new" / "ctl")
    with pytest.raises(ControlSocketError, match="symlink"):
        secure_folder(link)
    (tmp_path / "file").write_text("")
    with pytest.raises(ControlSocketError, match="not a directory"):
        secure_folder(tmp_path / "file")


@pytest.mark.anyio
async def test_no_control_socket_serves_nothing() -> None:
    with anyio.fail_after(10):
        async with open_control(
            {"pools": [{"name": "off", "pool_size": 1}]}, enabled=False
        ) as session:
            assert session.path is None
            assert session.config.get_pool_configs()[0].name == "off"


# --- The event ring, a frame of top, the startup progress ---


def started(worker_id: str, pid: int) -> None:
    telemetry.execute(
        ("snakepit", "worker", "started"),
        {"count": 1, "startup_seconds": 0.25},
        {"worker_id": worker_id, "pool": "p", "pid": pid},
    )


def test_the_ring_keeps_the_latest_lifecycle_events() -> None:
    with LifecycleEvents(size=3) as events:
        for n in range(5):
            started(f"p-{n}", 100 + n)
        telemetry.execute(
            ("snakepit", "worker", "exited"),
            {"count": 1, "uptime_seconds": 3.0},
            {
                "worker_id": "p-4",
                "pool": "p",
                "pid": 104,
                "reason": "exited",
                "exit_code": None,
                "signal": 9,
                "in_flight": 1,
            },
        )
    started("p-9", 109)  # detached: not recorded
    latest = events.recent(10)
    assert [e["event"] for e in latest] == [
        "worker.started",
        "worker.started",
        "worker.exited",
    ]
    assert [e["pid"] for e in latest] == [103, 104, 104]
    assert latest[0]["detail"] == "pid 103 ready in 0.25 s"
    assert latest[2]["detail"] == "pid 104: exited, signal 9, 1 call(s) failed"
    assert events.recent(1) == latest[-1:]
    assert events.recent(0) == []


SNAPSHOT = {
    "format": "snakepit-stats/1",
    "pid": 4242,
    "version": "0.1.0",
    "socket": "/run/x/control.sock",
    "started_at": 1_700_000_000.0,
    "uptime_seconds": 3723.5,
    "time": 1_700_003_723.5,
    "pools": [
        {
            "name": "ml",
            "adapter": "app.adapters:Model",
            "profile": "process",
            "pool_size": 2,
            "closing": False,
            "stats": {"workers": 2, "queued": 7, "load": 2, "capacity": 2},
            "recycles_by_reason": {},
            "workers": [
                {
                    "worker_id": "ml-1",
                    "pid": 31337,
                    "state": "busy",
                    "rss_bytes": 52_428_800,
                    "requests": 12,
                    "uptime_seconds": 61.0,
                    "capacity": 1,
                    "load": 1,
                },
                {
                    "worker_id": "ml-2",
                    "pid": 31338,
                    "state": "idle",
                    "rss_bytes": 0,
                    "requests": 0,
                    "uptime_seconds": 2.0,
                    "capacity": 1,
                    "load": 0,
                },
            ],
        }
    ],
    "events": [
        {
            "time": 1_700_003_700.0,
            "event": "worker.restarted",
            "pool": "ml",
            "worker_id": "ml-2",
            "pid": 31338,
            "detail": "replaced ml-0, pid 31338",
        }
    ],
}


def test_one_frame_of_top_renders_the_snapshot() -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    console = Console(record=True, width=160, file=io.StringIO())
    console.print(render(SNAPSHOT))
    text = console.export_text()
    assert "pool ml: 2/2 process workers of app.adapters:Model" in text
    assert "queue 7 · load 2/2 · requests 0" in text
    for expected in ("31337", "31338", "busy", "idle", "50.0 MiB", "0:01:01"):
        assert expected in text
    assert "worker.restarted" in text
    assert "replaced ml-0" in text
    assert "1:02:03" in text  # the application's uptime


def test_stats_text_has_the_same_tables() -> None:
    text = format_text(SNAPSHOT)
    assert "pool ml: 2/2" in text
    assert re.search(r"ml-1\s+31337\s+busy\s+50\.0 MiB\s+12\s+0:01:01\s+1/1", text)
    assert "worker.restarted" in text


def test_startup_progress_without_rich_prints_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("rich", "rich.console", "rich.progress"):
        monkeypatch.setitem(sys.modules, name, None)
    out = io.StringIO()
    progress = StartupProgress(4, out)
    progress.start()
    for n in range(4):
        started(f"p-{n}", 200 + n)
    progress.stop()
    started("p-9", 209)  # detached
    assert out.getvalue().splitlines() == [f"starting workers: {n}/4" for n in range(5)]
