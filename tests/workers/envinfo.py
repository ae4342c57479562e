"""A test adapter that reports its environment and interpreter."""

from __future__ import annotations

import os
import sys

from snakepit.adapter import Adapter, command


class EnvAdapter(Adapter):
    """Tells the test what the worker sees."""

    @command
    def env(self, names: list[str]) -> dict[str, str | None]:
        """The values of the environment variables *names*."""
        return {name: os.environ.get(name) for name in names}

    @command
    def interpreter(self) -> dict[str, object]:
        """The worker's interpreter, argv and process group."""
        return {
            "executable": sys.executable,
            "argv": sys.argv,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "pgid": os.getpgid(0),
            "sid": os.getsid(0),
            "stdin": os.readlink("/proc/self/fd/0")
            if sys.platform == "linux"
            else None,
        }
