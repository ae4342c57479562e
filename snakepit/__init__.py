"""snakepit: supervised pools of Python worker processes, the Erlang/OTP way.

The public names are imported lazily (PEP 562), so that importing a worker-side
module (``snakepit.worker``, ``snakepit.protocol``, ``snakepit.adapter``) never pulls
in the parent side (anyio, attrs, psutil).

.. versionadded:: 0.1
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from . import exceptions as exceptions
    from . import supervisor as supervisor
    from . import telemetry as telemetry
    from .exceptions import SnakepitError as SnakepitError
    from .supervisor import ChildSpec as ChildSpec
    from .supervisor import DynamicSupervisor as DynamicSupervisor
    from .supervisor import Restart as Restart
    from .supervisor import Strategy as Strategy
    from .supervisor import Supervisor as Supervisor

__all__ = (
    "__version__",
    "exceptions",
    "supervisor",
    "telemetry",
    "SnakepitError",
    "Supervisor",
    "DynamicSupervisor",
    "ChildSpec",
    "Restart",
    "Strategy",
)

# name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "exceptions": ("snakepit.exceptions", None),
    "supervisor": ("snakepit.supervisor", None),
    "telemetry": ("snakepit.telemetry", None),
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
