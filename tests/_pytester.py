"""Helpers for the tests that run a user's test suite through ``pytester``."""

from __future__ import annotations

import importlib.metadata


def backends() -> int:
    """How many anyio backends each async test of a user runs on (anyio's
    plugin runs them on every installed backend)."""
    try:
        from anyio.pytest_plugin import get_available_backends
    except ImportError:  # older anyio: asyncio only
        return 1
    return len(get_available_backends())


def plugin_args() -> list[str]:
    """``-p snakepit.testing``, unless snakepit is installed: then its entry point
    loads the plugin already, and naming it again would register it twice."""
    installed = any(
        ep.name == "snakepit"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "snakepit.testing"]
