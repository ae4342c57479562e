"""Where the suite runs from, and the environment of its subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

import benchmarks

#: The checkout holding ``benchmarks/`` (and, unless installed, ``snakepit/``).
ROOT = Path(benchmarks.__file__).resolve().parent.parent

#: The BLAS thread variables (as ``snakepit.profiles.BLAS_THREAD_VARIABLES``,
#: copied so a job that runs no snakepit does not import it).
BLAS_THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def compile_checkout() -> list[str]:
    """Byte-compile the checkout's ``snakepit`` and ``benchmarks`` packages (into
    their ``__pycache__``, as ``pip install`` does for an installed package) and
    return the packages compiled.

    Every peer's code (the standard library, NumPy, loky, pebble) is imported
    from bytecode compiled at install; a source checkout under
    ``PYTHONDONTWRITEBYTECODE=1`` (or on a read-only tree) would instead be
    compiled again by every interpreter the suite starts: each spawned worker,
    each template, each job. That is not what a deployment pays, so it is not
    measured.
    """
    import compileall

    done = []
    for name in ("snakepit", "benchmarks"):
        folder = ROOT / name
        if folder.is_dir() and compileall.compile_dir(folder, quiet=1):
            done.append(name)
    return done


def job_env() -> dict[str, str]:
    """The environment of every job and raw-pipe child: ours, with the checkout
    first on ``PYTHONPATH`` (so spawned workers import ``benchmarks``) and one
    BLAS thread per process unless set already (what snakepit's process profile
    gives its workers; the peers' workers inherit it, so NumPy rows compare
    like with like)."""
    env = dict(os.environ)
    parts = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    for name in BLAS_THREAD_VARIABLES:
        env.setdefault(name, "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
