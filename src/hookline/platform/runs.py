"""Carrying runs out in this process: each job's runner runs in a background task, leased
while it runs when it is resumable, and what it comes to is recorded by
:func:`hookline.platform.executions.apply_outcome`. Runners only return outcomes; this module
is the one that calls both them and ``executions``.

Runs start after the transaction that created the executions has committed; a run that
never reports is ended as error by the scheduler at its deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from hookline.error_codes import ErrorCode
from hookline.platform import executions
from hookline.platform.runners.registry import runners_of
from hookline.platform.runners.types import Finished, RunJob, RunOutcome
from hookline.platform.statuses import ExecutionStatus

if TYPE_CHECKING:
    from hookline.runtime import Runtime

log = logging.getLogger(__name__)

_TASKS: set[asyncio.Task[None]] = set()  # runs in flight in this process (for drain)


def dispatch(runtime: Runtime, jobs: list[RunJob]) -> None:
    """Start each job's runner in a background task (call only after the commit)."""
    for job in jobs:
        task = asyncio.create_task(_run(runtime, job), name=f"hookline:run:{job.execution_id}")
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)


async def drain() -> None:
    """Wait for every run started in this process (tests, graceful shutdown)."""
    while _TASKS:
        await asyncio.gather(*list(_TASKS), return_exceptions=True)


async def _run(runtime: Runtime, job: RunJob) -> None:
    try:
        outcome = await _outcome(runtime, job)
        await executions.apply_outcome(runtime, job.execution_id, outcome)
    except Exception:  # a runner bug must not kill the loop; the deadline sweep ends it
        log.exception("runner %s failed on execution %s", job.runner, job.execution_id)


async def _outcome(runtime: Runtime, job: RunJob) -> RunOutcome:
    runner = runners_of(runtime).find(job.runner)
    if runner is None:
        return Finished(
            ExecutionStatus.ERROR,
            f"Runner {job.runner!r} is not available",
            ErrorCode.RUNNER_UNAVAILABLE,
        )
    lease = asyncio.create_task(_keep_lease(runtime, job)) if runner.resumable else None
    try:
        return await runner.run(runtime, job)
    finally:
        if lease is not None:
            lease.cancel()


async def _keep_lease(runtime: Runtime, job: RunJob) -> None:
    """While this process runs ``job``, renew its lease every third of the lease, so the
    scheduler never starts it again elsewhere."""
    period = max(0.05, runtime.settings.run_lease_seconds / 3)
    while True:
        await asyncio.sleep(period)  # a timer, not a synchronisation: the renewal cadence
        try:
            await executions.renew_run_lease(runtime, job.execution_id)
        except Exception:  # the next round tries again, still within the lease
            log.warning("renewing the run lease of %s failed", job.execution_id, exc_info=True)
