"""Runners carry out one consumer's execution of a flow; the flow's definition picks one.

A flow's ``execution`` object (contract: ``{type, data}``) takes two hookline extensions:
``runner`` (a registered name) and the runner's own options (``url`` for ``http``). Without
``runner``, a flow with a ``url`` runs on ``http`` and any other on ``external``.

Runs happen in background tasks started after the transaction that created the executions
has committed; a run that never reports is ended as error by the scheduler at its deadline.
A resumable runner's run is leased to its process (renewed while it runs): if the process
dies, the flow scheduler of another process starts the run again once the lease runs out.
More runners plug in with :func:`register_runner`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from hookline.errors import InvalidRequest
from hookline.platform.runners.types import SECRET_KEY, RunJob

if TYPE_CHECKING:
    from hookline.runtime import Runtime

log = logging.getLogger(__name__)


class Runner(Protocol):
    name: str
    #: True when this process carries the run out (and another must start it again if this
    #: process dies); False when the run happens elsewhere and reports back.
    resumable: bool

    def validate(self, execution: dict[str, Any]) -> None:
        """Raise InvalidRequest when a flow's execution definition cannot run here."""

    async def run(self, runtime: Runtime, job: RunJob) -> None:
        """Carry out ``job`` and end it through ``finish_execution`` (or leave it running
        for an external report)."""


_RUNNERS: dict[str, Runner] = {}
_TASKS: set[asyncio.Task[None]] = set()


def register_runner(runner: Runner) -> None:
    _RUNNERS[runner.name] = runner


def runner_names() -> list[str]:
    return sorted(_RUNNERS)


def runner_name(execution: dict[str, Any]) -> str:
    name = execution.get("runner")
    if name:
        return str(name)
    return "http" if execution.get("url") else "external"


def get_runner(name: str) -> Runner:
    try:
        return _RUNNERS[name]
    except KeyError:
        raise InvalidRequest(
            f"Unknown runner {name!r}; known: {', '.join(runner_names())}",
            error_code="ERROR_INVALID_RUNNER",
        ) from None


def is_resumable(name: str) -> bool:
    runner = _RUNNERS.get(name)
    return bool(getattr(runner, "resumable", False))


def validate_execution(execution: dict[str, Any]) -> None:
    get_runner(runner_name(execution)).validate(execution)
    timeout = execution.get("timeout_seconds")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise InvalidRequest(
            "execution.timeout_seconds must be a positive number", error_code="ERROR_INVALID_RUNNER"
        )


def dispatch(runtime: Runtime, jobs: list[RunJob]) -> None:
    """Start each job's runner in a background task (call only after the commit)."""
    for job in jobs:
        task = asyncio.create_task(_run(runtime, job), name=f"hookline:run:{job.execution_id}")
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)


async def _run(runtime: Runtime, job: RunJob) -> None:
    try:
        runner = _RUNNERS.get(job.runner)
        if runner is None:
            from hookline.platform.executions import finish_now

            await finish_now(
                runtime,
                job.execution_id,
                status="error",
                message=f"Runner {job.runner!r} is not available",
                error_code="ERROR_RUNNER_UNAVAILABLE",
            )
            return
        lease = asyncio.create_task(_keep_lease(runtime, job)) if is_resumable(job.runner) else None
        try:
            await runner.run(runtime, job)
        finally:
            if lease is not None:
                lease.cancel()
    except Exception:  # a runner bug must not kill the loop; the deadline sweep ends it
        log.exception("runner %s failed on execution %s", job.runner, job.execution_id)


async def _keep_lease(runtime: Runtime, job: RunJob) -> None:
    """While this process runs ``job``, renew its lease every third of the lease, so the
    scheduler never starts it again elsewhere."""
    from hookline.platform.executions import renew_run_lease

    period = max(0.05, runtime.settings.run_lease_seconds / 3)
    while True:
        await asyncio.sleep(period)  # a timer, not a synchronisation: the renewal cadence
        try:
            await renew_run_lease(runtime, job.execution_id)
        except Exception:  # the next round tries again, still within the lease
            log.warning("renewing the run lease of %s failed", job.execution_id, exc_info=True)


async def drain() -> None:
    """Wait for every run started in this process (tests, graceful shutdown)."""
    while _TASKS:
        await asyncio.gather(*list(_TASKS), return_exceptions=True)


def _register_builtins() -> None:
    from hookline.platform.runners.external import ExternalRunner
    from hookline.platform.runners.http import HttpRunner

    register_runner(HttpRunner())
    register_runner(ExternalRunner())


_register_builtins()

__all__ = [
    "SECRET_KEY",
    "RunJob",
    "Runner",
    "dispatch",
    "drain",
    "get_runner",
    "is_resumable",
    "register_runner",
    "runner_name",
    "validate_execution",
]
