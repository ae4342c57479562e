"""Worker lifecycle: recycling by TTL, request count and memory; health checks.

Recycling is zero-downtime and start-before-stop: the replacement starts and takes
calls before the old worker stops taking them; the old worker then finishes its
calls in flight (within ``drain_timeout``) and shuts down.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._manager import run_lifecycle as run_lifecycle
from ._policy import NEAR_LIMIT as NEAR_LIMIT
from ._policy import RecycleReason as RecycleReason
from ._policy import is_near as is_near
from ._policy import recycle_reason as recycle_reason

__all__ = ("RecycleReason", "recycle_reason", "is_near", "NEAR_LIMIT", "run_lifecycle")
