"""Supervision trees in anyio, with Erlang/OTP's semantics.

Subclass :class:`Supervisor`, declare ``strategy``, ``intensity`` and ``period``, and
return :class:`ChildSpec` values from ``init()``. Start it with
``await task_group.start(sup.run)``.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._dynamic import DynamicSupervisor as DynamicSupervisor
from ._plan import ChildView as ChildView
from ._plan import ExitPlan as ExitPlan
from ._plan import add_restart as add_restart
from ._plan import plan_exit as plan_exit
from ._plan import plan_retry as plan_retry
from ._plan import should_restart as should_restart
from ._spec import BRUTAL_KILL as BRUTAL_KILL
from ._spec import INFINITY as INFINITY
from ._spec import AutoShutdown as AutoShutdown
from ._spec import ChildCounts as ChildCounts
from ._spec import ChildInfo as ChildInfo
from ._spec import ChildSpec as ChildSpec
from ._spec import ChildStatus as ChildStatus
from ._spec import ChildType as ChildType
from ._spec import ExitReason as ExitReason
from ._spec import Killable as Killable
from ._spec import Restart as Restart
from ._spec import ShutdownPolicy as ShutdownPolicy
from ._spec import Strategy as Strategy
from ._supervisor import Supervisor as Supervisor

__all__ = (
    "Supervisor",
    "DynamicSupervisor",
    "ChildSpec",
    "ChildInfo",
    "ChildCounts",
    "ChildStatus",
    "ChildType",
    "Restart",
    "Strategy",
    "AutoShutdown",
    "ExitReason",
    "ShutdownPolicy",
    "BRUTAL_KILL",
    "INFINITY",
    "Killable",
    "ChildView",
    "ExitPlan",
    "plan_exit",
    "plan_retry",
    "add_restart",
    "should_restart",
)
