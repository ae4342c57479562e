"""``python -m benchmarks.suite``: the same as ``python -m benchmarks``."""

from __future__ import annotations

from benchmarks.suite import main

raise SystemExit(main(prog="python -m benchmarks.suite"))
