"""``python -m snakepit.worker``: run one worker process (see :func:`main`), or,
with ``--template`` first, a template that forks workers (see :mod:`._template`)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["--template"]:
        from ._template import template_main

        raise SystemExit(template_main(sys.argv[2:]))
    from ._boot import main

    raise SystemExit(main())
