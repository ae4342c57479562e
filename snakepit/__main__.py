"""``python -m snakepit``: the same as the ``snakepit`` command."""

from __future__ import annotations

from snakepit.cli import main

raise SystemExit(main())
