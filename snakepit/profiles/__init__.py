"""Worker profiles: ``process`` (one call at a time) and ``thread`` (N at once).

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._profile import BLAS_THREAD_VARIABLES as BLAS_THREAD_VARIABLES
from ._profile import ProcessProfile as ProcessProfile
from ._profile import Profile as Profile
from ._profile import ThreadProfile as ThreadProfile
from ._profile import WorkerProfile as WorkerProfile
from ._profile import profile_for as profile_for

__all__ = (
    "Profile",
    "WorkerProfile",
    "ProcessProfile",
    "ThreadProfile",
    "BLAS_THREAD_VARIABLES",
    "profile_for",
)
