"""The application: named pools, legacy config, the async execute API.

Ports the migration guide's tests (v0.5.1 config still works; multi-pool config;
pools side by side).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from snakepit import open_snakepit
from snakepit.exceptions import PoolNotFound, PoolUnavailable, RemoteError

pytestmark = pytest.mark.anyio

SHOWCASE = "snakepit.adapters.showcase:ShowcaseAdapter"
CHAOS = "snakepit.adapters.chaos:ChaosAdapter"


async def test_legacy_v051_config_still_works() -> None:
    legacy = {"pooling_enabled": True, "adapter_module": SHOWCASE, "pool_size": 2}
    with anyio.fail_after(60):
        async with open_snakepit(legacy) as sp:
            assert (await sp.execute("ping", {}))["status"] == "pong"
            assert await sp.execute("add", {"a": 5, "b": 3}) == 8
            assert [p.name for p in sp.config.get_pool_configs()] == ["default"]
            assert len(sp.list_workers()) == 2


async def test_multi_pool_config_with_a_default_pool() -> None:
    config = {
        "pools": [{"name": "default", "adapter_module": SHOWCASE, "pool_size": 1}]
    }
    with anyio.fail_after(60):
        async with open_snakepit(config) as sp:
            assert await sp.execute("add", {"a": 1, "b": 2}, pool="default") == 3
            assert await sp.execute("add", {"a": 1, "b": 2}) == 3


async def test_two_pools_side_by_side() -> None:
    config = {
        "pools": [
            {"name": "api", "adapter_module": SHOWCASE, "pool_size": 2},
            {"name": "chaos", "adapter_module": CHAOS, "pool_size": 1},
        ]
    }
    with anyio.fail_after(60):
        async with open_snakepit(config) as sp:
            assert len(sp.list_workers("api")) == 2
            assert len(sp.list_workers("chaos")) == 1
            assert len(sp.list_workers()) == 3
            assert await sp.execute("add", {"a": 2, "b": 2}, pool="api") == 4
            reply = await sp.execute("echo", {"request_id": 5}, pool="chaos")
            assert reply["request_id"] == 5
            # calls without pool= go to the first pool when none is named default
            assert await sp.execute("add", {"a": 1, "b": 1}) == 2
            with pytest.raises(PoolNotFound, match=r"'nope'.*'api', 'chaos'"):
                await sp.execute("ping", pool="nope")
            with pytest.raises(PoolNotFound):
                sp.get_stats("nope")
            assert sp.get_stats("api")["workers"] == 2
            assert sp.get_stats()["workers"] == 3


async def test_sessions_streams_and_error_stats() -> None:
    config = {"pools": [{"name": "default", "pool_size": 2}]}
    with anyio.fail_after(60):
        async with open_snakepit(config) as sp:
            await sp.execute_in_session("s", "set_counter", {"value": 1})
            assert await sp.execute_in_session("s", "increment_counter") == 2
            chunks = [c async for c in sp.execute_stream("stream_fibonacci", {"n": 4})]
            assert [c["value"] for c in chunks] == [0, 1, 1, 2]
            with pytest.raises(RemoteError):
                await sp.execute("error_demo")
            assert sp.get_stats()["errors"] == 1


async def test_default_config_is_one_showcase_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no snakepit.toml, no pyproject.toml here
    with anyio.fail_after(60):
        async with open_snakepit() as sp:
            assert sp.default_pool_name == "default"
            assert (await sp.execute("ping"))["status"] == "pong"


async def test_config_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "snakepit.toml"
    path.write_text(
        f'[[pools]]\nname = "default"\npool_size = 1\nadapter_module = "{SHOWCASE}"\n'
    )
    with anyio.fail_after(60):
        async with open_snakepit(path) as sp:
            assert await sp.execute("add", {"a": 20, "b": 22}) == 42


async def test_a_pool_that_cannot_start_is_reported() -> None:
    config = {
        "pools": [
            {"name": "good", "pool_size": 1},
            {
                "name": "bad",
                "pool_size": 1,
                "adapter_module": "tests.workers.basic:FailingSetupAdapter",
            },
        ]
    }
    with anyio.fail_after(60), pytest.raises(PoolUnavailable, match="'bad'"):
        async with open_snakepit(config):
            pass


async def test_orderly_shutdown_finishes_in_flight_and_fails_queued() -> None:
    from snakepit.exceptions import PoolClosed

    outcomes: list[object] = []

    async def call(sp, command: str, args: dict) -> None:
        try:
            outcomes.append(await sp.execute(command, args))
        except PoolClosed as exc:
            outcomes.append(type(exc))

    config = {"pools": [{"name": "default", "pool_size": 1}]}
    with anyio.fail_after(60):
        async with open_snakepit(config) as sp:
            pid = (await sp.execute("ping"))["pid"]
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, sp, "sleep", {"seconds": 0.3})
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(call, sp, "add", {"a": 1, "b": 2})
                await anyio.wait_all_tasks_blocked()
                await sp.aclose()
    assert outcomes == [PoolClosed, {"slept": 0.3}]
    import psutil

    assert not psutil.pid_exists(pid)
