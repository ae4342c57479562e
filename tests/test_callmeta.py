"""Call metadata: providers in the parent, call_metadata() in the worker."""

from __future__ import annotations

import anyio
import pytest

from snakepit._callmeta import add_provider, collect
from snakepit.pool import open_pool

pytestmark = pytest.mark.anyio

BASIC = "tests.workers.basic:BasicAdapter"


def test_no_provider_means_no_metadata() -> None:
    assert collect() is None


def test_providers_merge_and_a_failing_one_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("boom")

    removers = [
        add_provider(lambda: {"a": "1", "b": "2"}),
        add_provider(broken),
        add_provider(lambda: {"b": "3", "bad": 4}),  # type: ignore[dict-item]
        add_provider(lambda: None),
    ]
    try:
        assert collect() == {"a": "1", "b": "3"}
        assert "boom" in caplog.text
    finally:
        for remove in removers:
            remove()
            remove()  # twice is harmless
    assert collect() is None


async def test_a_worker_sees_the_metadata_of_each_call() -> None:
    current = {"value": "first"}
    with anyio.fail_after(30):
        async with open_pool(adapter=BASIC, size=1) as pool:
            remove = add_provider(lambda: {"trace": current["value"]})
            try:
                assert await pool.execute("metadata") == {"trace": "first"}
                current["value"] = "second"
                assert await pool.execute("metadata") == {"trace": "second"}
            finally:
                remove()
            assert await pool.execute("metadata") == {}
