"""Who runs: every contender's name, kind, options and availability.

A contender is one way to run Python calls in worker processes: snakepit (process
or thread profile, each start method its ``PoolConfig`` has), the standard
library's and third parties' process pools, ``anyio.to_process``, and the
raw-pipe baseline. Each section picks the contenders it runs from here; a
contender whose library (or start method) is missing is reported as skipped.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

SNAKEPIT = "snakepit"
EXECUTOR = "executor"  # concurrent.futures-style: submit() returns a future
APPLY = "apply"  # multiprocessing.Pool-style: apply_async(callback=...)
TO_PROCESS = "to_process"
RAW = "raw"
#: ``Contender.options["api"]`` of the batch section's contenders: one call maps
#: the task over every item (``Pool.map``, ``starmap``, ``Executor.map``).
MAP = "map"


@attrs.frozen(kw_only=True)
class Contender:
    """One contender: *label* is what tables print; *key*, *label*, *family*
    and *aliases* all select it with ``--contenders``."""

    key: str
    label: str
    family: str
    kind: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    requires: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def names(self) -> set[str]:
        return {n.lower() for n in (self.key, self.label, self.family, *self.aliases)}

    def unavailable(self) -> str | None:
        """Why this contender cannot run here, or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        method = self.options.get("start_method")
        if (
            self.kind != SNAKEPIT
            and method is not None
            and method not in multiprocessing.get_all_start_methods()
        ):
            return f"no {method!r} start method on this platform"
        if self.options.get("preload_numpy") and not numpy_available():
            return "numpy is not installed"
        return None


def numpy_available() -> bool:
    return importlib.util.find_spec("numpy") is not None


def snakepit_start_methods() -> list[str | None]:
    """``["spawn", "template"]`` once ``PoolConfig`` has a ``start_method`` field,
    else ``[None]`` (the one way snakepit starts workers today)."""
    from snakepit.config import PoolConfig

    if "start_method" in attrs.fields_dict(PoolConfig):
        return ["spawn", "template"]
    return [None]


SNAKEPIT_PROCESS = Contender(
    key="snakepit-process",
    label="snakepit(process)",
    family="snakepit",
    kind=SNAKEPIT,
    options={"profile": "process"},
)
#: The default with sending ahead turned off: what pipelining is worth.
SNAKEPIT_UNPIPELINED = Contender(
    key="snakepit-process-depth1",
    label="snakepit(process,depth 1)",
    family="snakepit",
    kind=SNAKEPIT,
    options={"profile": "process", "pipeline_depth": 1},
)
SNAKEPIT_THREAD = Contender(
    key="snakepit-thread",
    label="snakepit(thread)",
    family="snakepit",
    kind=SNAKEPIT,
    options={"profile": "thread", "threads": 2},
)


SNAKEPIT_PROCESS_MAP = Contender(
    key="snakepit-process-map",
    label="snakepit(process,map)",
    family="snakepit",
    kind=SNAKEPIT,
    options={"profile": "process", "api": MAP},
)


def snakepit_by_start_method() -> list[Contender]:
    """The process profile once per start method (startup and memory sections);
    just ``snakepit(process)`` where there is no choice."""
    found = []
    for method in snakepit_start_methods():
        if method is None:
            found.append(SNAKEPIT_PROCESS)
            continue
        found.append(
            Contender(
                key=f"snakepit-process-{method}",
                label=f"snakepit(process,{method})",
                family="snakepit",
                kind=SNAKEPIT,
                options={"profile": "process", "start_method": method},
                aliases=("snakepit(process)", "snakepit-process"),
            )
        )
    return found


def _ppe(method: str, **options: Any) -> Contender:
    label = f"PPE({method})"
    if options.get("preload_numpy"):
        label = f"PPE({method},numpy preloaded)"
    return Contender(
        key=f"ppe-{method}" + ("-preloaded" if options.get("preload_numpy") else ""),
        label=label,
        family="ppe",
        kind=EXECUTOR,
        options={"lib": "ppe", "start_method": method, **options},
        aliases=("ProcessPoolExecutor",) if method == "fork" else (),
    )


PPE_FORK = _ppe("fork")
PPE_SPAWN = _ppe("spawn")
PPE_FORKSERVER = _ppe("forkserver")
#: The reference for "fork from a parent that preloaded numpy" (startup, memory).
PPE_FORK_PRELOADED = _ppe("fork", preload_numpy=True)
MP_POOL = Contender(
    key="mp-pool",
    label="mp.Pool",
    family="mp.pool",
    kind=APPLY,
    options={"lib": "multiprocessing"},
    aliases=("multiprocessing.Pool",),
)
LOKY = Contender(
    key="loky",
    label="loky",
    family="loky",
    kind=EXECUTOR,
    options={"lib": "loky"},
    requires=("loky",),
)
PEBBLE = Contender(
    key="pebble",
    label="pebble",
    family="pebble",
    kind=EXECUTOR,
    options={"lib": "pebble"},
    requires=("pebble",),
)
BILLIARD = Contender(
    key="billiard",
    label="billiard",
    family="billiard",
    kind=APPLY,
    options={"lib": "billiard"},
    requires=("billiard",),
)
#: The batch section's peers: each pool's own map, with its own chunking
#: (``PPE(fork,map)`` passes mp.Pool's default chunksize: PPE's default is 1).
MP_POOL_MAP = Contender(
    key="mp-pool-map",
    label="mp.Pool(map)",
    family="mp.pool",
    kind=APPLY,
    options={"lib": "multiprocessing", "api": MAP},
)
PPE_FORK_MAP = Contender(
    key="ppe-fork-map",
    label="PPE(fork,map)",
    family="ppe",
    kind=EXECUTOR,
    options={"lib": "ppe", "start_method": "fork", "api": MAP},
)
BILLIARD_MAP = Contender(
    key="billiard-map",
    label="billiard(map)",
    family="billiard",
    kind=APPLY,
    options={"lib": "billiard", "api": MAP},
    requires=("billiard",),
)
ANYIO_TO_PROCESS = Contender(
    key="to-process",
    label="anyio.to_process",
    family="anyio",
    kind=TO_PROCESS,
    aliases=("to_process",),
)
RAW_BLOCKING = Contender(
    key="raw-blocking",
    label="raw-pipe(blocking)",
    family="raw-pipe",
    kind=RAW,
    options={"mode": "blocking"},
)
RAW_PIPELINED = Contender(
    key="raw-pipelined",
    label="raw-pipe(pipelined)",
    family="raw-pipe",
    kind=RAW,
    options={"mode": "pipelined"},
)
#: The raw-pipe children as a startup and memory floor: a bare interpreter
#: with msgpack (and NumPy in the "with numpy" rows).
RAW_PIPE = Contender(
    key="raw-pipe", label="raw-pipe", family="raw-pipe", kind=RAW, options={}
)


def ppe_recycling() -> Contender:
    """PPE for the recycle section: ``max_tasks_per_child`` refuses ``fork``, so
    forkserver where there is one, else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return PPE_FORKSERVER if "forkserver" in methods else PPE_SPAWN


def split_names(text: str) -> list[str]:
    """Split ``--contenders`` on commas outside parentheses, so
    ``snakepit(process,spawn),loky`` is two names."""
    names, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            names.append(current)
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        current += char
    names.append(current)
    return [n.strip() for n in names if n.strip()]


def select(
    contenders: Iterable[Contender], wanted: Sequence[str] | None
) -> list[Contender]:
    """The contenders *wanted* names (all of them if *wanted* is None)."""
    if wanted is None:
        return list(contenders)
    tokens = {w.lower() for w in wanted}
    return [c for c in contenders if c.names() & tokens]


def all_contenders() -> list[Contender]:
    """Every contender any section may run (for ``--contenders`` checking)."""
    return [
        SNAKEPIT_PROCESS,
        SNAKEPIT_UNPIPELINED,
        SNAKEPIT_THREAD,
        SNAKEPIT_PROCESS_MAP,
        *snakepit_by_start_method(),
        PPE_FORK,
        PPE_SPAWN,
        PPE_FORKSERVER,
        PPE_FORK_PRELOADED,
        MP_POOL,
        LOKY,
        PEBBLE,
        BILLIARD,
        MP_POOL_MAP,
        PPE_FORK_MAP,
        BILLIARD_MAP,
        ANYIO_TO_PROCESS,
        RAW_BLOCKING,
        RAW_PIPELINED,
        RAW_PIPE,
    ]


def to_dict(contender: Contender) -> dict[str, Any]:
    """*contender* as JSON, for a job spec (the job rebuilds it without importing
    this registry's snakepit-dependent parts)."""
    return attrs.asdict(contender)


def from_dict(data: Mapping[str, Any]) -> Contender:
    return Contender(
        key=data["key"],
        label=data["label"],
        family=data["family"],
        kind=data["kind"],
        options=dict(data["options"]),
        requires=tuple(data["requires"]),
        aliases=tuple(data["aliases"]),
    )
