"""A test adapter that leaves a grandchild behind if its worker dies unannounced.

Its ``setup()`` starts ``sleep`` (adapter arg ``seconds``, default 60) in the
worker's process group, with the worker's environment (so ``SNAKEPIT_RUN_ID``):
exactly what the worker's own parent-death handling cannot reach, and orphan
cleanup must. An orderly ``teardown()`` ends it.
"""

from __future__ import annotations

import subprocess

from snakepit.adapter import Adapter, command


class OrphanerAdapter(Adapter):
    """Keeps one sleeping grandchild for its whole life."""

    def setup(self) -> None:
        seconds = float(self.args.get("seconds", 60))
        self.child = subprocess.Popen(
            ["sleep", str(seconds)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def teardown(self) -> None:
        self.child.kill()
        self.child.wait()

    @command
    def grandchild(self) -> int:
        """The grandchild's pid."""
        return self.child.pid
