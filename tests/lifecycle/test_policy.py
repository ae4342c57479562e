"""The pure recycle decision."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from snakepit.lifecycle import RecycleReason, is_near, recycle_reason

INF = math.inf


def decide(**overrides):
    values = {
        "age": 0.0,
        "requests": 0,
        "rss_bytes": 0,
        "ttl": INF,
        "max_requests": INF,
        "memory_threshold_bytes": None,
    }
    values.update(overrides)
    return recycle_reason(**values)


def test_each_limit() -> None:
    assert decide() is None
    assert decide(age=10, ttl=10) is RecycleReason.TTL_EXPIRED
    assert decide(age=9.9, ttl=10) is None
    assert decide(requests=20, max_requests=20) is RecycleReason.MAX_REQUESTS
    assert decide(requests=19, max_requests=20) is None
    assert (
        decide(rss_bytes=100, memory_threshold_bytes=100)
        is RecycleReason.MEMORY_THRESHOLD
    )
    assert decide(rss_bytes=None, memory_threshold_bytes=100) is None
    assert RecycleReason.TTL_EXPIRED == "ttl_expired"


@given(
    age=st.floats(0, 1e6),
    requests=st.integers(0, 10**6),
    rss=st.integers(0, 2**40),
)
def test_no_limits_never_recycle(age: float, requests: int, rss: int) -> None:
    assert decide(age=age, requests=requests, rss_bytes=rss) is None


def test_near() -> None:
    assert is_near(90, 100)
    assert not is_near(89, 100)
    assert not is_near(10**9, INF)
