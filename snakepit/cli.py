"""The ``snakepit`` command (also ``python -m snakepit``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from snakepit._version import __version__

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``snakepit`` command line and return its exit status."""
    parser = argparse.ArgumentParser(
        prog="snakepit",
        description="Supervised pools of Python worker processes.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="a guided run that needs no arguments")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from snakepit._demo import run_demo

        return run_demo()
    parser.print_help(sys.stderr)
    return 2
