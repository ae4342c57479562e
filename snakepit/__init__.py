"""snakepit: supervised pools of Python worker processes, the Erlang/OTP way.

The public names are imported lazily (PEP 562), so that importing a worker-side
module (``snakepit.worker``, ``snakepit.protocol``, ``snakepit.adapter``) never pulls
in the parent side (anyio, attrs, psutil).

.. versionadded:: 0.1
"""

from __future__ import annotations

import importlib

from ._version import __version__ as __version__

# Not ``typing.TYPE_CHECKING``: importing typing costs every process that imports
# snakepit (a run's reaper imports nothing else) a few milliseconds; mypy reads
# this name the same way.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from . import exceptions as exceptions
    from . import interpreter as interpreter
    from . import lifecycle as lifecycle
    from . import supervisor as supervisor
    from . import telemetry as telemetry
    from ._app import Snakepit as Snakepit
    from ._app import open_snakepit as open_snakepit
    from ._sync import SyncSnakepit as SyncSnakepit
    from ._sync import execute as execute
    from ._sync import execute_in_session as execute_in_session
    from ._sync import execute_stream as execute_stream
    from ._sync import get_stats as get_stats
    from ._sync import lifecycle_stats as lifecycle_stats
    from ._sync import list_workers as list_workers
    from ._sync import recycle_worker as recycle_worker
    from ._sync import start as start
    from ._sync import stop as stop
    from .config import Config as Config
    from .config import PoolConfig as PoolConfig
    from .exceptions import SnakepitError as SnakepitError
    from .profiles import Profile as Profile
    from .supervisor import ChildSpec as ChildSpec
    from .supervisor import DynamicSupervisor as DynamicSupervisor
    from .supervisor import Restart as Restart
    from .supervisor import Strategy as Strategy
    from .supervisor import Supervisor as Supervisor

__all__ = (
    "__version__",
    "open_snakepit",
    "Snakepit",
    "start",
    "stop",
    "execute",
    "execute_in_session",
    "execute_stream",
    "get_stats",
    "list_workers",
    "recycle_worker",
    "lifecycle_stats",
    "SyncSnakepit",
    "Config",
    "PoolConfig",
    "Profile",
    "exceptions",
    "supervisor",
    "telemetry",
    "interpreter",
    "lifecycle",
    "SnakepitError",
    "Supervisor",
    "DynamicSupervisor",
    "ChildSpec",
    "Restart",
    "Strategy",
)

# name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "open_snakepit": ("snakepit._app", "open_snakepit"),
    "Snakepit": ("snakepit._app", "Snakepit"),
    "start": ("snakepit._sync", "start"),
    "stop": ("snakepit._sync", "stop"),
    "execute": ("snakepit._sync", "execute"),
    "execute_in_session": ("snakepit._sync", "execute_in_session"),
    "execute_stream": ("snakepit._sync", "execute_stream"),
    "get_stats": ("snakepit._sync", "get_stats"),
    "list_workers": ("snakepit._sync", "list_workers"),
    "recycle_worker": ("snakepit._sync", "recycle_worker"),
    "lifecycle_stats": ("snakepit._sync", "lifecycle_stats"),
    "SyncSnakepit": ("snakepit._sync", "SyncSnakepit"),
    "Config": ("snakepit.config", "Config"),
    "PoolConfig": ("snakepit.config", "PoolConfig"),
    "Profile": ("snakepit.profiles", "Profile"),
    "exceptions": ("snakepit.exceptions", None),
    "supervisor": ("snakepit.supervisor", None),
    "telemetry": ("snakepit.telemetry", None),
    "interpreter": ("snakepit.interpreter", None),
    "lifecycle": ("snakepit.lifecycle", None),
    "SnakepitError": ("snakepit.exceptions", "SnakepitError"),
    "Supervisor": ("snakepit.supervisor", "Supervisor"),
    "DynamicSupervisor": ("snakepit.supervisor", "DynamicSupervisor"),
    "ChildSpec": ("snakepit.supervisor", "ChildSpec"),
    "Restart": ("snakepit.supervisor", "Restart"),
    "Strategy": ("snakepit.supervisor", "Strategy"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'snakepit' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
