"""``--name value`` flags, for snakepit's helper processes (a pool's template,
a run's reaper).

Not argparse: the reaper starts beside every pool's first workers, and
argparse's imports would double its start. Imports nothing (not even typing), so
that a helper pays for nothing it does not use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see above; mypy reads this name alike
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

__all__ = ("parse_flags",)


def parse_flags(
    argv: Sequence[str],
    kinds: Mapping[str, Callable[[str], Any]],
    *,
    prog: str,
    required: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The values of *argv*'s flags, each ``--name value``, by name (without the
    dashes), each converted by ``kinds[name]``; *defaults* fill the ones not given.

    Raises:
        SystemExit: with a message naming *prog* and the flag, for an unknown or
            valueless flag, a value its kind refuses, or a *required* one missing.
    """
    values: dict[str, Any] = dict(defaults or {})
    items = list(argv)
    while items:
        flag = items.pop(0)
        name = flag[2:]
        if not flag.startswith("--") or name not in kinds or not items:
            raise SystemExit(f"{prog}: bad flag {flag!r}")
        try:
            values[name] = kinds[name](items.pop(0))
        except ValueError:
            raise SystemExit(f"{prog}: bad value for {flag}") from None
    for name in required:
        if name not in values:
            raise SystemExit(f"{prog}: --{name} is required")
    return values
