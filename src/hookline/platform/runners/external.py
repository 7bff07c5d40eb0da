"""The external runner: the account's own code runs the flow and reports the result through
``POST /syncs/{syncid}/flows/{flowid}/executions/{executionid}/result``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hookline.platform.runners.types import RunJob, RunOutcome

if TYPE_CHECKING:
    from hookline.runtime import Runtime


class ExternalRunner:
    name = "external"
    resumable = False  # the account's code runs it; nothing here to start again

    def validate(self, execution: dict[str, Any]) -> None:
        return None

    async def run(self, runtime: Runtime, job: RunJob) -> RunOutcome:
        return None  # nothing to start: the execution waits for its report or its deadline
