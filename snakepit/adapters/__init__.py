"""Source-checkout shim for :mod:`snakepit.adapters`.

The ready-made adapters live in the top-level ``adapters/`` folder. A built wheel
installs that folder as ``snakepit.adapters`` (``package_dir`` in ``setup.cfg``), and
this file is not shipped. In a source checkout this shim points the package's
``__path__`` at ``adapters/`` so ``snakepit.adapters.showcase`` imports the same way.
"""

from __future__ import annotations

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parents[2] / "adapters")]
