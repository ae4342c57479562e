"""snakepit._flags: the helper processes' ``--name value`` flags."""

from __future__ import annotations

import subprocess
import sys

import pytest

from snakepit._flags import parse_flags

KINDS = {"owner": int, "dir": str, "grace": float}


def test_flags_are_converted_by_name_with_defaults_filled() -> None:
    assert parse_flags(
        ["--owner", "12", "--dir", "/x"],
        KINDS,
        prog="p",
        required=("owner",),
        defaults={"grace": 0.5},
    ) == {"owner": 12, "dir": "/x", "grace": 0.5}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope", "1"], "p: bad flag '--nope'"),
        (["owner", "1"], "p: bad flag 'owner'"),
        (["--owner"], "p: bad flag '--owner'"),
        (["--owner", "twelve"], "p: bad value for --owner"),
        (["--dir", "/x"], "p: --owner is required"),
    ],
)
def test_bad_flags_exit_with_a_message_naming_the_flag(
    argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_flags(argv, KINDS, prog="p", required=("owner",))
    assert str(exited.value) == message


def test_the_reaper_imports_neither_typing_nor_argparse_while_it_waits() -> None:
    """It starts beside every pool's first workers: what it imports, they wait for."""
    code = (
        "import sys, snakepit._reaper, snakepit._flags; "
        "print(sorted({'typing', 'argparse'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
