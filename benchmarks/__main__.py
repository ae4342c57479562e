"""``python -m benchmarks``: the peer suite (``benchmarks.suite``).

The older single-purpose scripts still run as ``python -m benchmarks.<name>``.
"""

from __future__ import annotations

from benchmarks.suite import main

raise SystemExit(main())
