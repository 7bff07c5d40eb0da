"""Runners carry out one consumer's execution of a flow; the flow's definition picks one.

A flow's ``execution`` object (contract: ``{type, data}``) takes two hookline extensions:
``runner`` (a registered name) and the runner's own options (``url`` for ``http``). Without
``runner``, a flow with a ``url`` runs on ``http`` and any other on ``external``.

A runner returns what its run came to (:data:`RunOutcome`); it never writes the execution
itself: :mod:`hookline.platform.runs` starts runs and has ``executions`` record the outcome.
A resumable runner's run is leased to its process (renewed while it runs): if the process
dies, the flow scheduler of another process starts the run again once the lease runs out.
Each runtime has its registry (:func:`runners_of`); more runners plug in with
``runners_of(runtime).register(runner)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hookline.platform.runners.registry import RunnerRegistry, runner_name, runners_of
from hookline.platform.runners.types import (
    SECRET_KEY,
    Finished,
    HandedOff,
    RunJob,
    Runner,
    RunOutcome,
)
from hookline.platform.statuses import ExecutionStatus

if TYPE_CHECKING:
    from hookline.platform.runs import dispatch, drain


def __getattr__(name: str) -> Any:
    """``dispatch`` and ``drain`` moved to :mod:`hookline.platform.runs` (above
    ``executions``, which this package sits below); still reachable from here for callers
    that import them from the package. Resolved on first use, so importing a runner never
    imports ``executions``."""
    if name in ("dispatch", "drain"):
        from hookline.platform import runs

        return getattr(runs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SECRET_KEY",
    "ExecutionStatus",
    "Finished",
    "HandedOff",
    "RunJob",
    "RunOutcome",
    "Runner",
    "RunnerRegistry",
    "dispatch",
    "drain",
    "runner_name",
    "runners_of",
]
