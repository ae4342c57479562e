"""The control socket: a live view of a running application, for its owner only.

``snakepit run`` serves a local Unix socket; ``snakepit stats`` and ``snakepit
top`` (:mod:`snakepit._top`) connect to it. Without arguments both sides find it
at the same place, derived the way orphan cleanup finds its records
(:mod:`snakepit._registry`): ``<data_dir>/<instance>/control.sock``, with the
data directory and the instance token of the application's default pool.

Security. The socket is reachable by its owner only: it lives in a folder that
we own and that no one else may enter (mode 0700; a folder that is someone
else's, a symlink, or open to others is refused), the socket itself has mode
0600, and a connection from another user (``SO_PEERCRED``, Linux) is answered
with an error. It is bound under a temporary name and renamed into place, so a
stale socket of a dead run is replaced atomically, while a live application's
socket is never taken over.

The protocol (version 1): the client sends one JSON object on one line,
``{"v": 1, "op": "stats"}``; the server answers one JSON object on one line and
closes the connection. Every answer has ``"v"`` and ``"ok"``; a failure has
``"error"`` (a sentence). Operations:

- ``ping``: ``{"pid", "version"}``, to tell a live socket from a stale one;
- ``stats`` (optional ``"events": N``, default 20): ``{"stats": SNAPSHOT}``, see
  :func:`snapshot`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import anyio
import psutil
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

from snakepit import telemetry
from snakepit._registry import resolve_data_dir, resolve_instance
from snakepit._version import __version__
from snakepit.config import Config
from snakepit.exceptions import PoolNotFound, SnakepitError

if TYPE_CHECKING:
    from typing_extensions import Self

    from snakepit._app import ConfigSource, Snakepit
    from snakepit._top import StartupProgress

__all__ = (
    "PROTOCOL_VERSION",
    "SNAPSHOT_FORMAT",
    "SOCKET_NAME",
    "ControlError",
    "ControlSession",
    "ControlServer",
    "ControlSocketError",
    "ControlUnavailable",
    "LifecycleEvents",
    "default_socket_path",
    "open_control",
    "query",
    "secure_folder",
    "snapshot",
)

logger = logging.getLogger("snakepit.control")

#: The version of the request/response protocol (``"v"`` in every message).
PROTOCOL_VERSION: Final = 1
#: The ``format`` of a stats snapshot.
SNAPSHOT_FORMAT: Final = "snakepit-stats/1"
#: The socket's file name in the instance folder.
SOCKET_NAME: Final = "control.sock"
#: How many lifecycle events the ring keeps.
RING_SIZE: Final = 200
#: Events a ``stats`` answer carries unless the request asks otherwise.
DEFAULT_EVENTS: Final = 20
#: A request is one line of at most this many bytes...
_MAX_REQUEST: Final = 64 * 1024
#: ...that must arrive within this many seconds.
_REQUEST_TIMEOUT: Final = 5.0
#: An answer may be at most this many bytes (a client's guard).
_MAX_ANSWER: Final = 64 * 1024 * 1024
#: Bytes ``sun_path`` holds, its final NUL excluded.
_SUN_PATH_MAX: Final = 107 if sys.platform.startswith("linux") else 103


# --- Errors ---


class ControlError(SnakepitError):
    """A control-socket client could not get an answer."""


class ControlUnavailable(ControlError):
    """No application answers at the socket path (none runs, or it stopped).

    Attributes:
        path: the socket path tried.
        reason: why, in a few words.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"no running application at {path} ({reason})")
        self.path = path
        self.reason = reason


class ControlSocketError(SnakepitError):
    """The control socket cannot be served at the path asked for: its folder is
    not ours or is open to others, or another live application serves there."""


# --- Where ---


def default_socket_path(config: Config) -> Path:
    """``<data_dir>/<instance>/control.sock`` of the application of *config*.

    The data directory and the instance are those of its default pool (the pool
    named ``default``, else the first), resolved as the pool itself resolves them
    for its run records (its keys, then ``SNAKEPIT_DATA_DIR`` and
    ``SNAKEPIT_INSTANCE``, then the working directory and all pool names); so a
    ``snakepit stats`` started in the same folder and environment, with the same
    configuration, finds what ``snakepit run`` serves.
    """
    pools = config.get_pool_configs()
    names = [p.name for p in pools]
    chosen = next((p for p in pools if p.name == "default"), pools[0])
    folder = resolve_data_dir(chosen.data_dir) / resolve_instance(
        chosen.instance, names
    )
    return folder / SOCKET_NAME


def secure_folder(folder: Path, *, create: bool = True) -> None:
    """Make sure *folder* is a place for an owner-only socket: a real directory
    (not a symlink), owned by this user, that no one else may read, write or
    enter. Created with mode 0700 (parents as needed) when missing and *create*.

    Raises:
        ControlSocketError: it is not such a folder; the message says why and
            what to do.
    """
    if create:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ControlSocketError(f"cannot create {folder}: {exc}") from None
    try:
        info = os.lstat(folder)
    except OSError as exc:
        raise ControlSocketError(f"cannot use {folder}: {exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise ControlSocketError(
            f"{folder} is a symlink; the socket's folder must not be"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSocketError(f"{folder} is not a directory")
    if info.st_uid != os.geteuid():
        raise ControlSocketError(
            f"{folder} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}); put the socket in a folder of your own"
        )
    if info.st_mode & 0o077:
        raise ControlSocketError(
            f"{folder} has mode {stat.S_IMODE(info.st_mode):04o}: other users "
            f"may enter it; `chmod 700 {folder}`, or use a private folder"
        )


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for ``bind``/``connect`` that names *path*.

    ``sun_path`` holds 107 bytes: a longer path is reached through its folder,
    opened with ``O_PATH``, as ``/proc/self/fd/N/NAME`` (Linux).

    Raises:
        ControlSocketError: the path is too long and there is no way around it.
        FileNotFoundError: the folder of a long path does not exist.
    """
    raw = os.fsencode(path)
    if len(raw) <= _SUN_PATH_MAX:
        yield os.fsdecode(raw)
        return
    o_path = getattr(os, "O_PATH", 0)
    if not o_path or not os.path.isdir("/proc/self/fd"):
        raise ControlSocketError(
            f"{path} is too long for a Unix socket ({len(raw)} bytes, at most "
            f"{_SUN_PATH_MAX}); choose a shorter path"
        )
    fd = os.open(path.parent, o_path | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        short = f"/proc/self/fd/{fd}/{path.name}"
        if len(os.fsencode(short)) > _SUN_PATH_MAX:
            raise ControlSocketError(f"the socket name {path.name!r} is too long")
        yield short
    finally:
        os.close(fd)


# --- Lifecycle events ---

_E_STARTED = ("snakepit", "worker", "started")
_E_EXITED = ("snakepit", "worker", "exited")
_E_RESTARTED = ("snakepit", "worker", "restarted")
_E_RECYCLED = ("snakepit", "worker", "recycled")
_E_HEALTH = ("snakepit", "worker", "health_check_failed")
_E_RECYCLE_FAILED = ("snakepit", "worker", "recycle_failed")
_E_MAX_INTENSITY = ("snakepit", "supervisor", "max_intensity")
_E_ORPHANS = ("snakepit", "cleanup", "orphans_killed")

#: The lifecycle events of the catalogue (``snakepit.telemetry.EVENTS``) the ring
#: keeps; per-call events (requests, queue timeouts) would drown them.
LIFECYCLE_EVENTS: Final = (
    _E_STARTED,
    _E_EXITED,
    _E_RESTARTED,
    _E_RECYCLED,
    _E_HEALTH,
    _E_RECYCLE_FAILED,
    _E_MAX_INTENSITY,
    _E_ORPHANS,
)


def _value(value: object) -> str:
    """An enum's value, else ``str``: ``reason`` may be a ``RecycleReason``."""
    return str(getattr(value, "value", value))


def _detail(
    event: tuple[str, ...], m: telemetry.Measurements, md: telemetry.Metadata
) -> str:
    """One short sentence for *event*."""
    if event == _E_STARTED:
        return (
            f"pid {md.get('pid')} ready in {float(m.get('startup_seconds', 0)):.2f} s"
        )
    if event == _E_EXITED:
        how = (
            f"signal {md['signal']}"
            if md.get("signal") is not None
            else f"exit code {md.get('exit_code')}"
        )
        detail = f"pid {md.get('pid')}: {_value(md.get('reason'))}, {how}"
        if md.get("in_flight"):
            detail += f", {md['in_flight']} call(s) failed"
        return detail
    if event == _E_RESTARTED:
        return f"replaced {md.get('previous_worker_id')}, pid {md.get('pid')}"
    if event == _E_RECYCLED:
        return (
            f"{_value(md.get('reason'))} after {md.get('request_count')} requests, "
            f"{float(md.get('uptime_seconds') or 0):.0f} s up"  # type: ignore[arg-type]
        )
    if event == _E_HEALTH:
        return _value(md.get("reason"))
    if event == _E_RECYCLE_FAILED:
        return f"{_value(md.get('reason'))}: {md.get('error')}"
    if event == _E_MAX_INTENSITY:
        return (
            f"supervisor {md.get('supervisor')} gave up after {m.get('restarts')} "
            f"restarts"
        )
    if event == _E_ORPHANS:
        return f"killed {m.get('count')} orphan(s) of {m.get('runs')} dead run(s)"
    return ""


class LifecycleEvents:
    """A bounded ring of the latest lifecycle events, fed by telemetry.

    Use as a context manager: it attaches one handler to
    :data:`LIFECYCLE_EVENTS` on entry and detaches it on exit. Handlers run in
    the emitting thread; the ring is guarded by a lock.
    """

    def __init__(self, size: int = RING_SIZE) -> None:
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self._handler_id = f"snakepit.control.events.{id(self)}"

    def __enter__(self) -> Self:
        telemetry.attach_many(self._handler_id, LIFECYCLE_EVENTS, self._on_event)
        return self

    def __exit__(self, *exc_info: object) -> None:
        telemetry.detach(self._handler_id)

    def _on_event(
        self,
        event: telemetry.EventName,
        measurements: telemetry.Measurements,
        metadata: telemetry.Metadata,
        _config: None,
    ) -> None:
        try:
            detail = _detail(event, measurements, metadata)
        except Exception:  # never let a display detail detach the handler
            detail = ""
        pid = metadata.get("pid")
        entry = {
            "time": time.time(),
            "event": ".".join(event[1:]),
            "pool": metadata.get("pool"),
            "worker_id": metadata.get("worker_id"),
            "pid": pid if isinstance(pid, int) else None,
            "detail": detail,
        }
        with self._lock:
            self._ring.append(entry)

    def recent(self, count: int = DEFAULT_EVENTS) -> list[dict[str, Any]]:
        """The latest *count* events, oldest first."""
        if count <= 0:
            return []
        with self._lock:
            return list(self._ring)[-count:]


# --- The snapshot ---


def _state(worker: Any, load: int, capacity: int) -> str:
    """What a worker is doing, in one word."""
    if worker is None:
        return "gone"
    if worker.exiting:
        return "exiting"
    if worker.recycling:
        return "recycling"
    if not worker.accepting:
        return "draining"
    if load >= capacity:
        return "busy"
    return "working" if load > 0 else "idle"


def _rss_now(pids: list[int]) -> dict[int, int]:
    """Each live pid's resident memory, read now (blocking: run in a thread)."""
    found: dict[int, int] = {}
    for pid in pids:
        try:
            found[pid] = int(psutil.Process(pid).memory_info().rss)
        except (psutil.Error, OSError):
            continue
    return found


async def snapshot(
    app: Snakepit,
    events: LifecycleEvents | None,
    *,
    started_at: float,
    event_count: int = DEFAULT_EVENTS,
    socket_path: Path | None = None,
) -> dict[str, Any]:
    """A JSON-ready picture of *app* now.

    Returns ``{"format", "pid", "version", "socket", "started_at",
    "uptime_seconds", "time", "pools", "lifecycle", "events"}``; each pool is
    ``{"name", "adapter", "profile", "pool_size", "closing", "stats",
    "recycles_by_reason", "workers"}`` with ``stats`` as
    :meth:`~snakepit.Snakepit.get_stats` (``queued`` is the queue depth) and each
    worker ``{"worker_id", "pid", "state", "rss_bytes", "requests",
    "uptime_seconds", "capacity", "load"}``. RSS is read now (in a thread, not
    touching the workers' own sampling); ``state`` is one of ``idle, working,
    busy, draining, recycling, exiting, gone``.
    """
    pools: list[dict[str, Any]] = []
    for config in app.config.get_pool_configs():
        entry: dict[str, Any] = {
            "name": config.name,
            "adapter": config.adapter_module,
            "profile": config.worker_profile.value,
            "pool_size": config.pool_size,
            "closing": False,
            "stats": {},
            "recycles_by_reason": {},
            "workers": [],
        }
        pools.append(entry)
        try:
            pool = app.pool(config.name)
        except PoolNotFound:  # not started yet: no stats, no workers
            continue
        entry["closing"] = pool.closing
        entry["stats"] = pool.get_stats()
        entry["recycles_by_reason"] = {
            _value(k): v
            for k, v in pool.lifecycle_stats()["recycles_by_reason"].items()
        }
        for row in pool.worker_stats():
            try:
                worker: Any = pool.worker(row["worker_id"])
            except KeyError:
                worker = None
            entry["workers"].append(
                {
                    "worker_id": row["worker_id"],
                    "pid": row["pid"],
                    "state": _state(worker, row["load"], row["capacity"]),
                    "rss_bytes": row["rss_bytes"],
                    "requests": row["requests"],
                    "uptime_seconds": round(row["uptime_seconds"], 3),
                    "capacity": row["capacity"],
                    "load": row["load"],
                }
            )
    pids = [w["pid"] for p in pools for w in p["workers"] if w["pid"] is not None]
    rss = await anyio.to_thread.run_sync(_rss_now, pids)
    for pool_entry in pools:
        for worker_entry in pool_entry["workers"]:
            worker_entry["rss_bytes"] = rss.get(
                worker_entry["pid"], worker_entry["rss_bytes"]
            )
    now = time.time()
    lifecycle = app.lifecycle_stats()
    lifecycle["recycles_by_reason"] = {
        _value(k): v for k, v in lifecycle["recycles_by_reason"].items()
    }
    return {
        "format": SNAPSHOT_FORMAT,
        "pid": os.getpid(),
        "version": __version__,
        "socket": None if socket_path is None else str(socket_path),
        "started_at": started_at,
        "uptime_seconds": round(now - started_at, 3),
        "time": now,
        "pools": pools,
        "lifecycle": lifecycle,
        "events": [] if events is None else events.recent(event_count),
    }


# --- The server ---

Snapshotter = Callable[[int], Awaitable[dict[str, Any]]]
"""``await snapshotter(event_count)``: the ``stats`` answer's snapshot."""


def _peer_uid(stream: SocketStream) -> int | None:
    """The uid of the process at the other end (Linux), else ``None``."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return None
    try:
        raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
        data = raw.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    except (OSError, anyio.TypedAttributeLookupError):
        return None
    _pid, uid, _gid = struct.unpack("3i", data)
    return int(uid)


async def _read_line(stream: SocketStream) -> bytes:
    """Bytes up to the first newline (or the end of the stream)."""
    buffer = bytearray()
    while b"\n" not in buffer:
        if len(buffer) > _MAX_REQUEST:
            raise ValueError("request too long")
        try:
            buffer += await stream.receive()
        except anyio.EndOfStream:
            break
    return bytes(buffer.split(b"\n", 1)[0])


def _error(message: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": False, "error": message}


class ControlServer:
    """Serves the control protocol on a Unix socket, in the caller's event loop.

    Args:
        path: where the socket goes; its folder must pass :func:`secure_folder`
            (it is created if missing).
        snapshotter: makes the ``stats`` answer.

    Use :meth:`serve` as an async context manager: the socket is bound on entry
    and served until exit, when the listener is closed and the socket file
    removed (if it is still ours).
    """

    def __init__(self, path: Path, snapshotter: Snapshotter) -> None:
        self.path = path
        self._snapshotter = snapshotter

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return _error("a request is one JSON object on one line")
        if not isinstance(request, dict):
            return _error("a request is one JSON object on one line")
        version = request.get("v", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            return _error(
                f"protocol version {version!r} is not spoken here (this is "
                f"version {PROTOCOL_VERSION})"
            )
        op = request.get("op")
        if op == "ping":
            return {
                "v": PROTOCOL_VERSION,
                "ok": True,
                "pid": os.getpid(),
                "version": __version__,
            }
        if op == "stats":
            count = request.get("events", DEFAULT_EVENTS)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                return _error("events must be a non-negative integer")
            return {
                "v": PROTOCOL_VERSION,
                "ok": True,
                "stats": await self._snapshotter(min(count, RING_SIZE)),
            }
        return _error(f"unknown op {op!r} (known: ping, stats)")

    async def _handle(self, stream: SocketStream) -> None:
        """Answer one connection; never raises (a bad client must not stop the
        application)."""
        async with stream:
            try:
                uid = _peer_uid(stream)
                if uid is not None and uid not in (os.geteuid(), 0):
                    answer = _error("this socket serves its owner only")
                else:
                    with anyio.fail_after(_REQUEST_TIMEOUT):
                        line = await _read_line(stream)
                    if not line.strip():
                        return  # a liveness probe: connected, sent nothing
                    answer = await self._answer(line)
                data = json.dumps(answer, default=str).encode("utf-8") + b"\n"
                await stream.send(data)
            except (TimeoutError, ValueError) as exc:
                with contextlib.suppress(Exception):
                    await stream.send(json.dumps(_error(str(exc))).encode() + b"\n")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the client left
            except Exception:
                logger.exception("control socket: a request failed")

    def _install(self, temp: Path) -> None:
        """Move the freshly bound socket *temp* to :attr:`path` (blocking).

        A socket already there is probed: a live one is left alone (error); a
        stale one, of a dead run, is replaced atomically by the rename.

        Raises:
            ControlSocketError: :attr:`path` is taken by a live application, or
                by something other than a socket.
        """
        _check_free(self.path)
        os.rename(temp, self.path)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[ControlServer]:
        """Bind the socket (mode 0600, in a 0700 folder of ours), serve it in the
        background, and close and remove it on exit.

        Raises:
            ControlSocketError: the path cannot be used (see :func:`secure_folder`
                and :meth:`_install`).
        """
        folder = self.path.parent
        await anyio.to_thread.run_sync(secure_folder, folder)
        temp = folder / f".control-{os.getpid()}.sock"
        try:
            with _address(temp) as address:
                listener = await anyio.create_unix_listener(address, mode=0o600)
        except OSError as exc:
            raise ControlSocketError(f"cannot bind {temp}: {exc}") from None
        try:
            try:
                await anyio.to_thread.run_sync(self._install, temp)
                inode = os.stat(self.path).st_ino
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            failure: BaseException | None = None
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._accept, listener, tg)
                    try:
                        yield self
                    except BaseException as exc:  # raised as is, not in a group
                        failure = exc
                    finally:
                        tg.cancel_scope.cancel()
            finally:  # also when cancelled: the task group's exit raises then
                self._remove(inode)
            if failure is not None:
                raise failure
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _accept(self, listener: Any, tg: TaskGroup) -> None:
        try:
            await listener.serve(self._handle, task_group=tg)
        except Exception:
            logger.exception("control socket %s: no longer serving", self.path)

    def _remove(self, inode: int) -> None:
        """Remove the socket file, unless another server's socket replaced it."""
        try:
            if os.stat(self.path).st_ino == inode:
                os.unlink(self.path)
        except OSError:
            pass


def _check_free(path: Path) -> None:
    """Raise unless *path* is free for our socket: nothing there, or the stale
    socket of a dead run (blocking).

    Raises:
        ControlSocketError: a live application's socket is there, or something
            other than a socket.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(
            f"{path} exists and is not a socket; remove it or choose another path"
        )
    if _alive(path):
        raise ControlSocketError(
            f"another running application serves {path}; stop it, or give this "
            "one another --control-socket"
        )


def _alive(path: Path) -> bool:
    """Whether something accepts connections on the socket at *path* (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            with _address(path) as address:
                probe.connect(address)
        except OSError as exc:
            return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK)
        return True


# --- The client ---


def query(
    path: Path, op: str = "stats", *, timeout: float = 5.0, **params: Any
) -> dict[str, Any]:
    """Send one request to the control socket at *path*; return the answer.

    Blocking (the clients are command-line tools).

    Raises:
        ControlUnavailable: nothing serves at *path* (no file, or refused).
        ControlError: the answer was an error, or not an answer.
    """
    request = {"v": PROTOCOL_VERSION, "op": op, **params}
    chunks: list[bytes] = []
    try:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
            _address(path) as address,
        ):
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
            size = 0
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_ANSWER:
                    raise ControlError(f"{path}: the answer is too long")
    except FileNotFoundError:
        raise ControlUnavailable(path, "no such socket") from None
    except ConnectionRefusedError:
        raise ControlUnavailable(path, "connection refused: a stale socket") from None
    except ControlSocketError as exc:
        raise ControlUnavailable(path, str(exc)) from None
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout} s") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
            raise ControlUnavailable(path, "not a socket") from None
        raise ControlError(f"{path}: {exc}") from None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"{path}: the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ControlError(f"{path}: the answer is not a JSON object")
    if not answer.get("ok"):
        raise ControlError(f"{path}: {answer.get('error', 'request failed')}")
    return answer


# --- snakepit run's side ---


class ControlSession:
    """What ``snakepit run`` keeps beside its application: the lifecycle event
    ring, the startup progress and the control server. Built by
    :func:`open_control`.

    Attributes:
        config: the loaded configuration (hand it to ``open_snakepit``).
        path: the control socket's path, or ``None`` when turned off.
    """

    def __init__(
        self,
        config: Config,
        path: Path | None,
        explicit: bool,
        events: LifecycleEvents,
        progress: StartupProgress | None,
        tg: TaskGroup,
        out: TextIO,
        err: TextIO,
    ) -> None:
        self.config = config
        self.path = path
        self._explicit = explicit
        self._events = events
        self._progress = progress
        self._tg = tg
        self._out = out
        self._err = err
        self._started_at = time.time()

    def stop_progress(self) -> None:
        """Take the startup progress off the screen (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    async def started(self, app: Snakepit) -> None:
        """The pools are ready: end the progress display and serve the control
        socket for *app* until the session ends.

        Raises:
            ControlSocketError: the socket was asked for with
                ``--control-socket`` and cannot be served (with the default
                path, the problem is printed and the run goes on without).
        """
        self.stop_progress()
        if self.path is None:
            return
        path = self.path

        async def take_snapshot(count: int) -> dict[str, Any]:
            return await snapshot(
                app,
                self._events,
                started_at=self._started_at,
                event_count=count,
                socket_path=path,
            )

        server = ControlServer(path, take_snapshot)
        try:
            await self._tg.start(self._serve, server)
        except ControlSocketError as exc:
            if self._explicit:
                raise
            print(f"control socket: off: {exc}", file=self._err, flush=True)
            self.path = None
            return
        print(
            f"control socket: {path} (snakepit stats / snakepit top)",
            file=self._out,
            flush=True,
        )

    @staticmethod
    async def _serve(server: ControlServer, *, task_status: TaskStatus[None]) -> None:
        async with server.serve():
            task_status.started()
            await anyio.sleep_forever()


def _choose_path(config: Config, socket_path: str | os.PathLike[str] | None) -> Path:
    """The socket's path (*socket_path*, else the default), its folder made
    ready by :func:`secure_folder`, no live application serving there yet
    (blocking)."""
    path = (
        default_socket_path(config)
        if socket_path is None
        else Path(socket_path).expanduser().absolute()
    )
    secure_folder(path.parent)
    _check_free(path)  # checked again when the socket is bound
    return path


@asynccontextmanager
async def open_control(
    config: ConfigSource,
    socket_path: str | os.PathLike[str] | None = None,
    *,
    enabled: bool = True,
    progress: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> AsyncIterator[ControlSession]:
    """Load *config* and get ready to serve its application's control socket.

    Enter it before ``open_snakepit(session.config)`` (so the lifecycle ring and
    the startup *progress* see the first workers start), call
    :meth:`ControlSession.started` once the pools are ready; on exit the socket
    is closed and removed and the telemetry handlers detached.

    Args:
        config: what ``open_snakepit`` accepts.
        socket_path: the socket's path (``--control-socket``); ``None`` for
            :func:`default_socket_path`.
        enabled: ``False`` serves no socket (``--no-control-socket``).
        progress: show the workers starting (``snakepit run`` on a terminal).
        out, err: where messages go (default: ``sys.stdout``, ``sys.stderr``).

    Raises:
        ConfigError: the configuration is invalid.
        ControlSocketError: an explicit *socket_path* cannot be used (checked
            here, before any worker starts).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    loaded = Config.load(config)
    path: Path | None = None
    explicit = socket_path is not None and enabled
    if enabled:
        try:
            path = await anyio.to_thread.run_sync(_choose_path, loaded, socket_path)
        except ControlSocketError as exc:
            if explicit:
                raise
            print(f"control socket: off: {exc}", file=err, flush=True)
            path = None
    shown: StartupProgress | None = None
    if progress:
        from snakepit._top import StartupProgress

        shown = StartupProgress(
            sum(p.pool_size for p in loaded.get_pool_configs()), out
        )
    with LifecycleEvents() as events:
        session: ControlSession | None = None
        failure: BaseException | None = None
        try:
            if shown is not None:
                shown.start()
            # The server runs in this task group; the body's errors are kept
            # out of it and re-raised as they are, never in an ExceptionGroup.
            async with anyio.create_task_group() as tg:
                session = ControlSession(
                    loaded, path, explicit, events, shown, tg, out, err
                )
                try:
                    yield session
                except BaseException as exc:
                    failure = exc
                finally:
                    session.stop_progress()
                    tg.cancel_scope.cancel()
        finally:
            if session is None and shown is not None:
                shown.stop()
        if failure is not None:
            raise failure
