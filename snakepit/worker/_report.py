"""Turn failures into text: for stderr, and for ``Error`` frames.

Everything here is defensive: an exception whose ``__str__`` raises, a value whose
``repr`` raises, a traceback that cannot be formatted, or a closed stderr must
never take the worker down with it.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def report(summary: str, exc: BaseException | None = None) -> None:
    """Write ``snakepit worker: <summary>`` on one line, then *exc*'s traceback,
    to stderr (which the parent logs)."""
    if exc is not None:
        summary = f"{summary}: {type(exc).__name__}: {safe_str(exc)}"
    text = f"snakepit worker: {summary}\n"
    if exc is not None:
        text += format_traceback(exc)
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # stderr is gone; the exit code still says what happened


def exit_now(code: int, message: str | None = None) -> NoReturn:
    """End the process at once: no waiting for calls, no teardown, no atexit."""
    if message is not None:
        report(message)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def safe_str(exc: BaseException) -> str:
    """Return ``str(exc)``, or a placeholder if that raises."""
    try:
        return str(exc)
    except BaseException:
        return f"<unprintable {type(exc).__name__} object>"


def format_traceback(exc: BaseException, skip: int = 0) -> str:
    """Format *exc* and its traceback, minus the worker's own first *skip* frames."""
    import traceback  # only failures pay for it

    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None:
            tb = tb.tb_next
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:
        return f"{type(exc).__name__}: <the traceback could not be formatted>\n"


def describe(value: object) -> str:
    """Return a short ``repr`` of *value* (:mod:`reprlib`), or a placeholder."""
    import reprlib

    try:
        return reprlib.repr(value)
    except BaseException:
        return f"<unrepresentable {type(value).__name__} object>"


def clip(text: str, limit: int) -> str:
    """Cut the middle out of *text* if it is longer than *limit* characters."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut ...]\n{text[-half:]}"


def printable(text: str, limit: int) -> str:
    """Return at most *limit* UTF-8 bytes of *text*, with anything msgpack would
    refuse (lone surrogates) escaped."""
    data = text.encode("utf-8", "backslashreplace")[:limit]
    return data.decode("utf-8", "ignore")
