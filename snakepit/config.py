"""Configuration values: :class:`PoolConfig`, one pool's settings.

Values are frozen and validated at construction; a bad value raises
:class:`~snakepit.exceptions.ConfigError` naming the pool and the key.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, final

import attrs

from snakepit.exceptions import ConfigError
from snakepit.profiles import Profile
from snakepit.protocol import DEFAULT_MAX_FRAME_BYTES

__all__ = ("DEFAULT_ADAPTER", "PoolConfig", "default_pool_size")

#: The adapter a pool runs when none is configured.
DEFAULT_ADAPTER = "snakepit.adapters.showcase:ShowcaseAdapter"


def default_pool_size() -> int:
    """Twice the number of CPUs, as the Elixir library (``schedulers_online * 2``)."""
    return 2 * (os.cpu_count() or 1)


def _positive_int(
    instance: PoolConfig, attribute: attrs.Attribute[Any], value: object
) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"pool {instance.name!r}: {attribute.name} must be a positive integer, "
            f"not {value!r}"
        )


def _positive_seconds(
    instance: PoolConfig, attribute: attrs.Attribute[Any], value: object
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(
            f"pool {instance.name!r}: {attribute.name} must be a number of seconds "
            f"> 0, not {value!r}"
        )


def _optional_positive_seconds(
    instance: PoolConfig, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is not None:
        _positive_seconds(instance, attribute, value)


def _adapter_spec(
    instance: PoolConfig, attribute: attrs.Attribute[Any], value: object
) -> None:
    if not isinstance(value, str) or ":" not in value or value.startswith(":"):
        raise ConfigError(
            f"pool {instance.name!r}: adapter_module must be 'package.module:Class', "
            f"not {value!r}"
        )


def _str_mapping(
    instance: PoolConfig, attribute: attrs.Attribute[Any], value: object
) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(
            f"pool {instance.name!r}: {attribute.name} must map strings to strings, "
            f"not {value!r}"
        )


def _profile(value: object) -> Profile:
    try:
        return Profile(value)
    except ValueError:
        known = ", ".join(repr(p.value) for p in Profile)
        raise ConfigError(
            f"unknown worker_profile {value!r} (expected one of {known})"
        ) from None


def _frozen_dict(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value or {})


@final
@attrs.frozen(kw_only=True)
class PoolConfig:
    """The settings of one pool. Keys follow the Elixir library's config.

    Args:
        name: the pool's name.
        adapter_module: the adapter as ``"package.module:Class"``.
        pool_size: how many worker processes.
        worker_profile: ``"process"`` or ``"thread"``.
        threads_per_worker: threads per worker (thread profile).
        adapter_args: keyword arguments for the adapter's constructor.
        adapter_env: variables added to the worker's environment (they override
            the profile's).
        python_executable: the worker interpreter (default: the parent's).
        max_queue_size: calls that may wait for a worker; beyond it
            :class:`~snakepit.exceptions.PoolSaturated`.
        queue_timeout: seconds a call may wait for a worker.
        request_timeout: default per-call timeout in seconds (``None``: none).
        startup_timeout: seconds a worker has to finish its handshake.
        startup_batch_size: workers started at once.
        shutdown_timeout: seconds a stopping worker has to finish its calls
            before SIGTERM, then SIGKILL.
        max_frame_bytes: the largest frame accepted either way.
        restart_intensity: failed worker starts allowed within *restart_period*
            before the pool gives up.
        restart_period: the window of *restart_intensity*, in seconds.

    .. versionadded:: 0.1
    """

    name: str = "default"
    adapter_module: str = attrs.field(default=DEFAULT_ADAPTER, validator=_adapter_spec)
    pool_size: int = attrs.field(factory=default_pool_size, validator=_positive_int)
    worker_profile: Profile = attrs.field(default=Profile.PROCESS, converter=_profile)
    threads_per_worker: int = attrs.field(default=1, validator=_positive_int)
    adapter_args: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)
    adapter_env: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_dict, validator=_str_mapping
    )
    python_executable: str | None = None
    max_queue_size: int = attrs.field(default=1000, validator=_positive_int)
    queue_timeout: float = attrs.field(default=5.0, validator=_positive_seconds)
    request_timeout: float | None = attrs.field(
        default=None, validator=_optional_positive_seconds
    )
    startup_timeout: float = attrs.field(default=30.0, validator=_positive_seconds)
    startup_batch_size: int = attrs.field(default=8, validator=_positive_int)
    shutdown_timeout: float = attrs.field(default=5.0, validator=_positive_seconds)
    max_frame_bytes: int = attrs.field(
        default=DEFAULT_MAX_FRAME_BYTES, validator=_positive_int
    )
    restart_intensity: int = attrs.field(default=3)
    restart_period: float = attrs.field(default=5.0, validator=_positive_seconds)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(
                f"a pool's name must be a non-empty string, not {self.name!r}"
            )
        if (
            isinstance(self.restart_intensity, bool)
            or not isinstance(self.restart_intensity, int)
            or self.restart_intensity < 0
        ):
            raise ConfigError(
                f"pool {self.name!r}: restart_intensity must be an integer >= 0, "
                f"not {self.restart_intensity!r}"
            )
        if self.worker_profile is Profile.PROCESS and self.threads_per_worker != 1:
            raise ConfigError(
                f"pool {self.name!r}: threads_per_worker={self.threads_per_worker} "
                f"needs worker_profile='thread' (the process profile runs one call "
                f"at a time)"
            )

    @property
    def is_thread_profile(self) -> bool:
        """Whether the pool uses the thread profile."""
        return self.worker_profile is Profile.THREAD

    @property
    def effective_request_timeout(self) -> float:
        """The default per-call timeout as a number (``inf`` for none)."""
        return math.inf if self.request_timeout is None else self.request_timeout
