"""Worker profiles: how a worker is launched and how many calls it takes at once."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar, Protocol, final

__all__ = (
    "BLAS_THREAD_VARIABLES",
    "Profile",
    "ProcessProfile",
    "ThreadProfile",
    "WorkerProfile",
    "profile_for",
)

#: Environment variables that size the thread pools of BLAS and friends.
BLAS_THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


class Profile(str, enum.Enum):
    """The name of a worker profile; compares equal to its string.

    .. versionadded:: 0.1
    """

    PROCESS = "process"
    THREAD = "thread"

    def __str__(self) -> str:
        return self.value


class WorkerProfile(Protocol):
    """What a profile decides: a worker's capacity and launch environment.

    Keep this seam narrow: a future profile may put workers elsewhere.

    .. versionadded:: 0.1
    """

    name: ClassVar[Profile]
    #: Whether an abandoned call (timed out or cancelled) kills the worker: true
    #: where the worker cannot be interrupted and serves nothing else meanwhile.
    kill_on_abandon: ClassVar[bool]

    def capacity(self, threads_per_worker: int) -> int:
        """How many calls one worker runs at once."""

    def worker_env(self, threads_per_worker: int) -> Mapping[str, str]:
        """Variables the profile sets in the worker (``adapter_env`` overrides)."""


@final
class ProcessProfile:
    """One call at a time per worker process; BLAS limited to one thread.

    The default, and the Elixir library's v0.5.1 behaviour. A call that times out
    or is cancelled kills and replaces its worker, which cannot be interrupted.

    .. versionadded:: 0.1
    """

    name: ClassVar[Profile] = Profile.PROCESS
    kill_on_abandon: ClassVar[bool] = True

    def capacity(self, threads_per_worker: int) -> int:
        """Always 1."""
        return 1

    def worker_env(self, threads_per_worker: int) -> Mapping[str, str]:
        """Every BLAS thread variable set to 1."""
        return dict.fromkeys(BLAS_THREAD_VARIABLES, "1")


@final
class ThreadProfile:
    """``threads_per_worker`` calls at once per worker process.

    For free-threaded Python 3.13+ and for libraries that release the GIL. An
    abandoned call is left to finish (its reply is discarded): killing the worker
    would fail the other calls it runs.

    .. versionadded:: 0.1
    """

    name: ClassVar[Profile] = Profile.THREAD
    kill_on_abandon: ClassVar[bool] = False

    def capacity(self, threads_per_worker: int) -> int:
        """``threads_per_worker``."""
        return threads_per_worker

    def worker_env(self, threads_per_worker: int) -> Mapping[str, str]:
        """Every BLAS thread variable set to ``threads_per_worker``."""
        return dict.fromkeys(BLAS_THREAD_VARIABLES, str(threads_per_worker))


_PROFILES: dict[Profile, type[ProcessProfile | ThreadProfile]] = {
    Profile.PROCESS: ProcessProfile,
    Profile.THREAD: ThreadProfile,
}


def profile_for(name: Profile | str) -> type[ProcessProfile | ThreadProfile]:
    """Return the profile class for *name* (``"process"`` or ``"thread"``).

    Raises:
        ValueError: *name* is not a profile.
    """
    try:
        return _PROFILES[Profile(name)]
    except ValueError:
        known = ", ".join(p.value for p in Profile)
        raise ValueError(f"unknown worker profile {name!r} (known: {known})") from None
