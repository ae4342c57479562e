"""``python -m snakepit.worker``: run one worker process (see :func:`main`)."""

from __future__ import annotations

from ._boot import main

if __name__ == "__main__":
    raise SystemExit(main())
