"""The worker side imports only the standard library and msgpack (DESIGN 2.1).

Checked from inside real processes: a worker started through the CLI reports its
own ``sys.modules``, and a bare interpreter imports the three worker-side modules.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from snakepit.protocol import Call, FrameDecoder, Hello, Message, Reply, encode
from snakepit.worker import WorkerOptions, command_line

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0
PARENT_SIDE = ("anyio", "attrs", "attr", "psutil", "sniffio", "trio")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def _top_level(modules: list[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def _recv(fd: int, decoder: FrameDecoder, deadline: float) -> Message:
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no message from the worker in time"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data = os.read(fd, 1 << 20)
            assert data, "the worker closed its reply channel"
            messages = decoder.feed(data)
            if messages:
                assert len(messages) == 1
                return messages[0]


def test_a_running_worker_never_loaded_the_parent_side() -> None:
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    options = WorkerOptions(
        adapter="tests.workers.basic:BasicAdapter",
        request_fd=request_read,
        reply_fd=reply_write,
        parent_pid=os.getpid(),
    )
    try:
        proc = subprocess.Popen(
            command_line(options),
            pass_fds=(request_read, reply_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=_env(),
            start_new_session=True,
        )
    finally:
        os.close(request_read)
        os.close(reply_write)
    try:
        deadline = time.monotonic() + TIMEOUT
        decoder = FrameDecoder()
        assert isinstance(_recv(reply_read, decoder, deadline), Hello)
        os.write(request_write, encode(Call(1, "modules", {})))
        reply = _recv(reply_read, decoder, deadline)
        assert isinstance(reply, Reply), reply
        modules = reply.value
        assert isinstance(modules, list)
        assert "snakepit.worker" in modules  # the report is real
        assert "msgpack" in modules
        assert _top_level(modules).isdisjoint(PARENT_SIDE)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        assert proc.stderr is not None
        proc.stderr.close()
        os.close(request_write)
        os.close(reply_read)


def test_importing_the_worker_side_loads_nothing_of_the_parent_side() -> None:
    code = (
        "import json, sys\n"
        "import snakepit.worker, snakepit.protocol, snakepit.adapter\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    modules = json.loads(result.stdout)
    assert "snakepit.adapter" in modules
    assert _top_level(modules).isdisjoint(PARENT_SIDE)
