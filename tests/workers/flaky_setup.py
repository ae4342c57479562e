"""A test adapter whose setup() fails once a marker file exists."""

from __future__ import annotations

import os

from snakepit.adapter import Adapter, command


class FlakySetupAdapter(Adapter):
    """Starts fine until the file ``args["marker"]`` exists; then setup() raises."""

    def setup(self) -> None:
        marker = self.args["marker"]
        if os.path.exists(marker):
            raise RuntimeError(f"marker {marker} exists: refusing to start")

    @command
    def pid(self) -> int:
        """This worker's pid."""
        return os.getpid()

    @command
    def add(self, a: int, b: int) -> int:
        """a + b."""
        return a + b
