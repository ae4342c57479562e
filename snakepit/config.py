"""Configuration: :class:`Config` (every pool) and :class:`PoolConfig` (one pool).

A :class:`Config` is built from a mapping, from keyword arguments or from a TOML
file, in either of the Elixir library's formats: the legacy (v0.5.1) one, whose
top-level keys describe a single pool named ``default``, or the multi-pool (v0.6.0)
one, a ``pools`` list. Both are validated before anything starts, and every problem
found is reported at once, in one :class:`~snakepit.exceptions.ConfigError`.

Values are frozen. A bad :class:`PoolConfig` value raises
:class:`~snakepit.exceptions.ConfigError` naming the pool and the key.

.. versionadded:: 0.1
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeGuard, final

import attrs

from snakepit._registry import valid_instance
from snakepit.exceptions import ConfigError, PoolNotFound
from snakepit.profiles import ProcessProfile, Profile, ThreadProfile, profile_for
from snakepit.protocol import DEFAULT_MAX_FRAME_BYTES

__all__ = (
    "DEFAULT_ADAPTER",
    "DEFAULT_THREADS_PER_WORKER",
    "Config",
    "PoolConfig",
    "default_pool_size",
)

#: The adapter a pool runs when none is configured.
DEFAULT_ADAPTER = "snakepit.adapters.showcase:ShowcaseAdapter"

#: ``threads_per_worker`` of a thread-profile pool that does not set it (the
#: Elixir library's default). Process-profile pools always run one thread.
DEFAULT_THREADS_PER_WORKER = 10

#: Seconds per unit of a ``(n, unit)`` TTL.
_TTL_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600}
_INFINITY = "infinity"


def default_pool_size() -> int:
    """Twice the number of CPUs, as the Elixir library (``schedulers_online * 2``)."""
    return 2 * (os.cpu_count() or 1)


# --- Normalizers: one per key, shared by PoolConfig and Config ---


class _Invalid(Exception):
    """A value a normalizer rejects; its message completes ``"<key> ..."``."""


def _number(value: object) -> float | None:
    """*value* as a float if it is a real number (not a bool), else ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Invalid(f"must be a positive integer, not {value!r}")
    return value


def _non_negative_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"must be an integer >= 0, not {value!r}")
    return value


def _positive_seconds(value: object) -> float:
    seconds = _number(value)
    if seconds is None or not seconds > 0:  # NaN is not > 0 either
        raise _Invalid(f"must be a number of seconds > 0, not {value!r}")
    return seconds


def _timeout_or_none(value: object) -> float | None:
    if value is None or value == _INFINITY:
        return None
    try:
        return _positive_seconds(value)
    except _Invalid:
        raise _Invalid(
            f"must be a number of seconds > 0, 'infinity' or None, not {value!r}"
        ) from None


def _memory_mb(value: object) -> float | None:
    if value is None:
        return None
    megabytes = _number(value)
    if megabytes is None or not 0 < megabytes < math.inf:
        raise _Invalid(f"must be a number of megabytes > 0, or None, not {value!r}")
    return megabytes


def _ttl(value: object) -> float:
    if value == _INFINITY:
        return math.inf
    seconds = _number(value)
    if seconds is not None and seconds > 0:
        return seconds
    if isinstance(value, (tuple, list)) and len(value) == 2:
        amount, unit = _number(value[0]), value[1]
        if amount is not None and amount > 0 and unit in _TTL_UNITS:
            return amount * _TTL_UNITS[unit]
    raise _Invalid(
        "must be a number of seconds > 0, (n, 'seconds' | 'minutes' | 'hours') "
        f"or 'infinity', not {value!r}"
    )


def _max_requests(value: object) -> float:
    if value == _INFINITY or value == math.inf:
        return math.inf
    try:
        return _positive_int(value)
    except _Invalid:
        raise _Invalid(
            f"must be a positive integer or 'infinity', not {value!r}"
        ) from None


def _profile(value: object) -> Profile:
    try:
        return Profile(value)
    except ValueError:
        known = " or ".join(repr(p.value) for p in Profile)
        raise _Invalid(f"must be {known}, not {value!r}") from None


START_METHODS = ("spawn", "template")
"""The values of ``start_method``."""

DEFAULT_START_METHOD = "template" if sys.platform.startswith("linux") else "spawn"
"""``"template"`` on Linux: a worker starts ten times faster and uses a fraction
of the private memory (``benchmarks/RESULTS.md``); ``"spawn"`` elsewhere."""


def _start_method(value: object) -> str:
    if value not in START_METHODS:
        raise _Invalid(f"must be 'spawn' or 'template', not {value!r}")
    if value == "template" and not sys.platform.startswith("linux"):
        raise _Invalid(
            "'template' needs Linux (fork, SCM_RIGHTS, waitid); use 'spawn' here"
        )
    return str(value)


def _adapter_spec(value: object) -> str:
    if isinstance(value, str):
        module, _, qualname = value.partition(":")
        if all(
            part.isidentifier() for part in [*module.split("."), *qualname.split(".")]
        ):
            return value
    raise _Invalid(f"must be 'package.module:Class', not {value!r}")


def _pool_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"must be a non-empty string, not {value!r}")
    return value


def _executable(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise _Invalid(f"must be a path to a Python interpreter, or None, not {value!r}")


def _str_key_mapping(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _Invalid(f"must map strings to values, not {value!r}")
    return dict(value)


def _str_str_mapping(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _Invalid(f"must map strings to strings, not {value!r}")
    return dict(value)


def _safety_checks(value: object) -> str:
    if value is True:
        return "warn"
    if value is False or value is None:
        return "off"
    if isinstance(value, str) and value in ("off", "warn", "strict"):
        return value
    raise _Invalid(f"must be true, false, 'off', 'warn' or 'strict', not {value!r}")


def _instance(value: object) -> str | None:
    if value is None or (isinstance(value, str) and valid_instance(value)):
        return value
    raise _Invalid(
        "must be 1 to 100 letters, digits, '.', '_' or '-' (starting with a letter "
        f"or digit), or None, not {value!r}"
    )


def _data_dir(value: object) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value is None or (isinstance(value, str) and value):
        return value
    raise _Invalid(f"must be a folder path, or None, not {value!r}")


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, not {value!r}")
    return value


_NORMALIZERS: dict[str, Callable[[object], object]] = {
    "name": _pool_name,
    "adapter_module": _adapter_spec,
    "pool_size": _positive_int,
    "worker_profile": _profile,
    "threads_per_worker": _positive_int,
    "adapter_args": _str_key_mapping,
    "adapter_env": _str_str_mapping,
    "python_executable": _executable,
    "max_queue_size": _positive_int,
    "pipeline_depth": _positive_int,
    "start_method": _start_method,
    "queue_timeout": _positive_seconds,
    "request_timeout": _timeout_or_none,
    "startup_timeout": _positive_seconds,
    "startup_batch_size": _positive_int,
    "shutdown_timeout": _positive_seconds,
    "max_frame_bytes": _positive_int,
    "restart_intensity": _non_negative_int,
    "restart_period": _positive_seconds,
    "worker_ttl": _ttl,
    "worker_max_requests": _max_requests,
    "memory_threshold_mb": _memory_mb,
    "worker_max_requests_jitter": _non_negative_int,
    "lifecycle_check_interval": _positive_seconds,
    "health_check_interval": _positive_seconds,
    "health_check_timeout": _positive_seconds,
    "drain_timeout": _positive_seconds,
    "max_concurrent_recycles": _positive_int,
    "thread_safety_checks": _safety_checks,
    "instance": _instance,
    "data_dir": _data_dir,
}


def _lenient(normalize: Callable[[object], object], value: object) -> Any:
    """The normalized *value*, or *value* itself for the validator (which knows the
    pool's name) to reject."""
    try:
        return normalize(value)
    except _Invalid:
        return value


# attrs converters (mypy wants named functions); their parameters type __init__.


def _to_safety_checks(value: bool | str) -> Any:
    return _lenient(_safety_checks, value)


def _to_profile(value: Profile | str) -> Any:
    return _lenient(_profile, value)


def _to_args(value: Mapping[str, Any]) -> Any:
    return _lenient(_str_key_mapping, value)


def _to_env(value: Mapping[str, str]) -> Any:
    return _lenient(_str_str_mapping, value)


def _to_timeout(value: float | str | None) -> Any:
    return _lenient(_timeout_or_none, value)


def _to_ttl(value: float | str | Sequence[object]) -> Any:
    return _lenient(_ttl, value)


def _to_max_requests(value: float | str) -> Any:
    return _lenient(_max_requests, value)


def _to_memory(value: float | None) -> Any:
    return _lenient(_memory_mb, value)


def _to_data_dir(value: str | os.PathLike[str] | None) -> Any:
    return _lenient(_data_dir, value)


def _check(key: str) -> Callable[[Any, attrs.Attribute[Any], object], None]:
    """An attrs validator raising :class:`ConfigError` with the pool and key."""
    normalize = _NORMALIZERS[key]

    def check(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        try:
            normalize(value)
        except _Invalid as exc:
            raise ConfigError(f"pool {instance.name!r}: {key} {exc}") from None

    return check


def _threads_problem(profile: Profile, threads: int) -> str | None:
    if profile is Profile.PROCESS and threads != 1:
        return (
            f"threads_per_worker={threads} needs worker_profile='thread' (the "
            "process profile runs one call at a time)"
        )
    return None


# --- PoolConfig ---


@final
@attrs.frozen(kw_only=True)
class PoolConfig:
    """The settings of one pool. Keys follow the Elixir library's config.

    Args:
        name: the pool's name.
        adapter_module: the adapter as ``"package.module:Class"``.
        pool_size: how many worker processes.
        worker_profile: ``"process"`` or ``"thread"``.
        threads_per_worker: calls one worker runs at once: 1 in the process
            profile; in the thread profile :data:`DEFAULT_THREADS_PER_WORKER`
            unless given.
        adapter_args: keyword arguments for the adapter's constructor.
        adapter_env: variables added to the worker's environment (they override
            the profile's).
        python_executable: the worker interpreter (default: the parent's).
        max_queue_size: calls that may wait for a worker; beyond it
            :class:`~snakepit.exceptions.PoolSaturated`.
        start_method: ``"spawn"`` starts each worker as a new interpreter;
            ``"template"`` (Linux) forks it from a process that has imported
            the worker and the adapter's module once: it starts in
            milliseconds and shares those pages.
        pipeline_depth: the most calls sent to a worker per unit of its
            capacity. Above 1, once every worker is busy, calls are sent ahead
            to a worker whose calls are expected to take under 10 ms in all
            (each command timed on average), so it never idles between two
            calls; a worker that falls idle takes back calls sent ahead to
            others. 1: never send ahead.
        queue_timeout: seconds a call may wait for a worker.
        request_timeout: default per-call timeout in seconds (``None`` or
            ``"infinity"``: none).
        startup_timeout: seconds a worker has to finish its handshake.
        startup_batch_size: workers started at once.
        shutdown_timeout: seconds a stopping worker has to finish its calls
            before SIGTERM, then SIGKILL.
        max_frame_bytes: the largest frame accepted either way.
        restart_intensity: failed worker starts allowed within *restart_period*
            before the pool gives up.
        restart_period: the window of *restart_intensity*, in seconds.
        worker_ttl: recycle a worker this long after it started: seconds,
            ``(n, "seconds" | "minutes" | "hours")`` or ``"infinity"``; stored as
            float seconds, ``math.inf`` for never.
        worker_max_requests: recycle a worker after this many calls: a positive
            integer, or ``"infinity"`` (stored as ``math.inf``).
        memory_threshold_mb: recycle a worker whose memory (RSS) passes this many
            megabytes (``None``: never).
        worker_max_requests_jitter: add up to this many requests to each worker's
            ``worker_max_requests`` (drawn per worker), so workers started together
            do not all recycle together. 0: no jitter.
        lifecycle_check_interval: seconds between TTL and memory checks.
        health_check_interval: seconds between health checks (a ``ping``).
        health_check_timeout: seconds a worker has to answer a health check.
        drain_timeout: seconds a recycled worker has to finish its calls in flight
            before it is told to shut down.
        max_concurrent_recycles: recycles that may run at once in the pool.
        thread_safety_checks: the workers' runtime thread-safety checker:
            ``"off"`` (default), ``"warn"`` (``True`` too) or ``"strict"``; see
            ``docs/thread-safety.md``.
        instance: the instance token for orphan cleanup (leftovers of dead runs
            of the same instance are killed at start). ``None``: the
            ``SNAKEPIT_INSTANCE`` environment variable, else derived from the
            working directory and the application's pool names. See
            ``docs/reliability.md``.
        data_dir: the folder of the run records (``None``: the
            ``SNAKEPIT_DATA_DIR`` environment variable, else
            ``$XDG_STATE_HOME/snakepit`` or ``~/.local/state/snakepit``).

    Raises:
        ConfigError: a value is invalid; the message names the pool and the key.

    .. versionadded:: 0.1
    """

    name: str = attrs.field(default="default", validator=_check("name"))
    adapter_module: str = attrs.field(
        default=DEFAULT_ADAPTER, validator=_check("adapter_module")
    )
    pool_size: int = attrs.field(
        factory=default_pool_size, validator=_check("pool_size")
    )
    worker_profile: Profile = attrs.field(
        default=Profile.PROCESS,
        converter=_to_profile,
        validator=_check("worker_profile"),
    )
    threads_per_worker: int = attrs.field(validator=_check("threads_per_worker"))
    adapter_args: Mapping[str, Any] = attrs.field(
        factory=dict,
        converter=_to_args,
        validator=_check("adapter_args"),
    )
    adapter_env: Mapping[str, str] = attrs.field(
        factory=dict, converter=_to_env, validator=_check("adapter_env")
    )
    python_executable: str | None = attrs.field(
        default=None, validator=_check("python_executable")
    )
    max_queue_size: int = attrs.field(default=1000, validator=_check("max_queue_size"))
    pipeline_depth: int = attrs.field(default=16, validator=_check("pipeline_depth"))
    start_method: str = attrs.field(
        default=DEFAULT_START_METHOD, validator=_check("start_method")
    )
    queue_timeout: float = attrs.field(default=5.0, validator=_check("queue_timeout"))
    request_timeout: float | None = attrs.field(
        default=None,
        converter=_to_timeout,
        validator=_check("request_timeout"),
    )
    startup_timeout: float = attrs.field(
        default=30.0, validator=_check("startup_timeout")
    )
    startup_batch_size: int = attrs.field(
        default=8, validator=_check("startup_batch_size")
    )
    shutdown_timeout: float = attrs.field(
        default=5.0, validator=_check("shutdown_timeout")
    )
    max_frame_bytes: int = attrs.field(
        default=DEFAULT_MAX_FRAME_BYTES, validator=_check("max_frame_bytes")
    )
    restart_intensity: int = attrs.field(
        default=3, validator=_check("restart_intensity")
    )
    restart_period: float = attrs.field(default=5.0, validator=_check("restart_period"))
    worker_ttl: float = attrs.field(
        default=math.inf,
        converter=_to_ttl,
        validator=_check("worker_ttl"),
    )
    worker_max_requests: float = attrs.field(
        default=math.inf,
        converter=_to_max_requests,
        validator=_check("worker_max_requests"),
    )
    memory_threshold_mb: float | None = attrs.field(
        default=None,
        converter=_to_memory,
        validator=_check("memory_threshold_mb"),
    )

    worker_max_requests_jitter: int = attrs.field(
        default=0, validator=_check("worker_max_requests_jitter")
    )
    lifecycle_check_interval: float = attrs.field(
        default=60.0, validator=_check("lifecycle_check_interval")
    )
    health_check_interval: float = attrs.field(
        default=300.0, validator=_check("health_check_interval")
    )
    health_check_timeout: float = attrs.field(
        default=10.0, validator=_check("health_check_timeout")
    )
    drain_timeout: float = attrs.field(default=30.0, validator=_check("drain_timeout"))
    max_concurrent_recycles: int = attrs.field(
        default=1, validator=_check("max_concurrent_recycles")
    )
    thread_safety_checks: str = attrs.field(
        default="off",
        converter=_to_safety_checks,
        validator=_check("thread_safety_checks"),
    )
    instance: str | None = attrs.field(default=None, validator=_check("instance"))
    data_dir: str | None = attrs.field(
        default=None, converter=_to_data_dir, validator=_check("data_dir")
    )

    @threads_per_worker.default
    def _threads_per_worker_default(self) -> int:
        thread = self.worker_profile is Profile.THREAD
        return DEFAULT_THREADS_PER_WORKER if thread else 1

    def __attrs_post_init__(self) -> None:
        problem = _threads_problem(self.worker_profile, self.threads_per_worker)
        if problem is not None:
            raise ConfigError(f"pool {self.name!r}: {problem}")

    @property
    def is_thread_profile(self) -> bool:
        """Whether the pool uses the thread profile."""
        return self.worker_profile is Profile.THREAD

    @property
    def effective_request_timeout(self) -> float:
        """The default per-call timeout as a number (``inf`` for none)."""
        return math.inf if self.request_timeout is None else self.request_timeout


# --- Building a Config: keys, layers, problems ---

_POOL_KEYS = tuple(field.name for field in attrs.fields(PoolConfig))
#: Per-pool keys that may also be given at the top level or in ``pool_config``.
_DEFAULT_KEYS = tuple(key for key in _POOL_KEYS if key != "name")
_GLOBAL_KEYS = ("pooling_enabled", "pools", "pool_config", "grpc_config")
_TOP_KEYS = (*_GLOBAL_KEYS, *_DEFAULT_KEYS)
_IN_POOL_KEYS = (*_POOL_KEYS, "grpc_config")


class _Report:
    """Problems found so far, and where ``grpc_config`` was seen."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.grpc_config: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.problems.append(f"{where}: {problem}")


def _unknown_key(key: object, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def _normalize_layer(
    where: str,
    mapping: Mapping[Any, object],
    allowed: Sequence[str],
    report: _Report,
) -> tuple[dict[str, object], set[str]]:
    """Normalize the per-pool keys of one layer; return them and the bad keys."""
    values: dict[str, object] = {}
    bad: set[str] = set()
    for key, value in mapping.items():
        if key == "grpc_config" and key in allowed:
            report.grpc_config.append(where)
        elif key not in allowed:
            report.add(where, _unknown_key(key, allowed))
        else:
            try:
                values[key] = _NORMALIZERS[key](value)
            except _Invalid as exc:
                report.add(where, f"{key} {exc}")
                bad.add(key)
    return values, bad


def _top_level(
    mapping: Mapping[Any, object], report: _Report
) -> tuple[dict[str, object], set[str], bool]:
    """The defaults every pool inherits (the top-level keys, then ``pool_config``
    over them), the keys whose default was invalid, and ``pooling_enabled``."""
    enabled = True
    per_pool: dict[Any, object] = {}
    for key, value in mapping.items():
        if key == "pooling_enabled":
            try:
                enabled = _bool(value)
            except _Invalid as exc:
                report.add("top level", f"pooling_enabled {exc}")
        elif key == "grpc_config":
            report.grpc_config.append("top level")
        elif key == "name":
            report.add(
                "top level",
                "name is set per pool, inside pools (the legacy format's one "
                "pool is always named 'default')",
            )
        elif key in _DEFAULT_KEYS:
            per_pool[key] = value
        elif key not in _GLOBAL_KEYS:
            report.add("top level", _unknown_key(key, _TOP_KEYS))
    defaults, bad = _normalize_layer("top level", per_pool, _DEFAULT_KEYS, report)
    pool_config = mapping.get("pool_config", {})
    if isinstance(pool_config, Mapping):
        overrides, bad_overrides = _normalize_layer(
            "pool_config", pool_config, _DEFAULT_KEYS, report
        )
        defaults.update(overrides)
        bad = (bad - overrides.keys()) | bad_overrides
    else:
        report.add("top level", f"pool_config must be a mapping, not {pool_config!r}")
    return defaults, bad, enabled


def _build_pool(
    where: str, values: dict[str, object], bad: set[str], report: _Report
) -> PoolConfig | None:
    """A PoolConfig from normalized *values*, or ``None`` (problems reported).

    *bad* names the keys whose value was invalid (and left out of *values*).
    """
    _check_adapter(where, values, bad, report)
    if not bad:
        try:
            return PoolConfig(**values)  # type: ignore[arg-type]
        except ConfigError as exc:
            report.problems.append(str(exc))
            return None
    if not bad & {"worker_profile", "threads_per_worker"}:
        profile = Profile(values.get("worker_profile", Profile.PROCESS))
        threads = values.get("threads_per_worker", 1)
        problem = _threads_problem(profile, threads)  # type: ignore[arg-type]
        if problem is not None:
            report.add(where, problem)
    return None


def _pools(
    raw: object, defaults: Mapping[str, object], bad_defaults: set[str], report: _Report
) -> list[PoolConfig]:
    """The pools of the multi-pool format, each inheriting *defaults*."""
    if not isinstance(raw, (list, tuple)):
        report.add("top level", f"pools must be a list of pools, not {raw!r}")
        return []
    if not raw:
        report.problems.append(
            "no pools configured (give at least one pool in pools, or leave pools "
            "out for the single 'default' pool)"
        )
        return []
    pools: list[PoolConfig] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(raw):
        if isinstance(entry, PoolConfig):
            name: object = entry.name
            where = f"pool {entry.name!r}"
            values: dict[str, object] = {
                "adapter_module": entry.adapter_module,
                "python_executable": entry.python_executable,
                "adapter_env": entry.adapter_env,
            }
            _check_adapter(where, values, set(), report)
            pools.append(entry)
        elif isinstance(entry, Mapping):
            name = entry.get("name")
            where = f"pool {name!r}" if _is_name(name) else f"pools[{index}]"
            own, bad = _normalize_layer(where, entry, _IN_POOL_KEYS, report)
            if name is None:
                report.add(where, "name is required")
                bad.add("name")
            values = {**defaults, **own}
            bad |= bad_defaults - own.keys()
            # A threads_per_worker default is meant for the thread-profile pools.
            if "threads_per_worker" not in own and (
                values.get("worker_profile", Profile.PROCESS) is Profile.PROCESS
            ):
                values.pop("threads_per_worker", None)
                bad.discard("threads_per_worker")
            pool = _build_pool(where, values, bad, report)
            if pool is not None:
                pools.append(pool)
        else:
            report.add(
                f"pools[{index}]", f"must be a mapping or a PoolConfig, not {entry!r}"
            )
            continue
        if _is_name(name):
            if name in first_index:
                report.add(
                    where,
                    f"duplicate pool name (pools[{first_index[name]}] and "
                    f"pools[{index}])",
                )
            first_index.setdefault(name, index)
    return pools


def _is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _build(
    mapping: object, *, source: str | None, stacklevel: int
) -> tuple[tuple[PoolConfig, ...], bool]:
    """Validate *mapping* (either format) into pools and ``pooling_enabled``.

    Raises:
        ConfigError: listing every problem found.
    """
    report = _Report()
    if not isinstance(mapping, Mapping):
        _raise([f"the configuration must be a mapping, not {mapping!r}"], source)
    defaults, bad_defaults, enabled = _top_level(mapping, report)
    if "pools" in mapping:
        pools = _pools(mapping["pools"], defaults, bad_defaults, report)
    else:
        values = {"name": "default", **defaults}
        legacy = _build_pool("pool 'default'", values, bad_defaults, report)
        pools = [] if legacy is None else [legacy]
    if report.problems:
        _raise(report.problems, source)
    if report.grpc_config:
        warnings.warn(
            f"grpc_config has no effect ({', '.join(report.grpc_config)}): snakepit "
            "workers talk to their pool over pipes, so there are no ports to "
            "configure; remove it",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    return tuple(pools), enabled


def _raise(problems: Sequence[str], source: str | None) -> NoReturn:
    where = f" in {source}" if source else ""
    if len(problems) == 1:
        raise ConfigError(f"invalid snakepit configuration{where}: {problems[0]}")
    lines = "".join(f"\n  - {problem}" for problem in problems)
    raise ConfigError(
        f"invalid snakepit configuration{where} ({len(problems)} problems):{lines}"
    )


# --- Is the adapter importable? (without running user code) ---


def _check_adapter(
    where: str, values: Mapping[str, object], bad: set[str], report: _Report
) -> None:
    """Report an ``adapter_module`` whose module the worker would not find."""
    if bad & {"adapter_module", "python_executable", "adapter_env"}:
        return
    executable = values.get("python_executable")
    if executable is not None and executable != sys.executable:
        return  # another interpreter, another sys.path: the worker checks
    spec = str(values.get("adapter_module", DEFAULT_ADAPTER))
    module = spec.partition(":")[0]
    env: Mapping[str, object] = values.get("adapter_env") or {}  # type: ignore[assignment]
    pythonpath = str(env.get("PYTHONPATH", os.environ.get("PYTHONPATH", "")))
    extra = [*_working_directory(), *filter(None, pythonpath.split(os.pathsep))]
    try:
        missing = _missing_module(module, extra)
    except Exception as exc:  # a package __init__ that had to run failed
        report.add(
            where,
            f"adapter_module {spec!r} cannot be imported: {type(exc).__name__}: {exc}",
        )
        return
    if missing is not None:
        report.add(
            where,
            f"adapter_module {spec!r}: no module named {missing!r} (is it installed, "
            "or on the worker's PYTHONPATH?)",
        )


def _working_directory() -> list[str]:
    """The worker runs ``python -m``, so the current directory starts its path."""
    try:
        return [os.getcwd()]
    except OSError:  # deleted under us: the worker will not find it either
        return []


def _missing_module(name: str, extra_paths: Sequence[str]) -> str | None:
    """The first part of module *name* that cannot be found, or ``None`` if found.

    Found without importing the user's packages: each package on the way is looked
    up with the finders, unless it is already imported. Only when a package's
    static search path misses the next part (a package may extend its ``__path__``
    as it runs) is :func:`importlib.util.find_spec` asked, which imports the
    parents.
    """
    parts = name.split(".")
    search: Sequence[str] | None = None
    for depth in range(1, len(parts) + 1):
        fullname = ".".join(parts[:depth])
        if search is None and depth > 1:
            return fullname  # the parent is a plain module, not a package
        module = sys.modules.get(fullname)
        if module is not None:
            search = getattr(module, "__path__", None)
            continue
        spec = _find_spec(fullname, search, extra_paths if depth == 1 else ())
        if spec is None and depth > 1:
            try:
                spec = importlib.util.find_spec(name)
            except ModuleNotFoundError as exc:
                return exc.name or fullname
            return None if spec is not None else fullname
        if spec is None:
            return fullname
        search = spec.submodule_search_locations
    return None


def _find_spec(
    fullname: str, path: Sequence[str] | None, extra_paths: Sequence[str]
) -> importlib.machinery.ModuleSpec | None:
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)  # legacy finders lack it
        spec = None if find_spec is None else find_spec(fullname, path)
        if spec is not None:
            return spec  # type: ignore[no-any-return]
    if extra_paths:
        return importlib.machinery.PathFinder.find_spec(fullname, list(extra_paths))
    return None


# --- TOML ---


def _toml_loads() -> Callable[[str], dict[str, Any]]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads
    try:
        tomli = importlib.import_module("tomli")
    except ModuleNotFoundError:
        raise ConfigError(
            "reading TOML configuration on Python 3.10 needs the tomli package: "
            "pip install tomli"
        ) from None
    loads: Callable[[str], dict[str, Any]] = tomli.loads
    return loads


def _read_toml(path: Path) -> dict[str, Any]:
    loads = _toml_loads()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        return loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _pyproject_table(path: Path) -> Mapping[str, Any] | None:
    tool = _read_toml(path).get("tool", {})
    table = tool.get("snakepit") if isinstance(tool, Mapping) else None
    if table is not None and not isinstance(table, Mapping):
        raise ConfigError(f"{path}: [tool.snakepit] must be a table")
    return table


# --- Config ---


@final
@attrs.frozen(init=False)
class Config:
    """The configuration of every pool, validated and frozen.

    ``Config(**keywords)`` takes the same keys as :meth:`from_mapping`, in either
    format; ``Config()`` is one pool, ``default``, running :data:`DEFAULT_ADAPTER`.

    Args:
        **keywords: the configuration keys, as for :meth:`from_mapping`
            (``docs/configuration.md`` lists them).

    Raises:
        ConfigError: listing every problem found, each with its pool and key.

    Warns:
        UserWarning: ``grpc_config`` is given (it has no effect).

    Attributes:
        pools: the pools, in configuration order.
        pooling_enabled: whether the application starts the pools.

    .. versionadded:: 0.1
    """

    pools: tuple[PoolConfig, ...]
    pooling_enabled: bool = True

    def __init__(self, **keywords: object) -> None:
        pools, enabled = _build(keywords, source=None, stacklevel=2)
        self.__attrs_init__(pools=pools, pooling_enabled=enabled)

    @classmethod
    def _from(cls, mapping: object, source: str | None, stacklevel: int) -> Config:
        pools, enabled = _build(mapping, source=source, stacklevel=stacklevel + 1)
        config = cls.__new__(cls)
        config.__attrs_init__(pools=pools, pooling_enabled=enabled)
        return config

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object]) -> Config:
        """Build a configuration from *mapping*, in either format.

        Args:
            mapping: the legacy keys (one pool, ``default``) or a ``pools`` list,
                whose entries are mappings or :class:`PoolConfig` instances.

        Raises:
            ConfigError: listing every problem found.
        """
        return cls._from(mapping, None, stacklevel=2)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Config:
        """Read a configuration from a TOML file.

        A ``pyproject.toml`` is read from its ``[tool.snakepit]`` table; any other
        file (``snakepit.toml``) holds the keys at its top level.

        Args:
            path: the file.

        Raises:
            ConfigError: the file cannot be read or parsed, has no
                ``[tool.snakepit]`` table (``pyproject.toml``), or is invalid.
        """
        path = Path(path)
        if path.name == "pyproject.toml":
            table = _pyproject_table(path)
            if table is None:
                raise ConfigError(f"{path} has no [tool.snakepit] table")
            return cls._from(table, f"{path} [tool.snakepit]", stacklevel=2)
        return cls._from(_read_toml(path), str(path), stacklevel=2)

    @classmethod
    def load(
        cls,
        source: Config | Mapping[str, object] | str | os.PathLike[str] | None = None,
    ) -> Config:
        """Return the configuration *source* names, however it is given.

        Args:
            source: a :class:`Config` (returned as is), a mapping, the path of a
                TOML file, or ``None``: then ``snakepit.toml`` in the current
                directory, else ``[tool.snakepit]`` in its ``pyproject.toml``, else
                the default configuration.

        Raises:
            ConfigError: the configuration found is invalid.
            TypeError: *source* is none of these.
        """
        if isinstance(source, Config):
            return source
        if isinstance(source, Mapping):
            return cls._from(source, None, stacklevel=2)
        if isinstance(source, (str, os.PathLike)):
            return cls.from_toml(source)
        if source is not None:
            raise TypeError(
                "Config.load() takes a Config, a mapping, the path of a TOML file "
                f"or None, not {source!r}"
            )
        here = Path.cwd()
        if (here / "snakepit.toml").is_file():
            return cls.from_toml(here / "snakepit.toml")
        pyproject = here / "pyproject.toml"
        if pyproject.is_file():
            table = _pyproject_table(pyproject)
            if table is not None:
                return cls._from(table, f"{pyproject} [tool.snakepit]", stacklevel=2)
        return cls._from({}, None, stacklevel=2)

    # --- Queries (the Elixir library's Snakepit.Config) ---

    def get_pool_configs(self) -> list[PoolConfig]:
        """Return every pool's configuration, in configuration order."""
        return list(self.pools)

    def get_pool_config(self, name: str) -> PoolConfig:
        """Return the configuration of the pool called *name*.

        Raises:
            PoolNotFound: no pool has that name; the message lists the pools.
        """
        for pool in self.pools:
            if pool.name == name:
                return pool
        known = ", ".join(repr(pool.name) for pool in self.pools)
        raise PoolNotFound(f"no pool named {name!r} (configured pools: {known})")

    def is_thread_profile(self, name: str) -> bool:
        """Whether the pool called *name* uses the thread profile.

        Raises:
            PoolNotFound: no pool has that name.
        """
        return self.get_pool_config(name).is_thread_profile

    def get_profile(self, name: str) -> type[ProcessProfile | ThreadProfile]:
        """Return the profile class of the pool called *name*.

        Raises:
            PoolNotFound: no pool has that name.
        """
        return profile_for(self.get_pool_config(name).worker_profile)
