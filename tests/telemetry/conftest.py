"""Fixtures for the telemetry tests: isolation of the global bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from snakepit import telemetry
from snakepit.telemetry import _bus


@pytest.fixture(autouse=True)
def _isolate_telemetry() -> Iterator[None]:
    """Detach every handler a test attached, and fail if a capture leaked."""
    before = {h.id for h in telemetry.list_handlers()}
    observers = _bus._registry.observers
    yield
    for handler in telemetry.list_handlers():
        if handler.id not in before:
            telemetry.detach(handler.id)
    leaked = _bus._registry.observers != observers
    _bus._registry.observers = observers
    assert not leaked, "a capture_events block did not unregister its observer"
