"""The raw-pipe baseline's child: read frames, run them, write the replies.

``python -m benchmarks.suite._rawpipe_child [--numpy]``: requests arrive on stdin
as frames holding ``[command, args]`` and each reply (the bare result) goes to
stdout as a frame, in order. Replies to every request completed by one read are
written with one ``writev``. No error handling and no protocol beyond framing:
this is the floor any pool built on pipes and msgpack pays, the "hardware limit"
the suite compares with.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from benchmarks.suite import _tasks
from benchmarks.suite._frames import FrameReader, encode, write_all

_COMMANDS: dict[str, Callable[..., Any]] = {
    "add": _tasks.add,
    "echo": _tasks.echo,
    "pid": _tasks.pid,
    "python_work": _tasks.python_work,
    "numpy_matmul": _tasks.numpy_matmul,
}


def main() -> int:
    """Serve until stdin closes."""
    if "--numpy" in sys.argv[1:]:
        import numpy  # noqa: F401  (the "with numpy" rows: imported before serving)
    reader = FrameReader(0)
    commands = _COMMANDS
    while True:
        found = reader.read()
        if found is None:
            return 0
        if found:
            out: list[bytes] = []
            for name, args in found:
                out += encode(commands[name](*args))
            write_all(1, out)


if __name__ == "__main__":
    raise SystemExit(main())
