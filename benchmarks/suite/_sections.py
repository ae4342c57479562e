"""The section modules, by the name a job carries.

Each module has ``NAME`` (its jobs' section), ``SECTIONS`` (the sections its
records belong to, the names ``--sections`` takes), ``plan``, ``run_job``,
``expected`` and ``report``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Job section -> module, in the order the suite runs them.
MODULES = {
    "smallcalls": "benchmarks.suite.smallcalls",
    "batch": "benchmarks.suite.batch",
    "startup": "benchmarks.suite.startup",
    "memory": "benchmarks.suite.memory",
    "payload": "benchmarks.suite.payload",
    "cpu": "benchmarks.suite.cpu",
    "recycle": "benchmarks.suite.recycle",
}


def module_for(name: str) -> ModuleType:
    return importlib.import_module(MODULES[name])


def all_modules() -> list[ModuleType]:
    return [module_for(name) for name in MODULES]
