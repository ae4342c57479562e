"""Call metadata: string pairs a parent-side integration attaches to every call.

An integration (``snakepit.tracing`` puts the trace context there) registers a
*provider* with :func:`add_provider`. When a call is encoded, in the caller's
task, :func:`collect` merges what the providers return into the call's ``meta``
field; in the worker, the command reads it with
:func:`snakepit.adapter.call_metadata`. With no provider (the usual case) a call
carries nothing and costs nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

__all__ = ("Provider", "add_provider", "collect")

logger = logging.getLogger("snakepit")

Provider = Callable[[], "Mapping[str, str] | None"]
"""A zero-argument callable returning string pairs for the call being encoded."""

_lock = threading.Lock()
_providers: tuple[Provider, ...] = ()


def add_provider(provider: Provider) -> Callable[[], None]:
    """Call *provider* for every call from now on; return a function that stops
    it (calling that twice is harmless)."""
    global _providers
    with _lock:
        _providers = (*_providers, provider)

    def remove() -> None:
        global _providers
        with _lock:
            _providers = tuple(p for p in _providers if p is not provider)

    return remove


def collect() -> dict[str, str] | None:
    """The metadata for the call being encoded now, or None if there is none.

    A provider that raises or returns something other than string pairs is
    logged and skipped: metadata never makes a call fail.
    """
    providers = _providers
    if not providers:
        return None
    meta: dict[str, str] = {}
    for provider in providers:
        try:
            found = provider()
            if found:
                meta.update(
                    (key, value)
                    for key, value in found.items()
                    if type(key) is str and type(value) is str
                )
        except Exception:
            logger.exception("call metadata provider %r failed; skipped", provider)
    return meta or None
