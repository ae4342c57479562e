"""Orphan cleanup: an on-disk registry of runs, and the killing of their leftovers.

A **run** is one pool's lifetime in one process. It has a random ``run_id``
(uuid4 hex) and belongs to an **instance** (what "the same application" means; see
:func:`resolve_instance`). Every worker carries its run id on its command line
(``--run-id``) and in its environment (``SNAKEPIT_RUN_ID``, inherited by whatever
it spawns). The run's record, ``<data_dir>/<instance>/<run_id>.json``, names the
owner process (pid and start time) and the workers (pid, process group, start
time, command-line fingerprint); it is written before the first worker is spawned,
rewritten atomically (temp file, fsync, ``os.replace``) as workers start, and
removed at an orderly shutdown.

When a pool starts, and when ``snakepit cleanup`` runs, the records of the same
instance are read. A run whose owner is gone (no such pid, a zombie, or a pid now
held by a process that started at another time) is **dead**: every live process
marked with its run id (command line ``snakepit.worker ... --run-id RUN`` or
environment ``SNAKEPIT_RUN_ID=RUN``) is sent SIGTERM, given a grace period, then
SIGKILL; a worker that still leads its process group takes the whole group with
it. Nothing is signalled for its pid alone: a process must carry a dead run's
marker (a uuid4), so a reused pid is never hit, and psutil refuses to signal a
pid reused between the scan and the signal. Runs whose owner is alive, runs of
other instances, and records written on another host, PID namespace or boot are
never acted on (a record from an earlier boot is merely deleted: nothing of it
can still run).

This module is the parent side; the worker's own parent-death handling (see
``snakepit.worker``) covers the common case, and this catches what escapes it:
grandchildren left in a dead worker's place, and workers a crash caught mid-spawn.
Each run's reaper (:mod:`snakepit._reaper`) runs :func:`cleanup` the moment the
run's owner dies; the next start of the instance runs it again, as a backstop.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import psutil
from anyio.abc import Process

from snakepit import telemetry
from snakepit._reaper import BYE

__all__ = (
    "DATA_DIR_ENV",
    "INSTANCE_ENV",
    "RUN_ID_ENV",
    "CleanupReport",
    "KilledProcess",
    "RunRecord",
    "RunRegistry",
    "WorkerRecord",
    "OwnerRecord",
    "cleanup",
    "cleanup_async",
    "default_data_dir",
    "derive_instance",
    "open_run",
    "process_stamp",
    "read_record",
    "resolve_data_dir",
    "resolve_instance",
    "valid_instance",
    "write_record",
)

logger = logging.getLogger("snakepit.registry")

#: Overrides the data directory (below a pool's ``data_dir`` key).
DATA_DIR_ENV = "SNAKEPIT_DATA_DIR"
#: Overrides the instance token (below a pool's ``instance`` key); workers get it too.
INSTANCE_ENV = "SNAKEPIT_INSTANCE"
#: The run id in every worker's environment (and so in its descendants').
RUN_ID_ENV = "SNAKEPIT_RUN_ID"
#: The module every worker runs (``python -m snakepit.worker``).
WORKER_MODULE = "snakepit.worker"

#: The record format; a file of another format is left alone (reported unreadable).
FORMAT = "snakepit-run/1"
#: Seconds between SIGTERM and SIGKILL for an orphan.
KILL_GRACE = 2.0
#: Seconds to wait for an orphan to vanish after SIGKILL.
_KILL_WAIT = 2.0
#: Seconds to wait for another cleanup of the same instance to finish.
_LOCK_TIMEOUT = 10.0
#: The reaper's niceness: it runs when a CPU is free (see ``_start_reaper``).
REAPER_NICENESS = 10
#: Least seconds between two background writes of a run file while workers keep
#: starting (each write is a temporary file, an fsync and a rename).
WRITE_SPACING = 0.05
_POLL = 0.02

_E_ORPHANS_KILLED = ("snakepit", "cleanup", "orphans_killed")
#: The runs open in this process. A record owned by this very process (same pid
#: and start) whose run is not here was left by an earlier program this process
#: ran before an ``exec``: it is dead.
_OPEN_HERE: set[str] = set()
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")


# --- Where, and which instance ---


def default_data_dir() -> Path:
    """``$XDG_STATE_HOME/snakepit``, else ``~/.local/state/snakepit`` (else a
    per-user folder in the temporary directory when there is no home)."""
    state = os.environ.get("XDG_STATE_HOME", "")
    if state and os.path.isabs(state):
        return Path(state) / "snakepit"
    home = os.path.expanduser("~")
    if home and home != "~" and os.path.isabs(home):
        return Path(home) / ".local" / "state" / "snakepit"
    import tempfile

    return Path(tempfile.gettempdir()) / f"snakepit-{os.getuid()}"


def resolve_data_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: *configured* (a pool's ``data_dir``), else the
    ``SNAKEPIT_DATA_DIR`` environment variable, else :func:`default_data_dir`."""
    if configured is not None and os.fspath(configured):
        return Path(configured).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return default_data_dir()


def valid_instance(name: str) -> bool:
    """Whether *name* can be an instance token: 1 to 100 of ``[A-Za-z0-9._-]``,
    starting with a letter or digit (it names a folder)."""
    return _INSTANCE.fullmatch(name) is not None


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # deleted under us
        return "?"


def derive_instance(pool_names: Iterable[str], cwd: str | None = None) -> str:
    """The default instance token: the working directory and the set of pool
    names, hashed; readable as ``<folder name>-<16 hex digits>``.

    So the same application started again in the same folder is the same
    instance, and another application (another folder, or other pools) is not.
    """
    where = _cwd() if cwd is None else cwd
    digest = hashlib.sha256(
        "\0".join([where, *sorted(set(pool_names))]).encode("utf-8", "surrogatepass")
    ).hexdigest()[:16]
    slug = _SLUG_BAD.sub("_", os.path.basename(where.rstrip("/")) or "root")
    slug = slug.lstrip("._-")[:40] or "root"
    return f"{slug}-{digest}"


def _token(value: str) -> str:
    """*value* as an instance token: kept if valid, else made safe and hashed."""
    if valid_instance(value):
        return value
    slug = _SLUG_BAD.sub("_", value).lstrip("._-")[:40] or "instance"
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug}-{digest}"


def resolve_instance(explicit: str | None, pool_names: Iterable[str]) -> str:
    """The instance token of a pool: *explicit* (its ``instance`` key), else the
    ``SNAKEPIT_INSTANCE`` environment variable (made folder-safe), else
    :func:`derive_instance` of the working directory and *pool_names* (the
    application's pools, or the pool alone)."""
    if explicit:
        return _token(explicit)
    from_env = os.environ.get(INSTANCE_ENV, "")
    if from_env:
        return _token(from_env)
    return derive_instance(pool_names)


# --- This host, and processes' identities ---


@attrs.frozen
class _Here:
    host: str
    boot_id: str
    pid_ns: str


def _here() -> _Here:
    boot_id = ""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot_id = f.read().strip()
    except OSError:
        try:
            boot_id = f"boot:{int(psutil.boot_time())}"
        except Exception:
            boot_id = ""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return _Here(socket.gethostname(), boot_id, pid_ns)


try:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _CLOCK_TICKS = 100


def _boot_time() -> float:
    try:
        return float(psutil.boot_time())
    except Exception:
        return 0.0


#: Indexes in :func:`_stat_fields`: the process group, and the start time in
#: clock ticks since boot (fields 5 and 22 of proc(5), counted from 1).
_PGRP, _START_TICKS = 2, 19


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux).

    Raises:
        OSError: no such process (or no /proc).
        ValueError: the file is not what proc(5) says.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()


def process_stamp(pid: int) -> str | None:
    """When process *pid* started, as an opaque string; ``None`` if it is gone.

    On Linux, the clock ticks since boot from ``/proc/<pid>/stat`` (immune to
    wall-clock changes); elsewhere psutil's create time. Equal stamps (with the
    same boot) mean the same process.
    """
    if sys.platform.startswith("linux"):
        try:
            return f"ticks:{int(_stat_fields(pid)[_START_TICKS])}"
        except (OSError, ValueError, IndexError):
            return None
    try:
        return f"ct:{psutil.Process(pid).create_time():.2f}"
    except (psutil.Error, OSError):
        return None


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def _spawned(pid: int, boot_time: float) -> tuple[str | None, int, float | None]:
    """A just-spawned process's stamp, process group and create time (as a Unix
    time, from *boot_time*). On Linux, one read of ``/proc/<pid>/stat``: this
    runs once per worker started, and psutil would read it twice and
    ``/proc/stat`` once more."""
    if sys.platform.startswith("linux"):
        try:
            fields = _stat_fields(pid)
            ticks = int(fields[_START_TICKS])
            pgid = int(fields[_PGRP])
            return f"ticks:{ticks}", pgid, boot_time + ticks / _CLOCK_TICKS
        except (OSError, ValueError, IndexError):
            pass
    try:
        pgid = os.getpgid(pid)
    except OSError:
        pgid = pid
    return process_stamp(pid), pgid, _create_time(pid)


def _cmdline(pid: int) -> list[str]:
    """*pid*'s command line (empty if it is gone)."""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return []
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        return [os.fsdecode(arg) for arg in raw.split(b"\0")] if raw else []
    try:
        return list(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return []


def _owner_alive(pid: int, stamp: str) -> bool:
    """Whether the process that wrote a record still runs (a zombie does not).

    A record without a start stamp cannot be judged: it counts as alive.
    """
    if not stamp:
        return True
    if process_stamp(pid) != stamp:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: never act on a run that may be alive


def _marker(cmdline: Sequence[str]) -> tuple[str | None, str | None]:
    """``(run_id, worker_id)`` from a worker's command line, or ``(None, None)``
    when it is not ``... snakepit.worker ... --run-id RUN``."""
    if WORKER_MODULE not in cmdline:
        return None, None
    found: dict[str, str] = {}
    args = list(cmdline)
    for i, arg in enumerate(args):
        for flag in ("--run-id", "--worker-id"):
            if arg == flag and i + 1 < len(args):
                found.setdefault(flag, args[i + 1])
            elif arg.startswith(flag + "="):
                found.setdefault(flag, arg[len(flag) + 1 :])
    return found.get("--run-id"), found.get("--worker-id")


def _fingerprint(cmdline: Sequence[str]) -> str:
    return hashlib.sha256(
        "\0".join(cmdline).encode("utf-8", "surrogatepass")
    ).hexdigest()[:16]


# --- Records ---


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    return value


def _opt_float(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number")
    return float(value)


@attrs.frozen(kw_only=True)
class WorkerRecord:
    """One worker of a run, as recorded.

    Attributes:
        worker_id: the pool's id for it (``"default-3"``).
        pool: the pool's name.
        pid: its process id.
        pgid: its process group (its own pid: workers lead their group).
        stamp: when it started (:func:`process_stamp`).
        create_time: the same, as a Unix time (for people).
        fingerprint: a hash of its command line at spawn.
    """

    worker_id: str
    pool: str
    pid: int
    pgid: int
    stamp: str | None
    create_time: float | None = None
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        # Spelled out: attrs.asdict costs ten times more, once per worker per write.
        return {
            "worker_id": self.worker_id,
            "pool": self.pool,
            "pid": self.pid,
            "pgid": self.pgid,
            "stamp": self.stamp,
            "create_time": self.create_time,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: object) -> WorkerRecord:
        """Parse a record; raises ``ValueError`` if malformed."""
        if not isinstance(data, dict):
            raise ValueError("a worker must be an object")
        stamp = data.get("stamp")
        fingerprint = data.get("fingerprint")
        return cls(
            worker_id=_str(data, "worker_id"),
            pool=_str(data, "pool"),
            pid=_int(data, "pid"),
            pgid=_int(data, "pgid"),
            stamp=stamp if isinstance(stamp, str) else None,
            create_time=_opt_float(data, "create_time"),
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        )


@attrs.frozen(kw_only=True)
class OwnerRecord:
    """The process that owns a run, and where it runs.

    Attributes:
        pid: its process id.
        stamp: when it started (:func:`process_stamp`).
        create_time: the same, as a Unix time (for people).
        host: the host name.
        boot_id: the kernel's boot id (a record of another boot is stale).
        pid_ns: its PID namespace (a record of another one is not ours to judge).
        argv: its command line (for people).
        cwd: its working directory (for people).
    """

    pid: int
    stamp: str
    create_time: float | None
    host: str
    boot_id: str
    pid_ns: str
    argv: tuple[str, ...] = ()
    cwd: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        data = attrs.asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_dict(cls, data: object) -> OwnerRecord:
        """Parse a record; raises ``ValueError`` if malformed."""
        if not isinstance(data, dict):
            raise ValueError("owner must be an object")
        argv = data.get("argv", [])
        return cls(
            pid=_int(data, "pid"),
            stamp=_str(data, "stamp"),
            create_time=_opt_float(data, "create_time"),
            host=_str(data, "host"),
            boot_id=_str(data, "boot_id"),
            pid_ns=_str(data, "pid_ns"),
            argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
            cwd=str(data.get("cwd", "")),
        )


@attrs.frozen(kw_only=True)
class RunRecord:
    """The content of one run file, ``<data_dir>/<instance>/<run_id>.json``.

    Attributes:
        run_id: 32 hex digits (uuid4).
        instance: the instance token.
        pools: the pools of the run.
        owner: the owning process.
        started_at: when the run began (Unix time).
        updated_at: when the file was last written (Unix time).
        workers: the workers spawned and not yet exited.
    """

    run_id: str
    instance: str
    pools: tuple[str, ...]
    owner: OwnerRecord
    started_at: float
    updated_at: float
    workers: tuple[WorkerRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "instance": self.instance,
            "pools": list(self.pools),
            "owner": self.owner.to_dict(),
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "workers": [w.to_dict() for w in self.workers],
        }

    @classmethod
    def from_dict(cls, data: object) -> RunRecord:
        """Parse a record; raises ``ValueError`` if malformed or of another
        format."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record")
        run_id = _str(data, "run_id")
        if not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"bad run_id {run_id!r}")
        pools = data.get("pools", [])
        workers = data.get("workers", [])
        if not isinstance(pools, list) or not isinstance(workers, list):
            raise ValueError("pools and workers must be lists")
        return cls(
            run_id=run_id,
            instance=_str(data, "instance"),
            pools=tuple(str(p) for p in pools),
            owner=OwnerRecord.from_dict(data.get("owner")),
            started_at=_opt_float(data, "started_at") or 0.0,
            updated_at=_opt_float(data, "updated_at") or 0.0,
            workers=tuple(WorkerRecord.from_dict(w) for w in workers),
        )


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp")


def _encode(record: RunRecord, workers: Sequence[str] | None = None) -> bytes:
    """A run file's content: *record* as JSON, keys sorted and no indent (only
    then does json use its C encoder; the file is written again as each worker
    starts). *workers*, if given, stand for the record's workers: each already
    encoded, as the registry does once per worker rather than at every write."""
    data = record.to_dict()
    if workers is None:
        return json.dumps(data, sort_keys=True).encode("utf-8")
    del data["workers"]
    head = json.dumps(data, sort_keys=True)
    # "workers" sorts last: the member goes just before the closing brace.
    return f'{head[:-1]}, "workers": [{", ".join(workers)}]}}'.encode()


def write_record(path: Path, record: RunRecord) -> None:
    """Write *record* to *path* atomically: a reader sees the old file or the new
    one, never a part (temp file in the same folder, fsync, ``os.replace``).

    Only the run's owner writes its file, so the temp name is per run.

    Raises:
        OSError: the folder is missing or not writable (the temp file is removed).
    """
    _write(path, _encode(record))


def _write(path: Path, data: bytes) -> None:
    temp = _temp_path(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def read_record(path: Path) -> RunRecord:
    """Read a run file.

    Raises:
        OSError: it cannot be read.
        ValueError: it is not a valid record.
    """
    return RunRecord.from_dict(json.loads(path.read_bytes()))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _instance_lock(folder: Path, timeout: float = _LOCK_TIMEOUT) -> Iterator[bool]:
    """Hold ``<folder>/.lock`` (flock) so two cleanups of one instance take
    turns; yields whether it got the lock (it goes on without after *timeout*)."""
    import fcntl

    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + timeout
        locked = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    break
            if time.monotonic() > deadline:
                logger.warning("%s is held too long; cleaning up without it", folder)
                break
            time.sleep(0.05)
        yield locked
    finally:
        os.close(fd)  # releases the lock


# --- Cleanup ---


@attrs.frozen(kw_only=True)
class KilledProcess:
    """A process cleanup ended (or, in a dry run, would end).

    Attributes:
        pid: its process id.
        run_id: the dead run it belonged to.
        instance: that run's instance.
        worker_id: the worker's id, or ``None`` for a descendant of a worker.
        reason: ``"worker"`` (command line names the run), ``"descendant"``
            (environment names it) or ``"process_group"`` (in a dead run's
            worker's process group).
        signal: ``"SIGTERM"`` or ``"SIGKILL"`` (what ended it), ``None`` in a dry
            run or if it could not be killed.
        cmdline: its command line.
    """

    pid: int
    run_id: str
    instance: str
    worker_id: str | None
    reason: str
    signal: str | None
    cmdline: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        data = attrs.asdict(self)
        data["cmdline"] = list(self.cmdline)
        return data


@attrs.define(kw_only=True)
class CleanupReport:
    """What a cleanup found and did.

    Attributes:
        data_dir: the data directory searched.
        instances: the instances searched.
        dry_run: whether processes were only listed.
        killed: processes ended (listed only, in a dry run).
        survivors: processes that would not die (or could not be signalled).
        dead_runs: run ids whose owner is gone (their files removed unless a
            survivor remains or in a dry run).
        live_runs: run ids whose owner is alive (left alone).
        stale_runs: run ids of an earlier boot (files removed).
        foreign_runs: run ids written on another host or PID namespace (left).
        unreadable: run files that could not be parsed (left).
    """

    data_dir: str
    instances: list[str] = attrs.Factory(list)
    dry_run: bool = False
    killed: list[KilledProcess] = attrs.Factory(list)
    survivors: list[KilledProcess] = attrs.Factory(list)
    dead_runs: list[str] = attrs.Factory(list)
    live_runs: list[str] = attrs.Factory(list)
    stale_runs: list[str] = attrs.Factory(list)
    foreign_runs: list[str] = attrs.Factory(list)
    unreadable: list[str] = attrs.Factory(list)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data (``snakepit cleanup --json``)."""
        data = attrs.asdict(self, recurse=False)
        data["killed"] = [k.to_dict() for k in self.killed]
        data["survivors"] = [k.to_dict() for k in self.survivors]
        return data


@attrs.define(eq=False)
class _Target:
    proc: Any  # psutil.Process
    run_id: str
    instance: str
    worker_id: str | None
    reason: str
    cmdline: tuple[str, ...]
    #: Leads its process group as a verified worker: the group goes with it.
    leads_group: bool = False
    signal: str | None = None

    def result(self) -> KilledProcess:
        return KilledProcess(
            pid=self.proc.pid,
            run_id=self.run_id,
            instance=self.instance,
            worker_id=self.worker_id,
            reason=self.reason,
            signal=self.signal,
            cmdline=self.cmdline,
        )


def _protected_pids() -> set[int]:
    """This process and its ancestors: never a target, whatever they carry."""
    pids = {os.getpid()}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pids.add(os.getppid())
    return pids


def _find_targets(dead: dict[str, RunRecord]) -> list[_Target]:
    """Live processes of the dead runs: marked workers, marked descendants, the
    process groups of workers that still lead them."""
    protected = _protected_pids()
    own_group = os.getpgid(0)
    targets: dict[int, _Target] = {}
    groups: dict[int, list[tuple[Any, tuple[str, ...]]]] = {}
    for proc in psutil.process_iter():
        pid = proc.pid
        if pid in protected:
            continue
        try:
            cmdline = tuple(proc.cmdline())
        except (psutil.Error, OSError):
            continue
        if not cmdline:
            continue  # a kernel thread or a zombie
        try:
            pgid = os.getpgid(pid)
        except OSError:
            continue
        groups.setdefault(pgid, []).append((proc, cmdline))
        run_id, worker_id = _marker(cmdline)
        reason = "worker"
        if run_id not in dead:
            try:
                run_id = proc.environ().get(RUN_ID_ENV)
            except (psutil.Error, OSError):
                run_id = None
            worker_id, reason = None, "descendant"
        if run_id is None or run_id not in dead:
            continue
        # The marker is a uuid4 of a dead run: this process is that run's,
        # whatever its pid was or is (a reused pid carries no such marker).
        record = dead[run_id]
        targets[pid] = _Target(
            proc,
            run_id,
            record.instance,
            worker_id,
            reason,
            cmdline,
            leads_group=(reason == "worker" and pgid == pid and pgid != own_group),
        )
    # The members of a live worker's group (grandchildren that dropped the
    # environment): the group is the worker's as long as the worker lives.
    for leader in [t for t in targets.values() if t.leads_group]:
        for proc, cmdline in groups.get(leader.proc.pid, []):
            if proc.pid not in targets and proc.pid not in protected:
                targets[proc.pid] = _Target(
                    proc,
                    leader.run_id,
                    leader.instance,
                    None,
                    "process_group",
                    cmdline,
                )
    return list(targets.values())


def _gone(proc: Any) -> bool:
    try:
        if not proc.is_running():
            return True  # exited, or its pid is another process's now
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _signal(target: _Target, signum: signal.Signals) -> bool:
    """Send *signum* to the target (and its group if it leads one); psutil
    refuses if its pid now belongs to another process. Whether it was sent."""
    proc = target.proc
    try:
        proc.send_signal(signum)  # checks the pid was not reused
    except psutil.NoSuchProcess:
        return True  # already gone
    except psutil.Error:
        return False
    if target.leads_group:
        try:
            if proc.is_running():  # the leader is alive: the group is its own
                os.killpg(proc.pid, signum)
        except (OSError, psutil.Error):
            pass
    return True


def _wait_gone(targets: Sequence[_Target], timeout: float) -> list[_Target]:
    """Wait up to *timeout* for the targets to exit; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = list(targets)
    while True:
        alive = [t for t in alive if not _gone(t.proc)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(_POLL)


def _kill(targets: list[_Target], grace: float) -> list[_Target]:
    """SIGTERM, wait *grace*, SIGKILL; return the targets that survived."""
    for target in targets:
        if _signal(target, signal.SIGTERM):
            target.signal = "SIGTERM"
    alive = _wait_gone([t for t in targets if t.signal], grace)
    alive += [t for t in targets if t.signal is None]
    for target in alive:
        if _signal(target, signal.SIGKILL):
            target.signal = "SIGKILL"
    still = _wait_gone(alive, _KILL_WAIT)
    for target in still:
        target.signal = None
    return still


def _list_instances(data_dir: Path) -> list[str]:
    try:
        return sorted(
            entry.name
            for entry in data_dir.iterdir()
            if entry.is_dir() and valid_instance(entry.name)
        )
    except OSError:
        return []


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)


def _classify(
    folder: Path,
    here: _Here,
    booted: float,
    exclude: frozenset[str],
    report: CleanupReport,
    dead: dict[str, RunRecord],
    dead_paths: dict[str, Path],
) -> None:
    """Sort the run files of one instance folder into the report and *dead*."""
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return
    known: set[str] = set()
    open_here = frozenset(_OPEN_HERE)
    for path in paths:
        run_id = path.stem
        if not _RUN_ID.fullmatch(run_id) or run_id in exclude:
            continue
        known.add(run_id)
        try:
            record = read_record(path)
        except (OSError, ValueError):
            try:
                old = path.stat().st_mtime < booted
            except OSError:
                continue  # removed meanwhile
            if old:  # written before this boot: nothing of it runs
                report.stale_runs.append(run_id)
                if not report.dry_run:
                    _unlink(path)
            else:
                report.unreadable.append(str(path))
            continue
        owner = record.owner
        if owner.host != here.host:
            report.foreign_runs.append(run_id)
        elif owner.boot_id != here.boot_id:
            report.stale_runs.append(run_id)
            if not report.dry_run:
                _unlink(path)
                _unlink(_temp_path(path))
        elif owner.pid_ns != here.pid_ns:
            report.foreign_runs.append(run_id)
        elif _owner_alive(owner.pid, owner.stamp) and (
            owner.pid != os.getpid() or run_id in open_here
        ):
            report.live_runs.append(run_id)
        else:
            dead[run_id] = record
            dead_paths[run_id] = path
    if report.dry_run:
        return
    # Temp files of dead runs, or of earlier boots, are leftovers of a crash.
    try:
        temps = list(folder.glob(".*.tmp"))
    except OSError:
        return
    for temp in temps:
        run_id = temp.name[1:-4]
        try:
            old = temp.stat().st_mtime < booted
        except OSError:
            continue
        if run_id in dead or (old and run_id not in known):
            _unlink(temp)


def cleanup(
    data_dir: str | os.PathLike[str],
    instances: Iterable[str] | None,
    *,
    exclude_runs: Iterable[str] = (),
    dry_run: bool = False,
    grace: float = KILL_GRACE,
) -> CleanupReport:
    """Find the dead runs of *instances* and end their processes (blocking).

    Args:
        data_dir: the data directory.
        instances: instance tokens to search; ``None`` for every instance in
            *data_dir*.
        exclude_runs: run ids never to treat as dead (the caller's own).
        dry_run: list what would be killed; kill nothing, remove nothing.
        grace: seconds between SIGTERM and SIGKILL.

    Returns:
        What was found and done. Processes are matched by their run id marker
        only, so a reused pid is never signalled; see the module docstring.
    """
    folder = Path(data_dir)
    report = CleanupReport(data_dir=str(folder), dry_run=dry_run)
    names = (
        _list_instances(folder)
        if instances is None
        else sorted({i for i in instances if valid_instance(i)})
    )
    report.instances = names
    here = _here()
    booted = _boot_time()
    exclude = frozenset(exclude_runs)
    dead: dict[str, RunRecord] = {}
    dead_paths: dict[str, Path] = {}
    with _locks([folder / name for name in names]):
        for name in names:
            if (folder / name).is_dir():
                _classify(
                    folder / name, here, booted, exclude, report, dead, dead_paths
                )
        report.dead_runs = sorted(dead)
        if not dead:
            return report
        targets = _find_targets(dead)
        if dry_run:
            report.killed = [t.result() for t in targets]
            return report
        survivors = _kill(targets, grace)
        report.killed = [t.result() for t in targets if t not in survivors]
        report.survivors = [t.result() for t in survivors]
        kept = {t.run_id for t in survivors}
        for run_id, path in dead_paths.items():
            if run_id not in kept:  # else a later cleanup tries again
                _unlink(path)
                _unlink(_temp_path(path))
    return report


@contextmanager
def _locks(folders: Sequence[Path]) -> Iterator[None]:
    """Hold the lock of every existing folder, in name order (no deadlock)."""
    stack: list[Any] = []
    try:
        for folder in folders:
            if folder.is_dir():
                lock = _instance_lock(folder)
                lock.__enter__()
                stack.append(lock)
        yield
    finally:
        for lock in reversed(stack):
            lock.__exit__(None, None, None)


async def cleanup_async(
    data_dir: str | os.PathLike[str],
    instances: Iterable[str] | None,
    *,
    exclude_runs: Iterable[str] = (),
    dry_run: bool = False,
    grace: float = KILL_GRACE,
) -> CleanupReport:
    """:func:`cleanup` in a worker thread (the process scan blocks), then emit
    ``("snakepit", "cleanup", "orphans_killed")`` if dead runs were found."""
    names = None if instances is None else list(instances)
    excluded = list(exclude_runs)

    def work() -> CleanupReport:
        return cleanup(
            data_dir, names, exclude_runs=excluded, dry_run=dry_run, grace=grace
        )

    report = await anyio.to_thread.run_sync(work)
    if report.killed and not dry_run:
        logger.warning(
            "killed %d orphaned process(es) of %d dead run(s) in %s: %s",
            len(report.killed),
            len(report.dead_runs),
            report.data_dir,
            ", ".join(f"{k.pid} ({k.worker_id or k.reason})" for k in report.killed),
        )
    for survivor in report.survivors:
        logger.error(
            "could not kill orphan %d of dead run %s", survivor.pid, survivor.run_id
        )
    if report.dead_runs:
        telemetry.execute(
            _E_ORPHANS_KILLED,
            {"count": len(report.killed), "runs": len(report.dead_runs)},
            {
                "instances": list(report.instances),
                "data_dir": report.data_dir,
                "run_ids": list(report.dead_runs),
                "pids": [k.pid for k in report.killed],
                "dry_run": dry_run,
            },
        )
    return report


# --- One run, seen from its owner ---


class RunRegistry:
    """The record of one run, kept on disk by its owner.

    Build it with :func:`open_run`. Writes go through a worker thread and are
    coalesced; a failure to write (read-only or full disk) is logged once and
    the pool runs on without a record. A worker's record is written in the
    background (:meth:`add_worker` does not wait for the disk), at most once per
    :data:`WRITE_SPACING` while workers keep starting: a pool starting 100
    workers writes the file a handful of times, not once per worker.

    Attributes:
        run_id: this run's id (uuid4 hex).
        instance: its instance token.
        data_dir: the data directory.
        path: the run file.
    """

    def __init__(
        self, *, instance: str, data_dir: Path, pools: Sequence[str] = ()
    ) -> None:
        self.run_id = uuid.uuid4().hex
        _OPEN_HERE.add(self.run_id)
        self.instance = instance
        self.data_dir = data_dir
        self.path = data_dir / instance / f"{self.run_id}.json"
        self._pools = tuple(pools)
        self._workers: dict[str, WorkerRecord] = {}
        #: The same workers, each encoded as JSON once (see ``_encode``).
        self._encoded: dict[str, str] = {}
        self._lock = anyio.Lock()
        self._dirty = False
        #: Set when a change waits for the background writer (see write_changes).
        self._changed = anyio.Event()
        self._enabled = True
        self._written = False
        self._started_at = time.time()
        self._reaper: Process | None = None
        self._boot_time = _boot_time()
        here = _here()
        pid = os.getpid()
        self._owner = OwnerRecord(
            pid=pid,
            stamp=process_stamp(pid) or "",
            create_time=_create_time(pid),
            host=here.host,
            boot_id=here.boot_id,
            pid_ns=here.pid_ns,
            argv=tuple(sys.argv),
            cwd=_cwd(),
        )

    def record(self) -> RunRecord:
        """The run as it stands (what the next write puts on disk)."""
        return self._record(tuple(self._workers.values()))

    def _record(self, workers: tuple[WorkerRecord, ...]) -> RunRecord:
        return RunRecord(
            run_id=self.run_id,
            instance=self.instance,
            pools=self._pools,
            owner=self._owner,
            started_at=self._started_at,
            updated_at=time.time(),
            workers=workers,
        )

    async def start(self, *, clean: bool = True) -> CleanupReport | None:
        """Write the run file, then (if *clean*) end the leftovers of this
        instance's dead runs. Never raises for a disk or process-table problem:
        it logs it and returns ``None``."""

        def create() -> None:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path.parent.mkdir(exist_ok=True, mode=0o700)
            write_record(self.path, self.record())
            self._written = True  # here: a cancelled caller still removes it
            _fsync_dir(self.path.parent)

        try:
            await anyio.to_thread.run_sync(create)
        except OSError as exc:
            self._disable(exc)
        if self._written:
            await self._start_reaper()
        if not clean:
            return None
        try:
            return await cleanup_async(
                self.data_dir, [self.instance], exclude_runs=[self.run_id]
            )
        except Exception:  # never keep a pool from starting
            logger.exception("orphan cleanup in %s failed", self.data_dir)
            return None

    async def _start_reaper(self) -> None:
        """Start this run's reaper (:mod:`snakepit._reaper`): if this process
        dies, it ends the run's leftovers at once rather than at the next start.
        Never raises: without a reaper, the next start still cleans up."""
        from snakepit.pool._spawn import import_path_env  # (a cycle at import)

        env = import_path_env(dict(os.environ))
        env.pop(RUN_ID_ENV, None)  # the reaper is not one of the run's processes
        try:
            self._reaper = await anyio.open_process(
                [
                    sys.executable,
                    "-m",
                    "snakepit._reaper",
                    "--owner",
                    str(os.getpid()),
                    "--data-dir",
                    str(self.data_dir),
                    "--instance",
                    self.instance,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=None,
                env=env,
                start_new_session=True,  # out of reach of the terminal's Ctrl-C
            )
        except OSError as exc:
            logger.warning("cannot start the run's reaper: %s", exc)
            return
        try:
            # It only waits, and it starts beside the pool's first workers: the
            # CPU it needs to start (an interpreter's) goes to them first.
            os.setpriority(os.PRIO_PROCESS, self._reaper.pid, REAPER_NICENESS)
        except OSError:
            pass  # it exited already, or we may not (it still works)

    async def _stop_reaper(self) -> None:
        """Tell the reaper this is an orderly end, and reap it."""
        reaper, self._reaper = self._reaper, None
        if reaper is None:
            return
        assert reaper.stdin is not None
        try:
            await reaper.stdin.send(BYE)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # it died: nothing to tell
        await reaper.stdin.aclose()
        with anyio.move_on_after(KILL_GRACE) as scope:
            await reaper.wait()
        if scope.cancelled_caught:
            logger.warning("the run's reaper did not exit; killing it")
            reaper.kill()
            await reaper.wait()

    def _disable(self, exc: OSError) -> None:
        if self._enabled:
            logger.warning(
                "cannot keep the run record %s (%s); orphan cleanup will not see "
                "this run's workers (set data_dir or %s to a writable folder)",
                self.path,
                exc,
                DATA_DIR_ENV,
            )
        self._enabled = False

    def add_worker(self, worker_id: str, pool: str, pid: int) -> None:
        """Record a just-spawned worker (unreaped, so *pid* is it); the file is
        written in the background (:meth:`write_changes`), or by the next
        :meth:`flush`. Does not wait. Until then a cleanup still finds the worker
        by the run id on its command line."""
        stamp, pgid, create_time = _spawned(pid, self._boot_time)
        cmdline = _cmdline(pid)
        worker = self._workers[worker_id] = WorkerRecord(
            worker_id=worker_id,
            pool=pool,
            pid=pid,
            pgid=pgid,
            stamp=stamp,
            create_time=create_time,
            fingerprint=_fingerprint(cmdline) if cmdline else None,
        )
        self._encoded[worker_id] = json.dumps(worker.to_dict(), sort_keys=True)
        self._dirty = True
        self._changed.set()

    async def write_changes(self) -> None:
        """Write the file whenever workers were added, at most once per
        :data:`WRITE_SPACING`, until cancelled (the pool runs it in the
        background while it serves)."""
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            await self.flush()
            await anyio.sleep(WRITE_SPACING)  # let a burst of starts gather

    def remove_worker(self, worker_id: str) -> None:
        """Forget an exited worker; the next write (or the final removal) drops
        it from the file. Does not wait."""
        self._encoded.pop(worker_id, None)
        if self._workers.pop(worker_id, None) is not None:
            self._dirty = True

    async def flush(self) -> None:
        """Write the current record if it changed (a worker added or removed
        since the last write); concurrent calls coalesce."""
        if not (self._enabled and self._written):
            return
        async with self._lock:
            if not self._dirty or not self._enabled:
                return
            self._dirty = False
            head, workers = self._record(()), tuple(self._encoded.values())
            try:
                await anyio.to_thread.run_sync(self._write, head, workers)
            except OSError as exc:
                self._disable(exc)

    def _write(self, head: RunRecord, workers: tuple[str, ...]) -> None:
        _write(self.path, _encode(head, workers))

    async def close(self) -> None:
        """Remove the run file (an orderly end: nothing of this run is left)."""
        self._enabled = False
        if not self._written:
            _OPEN_HERE.discard(self.run_id)
            return
        async with self._lock:
            await anyio.to_thread.run_sync(self._remove)
        await self._stop_reaper()

    def _remove(self) -> None:
        _unlink(self.path)
        _unlink(_temp_path(self.path))
        _OPEN_HERE.discard(self.run_id)


@asynccontextmanager
async def open_run(
    *,
    instance: str,
    data_dir: Path,
    pools: Sequence[str] = (),
    clean: bool = True,
) -> AsyncIterator[RunRegistry]:
    """Begin a run: write its record and clean up after the instance's dead
    runs; on exit (however it happens) remove the record.

    Never raises for a disk or process-table problem (it is logged).
    """
    registry = RunRegistry(instance=instance, data_dir=data_dir, pools=pools)
    try:
        await registry.start(clean=clean)
        yield registry
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await registry.close()
            except Exception:
                logger.exception("could not remove the run record %s", registry.path)
