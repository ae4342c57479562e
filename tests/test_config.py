"""snakepit.config: both formats, precedence, TTLs, validation, TOML, queries."""

from __future__ import annotations

import importlib.util
import math
import sys
import textwrap
import types
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snakepit import config as config_module
from snakepit.config import (
    DEFAULT_ADAPTER,
    DEFAULT_THREADS_PER_WORKER,
    Config,
    PoolConfig,
    default_pool_size,
)
from snakepit.exceptions import ConfigError, PoolNotFound
from snakepit.profiles import ProcessProfile, Profile, ThreadProfile

GRPC_WARNING = "grpc_config has no effect"

#: TOML needs tomllib (3.11+) or tomli; without either, snakepit says to install it.
needs_toml = pytest.mark.skipif(
    sys.version_info < (3, 11) and importlib.util.find_spec("tomli") is None,
    reason="no TOML parser (Python 3.10 without tomli)",
)

# --- The migration guide's examples, ported (Elixir adapter -> DEFAULT_ADAPTER) ---

#: "Configuration Changes / Legacy Format (v0.5.1) - Still Supported".
GUIDE_LEGACY = {
    "pooling_enabled": True,
    "adapter_module": DEFAULT_ADAPTER,
    "pool_size": 100,
    "pool_config": {"pool_size": 100},
    "grpc_config": {"base_port": 50051, "port_range": 100},
}

#: "New Multi-Pool Format (v0.6.0) - Optional".
GUIDE_MULTI_POOL = {
    "pools": [
        {
            "name": "api_pool",
            "worker_profile": "process",
            "pool_size": 100,
            "adapter_module": DEFAULT_ADAPTER,
            "grpc_config": {"base_port": 50051, "port_range": 100},
        },
        {
            "name": "ml_pool",
            "worker_profile": "thread",
            "pool_size": 4,
            "threads_per_worker": 16,
            "adapter_module": DEFAULT_ADAPTER,
            "grpc_config": {"base_port": 50151, "port_range": 10},
        },
    ]
}

#: "Option C: Add Worker Recycling" (legacy keys plus lifecycle).
GUIDE_RECYCLING = {
    "pooling_enabled": True,
    "adapter_module": DEFAULT_ADAPTER,
    "pool_size": 100,
    "worker_ttl": (3600, "seconds"),
    "worker_max_requests": 5000,
}

#: "Example 3: Mixed Workloads".
GUIDE_MIXED = {
    "pools": [
        {
            "name": "api",
            "worker_profile": "process",
            "pool_size": 200,
            "adapter_module": DEFAULT_ADAPTER,
            "worker_ttl": (3600, "seconds"),
        },
        {
            "name": "ml",
            "worker_profile": "thread",
            "pool_size": 4,
            "threads_per_worker": 16,
            "adapter_module": DEFAULT_ADAPTER,
            "worker_ttl": (1800, "seconds"),
        },
    ]
}


def invalid(mapping: dict[str, object], match: str) -> ConfigError:
    """Assert that *mapping* is rejected with a message matching *match*."""
    with pytest.raises(ConfigError, match=match) as info:
        Config.from_mapping(mapping)
    return info.value


# --- Defaults and construction ---


def test_default_config_is_one_default_pool_with_the_showcase_adapter() -> None:
    config = Config()
    assert config.pooling_enabled is True
    (pool,) = config.pools
    assert pool == PoolConfig()
    assert pool.name == "default"
    assert pool.adapter_module == DEFAULT_ADAPTER
    assert DEFAULT_ADAPTER == "snakepit.adapters.showcase:ShowcaseAdapter"
    assert pool.worker_profile is Profile.PROCESS
    assert pool.threads_per_worker == 1
    assert pool.pool_size == default_pool_size()
    assert pool.worker_ttl == math.inf
    assert pool.worker_max_requests == math.inf
    assert pool.memory_threshold_mb is None


def test_keywords_and_mapping_build_the_same_config() -> None:
    keys = {"pool_size": 3, "worker_ttl": (1, "hours")}
    assert Config(**keys) == Config.from_mapping(keys)
    assert Config(**GUIDE_MIXED) == Config.from_mapping(GUIDE_MIXED)


def test_configs_are_frozen() -> None:
    config = Config()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.pools = ()  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.pools[0].worker_ttl = 1.0  # type: ignore[misc]
    assert isinstance(config.pools, tuple)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_module_all_resolves() -> None:
    for name in config_module.__all__:
        assert hasattr(config_module, name), name


# --- Legacy (v0.5.1) format ---


def test_guide_legacy_example_is_one_default_process_pool() -> None:
    with pytest.warns(UserWarning, match=rf"{GRPC_WARNING} \(top level\)"):
        config = Config.from_mapping(GUIDE_LEGACY)
    assert config.pooling_enabled is True
    (pool,) = config.get_pool_configs()
    assert pool.name == "default"
    assert pool.worker_profile == "process"
    assert pool.pool_size == 100
    assert pool.adapter_module == DEFAULT_ADAPTER


def test_guide_recycling_example_normalises_lifecycle_keys() -> None:
    pool = Config.from_mapping(GUIDE_RECYCLING).get_pool_config("default")
    assert pool.worker_ttl == 3600.0
    assert pool.worker_max_requests == 5000
    assert pool.worker_profile is Profile.PROCESS


def test_pool_config_wins_over_top_level_keys() -> None:
    config = Config(pool_size=100, pool_config={"pool_size": 8})
    assert config.pools[0].pool_size == 8


def test_pool_config_merges_with_top_level_keys() -> None:
    config = Config(
        pool_size=100,
        queue_timeout=2.0,
        pool_config={"startup_batch_size": 2, "queue_timeout": 9},
    )
    pool = config.pools[0]
    assert (pool.pool_size, pool.startup_batch_size, pool.queue_timeout) == (
        100,
        2,
        9.0,
    )


def test_legacy_top_level_may_choose_the_thread_profile() -> None:
    pool = Config(worker_profile="thread", threads_per_worker=4).pools[0]
    assert (pool.name, pool.worker_profile, pool.threads_per_worker) == (
        "default",
        Profile.THREAD,
        4,
    )


def test_pooling_enabled_is_kept() -> None:
    assert Config(pooling_enabled=False).pooling_enabled is False


def test_grpc_config_alone_warns_and_changes_nothing() -> None:
    with pytest.warns(UserWarning, match="there are no ports to configure"):
        config = Config(grpc_config={"base_port": 50051})
    assert config == Config()


def test_top_level_name_is_an_error() -> None:
    invalid({"name": "api"}, r"top level: name is set per pool, inside pools")


def test_pool_config_must_be_a_mapping() -> None:
    invalid({"pool_config": 8}, r"top level: pool_config must be a mapping, not 8")


def test_pool_config_unknown_key_suggests() -> None:
    invalid(
        {"pool_config": {"poolsize": 8}},
        r"pool_config: unknown key 'poolsize' \(did you mean 'pool_size'\?\)",
    )


def test_legacy_process_pool_with_threads_is_an_error() -> None:
    invalid(
        {"threads_per_worker": 4},
        r"pool 'default': threads_per_worker=4 needs worker_profile='thread'",
    )


# --- Multi-pool (v0.6.0) format ---


def test_guide_multi_pool_example() -> None:
    match = rf"{GRPC_WARNING} \(pool 'api_pool', pool 'ml_pool'\)"
    with pytest.warns(UserWarning, match=match):
        config = Config.from_mapping(GUIDE_MULTI_POOL)
    api, ml = config.get_pool_configs()
    assert (api.name, api.worker_profile, api.pool_size) == ("api_pool", "process", 100)
    assert (ml.name, ml.worker_profile, ml.pool_size) == ("ml_pool", "thread", 4)
    assert ml.threads_per_worker == 16
    assert config.is_thread_profile("ml_pool")
    assert not config.is_thread_profile("api_pool")


def test_guide_mixed_workloads_example() -> None:
    config = Config.from_mapping(GUIDE_MIXED)
    assert [p.name for p in config.get_pool_configs()] == ["api", "ml"]
    assert config.get_pool_config("api").worker_ttl == 3600.0
    assert config.get_pool_config("ml").worker_ttl == 1800.0


def test_top_level_keys_are_defaults_every_pool_inherits() -> None:
    config = Config(
        pool_size=3,
        worker_ttl=(5, "minutes"),
        pools=[{"name": "a"}, {"name": "b", "pool_size": 7, "worker_ttl": "infinity"}],
    )
    a, b = config.pools
    assert (a.pool_size, a.worker_ttl) == (3, 300.0)
    assert (b.pool_size, b.worker_ttl) == (7, math.inf)


def test_precedence_defaults_top_level_pool_config_pool() -> None:
    config = Config(
        pool_size=2,
        queue_timeout=1.0,
        startup_timeout=4.0,
        pool_config={"queue_timeout": 2.0, "startup_timeout": 5.0},
        pools=[{"name": "a", "startup_timeout": 6.0}],
    )
    pool = config.pools[0]
    assert pool.pool_size == 2  # top level
    assert pool.queue_timeout == 2.0  # pool_config over top level
    assert pool.startup_timeout == 6.0  # the pool's own over both
    assert pool.max_queue_size == PoolConfig().max_queue_size  # built-in default


def test_threads_default_only_reaches_thread_pools() -> None:
    config = Config(
        threads_per_worker=8,
        pools=[{"name": "io"}, {"name": "cpu", "worker_profile": "thread"}],
    )
    io, cpu = config.pools
    assert io.threads_per_worker == 1
    assert cpu.threads_per_worker == 8


def test_thread_profile_defaults_to_the_elixir_thread_count() -> None:
    config = Config(pools=[{"name": "cpu", "worker_profile": "thread"}])
    assert config.pools[0].threads_per_worker == DEFAULT_THREADS_PER_WORKER == 10
    assert PoolConfig(worker_profile="thread").threads_per_worker == 10


def test_explicit_threads_in_a_process_pool_is_an_error() -> None:
    invalid(
        {"pools": [{"name": "io", "threads_per_worker": 4}]},
        r"pool 'io': threads_per_worker=4 needs worker_profile='thread'",
    )


def test_pools_accept_pool_config_instances_as_they_are() -> None:
    ready = PoolConfig(name="ready", pool_size=2)
    config = Config(pool_size=9, pools=[ready, {"name": "built"}])
    assert config.pools[0] is ready
    assert config.pools[1].pool_size == 9


def test_pool_order_is_kept() -> None:
    names = [f"p{i}" for i in range(5)]
    config = Config(pools=[{"name": n} for n in reversed(names)])
    assert [p.name for p in config.get_pool_configs()] == names[::-1]
    assert isinstance(config.get_pool_configs(), list)


# --- worker_ttl, worker_max_requests and friends ---


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ((3600, "seconds"), 3600.0),
        ((2, "minutes"), 120.0),
        ([3, "hours"], 10800.0),
        ((0.5, "hours"), 1800.0),
        ("infinity", math.inf),
        (math.inf, math.inf),
    ],
)
def test_ttl_forms(spec: object, seconds: float) -> None:
    ttl = PoolConfig(worker_ttl=spec).worker_ttl  # type: ignore[arg-type]
    assert ttl == seconds
    assert isinstance(ttl, float)
    assert Config(worker_ttl=spec).pools[0].worker_ttl == seconds


@pytest.mark.parametrize(
    "spec",
    [
        0,
        -5,
        True,
        "soon",
        (1, "days"),
        (0, "minutes"),
        (1,),
        (1, "hours", 2),
        None,
        math.nan,
    ],
)
def test_bad_ttl_is_an_error(spec: object) -> None:
    invalid(
        {"worker_ttl": spec},
        r"top level: worker_ttl must be a number of seconds > 0, "
        r"\(n, 'seconds' \| 'minutes' \| 'hours'\) or 'infinity', not ",
    )
    with pytest.raises(ConfigError, match=r"pool 'p': worker_ttl must be"):
        PoolConfig(name="p", worker_ttl=spec)  # type: ignore[arg-type]


POSITIVE = st.one_of(
    st.integers(min_value=1, max_value=10**9),
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
)
UNITS = st.sampled_from(["seconds", "minutes", "hours"])
TTL_SPECS = st.one_of(
    POSITIVE,
    st.tuples(POSITIVE, UNITS),
    st.tuples(POSITIVE, UNITS).map(list),
    st.just("infinity"),
)


@given(TTL_SPECS)
def test_any_valid_ttl_normalises_to_a_positive_float(spec: object) -> None:
    ttl = PoolConfig(worker_ttl=spec).worker_ttl  # type: ignore[arg-type]
    assert isinstance(ttl, float)
    assert ttl > 0


@given(POSITIVE)
def test_minutes_are_sixty_seconds(n: float) -> None:
    assert PoolConfig(worker_ttl=(n, "minutes")).worker_ttl == n * 60
    assert PoolConfig(worker_ttl=[n, "hours"]).worker_ttl == n * 3600


@pytest.mark.parametrize(
    ("spec", "expected"),
    [(5000, 5000), (1, 1), ("infinity", math.inf), (math.inf, math.inf)],
)
def test_max_requests_forms(spec: object, expected: float) -> None:
    assert PoolConfig(worker_max_requests=spec).worker_max_requests == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [0, -1, 1.5, True, "lots", None])
def test_bad_max_requests_is_an_error(spec: object) -> None:
    invalid(
        {"pools": [{"name": "p", "worker_max_requests": spec}]},
        r"pool 'p': worker_max_requests must be a positive integer or 'infinity', not ",
    )


def test_memory_threshold() -> None:
    assert PoolConfig(memory_threshold_mb=512).memory_threshold_mb == 512.0
    invalid(
        {"memory_threshold_mb": 0},
        r"top level: memory_threshold_mb must be a number of megabytes > 0, or None, not 0",
    )


def test_request_timeout_infinity_means_none() -> None:
    pool = Config(request_timeout="infinity").pools[0]
    assert pool.request_timeout is None
    assert pool.effective_request_timeout == math.inf
    assert PoolConfig(request_timeout=2).effective_request_timeout == 2.0


# --- Validation: one error per problem, all of them at once ---


def test_no_pools_configured() -> None:
    invalid({"pools": []}, r"^invalid snakepit configuration: no pools configured")


def test_unknown_profile() -> None:
    invalid(
        {"pools": [{"name": "p", "worker_profile": "fiber"}]},
        r"pool 'p': worker_profile must be 'process' or 'thread', not 'fiber'",
    )


@pytest.mark.parametrize(
    "key", ["pool_size", "threads_per_worker", "max_queue_size", "startup_batch_size"]
)
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes(key: str, value: int) -> None:
    pool = {"name": "p", "worker_profile": "thread", key: value}
    invalid(
        {"pools": [pool]}, rf"pool 'p': {key} must be a positive integer, not {value}"
    )


@pytest.mark.parametrize(
    "key", ["queue_timeout", "startup_timeout", "shutdown_timeout"]
)
def test_non_positive_timeouts(key: str) -> None:
    invalid({key: 0}, rf"top level: {key} must be a number of seconds > 0, not 0")


def test_duplicate_pool_names() -> None:
    invalid(
        {"pools": [{"name": "a"}, {"name": "b"}, {"name": "a"}]},
        r"pool 'a': duplicate pool name \(pools\[0\] and pools\[2\]\)",
    )
    invalid(
        {"pools": [PoolConfig(name="a"), {"name": "a"}]},
        r"duplicate pool name \(pools\[0\] and pools\[1\]\)",
    )


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        (
            {"pool_szie": 4},
            r"top level: unknown key 'pool_szie' \(did you mean 'pool_size'\?\)",
        ),
        ({"pool": [{}]}, r"top level: unknown key 'pool' \(did you mean 'pools'\?\)"),
        (
            {"pools": [{"name": "p", "workr_ttl": 5}]},
            r"pool 'p': unknown key 'workr_ttl' \(did you mean 'worker_ttl'\?\)",
        ),
        ({"zzz": 1}, r"top level: unknown key 'zzz'$"),
    ],
)
def test_unknown_keys(mapping: dict[str, object], match: str) -> None:
    invalid(mapping, match)


@pytest.mark.parametrize("spec", [None, "", "no_colon", "pkg.mod:", ":Cls", "a-b:C", 3])
def test_malformed_adapter(spec: object) -> None:
    invalid(
        {"adapter_module": spec},
        rf"top level: adapter_module must be 'package.module:Class', not {spec!r}",
    )


def test_missing_adapter_module() -> None:
    invalid(
        {"pools": [{"name": "p", "adapter_module": "no_such_pkg_xyz.mod:Adapter"}]},
        r"pool 'p': adapter_module 'no_such_pkg_xyz.mod:Adapter': no module named "
        r"'no_such_pkg_xyz' \(is it installed, or on the worker's PYTHONPATH\?\)",
    )
    invalid(
        {"adapter_module": "snakepit.adapters.no_such:Adapter"},
        r"pool 'default': adapter_module 'snakepit.adapters.no_such:Adapter': no module "
        r"named 'snakepit.adapters.no_such'",
    )


def test_adapter_inside_a_plain_module_is_missing() -> None:
    invalid(
        {"adapter_module": "json.decoder.nope:X"},
        r"no module named 'json.decoder.nope'",
    )


def test_pool_config_instances_are_checked_for_their_adapter() -> None:
    invalid(
        {"pools": [PoolConfig(name="p", adapter_module="no_such_pkg_xyz:A")]},
        r"pool 'p': adapter_module 'no_such_pkg_xyz:A': no module named",
    )


def test_pools_must_be_a_list_of_mappings_with_names() -> None:
    invalid({"pools": "api"}, r"top level: pools must be a list of pools, not 'api'")
    invalid({"pools": [3]}, r"pools\[0\]: must be a mapping or a PoolConfig, not 3")
    invalid({"pools": [{}]}, r"pools\[0\]: name is required")
    invalid({"pools": [{"name": ""}]}, r"pools\[0\]: name must be a non-empty string")


def test_configuration_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="the configuration must be a mapping, not 3"):
        Config.from_mapping(3)  # type: ignore[arg-type]


def test_other_key_types() -> None:
    invalid(
        {"pooling_enabled": "yes"}, r"pooling_enabled must be true or false, not 'yes'"
    )
    invalid({"adapter_env": {"A": 1}}, r"adapter_env must map strings to strings")
    invalid({"adapter_args": [1]}, r"adapter_args must map strings to values")
    invalid({"restart_intensity": -1}, r"restart_intensity must be an integer >= 0")
    invalid({"python_executable": 3}, r"python_executable must be a path")


def test_every_problem_is_reported_at_once() -> None:
    error = invalid(
        {
            "pooling_enabled": "yes",
            "worker_ttl": (1, "days"),
            "pools": [
                {"name": "a", "pool_szie": 3, "worker_profile": "fiber"},
                {"name": "a", "adapter_module": "no_such_pkg_xyz:A", "pool_size": 0},
                {"name": "b", "worker_max_requests": 0},
                7,
            ],
        },
        r"^invalid snakepit configuration \(9 problems\):\n",
    )
    assert str(error).splitlines()[1:] == [
        "  - top level: pooling_enabled must be true or false, not 'yes'",
        "  - top level: worker_ttl must be a number of seconds > 0, "
        "(n, 'seconds' | 'minutes' | 'hours') or 'infinity', not (1, 'days')",
        "  - pool 'a': unknown key 'pool_szie' (did you mean 'pool_size'?)",
        "  - pool 'a': worker_profile must be 'process' or 'thread', not 'fiber'",
        "  - pool 'a': pool_size must be a positive integer, not 0",
        "  - pool 'a': adapter_module 'no_such_pkg_xyz:A': no module named "
        "'no_such_pkg_xyz' (is it installed, or on the worker's PYTHONPATH?)",
        "  - pool 'a': duplicate pool name (pools[0] and pools[1])",
        "  - pool 'b': worker_max_requests must be a positive integer or 'infinity', "
        "not 0",
        "  - pools[3]: must be a mapping or a PoolConfig, not 7",
    ]


def test_problems_in_a_pool_with_other_errors_still_check_threads() -> None:
    error = invalid(
        {"pools": [{"name": "p", "pool_size": 0, "threads_per_worker": 2}]},
        r"\(2 problems\)",
    )
    assert "pool 'p': threads_per_worker=2 needs worker_profile='thread'" in str(error)


def test_no_warning_when_the_config_is_invalid() -> None:
    # filterwarnings=error: a grpc_config warning here would fail the test.
    invalid(
        {"grpc_config": {}, "pool_size": 0}, r"pool_size must be a positive integer"
    )


# --- Is the adapter importable? Checked without running the user's code ---


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_adapter_is_found_without_importing_its_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "cfgpkg_a" / "__init__.py", "raise RuntimeError('imported!')\n")
    write(
        tmp_path / "cfgpkg_a" / "sub" / "__init__.py",
        "raise RuntimeError('imported!')\n",
    )
    write(
        tmp_path / "cfgpkg_a" / "sub" / "adapter.py",
        "raise RuntimeError('imported!')\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = Config(adapter_module="cfgpkg_a.sub.adapter:Adapter")
    assert config.pools[0].adapter_module == "cfgpkg_a.sub.adapter:Adapter"
    assert not {"cfgpkg_a", "cfgpkg_a.sub", "cfgpkg_a.sub.adapter"} & set(sys.modules)


def test_adapter_in_the_working_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker runs ``python -m``, so its current directory is on its path.
    write(tmp_path / "cfg_cwd_adapter.py")
    monkeypatch.chdir(tmp_path)
    Config(adapter_module="cfg_cwd_adapter:Adapter")


def test_adapter_on_the_workers_pythonpath_is_found(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "cfg_env_adapter.py")
    Config(
        adapter_module="cfg_env_adapter:Adapter",
        adapter_env={"PYTHONPATH": str(tmp_path / "elsewhere")},
    )


def test_another_interpreter_is_left_to_check_its_own_adapter() -> None:
    config = Config(
        adapter_module="only_in_that_venv:Adapter",
        python_executable="/opt/py/bin/python",
    )
    assert config.pools[0].python_executable == "/opt/py/bin/python"


def test_package_that_extends_its_path_is_imported_to_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "real" / "cfg_ext_adapter.py")
    write(
        tmp_path / "cfgpkg_ext" / "__init__.py",
        f"__path__ = [{str(tmp_path / 'real')!r}]\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    Config(adapter_module="cfgpkg_ext.cfg_ext_adapter:Adapter")


def test_package_that_fails_to_import_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "cfgpkg_bad" / "__init__.py", "raise RuntimeError('broken init')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    invalid(
        {"adapter_module": "cfgpkg_bad.missing:Adapter"},
        r"adapter_module 'cfgpkg_bad.missing:Adapter' cannot be imported: "
        r"RuntimeError: broken init",
    )


# --- Queries ---


def test_get_pool_config_and_profiles() -> None:
    config = Config.from_mapping(GUIDE_MIXED)
    assert config.get_pool_config("ml").threads_per_worker == 16
    assert config.get_profile("api") is ProcessProfile
    assert config.get_profile("ml") is ThreadProfile
    assert config.is_thread_profile("ml") is True
    assert config.get_pool_config("ml").worker_profile == "thread"


def test_unknown_pool_lists_the_known_ones() -> None:
    config = Config.from_mapping(GUIDE_MIXED)
    with pytest.raises(
        PoolNotFound, match=r"no pool named 'gpu' \(configured pools: 'api', 'ml'\)"
    ):
        config.get_pool_config("gpu")
    with pytest.raises(LookupError):
        config.is_thread_profile("gpu")
    with pytest.raises(PoolNotFound):
        config.get_profile("gpu")


# --- PoolConfig as the pool code uses it ---


def test_pool_config_keeps_its_keywords_and_properties() -> None:
    pool = PoolConfig(
        name="p",
        adapter_module=DEFAULT_ADAPTER,
        pool_size=2,
        queue_timeout=1,
        request_timeout=None,
    )
    assert pool.effective_request_timeout == math.inf
    assert pool.is_thread_profile is False
    assert pool.queue_timeout == 1.0
    assert PoolConfig(worker_profile="thread", threads_per_worker=2).is_thread_profile


def test_pool_config_errors_name_the_pool_and_key() -> None:
    with pytest.raises(
        ConfigError, match=r"pool 'p': pool_size must be a positive integer, not 0"
    ):
        PoolConfig(name="p", pool_size=0)
    with pytest.raises(
        ConfigError, match=r"pool 'p': worker_profile must be 'process' or 'thread'"
    ):
        PoolConfig(name="p", worker_profile="fiber")
    with pytest.raises(
        ConfigError, match=r"threads_per_worker=3 needs worker_profile='thread'"
    ):
        PoolConfig(name="p", threads_per_worker=3)
    with pytest.raises(ConfigError, match=r"name must be a non-empty string"):
        PoolConfig(name="")


# --- TOML ---

SNAKEPIT_TOML = """
pooling_enabled = true
pool_size = 2

[[pools]]
name = "api"
worker_ttl = [1, "hours"]

[[pools]]
name = "ml"
worker_profile = "thread"
threads_per_worker = 4
worker_max_requests = "infinity"
adapter_args = { model = "small" }
"""

PYPROJECT_TOML = """
[build-system]
requires = ["setuptools"]

[tool.snakepit]
pool_size = 3
worker_ttl = "infinity"

[tool.snakepit.pool_config]
startup_batch_size = 1
"""


@needs_toml
def test_snakepit_toml_with_pools(tmp_path: Path) -> None:
    path = write(tmp_path / "snakepit.toml", SNAKEPIT_TOML)
    config = Config.from_toml(path)
    api, ml = config.pools
    assert (api.name, api.pool_size, api.worker_ttl) == ("api", 2, 3600.0)
    assert (ml.threads_per_worker, ml.worker_max_requests) == (4, math.inf)
    assert ml.adapter_args == {"model": "small"}
    assert Config.from_toml(str(path)) == config


@needs_toml
def test_pyproject_tool_snakepit(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", PYPROJECT_TOML)
    (pool,) = Config.from_toml(path).pools
    assert (pool.name, pool.pool_size, pool.worker_ttl, pool.startup_batch_size) == (
        "default",
        3,
        math.inf,
        1,
    )


@needs_toml
def test_pyproject_without_the_table(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", "[tool.other]\nx = 1\n")
    with pytest.raises(
        ConfigError, match=r"pyproject.toml has no \[tool.snakepit\] table"
    ):
        Config.from_toml(path)


@needs_toml
def test_toml_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "snakepit.toml", "[[pools]]\nname = 'a'\npool_size = 0\n")
    with pytest.raises(
        ConfigError, match=r"in .*snakepit.toml: pool 'a': pool_size must be"
    ):
        Config.from_toml(path)
    path = write(tmp_path / "pyproject.toml", "[tool.snakepit]\npoolsize = 1\n")
    with pytest.raises(
        ConfigError, match=r"pyproject.toml \[tool.snakepit\]: top level: unknown key"
    ):
        Config.from_toml(path)


@needs_toml
def test_unreadable_or_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*missing.toml"):
        Config.from_toml(tmp_path / "missing.toml")
    path = write(tmp_path / "snakepit.toml", "pools = [\n")
    with pytest.raises(ConfigError, match=r"snakepit.toml is not valid TOML") as info:
        Config.from_toml(path)
    assert isinstance(info.value.__cause__, ValueError)  # TOMLDecodeError


def test_python_310_without_tomli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "snakepit.toml", "pool_size = 2\n")
    monkeypatch.setattr(sys, "version_info", (3, 10, 0, "final", 0))
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(
        ConfigError, match=r"needs the tomli package: pip install tomli"
    ):
        Config.from_toml(path)
    fake_tomli = types.ModuleType("tomli")
    fake_tomli.loads = lambda text: {"pool_size": 7}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tomli", fake_tomli)
    assert Config.from_toml(path).pools[0].pool_size == 7


# --- Config.load ---


@needs_toml
def test_load_passes_a_config_through_and_builds_the_rest(tmp_path: Path) -> None:
    config = Config(pool_size=2)
    assert Config.load(config) is config
    assert Config.load({"pool_size": 2}) == config
    path = write(tmp_path / "custom.toml", "pool_size = 2\n")
    assert Config.load(path) == config
    assert Config.load(str(path)) == config


@needs_toml
def test_load_finds_snakepit_toml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "snakepit.toml", SNAKEPIT_TOML)
    write(tmp_path / "pyproject.toml", PYPROJECT_TOML)
    monkeypatch.chdir(tmp_path)
    assert [p.name for p in Config.load().pools] == ["api", "ml"]  # snakepit.toml wins


@needs_toml
def test_load_falls_back_to_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT_TOML)
    monkeypatch.chdir(tmp_path)
    assert Config.load().pools[0].pool_size == 3


@needs_toml
def test_load_defaults_without_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Config.load() == Config()
    write(tmp_path / "pyproject.toml", "[tool.other]\nx = 1\n")
    assert Config.load(None) == Config()
